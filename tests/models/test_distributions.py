import pyro.distributions as dist
import pytest
import torch

from pyrovae.models.distributions import IndependentBernoulli, NormalMixture


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


def pyros_mixture(loc: torch.Tensor, scale: torch.Tensor) -> dist.MixtureSameFamily:
    return dist.MixtureSameFamily(dist.Categorical(logits=torch.zeros(len(loc), dtype=loc.dtype)),
                                  dist.Normal(loc, scale).to_event(1))  # fmt: skip


def test_normal_mixture_log_prob_and_gradients_match_pyros_mixture():
    g = torch.Generator().manual_seed(0)
    loc = torch.randn(7, 3, dtype=torch.float64, generator=g).requires_grad_()
    scale = (0.1 + torch.rand(7, 3, dtype=torch.float64, generator=g)).requires_grad_()
    z = 2 * torch.randn(5, 4, 3, dtype=torch.float64, generator=g)  # (particles, batch, D)
    ours = NormalMixture(loc, scale).expand([4]).log_prob(z)
    ref = pyros_mixture(loc, scale).expand([4]).log_prob(z)
    assert ours.shape == (5, 4)
    torch.testing.assert_close(ours, ref)
    grads, expected = (torch.autograd.grad(lp.sum(), [loc, scale]) for lp in (ours, ref))
    for a, b in zip(grads, expected, strict=True):
        torch.testing.assert_close(a, b)


def test_normal_mixture_is_accurate_for_narrow_components_far_from_the_origin():
    """The expanded quadratic form cancels large terms (z^2 / sigma^2 ~ 1e6 here); float32 inputs still get the
    float64 answer to 1e-4 nats."""
    loc = torch.tensor([[30.0, -20.0], [30.2, -20.1]])
    scale = torch.tensor([[0.02, 0.03], [0.05, 0.01]])
    z = loc[0] + torch.tensor([[0.0, 0.0], [0.01, -0.02], [0.1, 0.05]])
    exact = pyros_mixture(loc.double(), scale.double()).log_prob(z.double())
    torch.testing.assert_close(NormalMixture(loc, scale).log_prob(z).double(), exact, atol=1e-4, rtol=0)


def test_normal_mixture_samples_shapes_and_expand_are_a_mixtures():
    torch.manual_seed(0)
    d = NormalMixture(torch.tensor([[-5.0], [5.0]]), torch.tensor([[0.1], [0.1]]))
    assert d.batch_shape == () and d.event_shape == (1,)
    e = d.expand((3,))
    assert isinstance(e, NormalMixture) and e.batch_shape == (3,) and e.log_prob(torch.zeros(1)).shape == (3,)
    x = e.sample((2000,))
    assert x.shape == (2000, 3, 1) and ((x - 5).abs() < 1).float().mean().item() == pytest.approx(0.5, abs=0.05)
    assert ((x + 5).abs() < 1).float().mean().item() == pytest.approx(0.5, abs=0.05)
