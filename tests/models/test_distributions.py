import pyro.distributions as dist
import pytest
import torch

from pyrovae.models.distributions import IndependentBernoulli


@pytest.mark.parametrize("x_shape", [(3, 7), (4, 3, 7)], ids=["broadcast", "same-shape"])
def test_log_prob_and_gradient_match_pyros_bernoulli(x_shape):
    """Both forms of the data term (einsum where x broadcasts against the logits, product and sum where it has
    their shape) give Pyro's values and gradients."""
    logits = (5 * torch.randn(4, 3, 7, dtype=torch.float64)).requires_grad_()
    x = torch.bernoulli(torch.full(x_shape, 0.4, dtype=torch.float64))
    ours = IndependentBernoulli(logits).log_prob(x)
    ref = dist.Bernoulli(logits=logits).to_event(1).log_prob(x)
    torch.testing.assert_close(ours, ref)
    (g_ours,) = torch.autograd.grad(ours.sum(), logits)
    (g_ref,) = torch.autograd.grad(ref.sum(), logits)
    torch.testing.assert_close(g_ours, g_ref)


def test_shapes_expand_and_sampling_are_those_of_an_independent_bernoulli():
    d = IndependentBernoulli(torch.zeros(3, 5))
    assert d.batch_shape == (3,) and d.event_shape == (5,)
    e = d.expand((2, 3))
    assert isinstance(e, IndependentBernoulli) and e.batch_shape == (2, 3) and e.log_prob(d.sample()).shape == (2, 3)
    torch.testing.assert_close(e.log_prob(torch.ones(5)), torch.full((2, 3), 5 * torch.tensor(0.5).log().item()))


def test_values_outside_the_support_are_refused():
    with pytest.raises(ValueError, match="within the support"):
        IndependentBernoulli(torch.zeros(2, 3), validate_args=True).log_prob(torch.full((2, 3), 0.5))
