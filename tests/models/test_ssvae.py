import pyro
import pyro.poutine as poutine
import pytest
import torch
from pyro.infer import TraceEnum_ELBO
from pyro.poutine.messenger import Messenger

import pyrovae
from pyrovae.infer.importance import log_marginal_likelihood
from pyrovae.models.adgm import concat
from pyrovae.models.ssvae import SSVAE
from tests.common import binary, tiny_ssvae

ELBO = TraceEnum_ELBO(max_plate_nesting=1)
pytestmark = pytest.mark.filterwarnings("ignore:TraceEnum_ELBO found no sample sites")


class FixedNoise(Messenger):
    """Draws the guide's z (and a) as loc + scale * eps with one fixed eps per data point, whatever the label,
    so that enumerated and labelled runs see the same noise."""

    def __init__(self, eps: torch.Tensor, eps_a: torch.Tensor | None = None) -> None:
        super().__init__()
        self.eps = {"z": eps, "a": eps_a}

    def _pyro_sample(self, msg) -> None:
        if self.eps.get(msg["name"]) is not None and not msg["is_observed"]:
            normal = msg["fn"].base_dist
            msg["value"], msg["done"] = normal.loc + normal.scale * self.eps[msg["name"]], True


@torch.no_grad()
def classifier_log_probs(ssvae: SSVAE, x: torch.Tensor, eps_a: torch.Tensor) -> torch.Tensor:
    """log q(y|x), or log q(y|a, x) at the a that FixedNoise(..., eps_a) draws, ``(batch, C)``."""
    if type(ssvae) is SSVAE:
        return ssvae.log_predict(x)
    loc, scale = ssvae.aux_encoder(x)
    return ssvae.classifier(concat(x, loc + scale * eps_a)).log_softmax(-1)


@pytest.mark.parametrize("a_dim", [0, 3])
def test_enumerated_unlabelled_elbo_is_the_q_weighted_labelled_elbo_plus_entropy(a_dim):
    """U(x) = sum_y q(y|x) L(x, y) + H[q(y|x)]; with the auxiliary variable the same holds given the guide's a,
    with q(y|a, x) (the labelled ELBOs drawn at the same a)."""
    with torch.random.fork_rng():
        torch.set_default_dtype(torch.float64)
        try:
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
        finally:
            torch.set_default_dtype(torch.float32)
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
        (torch.tensor([0, 1, 3, 0]), ValueError, r"outside 0\.\.2"),
        (torch.tensor([0, -1, 2, 0]), ValueError, r"outside 0\.\.2"),
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
