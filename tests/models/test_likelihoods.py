"""pyrovae.models.likelihoods: each observation model against torch.distributions and its formula, support errors,
and a VAE with each likelihood trained, checkpointed and driven from the command line."""

import json
import math
import re

import pyro
import pyro.poutine as poutine
import pytest
import torch
import torch.distributions as td
from pyro.infer import Trace_ELBO

import pyrovae
from pyrovae.checkpoint import load_checkpoint
from pyrovae.cli import main
from pyrovae.models.features import LatentFeatures
from pyrovae.models.likelihoods import LIKELIHOODS, MIN_SCALE, PixelScale, check_likelihood, check_support, observation
from pyrovae.models.registry import vae_from_config
from tests.common import cli_error

# hand-made decoder outputs and data: 2 data points, 4 coordinates (float64, so that 1e-6 is far above rounding)
OUTPUT = torch.tensor([[-2.0, 0.0, 1.5, 1e-4], [3.0, -0.5, 0.25, -7.0]], dtype=torch.float64)
BINARY = torch.tensor([[0.0, 1.0, 1.0, 0.0], [1.0, 0.0, 0.0, 1.0]], dtype=torch.float64)
GREY = torch.tensor([[0.0, 0.3, 1.0, 0.5], [0.99, 0.01, 0.75, 0.2]], dtype=torch.float64)
REAL = torch.tensor([[-1.0, 0.3, 2.5, 0.0], [0.99, -4.0, 0.75, 0.2]], dtype=torch.float64)
SCALE = torch.tensor([0.5, 1.0, 2.0, 0.1], dtype=torch.float64)


def cb_log_norm(lam: torch.Tensor) -> torch.Tensor:
    """log C(lambda) = log(2 atanh(1 - 2 lambda) / (1 - 2 lambda)), log 2 at lambda = 1/2 (Loaiza-Ganem et al.)."""
    u = 1 - 2 * lam
    safe = torch.where(u.abs() < 1e-3, torch.ones_like(u), u)
    exact = torch.log(2 * torch.atanh(safe) / safe)
    return torch.where(u.abs() < 1e-3, math.log(2) + u**2 / 3, exact)  # Taylor: atanh(u)/u = 1 + u^2/3 + ...


def test_bernoulli_log_prob_and_mean_match_torch_and_the_formula():
    d = observation("bernoulli", OUTPUT)
    assert d.batch_shape == (2,) and d.event_shape == (4,)
    expected = td.Bernoulli(logits=OUTPUT).log_prob(BINARY).sum(-1)
    assert torch.allclose(d.log_prob(BINARY), expected, rtol=0, atol=1e-6)
    p = torch.sigmoid(OUTPUT)
    formula = (BINARY * p.log() + (1 - BINARY) * (1 - p).log()).sum(-1)
    assert torch.allclose(d.log_prob(BINARY), formula, rtol=0, atol=1e-6)
    assert torch.allclose(d.mean, p, rtol=0, atol=1e-12)


def test_continuous_bernoulli_log_prob_and_mean_match_torch_and_the_formula():
    d = observation("continuous-bernoulli", OUTPUT)
    assert d.batch_shape == (2,) and d.event_shape == (4,)
    expected = td.ContinuousBernoulli(logits=OUTPUT).log_prob(GREY).sum(-1)
    assert torch.allclose(d.log_prob(GREY), expected, rtol=0, atol=1e-6)
    lam = torch.sigmoid(OUTPUT)
    formula = (GREY * lam.log() + (1 - GREY) * (1 - lam).log() + cb_log_norm(lam)).sum(-1)
    assert torch.allclose(d.log_prob(GREY), formula, rtol=0, atol=1e-6)
    # normalised: it exceeds the Bernoulli expression applied to grey levels by sum_d log C(lambda_d) > 0
    unnormalised = (GREY * OUTPUT - torch.nn.functional.softplus(OUTPUT)).sum(-1)
    assert torch.allclose(d.log_prob(GREY) - unnormalised, cb_log_norm(lam).sum(-1), rtol=0, atol=1e-6)
    # the mean is not lambda: E[x] = lambda / (2 lambda - 1) + 1 / (2 atanh(1 - 2 lambda)), 1/2 at lambda = 1/2
    far = (lam - 0.5).abs() > 1e-2
    mean = lam / (2 * lam - 1) + 1 / (2 * torch.atanh(1 - 2 * lam))
    assert torch.allclose(d.mean[far], mean[far], rtol=0, atol=1e-6)
    assert torch.allclose(d.mean, td.ContinuousBernoulli(logits=OUTPUT).mean, rtol=0, atol=1e-6)
    assert d.mean[0, 1] == pytest.approx(0.5, abs=1e-6) and not torch.allclose(d.mean, lam, atol=1e-2)


