import json
import re

import pyro
import pyro.poutine as poutine
import pytest
import torch
from pyro.infer import Trace_ELBO

import pyrovae
from pyrovae import latent
from pyrovae.checkpoint import load_checkpoint
from pyrovae.cli import main
from pyrovae.models.iaf import IAFVAE, IAFEncoder
from pyrovae.models.nets import Encoder
from tests.common import cli_error


def _randomize(encoder: IAFEncoder, seed: int = 0) -> None:
    """Move the flow away from its identity start, so that the checks below see a real transform."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for step in encoder.steps:
            for param in step.nn.parameters():
                param.copy_(0.5 * torch.randn(param.shape, generator=g))


def test_log_density_is_the_base_density_minus_the_log_determinant_2d():
    """An explicit change of variables for z_dim = 2: log q(z|x) = log N(z0; mu, sigma) - log|det dz/dz0|, with
    the full Jacobian from autograd (not assuming it is triangular), for the guide's own (cached) samples and
    for fresh copies that force the inverse."""
    torch.manual_seed(0)
    encoder = IAFEncoder(Encoder(5, 2, hidden=(7,)), 5, depth=2, flow_hidden=(6,))
    _randomize(encoder)
    x = torch.rand(3, 5)
    q = encoder.posterior(x)
    z = q.rsample()
    h = encoder.base.hidden(x)
    loc, scale = encoder.base.head(h)
    for n in range(3):
        def flow(z0, n=n):
            for step in encoder.steps:
                z0 = step.condition(h[n])(z0)
            return z0

        # recover z0 for point n by inverting the flow numerically from the cached samples
        z0 = z[n].detach()
        for step in reversed(encoder.steps):
            z0 = step.condition(h[n]).inv(z0)
        assert torch.allclose(flow(z0), z[n], atol=1e-5)
        jacobian = torch.autograd.functional.jacobian(flow, z0)
        assert jacobian.shape == (2, 2)
        expected = (
            torch.distributions.Normal(loc[n], scale[n]).log_prob(z0).sum() - torch.linalg.slogdet(jacobian)[1]
        )
        assert q.log_prob(z)[n].item() == pytest.approx(expected.item(), abs=1e-4)
        assert q.log_prob(z.clone())[n].item() == pytest.approx(expected.item(), abs=1e-4)  # uncached: inverse


def test_identity_start_reproduces_the_gaussian_guide_elbo():
    torch.manual_seed(0)
    iaf = IAFVAE(6, z_dim=3, hidden=(8,), flow_depth=3)
    vae = pyrovae.VAE(6, z_dim=3, hidden=(8,))
    vae.encoder.load_state_dict(iaf.encoder.base.state_dict())
    vae.decoder.load_state_dict(iaf.decoder.state_dict())
    x = torch.bernoulli(torch.full((5, 6), 0.5))
    pyro.set_rng_seed(1)
    loss_iaf = Trace_ELBO().loss(iaf.model, iaf.guide, x)
    pyro.set_rng_seed(1)
    assert Trace_ELBO().loss(vae.model, vae.guide, x) == pytest.approx(loss_iaf, rel=1e-6)
    trace = poutine.trace(iaf.guide).get_trace(x)
    assert isinstance(trace.nodes["z"]["fn"], pyro.distributions.TransformedDistribution)
    assert any(name.startswith("encoder$$$steps.") for name in pyro.get_param_store().keys())


def test_trains_reloads_and_estimates_log_likelihood(tmp_path):
    data = pyrovae.load_dataset("digits")
    iaf = IAFVAE(data.x_dim, z_dim=8, flow_depth=2)
    x = data.test.x[:40]
    untrained = pyrovae.elbo_per_datapoint(iaf.model, iaf.guide, x)
    extra = {"vae": iaf.config, "data": {"name": "digits", "binarize": "dynamic", "valid_size": None}}
    config = pyrovae.TrainConfig(epochs=5, device="cpu")
    history = pyrovae.fit(iaf.model, iaf.guide, data, config, out_dir=tmp_path, extra=extra, verbose=False)
    assert history[-1]["test_elbo"] > untrained + 10
    loaded, _ = pyrovae.load_vae(tmp_path / "checkpoint.pt")
    assert isinstance(loaded, IAFVAE) and loaded.config == iaf.config
    pyro.set_rng_seed(2)
    expected = Trace_ELBO().loss(iaf.model, iaf.guide, x)
    pyro.set_rng_seed(2)
    assert Trace_ELBO().loss(loaded.model, loaded.guide, x) == pytest.approx(expected, rel=1e-6)
    estimate = pyrovae.log_marginal_likelihood(loaded.model, loaded.guide, x, num_samples=200, progress=False)
    assert (estimate.log_px >= estimate.elbo - 1e-4).all()
    means = latent.posterior_means(loaded.guide, x[:4])  # no closed-form mean: a Monte-Carlo average
    assert means.shape == (4, 8) and torch.isfinite(means).all()


def test_bad_settings():
    with pytest.raises(ValueError, match="at least one step"):
        IAFVAE(6, z_dim=2, flow_depth=0)
    with pytest.raises(ValueError, match="builds its own encoder"):
        IAFVAE(6, z_dim=2, encoder=torch.nn.Identity())


def test_cli_trains_and_evaluates_an_iaf_guide(tmp_path, capsys):
    main(["train", "--flow", "iaf", "--flow-depth", "3", "--epochs", "1", "--out", str(tmp_path), "--device", "cpu",
          "--quiet"])  # fmt: skip
    assert load_checkpoint(tmp_path / "checkpoint.pt")["extra"]["vae"]["flow_depth"] == 3
    capsys.readouterr()
    main(["evaluate", str(tmp_path / "checkpoint.pt"), "--num-samples", "20", "--limit", "10", "--quiet"])
    summary = json.loads(capsys.readouterr().out)
    assert summary["elbo"] <= summary["iwae"] + 1e-6 and summary["latent_dim"] == 16
    message = cli_error(capsys, ["train", "--flow", "iaf", "--model", "autoencoder", "--out", str(tmp_path / "ae")])
    assert re.search("not for --model autoencoder", message)


def test_encode_is_the_flow_at_the_base_mean_and_reconstruct_decodes_it():
    torch.manual_seed(0)
    iaf = IAFVAE(5, z_dim=2, hidden=(7,), flow_depth=2, flow_hidden=(6,))
    x = torch.bernoulli(torch.full((4, 5), 0.5))
    assert torch.equal(iaf.encode(x), iaf.encoder(x)[0].detach())  # the steps start as the identity
    _randomize(iaf.encoder)
    h = iaf.encoder.base.hidden(x)
    z = iaf.encoder.base.head(h)[0]
    for step in iaf.encoder.steps:
        z = step.condition(h)(z)
    code = iaf.encode(x)
    assert code.shape == (4, 2) and torch.equal(code, z.detach())
    assert not torch.allclose(code, iaf.encoder(x)[0])
    assert torch.equal(iaf.reconstruct(x), iaf.decode_mean(code))
