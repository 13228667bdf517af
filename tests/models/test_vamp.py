import json
import math

import pyro
import pyro.poutine as poutine
import pytest
import torch
from pyro.infer import Trace_ELBO

import pyrovae
from pyrovae.checkpoint import load_checkpoint
from pyrovae.cli import main
from pyrovae.models.distributions import NormalMixture
from pyrovae.models.vamp import PSEUDO_INPUT_INIT, PseudoInputs, VampVAE
from pyrovae.objects import VAEModel
from tests.common import binary, cli_error


def small_vamp(pseudo_inputs: int = 4, z_dim: int = 2, seed: int = 0, **kwargs) -> VampVAE:
    """A VampVAE of 6 pixels whose pseudo-inputs are spread over [0, 1] (their initial values are all near 0.05,
    which would make the components nearly alike) and whose encoder's scales vary."""
    vamp = VampVAE(6, z_dim=z_dim, hidden=(8,), pseudo_inputs=pseudo_inputs, seed=seed, **kwargs)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        vamp.pseudo_inputs.weight.copy_(torch.rand(vamp.pseudo_inputs.weight.shape, generator=g))
        for p in vamp.encoder.parameters():
            p.copy_(0.5 * torch.randn(p.shape, generator=g))
    return vamp


def components(vamp: VampVAE) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``(K, z_dim)`` means and scales of the prior's components, by hand: the encoder at hardtanh(w_k)."""
    u = vamp.pseudo_inputs.weight.clamp(0, 1)
    return vamp.encoder(u)


def log_prior_by_hand(vamp: VampVAE, z: torch.Tensor) -> torch.Tensor:
    """log (1/K) sum_k N(z; mu_k, sigma_k^2) of ``z`` ``(..., z_dim)``: each component's Normal log-density, then
    their log-mean-exp."""
    loc, scale = components(vamp)
    log_k = torch.distributions.Normal(loc, scale).log_prob(z.unsqueeze(-2)).sum(-1)  # (..., K)
    return log_k.logsumexp(-1) - math.log(len(loc))


def test_log_prior_is_the_log_mean_exp_of_the_components():
    """Tolerance 1e-5: the prior's matrix products in float64 against float32 Normal densities."""
    vamp = small_vamp(pseudo_inputs=5, z_dim=3)
    prior = vamp.prior(4, torch.device("cpu"))
    assert isinstance(prior, NormalMixture) and prior.batch_shape == (4,) and prior.event_shape == (3,)
    z = 2 * torch.randn(7, 4, 3, generator=torch.Generator().manual_seed(1))  # (particles, batch, z_dim)
    torch.testing.assert_close(prior.log_prob(z), log_prior_by_hand(vamp, z), atol=1e-5, rtol=1e-5)
    loc, scale = components(vamp)
    assert (loc.std(0) > 0.1).all() and (scale.std(0) > 0.05).all()  # components that differ


def test_one_pseudo_input_is_the_gaussian_of_the_encoder_at_it():
    vamp = small_vamp(pseudo_inputs=1, z_dim=3)
    (loc,), (scale,) = components(vamp)
    z = torch.randn(5, 2, 3, generator=torch.Generator().manual_seed(2))
    gaussian = torch.distributions.Normal(loc, scale).log_prob(z).sum(-1)
    torch.testing.assert_close(vamp.prior(2, torch.device("cpu")).log_prob(z), gaussian, atol=1e-5, rtol=1e-5)


def test_the_elbo_is_the_hand_computed_one_with_the_mixture_prior():
    """Trace_ELBO of model and guide against log p(x|z) + log p(z) - log q(z|x) at the guide's own draw."""
    vamp = small_vamp()
    x = binary(3, 6)
    pyro.set_rng_seed(3)
    loss = Trace_ELBO().loss(vamp.model, vamp.guide, x)
    pyro.set_rng_seed(3)
    z = poutine.trace(vamp.guide).get_trace(x).nodes["z"]["value"]
    loc, scale = vamp.encoder(x)
    log_q = torch.distributions.Normal(loc, scale).log_prob(z).sum(-1)
    log_px_z = torch.distributions.Bernoulli(logits=vamp.decoder(z)).log_prob(x).sum(-1)
    expected = -(log_px_z + log_prior_by_hand(vamp, z) - log_q).sum()
    assert loss == pytest.approx(expected.item(), rel=1e-5)