@pytest.mark.parametrize("scale", [0.3, SCALE], ids=["fixed-number", "per-coordinate"])
def test_normal_log_prob_and_mean_match_torch_and_the_formula(scale):
    d = observation("normal", OUTPUT, scale)
    assert d.batch_shape == (2,) and d.event_shape == (4,)
    expected = td.Normal(OUTPUT, scale).log_prob(REAL).sum(-1)
    assert torch.allclose(d.log_prob(REAL), expected, rtol=0, atol=1e-6)
    s = torch.as_tensor(scale, dtype=torch.float64).expand(4)
    formula = (-0.5 * ((REAL - OUTPUT) / s) ** 2 - s.log() - 0.5 * math.log(2 * math.pi)).sum(-1)
    assert torch.allclose(d.log_prob(REAL), formula, rtol=0, atol=1e-6)
    assert torch.equal(d.mean, OUTPUT)  # identity link


def test_pixel_scale_starts_at_init_and_stays_above_the_floor():
    scale = PixelScale(5, init=0.7)
    assert scale().shape == (5,) and torch.allclose(scale(), torch.full((5,), 0.7))
    with torch.no_grad():
        scale.raw.fill_(-50.0)
    assert (scale() >= MIN_SCALE).all()
    with pytest.raises(ValueError, match="must exceed MIN_SCALE"):
        PixelScale(3, init=0.0)


def test_unknown_likelihood_and_misplaced_scale_are_errors():
    assert check_likelihood("normal") == "normal" and len(LIKELIHOODS) == 3
    with pytest.raises(ValueError, match=r"unknown likelihood 'gauss'.*'continuous-bernoulli'"):
        observation("gauss", OUTPUT)
    with pytest.raises(ValueError, match="needs a scale"):
        observation("normal", OUTPUT)
    with pytest.raises(ValueError, match="takes no scale"):
        observation("bernoulli", OUTPUT, 0.5)
    with pytest.raises(ValueError, match="unknown likelihood"):
        pyrovae.VAE(4, likelihood="poisson")
    with pytest.raises(ValueError, match="needs likelihood='normal'"):
        pyrovae.VAE(4, likelihood="continuous-bernoulli", scale=0.1)
    with pytest.raises(ValueError, match="positive number"):
        pyrovae.VAE(4, likelihood="normal", scale=0.0)


@pytest.mark.parametrize(
    "name, x, match",
    [
        ("bernoulli", GREY, r"outside \{0, 1\} \(e\.g\. 0\.3\).*binarize.*'continuous-bernoulli' or 'normal'"),
        ("continuous-bernoulli", REAL, r"outside \[0, 1\] \(e\.g\. -1\).*rescale.*likelihood='normal'"),
        ("continuous-bernoulli", GREY + 0.5, r"3 value\(s\) outside \[0, 1\]"),
        ("continuous-bernoulli", torch.tensor([[0.5, float("inf")]]), "NaN or inf in 1 row"),
        ("normal", torch.tensor([[0.5, float("nan")], [1.0, 2.0]]), "NaN or inf in 1 row"),
        ("bernoulli", torch.tensor([[float("nan"), 1.0]]), "NaN or inf"),
    ],
)
def test_data_outside_the_support_is_rejected_with_a_clear_error(name, x, match):
    with pytest.raises(ValueError, match=match):
        check_support(name, x)


