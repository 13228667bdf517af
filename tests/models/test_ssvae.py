import pyro
import pyro.poutine as poutine
import pytest
import torch
import torch.nn.functional as F
from pyro.infer import TraceEnum_ELBO, config_enumerate

import pyrovae
from pyrovae.infer.importance import log_marginal_likelihood
from pyrovae.models.adgm import concat
from pyrovae.models.ssvae import SSVAE
from tests.common import FixedNoise, binary, tiny_ssvae

ELBO = TraceEnum_ELBO(max_plate_nesting=1)
pytestmark = pytest.mark.filterwarnings("ignore:TraceEnum_ELBO found no sample sites")
#: labels of a partially labelled batch of 6 rows: two labelled, four missing (-1)
MIXED = torch.tensor([2, -1, -1, 0, -1, -1])


@torch.no_grad()
def classifier_log_probs(ssvae: SSVAE, x: torch.Tensor, eps_a: torch.Tensor) -> torch.Tensor:
    """log q(y|x), or log q(y|a, x) at the a that FixedNoise(..., eps_a) draws, ``(batch, C)``."""
    if type(ssvae) is SSVAE:
        return ssvae.log_predict(x)
    loc, scale = ssvae.aux_encoder(x)
    return ssvae.classifier(concat(x, loc + scale * eps_a)).log_softmax(-1)


@pytest.mark.parametrize("a_dim", [0, 3])
def test_enumerated_unlabelled_elbo_is_the_q_weighted_labelled_elbo_plus_entropy(float64, a_dim):
    """U(x) = sum_y q(y|x) L(x, y) + H[q(y|x)]; with the auxiliary variable the same holds given the guide's a,
    with q(y|a, x) (the labelled ELBOs drawn at the same a)."""
    ssvae = tiny_ssvae(alpha=0.0, a_dim=a_dim)
    x, eps, eps_a = binary(4).double(), torch.randn(4, 2), torch.randn(4, a_dim)
    guide = FixedNoise(eps, eps_a)(ssvae.guide)
    unlabelled = -ELBO.loss(ssvae.model, guide, x)
    q = classifier_log_probs(ssvae, x, eps_a).exp()
    by_hand = 0.0
    for n in range(len(x)):
        guide_n = FixedNoise(eps[n : n + 1], eps_a[n : n + 1])(ssvae.guide)
        for c in range(3):
            labelled = -ELBO.loss(ssvae.model, guide_n, x[n : n + 1], torch.tensor([c]))
            by_hand += q[n, c] * labelled
        by_hand += -(q[n] * q[n].log()).sum()
    assert unlabelled == pytest.approx(float(by_hand), rel=1e-12, abs=1e-10)


@pytest.mark.parametrize("a_dim", [0, 3])
def test_classification_term_adds_alpha_log_q_exactly(a_dim):
    """alpha log q(y|x) per labelled point; with the auxiliary variable alpha log q(y|a, x) at the guide's a."""
    x, y, eps, eps_a = binary(6), torch.tensor([0, 1, 2, 2, 1, 0]), torch.randn(6, 2), torch.randn(6, a_dim)
    with_term = tiny_ssvae(alpha=7.5, a_dim=a_dim)
    without = tiny_ssvae(alpha=0.0, a_dim=a_dim)
    without.load_state_dict(with_term.state_dict())
    difference = ELBO.loss(with_term.model, FixedNoise(eps, eps_a)(with_term.guide), x, y) - ELBO.loss(
        without.model, FixedNoise(eps, eps_a)(without.guide), x, y
    )
    log_q = classifier_log_probs(with_term, x, eps_a).gather(-1, y[:, None]).sum()
    assert difference == pytest.approx(-7.5 * float(log_q), rel=1e-5)


def loss_and_grads(ssvae: SSVAE, guide, *args, **kwargs) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """``TraceEnum_ELBO``'s differentiable loss of ``ssvae.model`` and ``guide`` and its gradient for every parameter of
    ``ssvae`` (zero where the loss does not depend on it)."""
    params = list(ssvae.parameters())
    loss = ELBO.differentiable_loss(ssvae.model, guide, *args, **kwargs)
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return loss.detach(), [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads, strict=True)]