def test_the_model_trains_the_encoder_and_the_pseudo_inputs_through_the_prior():
    pyro.clear_param_store()
    vamp = VampVAE(6, z_dim=2, hidden=(8,), pseudo_inputs=3, seed=0)
    x = binary(4, 6)
    model_trace = poutine.trace(vamp.model).get_trace(x)
    params = {name for name, site in model_trace.nodes.items() if site["type"] == "param"}
    assert "pseudo_inputs$$$weight" in params and any(n.startswith("encoder$$$") for n in params)
    # with the guide's z held fixed, log p(z) still moves the encoder and the pseudo-inputs
    z = poutine.trace(vamp.guide).get_trace(x).nodes["z"]["value"].detach()
    log_p = poutine.trace(poutine.condition(vamp.model, data={"z": z})).get_trace(x).log_prob_sum()
    log_p.backward()
    assert vamp.pseudo_inputs.weight.grad.abs().sum() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in vamp.encoder.parameters())


def test_pseudo_inputs_start_as_the_papers_and_stay_in_the_data_range():
    u = PseudoInputs(500, 784)
    assert u().shape == (500, 784) and 0 <= u().min() and u().max() <= 1
    mean, std = PSEUDO_INPUT_INIT
    assert u.weight.mean().item() == pytest.approx(mean, abs=1e-3)
    assert u.weight.std().item() == pytest.approx(std, rel=0.05)
    with torch.no_grad():
        u.weight.sub_(mean).mul_(1000)  # about +-10
    assert u().min() == 0 and u().max() == 1  # hardtanh to [0, 1]
    real = VampVAE(6, z_dim=2, hidden=(8,), pseudo_inputs=2, likelihood="normal", scale=1.0).pseudo_inputs
    with torch.no_grad():
        real.weight.fill_(-3.0)
    assert (real() == -3.0).all()  # real-valued data: unbounded


def test_generation_draws_z_from_the_mixture():
    vamp = small_vamp(pseudo_inputs=3)
    trace = poutine.trace(vamp.model).get_trace(None, num_data=5)
    assert isinstance(trace.nodes["z"]["fn"], NormalMixture)
    assert trace.nodes["z"]["value"].shape == (5, 2) and trace.nodes["x"]["value"].shape == (5, 6)
    assert pyrovae.viz.plots.prior_samples(vamp.model, 4).shape == (4, 6)


def test_log_marginal_likelihood_matches_quadrature():
    """In two latent dimensions p(x) = sum over a grid of p(z) p(x|z) dz (spacing 0.02 on [-8, 8]^2, prior by hand);
    the estimator, unchanged, with 3,000 samples is within 4 of its standard errors plus 0.01 (the grid's
    error) of it."""
    vamp = small_vamp(pseudo_inputs=3)
    with torch.no_grad():  # a prior of well-spread, not too narrow components
        vamp.encoder.net[-1].bias[2:] += 1.0
    x = binary(3, 6)
    estimate = pyrovae.log_marginal_likelihood(vamp.model, vamp.guide, x, num_samples=3000, progress=False)
    step = 0.02
    axis = torch.arange(-8, 8 + step / 2, step, dtype=torch.float64)
    grid = torch.cartesian_prod(axis, axis)
    vamp = vamp.double()
    with torch.no_grad():
        log_pz = log_prior_by_hand(vamp, grid)
        log_px_z = torch.distributions.Bernoulli(logits=vamp.decoder(grid)).log_prob(x.double().unsqueeze(1)).sum(-1)
        exact = (log_pz + log_px_z).logsumexp(-1) + 2 * math.log(step)
    assert torch.isfinite(estimate.log_px).all()
    assert ((estimate.log_px - exact).abs() <= 4 * estimate.stderr + 0.01).all(), (estimate.log_px, exact)


