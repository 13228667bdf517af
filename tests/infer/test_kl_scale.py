import json

import pyro
import pyro.poutine as poutine
import pytest
import torch
import torch.nn.functional as F
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO

import pyrovae
from pyrovae import TrainConfig, fit
from pyrovae.checkpoint import param_state
from pyrovae.cli import main
from pyrovae.infer.kl_scale import KLScaleMessenger, warmup_scale
from tests.common import tiny_dataset, tiny_vae


def _loss(vae, x, beta, elbo=Trace_ELBO):
    kl = KLScaleMessenger(beta)
    pyro.set_rng_seed(3)  # the same z for every beta
    return elbo().loss(kl(vae.model), kl(vae.guide), x)


@pytest.mark.parametrize("elbo", [Trace_ELBO, TraceMeanField_ELBO])
def test_scale_zero_removes_the_kl_term_and_beta_scales_it_exactly(elbo):
    """Monte-Carlo KL (Trace_ELBO) or analytic KL (TraceMeanField_ELBO): loss(beta) = -reconstruction + beta KL."""
    vae = tiny_vae(z_dim=3)
    x = torch.bernoulli(torch.full((5, 6), 0.4))
    pyro.set_rng_seed(3)
    z = poutine.trace(vae.guide).get_trace(x).nodes["z"]["value"]
    reconstruction = -F.binary_cross_entropy_with_logits(vae.decoder(z), x, reduction="sum").item()
    assert _loss(vae, x, 0.0, elbo) == pytest.approx(-reconstruction, rel=1e-6)
    kl = _loss(vae, x, 1.0, elbo) - _loss(vae, x, 0.0, elbo)
    assert abs(kl) > 0.1
    for beta in (0.3, 4.0):
        assert _loss(vae, x, beta, elbo) == pytest.approx(-reconstruction + beta * kl, rel=1e-6)


def test_only_latent_sites_are_scaled():
    x = torch.ones(2, 6)
    ssvae = pyrovae.SSVAE(6, num_classes=3, z_dim=2, hidden=(4,))
    trace = poutine.trace(KLScaleMessenger(0.25)(ssvae.model)).get_trace(x, torch.tensor([0, 2]))
    assert trace.nodes["z"]["scale"] == 0.25
    assert trace.nodes["x"]["scale"] == 1.0 and trace.nodes["y"]["scale"] == 1.0  # observed
    assert trace.nodes["classification"]["scale"] == 1.0  # a pyro.factor is observed too
    guide_trace = poutine.trace(KLScaleMessenger(0.25)(ssvae.guide)).get_trace(x)
    assert guide_trace.nodes["y"]["scale"] == 0.25 and guide_trace.nodes["z"]["scale"] == 0.25
    with pytest.raises(ValueError, match=">= 0"):
        KLScaleMessenger(-1.0)


def test_warmup_schedule():
    assert [warmup_scale(t, 4) for t in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert warmup_scale(1, 4, beta=2.0) == 1.0 and warmup_scale(7, 0, beta=3.0) == 3.0
    with pytest.raises(ValueError):
        warmup_scale(-1, 4)


def _train(out, epochs, resume=False, **kwargs):
    pyro.clear_param_store()
    torch.manual_seed(123 if resume else 0)
    vae = tiny_vae()
    config = TrainConfig(epochs=epochs, batch_size=10, device="cpu", seed=7, **kwargs)
    history = fit(vae.model, vae.guide, tiny_dataset(), config, out_dir=out, resume=resume, verbose=False)
    return history, param_state()


def test_fit_warms_up_per_step_and_resumes_exactly(tmp_path):
    """40 points, batch 10: 4 steps per epoch; a 2-epoch warm-up to beta 0.5 ends its epochs at 0.25, 0.5, 0.5.
    Stopping after epoch 1 and resuming gives the uninterrupted run's parameters bit for bit."""
    history, params = _train(tmp_path / "a", 3, beta=0.5, kl_warmup_epochs=2)
    assert [row["kl_scale"] for row in history] == [0.25, 0.5, 0.5]
    _train(tmp_path / "b", 1, beta=0.5, kl_warmup_epochs=2)
    resumed, resumed_params = _train(tmp_path / "b", 3, resume=True, beta=0.5, kl_warmup_epochs=2)
    assert [row["kl_scale"] for row in resumed] == [0.25, 0.5, 0.5]
    assert all(torch.equal(params[name], resumed_params[name]) for name in params)
    plain, _ = _train(tmp_path / "c", 1)
    assert "kl_scale" not in plain[0]


def test_bad_settings():
    with pytest.raises(ValueError, match="beta >= 0"):
        TrainConfig(beta=-0.1)
    with pytest.raises(ValueError, match="JIT"):
        TrainConfig(jit=True, kl_warmup_epochs=2)


def test_large_beta_switches_units_off_and_evaluate_counts_them(tmp_path, capsys):
    """beta = 4 pulls more posteriors onto the prior than beta = 1 (digits, z = 16, 20 epochs): fewer active
    units, as `pyrovae evaluate` reports them (measured: 16 of 16 at beta 1, 0 at beta 4)."""
    counts = {}
    for beta in (1.0, 4.0):
        out = tmp_path / f"beta{beta}"
        main(["train", "--epochs", "20", "--beta", str(beta), "--out", str(out), "--device", "cpu", "--quiet"])
        capsys.readouterr()
        main(["evaluate", str(out / "checkpoint.pt"), "--num-samples", "20", "--quiet"])
        summary = json.loads(capsys.readouterr().out)
        assert summary["latent_dim"] == 16
        counts[beta] = summary["active_units"]
    assert counts[4.0] < counts[1.0] - 3, counts