@pytest.mark.parametrize("enumerate", ["parallel", "sequential"])
@pytest.mark.parametrize("a_dim", [0, 3])
def test_a_partially_labelled_call_is_a_labelled_call_plus_an_unlabelled_one(float64, a_dim, enumerate):
    """M2's objective in one call, -1 marking the missing labels: with the same z (and a) noise per row, its loss and
    gradients are those of a call on the labelled rows plus a call on the unlabelled rows, each scaled to its share of
    num_data as the mixed call scales every row (60 / 6 = 20 / 2 = 40 / 4), to rounding (the sums run in another
    order). The classification term is in it (alpha = 5). A batch without any label is the unlabelled call."""
    ssvae, x, y = tiny_ssvae(6, a_dim=a_dim, enumerate=enumerate, seed=0), binary(6, 6), MIXED
    eps, eps_a, labelled = torch.randn(6, 2), torch.randn(6, a_dim), MIXED >= 0

    def call(rows: torch.Tensor, labels: torch.Tensor | None, num_data: int) -> tuple[torch.Tensor, list]:
        return loss_and_grads(ssvae, FixedNoise(eps[rows], eps_a[rows])(ssvae.guide), x[rows], labels, num_data)

    mixed, grads = call(torch.arange(6), y, 60)
    loss_l, grads_l = call(labelled, y[labelled], 20)
    loss_u, grads_u = call(~labelled, None, 40)
    assert float(mixed) == pytest.approx(float(loss_l + loss_u), rel=1e-12)
    for g, g_l, g_u in zip(grads, grads_l, grads_u, strict=True):
        assert torch.allclose(g, g_l + g_u, rtol=1e-10, atol=1e-12)
    assert any(g_l.abs().sum() > 0 and g_u.abs().sum() > 0 for g_l, g_u in zip(grads_l, grads_u, strict=True))
    none_labelled = call(torch.arange(6), torch.full((6,), -1), 60)[0]
    assert float(none_labelled) == pytest.approx(float(call(torch.arange(6), None, 60)[0]), rel=1e-12)


@pytest.mark.parametrize("labels", [None, MIXED], ids=["unlabelled", "partially-labelled"])
def test_sequential_enumeration_and_config_enumerate_give_the_parallel_loss(float64, labels):
    """y summed out one class at a time (enumerate="sequential"), or enumerated by pyro.infer.config_enumerate on the
    guide of an SSVAE built with enumerate=None, gives the loss of parallel enumeration for the same z noise."""
    x, eps = binary(6, 6), torch.randn(6, 2)

    def loss(enumerate: str | None, configure: str | None = None) -> float:
        ssvae = tiny_ssvae(6, enumerate=enumerate, seed=0)
        guide = ssvae.guide if configure is None else config_enumerate(ssvae.guide, configure)
        return ELBO.loss(ssvae.model, FixedNoise(eps)(guide), x, labels, num_data=60)

    parallel = loss("parallel")
    for other in (loss("sequential"), loss(None, "sequential"), loss(None, "parallel")):
        assert other == pytest.approx(parallel, rel=1e-12)


def test_sites_of_a_partially_labelled_call():
    """The site names of the other calls; y latent on every row: the guide's q(y|x) where the label is missing, a point
    mass (probability 1, log q = 0) on each given label; the classification factor alpha log q(y|x) on the labelled
    rows and 0 on the others."""
    ssvae, x, y, labelled = tiny_ssvae(6, enumerate=None), binary(6, 6), MIXED, MIXED >= 0
    guide = poutine.trace(ssvae.guide).get_trace(x, y)
    model = poutine.trace(poutine.replay(ssvae.model, trace=guide)).get_trace(x, y)
    assert guide.stochastic_nodes == ["data", "y", "z"] and model.stochastic_nodes == ["data", "z", "y"]
    assert not model.nodes["y"]["is_observed"] and model.nodes["x"]["is_observed"]
    q, log_q = guide.nodes["y"]["fn"], ssvae.log_predict(x)
    assert torch.equal(q.probs[labelled], F.one_hot(y[labelled], 3).float())
    assert torch.equal(guide.nodes["y"]["value"][labelled], y[labelled])
    assert (q.log_prob(guide.nodes["y"]["value"])[labelled] == 0).all()
    assert torch.allclose(q.logits[~labelled], log_q[~labelled])
    factor = model.nodes["classification"]["fn"].log_factor
    expected = ssvae.alpha * log_q[labelled].gather(-1, y[labelled, None]).squeeze(-1)
    assert torch.allclose(factor[labelled], expected) and (factor[~labelled] == 0).all()


