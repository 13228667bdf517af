"""Tests of pyrovae/models/two_layer.py: the VAE with two stochastic layers, with the ELBOs, the IWAE bound, the
estimator, checkpoints and the CLI used unchanged."""

import json
import math
import re

import pyro
import pyro.poutine as poutine
import pytest
import torch
from pyro.infer import SVI, Trace_ELBO

import pyrovae
from pyrovae import TraceIWAE_ELBO, TwoLayerVAE
from pyrovae.checkpoint import load_checkpoint
from pyrovae.cli import MODEL_DEFAULTS, build_parser, main, model_defaults, two_layer_config
from pyrovae.models.registry import vae_from_config
from pyrovae.viz.latent import posterior_means
from tests.common import cli_error, tiny_dataset


def tiny_two_layer(x_dim: int = 6, **kwargs) -> TwoLayerVAE:
    return TwoLayerVAE(x_dim, z1_dim=4, z2_dim=3, hidden1=(8,), hidden2=(5,), **kwargs)


def _seeded(seed, fn, *args, **kwargs):
    pyro.set_rng_seed(seed)
    return fn(*args, **kwargs)


def _binary(batch: int, x_dim: int = 6, seed: int = 0) -> torch.Tensor:
    return torch.bernoulli(torch.full((batch, x_dim), 0.5), generator=torch.Generator().manual_seed(seed))


def _hand_log_weights(m: TwoLayerVAE, x: torch.Tensor, z1: torch.Tensor, z2: torch.Tensor) -> dict:
    """Each term of log w for every data point, from the networks and torch distributions, not from Pyro."""
    normal = torch.distributions.Normal
    return {
        "log p(x|z1)": torch.distributions.Bernoulli(logits=m.decoder1(z1)).log_prob(x).sum(-1),
        "log p(z1|z2)": normal(*m.decoder2(z2)).log_prob(z1).sum(-1),
        "log p(z2)": normal(0.0, 1.0).log_prob(z2).sum(-1),
        "log q(z1|x)": normal(*m.encoder1(x)).log_prob(z1).sum(-1),
        "log q(z2|z1)": normal(*m.encoder2(z1)).log_prob(z2).sum(-1),
    }


def _log_w(terms: dict) -> torch.Tensor:
    return terms["log p(x|z1)"] + terms["log p(z1|z2)"] + terms["log p(z2)"] - terms["log q(z1|x)"] - terms[
        "log q(z2|z1)"]


def test_sites_and_shapes():
    m = tiny_two_layer()
    x = _binary(5)
    guide_trace = poutine.trace(m.guide).get_trace(x, num_data=50)
    model_trace = poutine.trace(poutine.replay(m.model, trace=guide_trace)).get_trace(x, num_data=50)
    guide_sites = [n for n, s in guide_trace.nodes.items() if s["type"] == "sample"]
    model_sites = [n for n, s in model_trace.nodes.items() if s["type"] == "sample"]
    assert guide_sites == ["data", "z1", "z2"]  # z1 first: q(z1|x) q(z2|z1)
    assert model_sites == ["data", "z2", "z1", "x"]
    for trace in (guide_trace, model_trace):
        assert trace.nodes["z1"]["value"].shape == (5, 4) and trace.nodes["z2"]["value"].shape == (5, 3)
        for name in ("z1", "z2"):
            site = trace.nodes[name]
            assert [f.name for f in site["cond_indep_stack"]] == ["data"]
            assert site["fn"].event_shape == site["value"].shape[-1:] and site["fn"].has_rsample
            assert site["scale"] == 10.0  # num_data / batch
    assert model_trace.nodes["x"]["is_observed"] and model_trace.nodes["x"]["value"].shape == (5, 6)
    assert torch.equal(model_trace.nodes["z1"]["value"], guide_trace.nodes["z1"]["value"])
    # the networks are registered under their attribute names, so that load_vae finds them
    modules = {name.split("$$$")[0] for name in pyro.get_param_store().keys()}
    assert modules == {"encoder1", "encoder2", "decoder1", "decoder2"} == {n for n, _ in m.named_children()}
    assert m.latent_sites == ("z1", "z2")


