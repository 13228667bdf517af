"""The hand-written M2 of ``benchmarks/plain_m2.py``, the reference of the M2 rows of ``benchmarks/step_time.py``:
it must compute pyrovae's loss, or the timings compare different work."""

import pytest
import torch
from pyro.infer import TraceEnum_ELBO

from benchmarks.plain_m2 import m2_loss
from tests.common import FixedNoise, binary, tiny_ssvae

pytestmark = pytest.mark.filterwarnings("ignore:TraceEnum_ELBO found no sample sites")


@pytest.mark.parametrize("labelled", [False, True], ids=["unlabelled", "labelled"])
def test_the_plain_m2_loss_and_gradient_are_trace_enum_elbos_on_the_same_noise(float64, labelled):
    """On the same z noise (one per class and row when the label is summed out, one per row when it is given), the
    written-out bound, with the classification term and the data plate's scaling, gives TraceEnum_ELBO's loss and
    gradient for every parameter, in double precision to 1e-10 (sums of the same terms in another order)."""
    ssvae = tiny_ssvae(alpha=2.5)
    x, y = binary(6).double(), torch.tensor([0, 1, 2, 2, 1, 0])
    eps = torch.randn(6, 2) if labelled else torch.randn(3, 6, 2)
    labels = (y,) if labelled else ()
    pyro_loss = TraceEnum_ELBO(max_plate_nesting=1).differentiable_loss(
        ssvae.model, FixedNoise(eps)(ssvae.guide), x, *labels, num_data=60
    )
    plain_loss = m2_loss(ssvae, x, y if labelled else None, num_data=60, noise=eps)
    params = list(ssvae.parameters())
    for ours, ref in zip(torch.autograd.grad(plain_loss, params), torch.autograd.grad(pyro_loss, params), strict=True):
        torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-10)
    assert float(plain_loss.detach()) == pytest.approx(float(pyro_loss.detach()), rel=1e-10)


def test_the_plain_m2_refuses_what_it_does_not_write_out():
    x = binary(2)
    for model in (tiny_ssvae(a_dim=3), tiny_ssvae(likelihood="normal")):
        with pytest.raises(ValueError, match="SSVAE with a Bernoulli likelihood"):
            m2_loss(model, x)