def test_data_inside_the_support_passes():
    for name in LIKELIHOODS:
        check_support(name, BINARY)
    check_support("continuous-bernoulli", GREY)
    check_support("normal", REAL)


@pytest.mark.parametrize("likelihood, scale", [("continuous-bernoulli", None), ("normal", None), ("normal", 0.25)])
def test_vae_observes_the_chosen_likelihood_and_checks_its_support(likelihood, scale):
    vae = pyrovae.VAE(4, z_dim=2, hidden=(8,), likelihood=likelihood, scale=scale)
    x = GREY.float()
    guide_trace = poutine.trace(vae.guide).get_trace(x)
    trace = poutine.trace(poutine.replay(vae.model, trace=guide_trace)).get_trace(x)
    fn, z = trace.nodes["x"]["fn"], trace.nodes["z"]["value"]
    learned = scale is None and likelihood == "normal"
    expected = observation(likelihood, vae.decoder(z), vae.scale() if learned else scale)
    assert torch.allclose(fn.log_prob(x), expected.log_prob(x)) and torch.allclose(fn.mean, expected.mean)
    assert fn.event_shape == (4,) and trace.nodes["x"]["is_observed"]
    registered = {name for name in pyro.get_param_store().keys() if name.startswith("scale$$$")}
    assert registered == ({"scale$$$raw"} if learned else set())
    samples = poutine.trace(vae.model).get_trace(None, num_data=3).nodes["x"]["value"]
    assert samples.shape == (3, 4)
    if likelihood == "continuous-bernoulli":
        assert ((samples >= 0) & (samples <= 1)).all()
        with pytest.raises(ValueError, match=r"outside \[0, 1\]"):
            vae.model(REAL.float())
    with pytest.raises(ValueError, match=r"outside \{0, 1\}.*continuous-bernoulli"):
        pyrovae.VAE(4, z_dim=2, hidden=(8,)).guide(x)


@pytest.mark.parametrize(
    "likelihood, scale, binarize",
    [("bernoulli", None, "dynamic"), ("continuous-bernoulli", None, "none"), ("normal", None, "none"),
     ("normal", 0.2, "none")],
)  # fmt: skip
def test_vae_with_each_likelihood_trains_on_digits(likelihood, scale, binarize):
    torch.set_num_threads(1)
    data = pyrovae.load_dataset("digits", binarize=binarize)
    vae = pyrovae.VAE(data.x_dim, z_dim=4, hidden=(64,), likelihood=likelihood, scale=scale)
    before = None if not isinstance(vae.scale, torch.nn.Module) else vae.scale().detach().clone()
    config = pyrovae.TrainConfig(epochs=4, batch_size=64, lr=3e-3, device="cpu")
    history = pyrovae.fit(vae.model, vae.guide, data, config, verbose=False)
    assert history[-1]["test_elbo"] > history[0]["test_elbo"] + 1.0
    if before is not None:  # the learned scale moves, each pixel on its own
        after = vae.scale().detach()
        assert (after < before).float().mean() > 0.9 and after.std() > 1e-3