def test_prefix_generation_and_bad_input():
    m = tiny_two_layer(prefix="p")
    x = _binary(3)
    trace = poutine.trace(m.guide).get_trace(x)
    assert {"p/data", "p/z1", "p/z2"} <= set(trace.nodes)
    assert all(name.startswith("p/encoder") for name in pyro.get_param_store().keys())
    assert m.latent_sites == ("p/z1", "p/z2")
    samples = pyro.infer.Predictive(m.model, num_samples=2)(None, num_data=4)
    assert samples["p/x"].shape == (2, 4, 6) and samples["p/z1"].shape == (2, 4, 4)
    assert samples["p/z2"].shape == (2, 4, 3)
    with pytest.raises(ValueError, match=r"outside \{0, 1\}"):
        m.model(torch.full((2, 6), 0.5))
    with pytest.raises(ValueError, match=r"shape \(batch, 6\)"):
        m.guide(torch.ones(2, 5))
    with pytest.raises(ValueError, match="needs data"):
        m.guide(None)
    with pytest.raises(ValueError, match="positive"):
        TwoLayerVAE(6, z2_dim=0)
    with pytest.raises(ValueError, match="needs likelihood='normal'"):
        TwoLayerVAE(6, scale=0.1)


@pytest.mark.parametrize("num_data", [None, 40])
def test_elbo_is_the_hand_computed_sum_of_the_five_terms(num_data):
    m = tiny_two_layer()
    x = _binary(8)
    loss = _seeded(1, Trace_ELBO().loss, m.model, m.guide, x, num_data=num_data)
    guide_trace = _seeded(1, poutine.trace(m.guide).get_trace, x, num_data=num_data)  # the same noise
    z1, z2 = guide_trace.nodes["z1"]["value"], guide_trace.nodes["z2"]["value"]
    with torch.no_grad():
        log_w = _log_w(_hand_log_weights(m, x, z1, z2))
    scale = 1.0 if num_data is None else num_data / len(x)
    assert -loss == pytest.approx(scale * log_w.sum().item(), rel=1e-5)


def test_iwae_bound_with_one_sample_is_the_elbo_and_grows_with_more():
    m = tiny_two_layer()
    x = _binary(8)
    for kwargs in ({}, {"num_data": 40}):
        expected = _seeded(1, Trace_ELBO().loss, m.model, m.guide, x, **kwargs)
        assert _seeded(1, TraceIWAE_ELBO(num_particles=1).loss, m.model, m.guide, x, **kwargs) == pytest.approx(
            expected, rel=1e-6)
    # the per-point weights are the hand-computed ones
    iwae = TraceIWAE_ELBO(num_particles=1)
    log_w = _seeded(2, iwae.log_weights, m.model, m.guide, x)
    guide_trace = _seeded(2, poutine.trace(m.guide).get_trace, x)
    with torch.no_grad():
        hand = _log_w(_hand_log_weights(m, x, guide_trace.nodes["z1"]["value"], guide_trace.nodes["z2"]["value"]))
    torch.testing.assert_close(log_w.detach(), hand[None], rtol=1e-5, atol=1e-5)
    # with k > 1, on the same samples: the log-mean-exp is at least the mean (the ELBO), per point
    iwae = TraceIWAE_ELBO(num_particles=20, max_plate_nesting=1)
    log_w = _seeded(3, iwae.log_weights, m.model, m.guide, x).detach()
    bound = _seeded(3, iwae.bound, m.model, m.guide, x).detach()
    assert log_w.shape == (20, 8)
    torch.testing.assert_close(bound, log_w.logsumexp(0) - math.log(20))
    assert (bound >= log_w.mean(0)).all() and (bound > log_w.mean(0) + 1e-3).any()
    # and it trains, with and without the doubly reparameterized gradient
    for dreg in (False, True):
        svi = SVI(m.model, m.guide, pyro.optim.Adam({"lr": 1e-3}), TraceIWAE_ELBO(num_particles=4, dreg=dreg))
        assert math.isfinite(svi.step(x, num_data=40))