def test_trains_reloads_and_estimates(tmp_path):
    data = pyrovae.load_dataset("digits")
    vamp = VampVAE(data.x_dim, z_dim=8, pseudo_inputs=20, seed=0)
    x = data.test.x[:40]
    untrained = pyrovae.elbo_per_datapoint(vamp.model, vamp.guide, x)
    before = vamp.pseudo_inputs.weight.detach().clone()
    extra = {"vae": vamp.config, "data": {"name": "digits", "binarize": "dynamic", "valid_size": None}}
    history = pyrovae.fit(vamp.model, vamp.guide, data, pyrovae.TrainConfig(epochs=3, device="cpu"), out_dir=tmp_path,
                          extra=extra, verbose=False)  # fmt: skip
    assert history[-1]["test_elbo"] > untrained + 10
    assert not torch.equal(vamp.pseudo_inputs.weight, before)  # trained with the networks
    assert "pseudo_inputs$$$weight" in load_checkpoint(tmp_path / "checkpoint.pt")["params"]
    loaded, _ = pyrovae.load_vae(tmp_path / "checkpoint.pt")
    assert isinstance(loaded, VampVAE) and loaded.config == vamp.config and loaded.config["pseudo_inputs"] == 20
    assert torch.equal(loaded.pseudo_inputs.weight, vamp.pseudo_inputs.weight)
    pyro.set_rng_seed(2)
    expected = Trace_ELBO().loss(vamp.model, vamp.guide, x)
    pyro.set_rng_seed(2)
    assert Trace_ELBO().loss(loaded.model, loaded.guide, x) == pytest.approx(expected, rel=1e-6)


def test_bad_settings():
    with pytest.raises(ValueError, match="at least one pseudo-input, got 0"):
        VampVAE(6, z_dim=2, pseudo_inputs=0)
    with pytest.raises(ValueError, match=r"must both be \(K, D\)"):
        NormalMixture(torch.zeros(3), torch.ones(3))


def test_cli_trains_evaluates_and_samples_a_vampprior(tmp_path, capsys):
    main(["train", "--prior", "vamp", "--pseudo-inputs", "20", "--epochs", "2", "--out", str(tmp_path), "--device",
          "cpu", "--quiet"])  # fmt: skip
    config = load_checkpoint(tmp_path / "checkpoint.pt")["extra"]["vae"]
    assert config["model"] == "vamp" and config["pseudo_inputs"] == 20
    capsys.readouterr()
    main(["evaluate", str(tmp_path / "checkpoint.pt"), "--num-samples", "20", "--limit", "10", "--quiet"])
    summary = json.loads(capsys.readouterr().out)
    assert math.isfinite(summary["nll"]) and summary["elbo"] <= summary["iwae"] + 1e-6
    main(["sample", str(tmp_path / "checkpoint.pt"), "-n", "6", "--out", str(tmp_path / "s.npy")])
    assert (tmp_path / "s.npy").exists()
    main(["plot", "samples", str(tmp_path / "checkpoint.pt"), "--out", str(tmp_path / "s.png")])
    assert (tmp_path / "s.png").exists()
    message = cli_error(capsys, ["plot", "manifold", str(tmp_path / "checkpoint.pt"), "--out", str(tmp_path / "m.png")])
    assert "quantiles of the N(0, I) prior" in message and "VampPrior" in message


@pytest.mark.parametrize("argv, message", [
    (["--prior", "vamp", "--model", "autoencoder"], "not of --model autoencoder"),
    (["--prior", "vamp", "--model", "two-layer"], "not of --model two-layer"),
    (["--prior", "vamp", "--flow", "iaf"], "not of --flow iaf"),
    (["--prior", "vamp", "--pseudo-inputs", "0"], "--pseudo-inputs must be at least 1, got 0"),
    (["--pseudo-inputs", "20"], "add --prior vamp"),
])  # fmt: skip
def test_cli_refuses_what_the_vampprior_does_not_fit(argv, message, tmp_path, capsys):
    assert message in cli_error(capsys, ["train", *argv, "--epochs", "1", "--out", str(tmp_path / "run")])


def test_the_model_object_takes_the_prior(tmp_path):
    digits = pyrovae.load_dataset("digits", binarize="none")
    m = VAEModel(digits, z_dim=4, hidden=(32,), prior="vamp", pseudo_inputs=10)
    assert isinstance(m.module, VampVAE) and m.module.config["pseudo_inputs"] == 10
    m.train(epochs=1, verbose=False)
    assert torch.isfinite(m.log_px(digits.test.x[:5], num_samples=50)).all() and m.sample(3).shape == (3, 64)
    loaded = VAEModel.load(m.save(tmp_path / "run"))
    assert isinstance(loaded.module, VampVAE)
    assert torch.equal(loaded.module.pseudo_inputs.weight, m.module.pseudo_inputs.weight)
    with pytest.raises(ValueError, match="unknown prior 'gauss'"):
        VAEModel(digits, prior="gauss")
    with pytest.raises(ValueError, match="pass prior='vamp'"):
        VAEModel(digits, pseudo_inputs=10)