def test_subsample_scaling_of_labelled_and_unlabelled_batches():
    ssvae, x, y, eps = tiny_ssvae(), binary(4), torch.tensor([0, 1, 2, 0]), torch.randn(4, 2)
    guide = FixedNoise(eps)(ssvae.guide)
    for labels in (y, None):
        full = ELBO.loss(ssvae.model, guide, x, labels)
        assert ELBO.loss(ssvae.model, guide, x, labels, num_data=40) == pytest.approx(10 * full, rel=1e-5)


@pytest.mark.parametrize("a_dim", [0, 3])
def test_sites_and_enumeration_shapes(a_dim):
    ssvae, x = tiny_ssvae(a_dim=a_dim), binary(4)
    guide_trace = poutine.trace(poutine.enum(ssvae.guide, first_available_dim=-2)).get_trace(x)
    assert guide_trace.nodes["y"]["infer"]["enumerate"] == "parallel"
    assert guide_trace.nodes["y"]["value"].shape == (3, 1)
    assert guide_trace.nodes["z"]["value"].shape == (3, 4, 2)
    assert ("a" in guide_trace.nodes) == bool(a_dim)
    if a_dim:  # drawn once per point before the label is enumerated; p(a|x,y,z) then has one row per label
        assert guide_trace.nodes["a"]["value"].shape == (4, 3)
        model_trace = poutine.trace(poutine.replay(ssvae.model, trace=guide_trace)).get_trace(x)
        assert model_trace.nodes["a"]["fn"].batch_shape == (3, 4)
    model_trace = poutine.trace(ssvae.model).get_trace(x, torch.tensor([0, 1, 2, 0]))
    assert model_trace.nodes["y"]["is_observed"] and model_trace.nodes["x"]["is_observed"]
    assert model_trace.nodes["classification"]["fn"].batch_shape == (4,)
    unlabelled = poutine.trace(ssvae.model).get_trace(x)
    assert "classification" not in unlabelled.nodes


def test_generation_with_and_without_labels():
    ssvae = tiny_ssvae()
    assert ssvae.model(None, num_data=5).shape == (5, 5)
    trace = poutine.trace(ssvae.model).get_trace(None, torch.tensor([2, 2]))
    assert trace.nodes["x"]["value"].shape == (2, 5) and (trace.nodes["y"]["value"] == 2).all()
    assert "classification" not in trace.nodes
    probs = ssvae.predict(binary(4))
    assert probs.shape == (4, 3) and torch.allclose(probs.sum(-1), torch.ones(4))
    analogies = ssvae.analogies(binary(4))
    assert analogies.shape == (4, 3, 5) and ((analogies > 0) & (analogies < 1)).all()
    # column c is every style drawn as class c: the same as generating with label c
    z = ssvae.style(binary(4))
    assert torch.allclose(analogies[:, 1], ssvae.generate(z, torch.ones(4, dtype=torch.long)))
    # the classifier's guess stands in for a missing label
    y, guess = torch.tensor([1, -1, 0, -1]), ssvae.log_predict(binary(4)).argmax(-1)
    assert torch.equal(ssvae.style(binary(4), y), ssvae.style(binary(4), torch.where(y < 0, guess, y)))


def test_normal_likelihood_accepts_real_data_and_rejects_nan():
    ssvae = tiny_ssvae(likelihood="normal")
    x = torch.randn(4, 5)
    assert torch.isfinite(torch.tensor(ELBO.loss(ssvae.model, ssvae.guide, x)))
    with pytest.raises(ValueError, match="NaN"):
        ELBO.loss(ssvae.model, ssvae.guide, x.masked_fill(x > 1, float("nan")))


def test_continuous_bernoulli_likelihood_on_grey_levels():
    """p(x|y,z) is torch's ContinuousBernoulli with the decoder's logits, summed over pixels; grey levels pass
    its support check and values outside [0, 1] are rejected."""
    ssvae = tiny_ssvae(likelihood="continuous-bernoulli")
    x, y, z = torch.rand(4, 5), torch.tensor([0, 1, 2, 0]), torch.randn(4, 2)
    expected = torch.distributions.ContinuousBernoulli(logits=ssvae.decoder(z, y)).log_prob(x).sum(-1)
    assert torch.allclose(ssvae.observation(z, y).log_prob(x), expected)
    assert torch.isfinite(torch.tensor(ELBO.loss(ssvae.model, ssvae.guide, x)))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ELBO.loss(ssvae.model, ssvae.guide, x + 1)