def test_estimator_is_above_its_elbo_and_matches_quadrature_on_a_tiny_model():
    """x_dim 3, z1 and z2 one-dimensional: p(x) = ∫∫ p(z2) p(z1|z2) p(x|z1) dz1 dz2 on a fine grid."""
    pyro.set_rng_seed(4)
    m = TwoLayerVAE(3, z1_dim=1, z2_dim=1, hidden1=(4,), hidden2=(4,)).double()
    x = torch.tensor([[0.0, 1, 1], [1, 0, 0], [1, 1, 1]], dtype=torch.float64)
    few = pyrovae.log_marginal_likelihood(m.model, m.guide, x, num_samples=100)
    est = pyrovae.log_marginal_likelihood(m.model, m.guide, x, num_samples=200000)
    assert (est.log_px >= est.elbo).all() and (est.iwae >= est.elbo).all() and (few.log_px >= few.elbo).all()
    with torch.no_grad():
        z2 = torch.linspace(-9, 9, 1201, dtype=torch.float64)
        z1 = torch.linspace(-25, 25, 4001, dtype=torch.float64)
        loc, scale = m.decoder2(z2[:, None])
        log_p_z1 = torch.distributions.Normal(loc, scale).log_prob(z1[None, :])  # (z2, z1)
        log_p_z2 = torch.distributions.Normal(0.0, 1.0).log_prob(z2)[:, None]
        logits = m.decoder1(z1[:, None])  # (z1, 3)
        log_p_x = -torch.nn.functional.binary_cross_entropy_with_logits(
            logits[None].expand(len(x), -1, -1), x[:, None].expand(-1, len(z1), -1), reduction="none").sum(-1)
        cell = math.log(z2[1] - z2[0]) + math.log(z1[1] - z1[0])
        joint = log_p_z2[None] + log_p_z1[None] + log_p_x[:, None, :]  # (x, z2, z1)
        exact = joint.flatten(1).logsumexp(-1) + cell
    # the untrained guide is a poor proposal (standard errors ~0.01 at 200k samples), but the estimate converges
    error = (est.log_px - exact).abs()
    assert (error < 4 * est.stderr + 1e-3).all() and error.max() < 0.05, (est.log_px, exact, est.stderr)
    assert (few.log_px - exact).abs().mean() > 2 * error.mean()
    assert (est.elbo < exact - 0.5).all()


def test_training_on_digits_raises_the_test_elbo_and_checkpoints_reload(tmp_path):
    data = pyrovae.load_dataset("digits")
    m = TwoLayerVAE(data.x_dim, z1_dim=16, z2_dim=8, hidden1=(64,), hidden2=(32,))
    x = data.test.x
    before = pyrovae.elbo_per_datapoint(m.model, m.guide, x)
    extra = {"vae": m.config, "data": {"name": "digits", "binarize": "dynamic", "valid_size": None}}
    history = pyrovae.fit(m.model, m.guide, data, pyrovae.TrainConfig(epochs=8, device="cpu"), out_dir=tmp_path,
                          extra=extra, verbose=False)  # fmt: skip
    assert history[-1]["test_elbo"] > before + 5, (before, history[-1])
    trained = _seeded(7, pyrovae.elbo_per_datapoint, m.model, m.guide, x)
    pyro.clear_param_store()  # so that the reloaded model runs on its own weights
    m2, state = pyrovae.load_vae(tmp_path / "checkpoint.pt")
    assert isinstance(m2, TwoLayerVAE) and m2.config == m.config and state["epoch"] == 8
    assert _seeded(7, pyrovae.elbo_per_datapoint, m2.model, m2.guide, x) == pytest.approx(trained, rel=1e-6)
    z2 = posterior_means(m2.guide, x, site="z2")
    assert posterior_means(m2.guide, x, site="z1").shape == (len(x), 16) and z2.shape == (len(x), 8)


@pytest.mark.parametrize("likelihood, scale", [("normal", None), ("continuous-bernoulli", None), ("normal", 0.3)])
def test_other_likelihoods_round_trip(tmp_path, likelihood, scale):
    data = tiny_dataset()
    m = tiny_two_layer(likelihood=likelihood, scale=scale)
    pyrovae.fit(m.model, m.guide, data, pyrovae.TrainConfig(epochs=2, batch_size=16, device="cpu"),
                out_dir=tmp_path, extra={"vae": m.config}, verbose=False)  # fmt: skip
    assert ("scale$$$raw" in pyro.get_param_store().keys()) == (scale is None and likelihood == "normal")
    expected = _seeded(3, Trace_ELBO().loss, m.model, m.guide, data.test.x)
    pyro.clear_param_store()
    m2, _ = pyrovae.load_vae(tmp_path / "checkpoint.pt")
    assert _seeded(3, Trace_ELBO().loss, m2.model, m2.guide, data.test.x) == pytest.approx(expected, rel=1e-6)
    assert isinstance(vae_from_config(m.config), TwoLayerVAE)