@pytest.mark.parametrize("model", ["vae", "autoencoder"])
def test_learned_scale_round_trips_through_a_checkpoint(tmp_path, model):
    torch.set_num_threads(1)
    data = pyrovae.load_dataset("digits", binarize="none")
    vae = vae_from_config({"model": model, "x_dim": data.x_dim, "z_dim": 3, "hidden": [32], "likelihood": "normal"})
    settings = {"name": "digits", "binarize": "none", "valid_size": None}
    config = pyrovae.TrainConfig(epochs=2, batch_size=64, device="cpu")
    pyrovae.fit(vae.model, vae.guide, data, config, out_dir=tmp_path, extra={"vae": vae.config, "data": settings},
                verbose=False)  # fmt: skip
    assert not torch.allclose(vae.scale(), torch.ones(data.x_dim))  # it trained
    x, z = data.test.x[:20], torch.randn(5, 3)
    pyro.set_rng_seed(1)
    elbo = -Trace_ELBO().loss(vae.model, vae.guide, x)
    mean, scale = vae.observation(z).mean, vae.observation(z).base_dist.scale
    pyro.clear_param_store()  # the copy must bring its own weights
    loaded, state = pyrovae.load_vae(tmp_path / "checkpoint.pt")
    assert type(loaded) is type(vae) and loaded.config == vae.config and loaded.likelihood == "normal"
    assert state["extra"]["vae"]["scale"] is None and torch.equal(loaded.scale(), vae.scale())
    pyro.set_rng_seed(1)
    assert -Trace_ELBO().loss(loaded.model, loaded.guide, x) == elbo
    assert torch.equal(loaded.observation(z).mean, mean) and torch.equal(loaded.observation(z).base_dist.scale, scale)


def test_configs_without_a_likelihood_are_bernoulli_and_m1_features_decode_the_mean():
    old = vae_from_config({"x_dim": 6, "z_dim": 2, "hidden": [8], "activation": "relu", "prefix": ""})
    assert old.likelihood == "bernoulli" and old.scale is None and old.config["likelihood"] == "bernoulli"
    vae = pyrovae.VAE(6, z_dim=2, hidden=(8,), likelihood="continuous-bernoulli")
    features = LatentFeatures(vae.encoder, vae.decoder, torch.ones(2, dtype=torch.bool), vae.likelihood)
    z = torch.randn(4, 2)
    assert torch.allclose(features.decode(z), vae.observation(z).mean)  # the mean, not sigmoid(logits)


def test_cli_trains_with_a_continuous_likelihood(tmp_path, capsys):
    torch.set_num_threads(1)
    run = tmp_path / "cb"
    main(["train", "--likelihood", "continuous-bernoulli", "--binarize", "none", "--epochs", "2", "--z-dim", "3",
          "--hidden", "32", "--out", str(run), "--device", "cpu", "--quiet"])  # fmt: skip
    summary = json.loads(capsys.readouterr().out)
    assert summary["epoch"] == 2 and math.isfinite(summary["test_elbo"])
    extra = load_checkpoint(run / "checkpoint.pt")["extra"]
    assert extra["vae"]["likelihood"] == "continuous-bernoulli" and extra["data"]["binarize"] == "none"
    main(["evaluate", str(run / "checkpoint.pt"), "--num-samples", "20", "--limit", "5", "--quiet"])
    nll = json.loads(capsys.readouterr().out)
    assert nll["binarize"] == "none" and nll["elbo"] < -nll["nll"]  # a density on [0, 1]^64: may be positive
    # --binarize auto (the default) keeps grey levels for a continuous likelihood; a fixed scale is saved
    main(["train", "--likelihood", "normal", "--scale", "0.3", "--epochs", "1", "--z-dim", "2", "--hidden", "16",
          "--out", str(tmp_path / "normal"), "--device", "cpu", "--quiet"])  # fmt: skip
    extra = load_checkpoint(tmp_path / "normal" / "checkpoint.pt")["extra"]
    assert extra["data"]["binarize"] == "none" and extra["vae"]["scale"] == 0.3
    message = cli_error(capsys, ["train", "--binarize", "none", "--epochs", "1", "--out", str(tmp_path / "bad")])
    assert re.search("needs binary data.*--likelihood continuous-bernoulli or normal", message)
    message = cli_error(capsys, ["train", "--scale", "0.3", "--epochs", "1", "--out", str(tmp_path / "bad")])
    assert re.search("needs likelihood='normal'", message)