@pytest.mark.parametrize(
    "y, error, match",
    [
        (torch.tensor([0, 1, 3, 0]), ValueError, r"outside -1\.\.2"),
        (torch.tensor([0, -2, 2, 0]), ValueError, r"outside -1\.\.2 .* or -1 where the label is missing"),
        (torch.tensor([0, 1, 2]), ValueError, r"shape \(4,\)"),
        (torch.eye(3)[[0, 1, 2, 0]], TypeError, "one-hot"),
        (torch.tensor([0.0, 1.0, 2.0, 0.0]), TypeError, "integer class indices"),
        ([0, 1, 2, 0], TypeError, "torch.Tensor"),
    ],
)
def test_bad_labels_raise_clear_errors(y, error, match):
    ssvae = tiny_ssvae()
    with pytest.raises(error, match=match):
        ELBO.loss(ssvae.model, ssvae.guide, binary(4), y)


def test_bad_data_and_settings_raise_clear_errors():
    ssvae = tiny_ssvae()
    with pytest.raises(ValueError, match=r"outside \{0, 1\}"):
        ELBO.loss(ssvae.model, ssvae.guide, torch.full((4, 5), 0.5))
    with pytest.raises(ValueError, match=r"shape \(batch, 5\)"):
        ssvae.predict(torch.zeros(4, 6))
    with pytest.raises(ValueError, match="needs data x"):
        ssvae.guide(None)
    with pytest.raises(ValueError, match=r"missing labels \(-1\) but there is no data x"):
        ssvae.model(None, torch.tensor([0, -1]))
    with pytest.raises(ValueError, match="enumerate must be 'parallel', 'sequential' or None"):
        tiny_ssvae(enumerate="exact")
    with pytest.raises(ValueError, match="unknown likelihood"):
        tiny_ssvae(likelihood="poisson")
    with pytest.raises(ValueError, match="alpha"):
        tiny_ssvae(alpha=-1.0)


def test_log_marginal_likelihood_sums_out_the_label():
    """log p(x) = log sum_y p(y) p(x|y) is estimated by importance sampling y ~ q(y|x) and z ~ q(z|x,y);
    it is at least the enumerated ELBO U(x), and close to log sum_y p(x, y) from per-label estimates (which
    need the model without the classification factor). Both are importance-sampling estimates with heavy-tailed
    weights: with 4,000 samples per label the reference once came out 0.29 nats above the truth (-3.29 against
    -3.55 from 200,000 samples), so it takes 40,000 and the tolerance counts its own standard error."""
    ssvae, x = tiny_ssvae(), binary(3)
    estimate = log_marginal_likelihood(ssvae.model, ssvae.guide, x, 4000, seed=1)
    by_label = [
        log_marginal_likelihood(ssvae.generative_model, ssvae.guide, (x, torch.full((3,), c)), 40000, seed=2)
        for c in range(3)
    ]  # log p(x, y=c) per point, each with its standard error
    log_joint = torch.stack([e.log_px for e in by_label])
    exact = log_joint.logsumexp(0)
    # the reference is an estimate too: its error by the delta method, d exact / d log p(x, c) = p(c | x)
    exact_stderr = (log_joint.softmax(0).square() * torch.stack([e.stderr for e in by_label]).square()).sum(0).sqrt()
    error = (estimate.stderr.square() + exact_stderr.square()).sqrt()
    assert ((estimate.log_px - exact).abs() < 4 * error + 0.02).all()  # within Monte-Carlo error
    many = TraceEnum_ELBO(max_plate_nesting=1, num_particles=4000, vectorize_particles=True)
    for n in range(3):
        elbo = -many.loss(ssvae.model, ssvae.guide, x[n : n + 1])  # U(x_n), z averaged over 4000 draws
        assert float(estimate.log_px[n]) >= elbo - 3 * float(estimate.stderr[n])


def test_exported():
    assert pyrovae.SSVAE is SSVAE
    pyro.clear_param_store()
