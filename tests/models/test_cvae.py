import math

import pyro
import pyro.poutine as poutine
import pytest
import torch
import torch.nn.functional as F
from pyro.infer import Trace_ELBO

import pyrovae
from pyrovae.models.baseline import Baseline
from pyrovae.models.cvae import CVAE
from pyrovae.models.registry import model_from_config
from tests.models.test_baseline import HIDDEN_4X4_Q1, binary_images


def two_layers(net: torch.nn.Sequential, v: torch.Tensor) -> torch.Tensor:
    """An MLP ``Linear, ReLU, Linear`` written out."""
    return net[2](torch.relu(net[0](v)))


def gaussian(net: torch.nn.Sequential, v: torch.Tensor, z_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(loc, scale)`` of pyrovae's encoder written out: ``scale = softplus(raw) + 1e-4``."""
    out = two_layers(net, v)
    return out[:, :z_dim], F.softplus(out[:, z_dim:]) + 1e-4


def log_normal(z: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return (-0.5 * ((z - loc) / scale) ** 2 - scale.log() - 0.5 * math.log(2 * math.pi)).sum(-1)


def test_conditional_elbo_with_one_quadrant_is_the_hand_computation():
    """log p(y|x,z) + log p(z|x) - log q(z|x,y) at the guide's own draw z = mu_q + sigma_q * eps, every network
    written out: the baseline sees the image with its 12 hidden pixels at -1, the prior network the image with them
    filled by the baseline's sigmoid, the recognition network the whole image; y is the 12 hidden pixels."""
    z_dim = 2
    pyro.clear_param_store()
    cvae = CVAE((1, 4, 4), quadrants=1, z_dim=z_dim, hidden=(3,), seed=0)
    x = binary_images(n=4)
    y = x[:, HIDDEN_4X4_Q1]
    inputs = x.clone()
    inputs[:, HIDDEN_4X4_Q1] = -1.0
    filled = x.clone()
    filled[:, HIDDEN_4X4_Q1] = torch.sigmoid(two_layers(cvae.baseline.net, inputs))
    prior_loc, prior_scale = gaussian(cvae.prior_net.net, filled, z_dim)
    loc, scale = gaussian(cvae.recognition_net.net, x, z_dim)
    torch.manual_seed(3)
    z = loc + scale * torch.empty(4, z_dim).normal_()  # the reparameterized draw of Normal.rsample
    logits = two_layers(cvae.generation_net.net, z)
    log_lik = (y * logits - F.softplus(logits)).sum(-1)
    elbo = (log_lik + log_normal(z, prior_loc, prior_scale) - log_normal(z, loc, scale)).sum()

    torch.manual_seed(3)
    guide_trace = poutine.trace(cvae.guide).get_trace(x)
    assert torch.allclose(guide_trace.nodes["z"]["value"], z, atol=1e-6)  # the same noise
    torch.manual_seed(3)
    assert -Trace_ELBO().loss(cvae.model, cvae.guide, x) == pytest.approx(elbo.item(), rel=1e-5)


def test_the_prior_reads_the_baselines_prediction_and_not_the_hidden_pixels():
    baseline = Baseline((1, 4, 4), quadrants=1, hidden=(5,), seed=0)
    cvae = CVAE((1, 4, 4), quadrants=1, z_dim=2, hidden=(5,), baseline=baseline, seed=1)
    assert cvae.baseline is baseline
    x = binary_images()
    before = cvae.prior(x).mean
    flipped = x.clone()
    flipped[:, HIDDEN_4X4_Q1] = 1 - flipped[:, HIDDEN_4X4_Q1]
    assert torch.equal(cvae.prior(flipped).mean, before)  # y is not an input of p(z|x)
    with torch.no_grad():
        baseline.net[2].bias += 1.0  # another prediction
    assert not torch.allclose(cvae.prior(x).mean, before)


def test_training_keeps_the_trained_baseline_and_the_checkpoint_holds_it(tmp_path):
    """The tutorial's recipe: train the baseline, build the CVAE on it, train the CVAE; the baseline is frozen (read
    without gradients) and saved with the CVAE, so that load_model rebuilds the CVAE on the trained baseline."""
    data = pyrovae.load_dataset("digits")
    pyro.clear_param_store()
    baseline = Baseline(data.image_shape, quadrants=2, hidden=(16,), seed=0)
    untrained = [p.clone() for p in baseline.parameters()]
    pyrovae.fit(baseline.model, baseline.guide, data, pyrovae.TrainConfig(epochs=1, batch_size=200), verbose=False)
    trained = [p.clone() for p in baseline.parameters()]
    assert not all(torch.equal(a, b) for a, b in zip(untrained, trained, strict=True))
    pyro.clear_param_store()
    cvae = CVAE(data.image_shape, quadrants=2, z_dim=3, hidden=(16,), baseline=baseline, seed=0)
    prior_before = [p.clone() for p in cvae.prior_net.parameters()]
    pyrovae.fit(cvae.model, cvae.guide, data, pyrovae.TrainConfig(epochs=1, batch_size=200), out_dir=tmp_path,
                verbose=False)  # fmt: skip
    assert all(torch.equal(a, b) for a, b in zip(trained, cvae.baseline.parameters(), strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(prior_before, cvae.prior_net.parameters(), strict=True))
    loaded, _, _ = pyrovae.load_model(tmp_path / "checkpoint.pt")
    assert isinstance(loaded, CVAE) and loaded.config == cvae.config
    assert all(torch.equal(a, b) for a, b in zip(trained, loaded.baseline.parameters(), strict=True))
    x = data.fixed_x("test")[:6]
    torch.manual_seed(0)
    expected = cvae.complete(x, 3)
    torch.manual_seed(0)
    assert torch.equal(loaded.complete(x, 3), expected)


def test_importance_sampled_conditional_likelihood_is_above_the_elbo_and_at_the_quadrature():
    """z of one dimension: log p(y|x) = log E_{p(z|x)} p(y|x,z) by quadrature on a fine grid is the truth. With a
    broad proposal q(z|x,y) = N(0.5, 1.31^2) (the recognition network's head set so), the importance-sampled estimate
    (5,000 samples) agrees with it within three of its standard errors (+ 0.01 nats) for every image, and the ELBO
    (an independent estimate, 2,000 particles) lies more than 1 nat per image below both."""
    pyro.clear_param_store()
    cvae = CVAE((1, 4, 4), quadrants=1, z_dim=1, hidden=(8,), seed=0)
    with torch.no_grad():
        for p in cvae.generation_net.parameters():  # a sharper likelihood: a posterior far from q
            p.mul_(2.0)
        head = cvae.recognition_net.net[-1]
        head.weight.zero_()
        head.bias.copy_(torch.tensor([0.5, 1.0]))  # loc 0.5, scale softplus(1) + 1e-4
    x = binary_images(n=6, seed=2)
    estimate = pyrovae.log_marginal_likelihood(cvae.model, cvae.guide, x, 5000, seed=0)
    pyro.set_rng_seed(0)
    elbo = pyrovae.elbo_per_datapoint(cvae.model, cvae.guide, x,
                                      elbo=Trace_ELBO(num_particles=2000, vectorize_particles=True))  # fmt: skip
    with torch.no_grad():
        prior = cvae.prior(x)
        t = torch.linspace(-12, 12, 24001, dtype=torch.float64)
        z = prior.mean + prior.stddev * t[:, None, None].float()  # (grid, images, 1)
        log_lik = cvae.observation(z).log_prob(cvae.target(x)).double()
        log_base = -0.5 * t**2 - 0.5 * math.log(2 * math.pi)
        exact = torch.logsumexp(log_lik + log_base[:, None], 0) + math.log(float(t[1] - t[0]))
    assert bool(((estimate.log_px - exact).abs() <= 3 * estimate.stderr + 0.01).all())
    assert -estimate.summary()["nll"] > elbo + 1.0
    assert exact.mean().item() > elbo + 1.0


def test_settings_rebuild_it_with_its_baseline():
    cvae = CVAE((1, 4, 4), quadrants=3, z_dim=2, hidden=(4,), activation="tanh", seed=2)
    again = model_from_config(cvae.config, seed=2)
    assert isinstance(again, CVAE) and isinstance(again.baseline, Baseline)
    assert again.baseline.config == cvae.baseline.config and again.y_dim == 4
    assert all(torch.equal(a, b) for a, b in zip(cvae.parameters(), again.parameters(), strict=True))


def test_completions_keep_the_observed_pixels():
    pyro.clear_param_store()
    cvae = CVAE((1, 4, 4), quadrants=2, z_dim=2, hidden=(4,), seed=0)
    x = binary_images(n=3)
    completions = cvae.complete(x, 5)
    assert completions.shape == (5, 3, 16)
    assert torch.equal(completions[..., cvae.mask], x[:, cvae.mask].expand(5, 3, 8))
    hidden = completions[..., ~cvae.mask]
    assert bool(((hidden > 0) & (hidden < 1)).all())  # pixel probabilities
    assert not torch.allclose(hidden[0], hidden[1])  # a draw of z each


def test_bad_settings_and_data_are_refused():
    with pytest.raises(ValueError, match="1, 2 or 3"):
        CVAE((1, 4, 4), quadrants=0)
    with pytest.raises(ValueError, match="cannot be cut"):
        CVAE((1, 4, 3))
    with pytest.raises(ValueError, match="z_dim"):
        CVAE((1, 4, 4), z_dim=0)
    with pytest.raises(ValueError, match="train a baseline with the CVAE's settings"):
        CVAE((1, 4, 4), quadrants=1, baseline=Baseline((1, 4, 4), quadrants=2))
    cvae = CVAE((1, 4, 4), z_dim=2, hidden=(3,))
    with pytest.raises(ValueError, match="complete"):
        cvae.model(None)
    with pytest.raises(ValueError, match="whole images"):
        cvae.guide(None)
    with pytest.raises(ValueError, match="outside"):
        cvae.model(torch.full((2, 16), 0.5))  # grey levels under the Bernoulli likelihood