def test_cli_defaults_are_burdas_model_and_z_dim_sets_the_top_layer():
    parse = build_parser().parse_args
    config = two_layer_config(model_defaults(parse(["train", "--model", "two-layer"])))
    m = vae_from_config({**config, "x_dim": 784})
    assert (m.z1_dim, m.z2_dim, config["hidden1"], config["hidden2"], config["activation"]) == (
        100, 50, [200, 200], [100, 100], "tanh")
    assert [layer.out_features for layer in m.encoder1.net if isinstance(layer, torch.nn.Linear)] == [200, 200, 200]
    assert [layer.out_features for layer in m.decoder2.net if isinstance(layer, torch.nn.Linear)] == [100, 100, 200]
    config = two_layer_config(model_defaults(parse(["train", "--model", "two-layer", "--z-dim", "8", "--hidden",
                                                      "64", "--activation", "relu"])))
    assert (config["z1_dim"], config["z2_dim"], config["hidden1"], config["hidden2"], config["activation"]) == (
        16, 8, [64], [32], "relu")
    args = model_defaults(parse(["train"]))  # the VAE's defaults are unchanged
    assert {k: getattr(args, k) for k in MODEL_DEFAULTS["vae"]} == {"z_dim": 16, "hidden": [400], "activation": "relu"}


def test_cli_trains_evaluates_and_plots_a_two_layer_model(tmp_path, capsys):
    out = tmp_path / "run"
    main(["train", "--model", "two-layer", "--epochs", "1", "--z-dim", "4", "--hidden", "32", "--out", str(out),
          "--device", "cpu", "--quiet"])  # fmt: skip
    summary = json.loads(capsys.readouterr().out)
    assert summary["epoch"] == 1 and summary["test_elbo"] < 0
    config = load_checkpoint(out / "checkpoint.pt")["extra"]["vae"]
    assert config == {"model": "two-layer", "x_dim": 64, "z1_dim": 8, "z2_dim": 4, "hidden1": [32], "hidden2": [16],
                      "activation": "tanh", "prefix": "", "likelihood": "bernoulli", "scale": None}
    assert (out / "samples.png").is_file() and (out / "reconstructions.png").is_file()
    main(["evaluate", str(out / "checkpoint.pt"), "--num-samples", "20", "--limit", "10", "--quiet"])
    summary = json.loads(capsys.readouterr().out)
    assert summary["num_points"] == 10 and summary["num_samples"] == 20
    assert summary["elbo"] <= summary["iwae"] <= -summary["nll"] < 0
    assert summary["latent_dim"] == 12 and set(summary["active_units_per_layer"]) == {"z1", "z2"}
    assert summary["active_units"] == sum(summary["active_units_per_layer"].values())
    main(["plot", "samples", str(out / "checkpoint.pt"), "--device", "cpu"])
    assert (out / "samples.png").is_file()
    message = cli_error(capsys, ["plot", "latent-map", str(out / "checkpoint.pt"), "--device", "cpu"])
    assert re.search("two-layer VAE", message)
    message = cli_error(
        capsys, ["train", "--model", "two-layer", "--flow", "iaf", "--epochs", "1", "--out", str(tmp_path / "iaf")]
    )
    assert re.search("--flow iaf is a guide for a VAE", message)
    message = cli_error(
        capsys, ["train", "--model", "two-layer", "--net", "conv", "--epochs", "1", "--out", str(tmp_path / "conv")]
    )
    assert re.search("MLPs only", message)


def test_reconstruct_decodes_the_mean_of_q_z1_given_x():
    m = tiny_two_layer()
    x = _binary(3)
    code = m.encode(x)
    assert code.shape == (3, m.z1_dim) and torch.equal(code, m.encoder1(x)[0].detach())
    assert torch.equal(code, posterior_means(m.guide, x, site="z1"))
    z1 = torch.randn(3, m.z1_dim)
    assert torch.equal(m.decode_mean(z1), m.observation(z1).mean.detach())
    reconstruction = m.reconstruct(x)
    assert reconstruction.shape == (3, 6) and torch.equal(reconstruction, m.decode_mean(code))
    with pytest.raises(ValueError, match=rf"z1 must have shape \(batch, {m.z1_dim}\)"):
        m.decode_mean(torch.zeros(3, m.z2_dim))
