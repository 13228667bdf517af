"""Tests of pyrovae/infer/iwae.py: the per-datapoint IWAE bound as a Pyro ELBO, and its use in training."""

import json
import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import SVI, RenyiELBO, Trace_ELBO

import pyrovae
from pyrovae import TraceIWAE_ELBO, TrainConfig, fit
from pyrovae.cli import build_parser, main
from pyrovae.models.plate import data_plate
from pyrovae.train.svi import make_elbo
from tests.common import tiny_dataset, tiny_vae


def _vae_and_data(batch=6, x_dim=64, seed=0):
    pyro.set_rng_seed(seed)
    vae = pyrovae.VAE(x_dim, z_dim=4, hidden=(32,))
    x = torch.rand(batch, x_dim).bernoulli()
    return vae, x


def _seeded(seed, fn, *args, **kwargs):
    pyro.set_rng_seed(seed)
    return fn(*args, **kwargs)


# a linear-Gaussian model with a known posterior: z ~ N(0, 1), x | z ~ N(z, 1), so
# p(z | x) = N(x / 2, 1/2) and p(x) = N(0, 2)
def gauss_model(x, num_data=None):
    with data_plate("data", len(x), num_data, x.device):
        z = pyro.sample("z", dist.Normal(torch.zeros_like(x), 1.0))
        pyro.sample("x", dist.Normal(z, 1.0), obs=x)


def gauss_guide_with(a, b, scale):
    """q(z | x) = N(a x + b, scale^2), with a, b, scale Pyro params initialised to the given values."""

    def guide(x, num_data=None):
        slope = pyro.param("a", torch.tensor(a))
        shift = pyro.param("b", torch.tensor(b))
        sd = pyro.param("scale", torch.tensor(scale), constraint=dist.constraints.positive)
        with data_plate("data", len(x), num_data, x.device):
            pyro.sample("z", dist.Normal(slope * x + shift, sd))

    return guide


def exact_log_px(x):
    return dist.Normal(0.0, math.sqrt(2.0)).log_prob(x)


def _guide_grads(elbo, model, guide, x, seed):
    loss = _seeded(seed, elbo.differentiable_loss, model, guide, x)
    params = [pyro.param(name).unconstrained() for name in ("a", "b", "scale")]
    return torch.stack(torch.autograd.grad(loss, params))


def test_one_particle_is_trace_elbo_on_the_same_noise():
    vae, x = _vae_and_data()
    for kwargs in ({}, {"num_data": 60}):
        expected = _seeded(1, Trace_ELBO().loss, vae.model, vae.guide, x, **kwargs)
        actual = _seeded(1, TraceIWAE_ELBO(num_particles=1).loss, vae.model, vae.guide, x, **kwargs)
        assert actual == pytest.approx(expected, rel=1e-6)
        expected = _seeded(1, Trace_ELBO().differentiable_loss, vae.model, vae.guide, x, **kwargs)
        actual = _seeded(1, TraceIWAE_ELBO(num_particles=1).differentiable_loss, vae.model, vae.guide, x, **kwargs)
        decoder = list(vae.decoder.parameters()) + list(vae.encoder.parameters())
        for g, h in zip(torch.autograd.grad(expected, decoder), torch.autograd.grad(actual, decoder), strict=True):
            assert torch.allclose(g, h, rtol=1e-4, atol=1e-5)


def test_bound_is_at_least_the_elbo_of_the_same_samples():
    vae, x = _vae_and_data()
    k = 10
    iwae = TraceIWAE_ELBO(num_particles=k, max_plate_nesting=1)
    log_w = _seeded(1, iwae.log_weights, vae.model, vae.guide, x)
    assert log_w.shape == (k, len(x))
    bound = _seeded(1, iwae.bound, vae.model, vae.guide, x)
    assert torch.allclose(bound, log_w.logsumexp(0) - math.log(k))
    assert (bound >= log_w.mean(0)).all()  # Jensen, sample by sample
    assert (bound > log_w.mean(0) + 0.01).all()
    # the same particles as Pyro's vectorized Trace_ELBO, whose loss is minus the mean log-weight
    elbo = Trace_ELBO(num_particles=k, vectorize_particles=True, max_plate_nesting=1)
    trace_loss = _seeded(1, elbo.loss, vae.model, vae.guide, x, num_data=60)
    assert trace_loss == pytest.approx(-10 * log_w.mean(0).sum().item(), rel=1e-5)
    assert _seeded(1, iwae.loss, vae.model, vae.guide, x, num_data=60) < trace_loss


def test_batch_loss_is_the_scaled_sum_of_per_datapoint_bounds():
    vae, x = _vae_and_data()
    iwae = TraceIWAE_ELBO(num_particles=5, max_plate_nesting=1)
    bound = _seeded(2, iwae.bound, vae.model, vae.guide, x)
    assert bound.shape == (len(x),)
    # the subsample scale N/B multiplies the bound, outside the log-mean-exp: the per-point bound does not see it
    # (the scaled and unscaled log-weights take different kernels, so float rounding may differ; a scale inside the
    # log-mean-exp would move each bound by log(N/B) = 4.6 nats)
    scaled = _seeded(2, iwae.bound, vae.model, vae.guide, x, num_data=600)
    torch.testing.assert_close(scaled, bound, rtol=1e-6, atol=1e-4)
    loss = _seeded(2, iwae.loss, vae.model, vae.guide, x, num_data=600)
    assert loss == pytest.approx(-100 * bound.sum().item(), rel=1e-6)
    loss = _seeded(2, iwae.differentiable_loss, vae.model, vae.guide, x, num_data=600)
    assert loss.item() == pytest.approx(-100 * bound.sum().item(), rel=1e-6)
    assert _seeded(2, iwae.loss, vae.model, vae.guide, x) == pytest.approx(-bound.sum().item(), rel=1e-6)


def test_changing_one_data_point_changes_only_its_term():
    vae, x = _vae_and_data()
    iwae = TraceIWAE_ELBO(num_particles=5, max_plate_nesting=1)  # no guessing run, which would draw noise
    before = _seeded(3, iwae.bound, vae.model, vae.guide, x)
    changed = x.clone()
    changed[2] = 1 - changed[2]
    after = _seeded(3, iwae.bound, vae.model, vae.guide, changed)
    differs = (after - before).abs() > 1e-3
    assert differs.tolist() == [False, False, True, False, False, False]
    assert torch.allclose(after[~differs], before[~differs])


def test_bound_is_exact_when_the_guide_is_the_posterior():
    x = torch.tensor([-2.0, -0.3, 0.0, 1.1, 3.0])
    guide = gauss_guide_with(0.5, 0.0, math.sqrt(0.5))
    for k in (1, 7):
        bound = TraceIWAE_ELBO(num_particles=k).bound(gauss_model, guide, x)
        assert torch.allclose(bound, exact_log_px(x), atol=1e-5)


def test_bound_rises_with_k_towards_log_px():
    # a poor guide; 4000 copies of each point give the expected bound to about +-0.01 nats
    x = torch.tensor([-1.5, 0.5, 2.0]).repeat_interleave(4000)
    guide = gauss_guide_with(0.2, 0.3, 1.2)
    means = []
    with torch.no_grad():
        for k in (1, 5, 50):
            bound = TraceIWAE_ELBO(num_particles=k).bound(gauss_model, guide, x)
            means.append(bound.reshape(3, -1).mean(1))
    truth = exact_log_px(torch.tensor([-1.5, 0.5, 2.0]))
    assert (means[0] + 0.05 < means[1]).all() and (means[1] + 0.02 < means[2]).all()
    assert (means[2] < truth + 0.02).all() and (truth - means[2] < 0.1).all()


def test_svi_trains_encoder_and_decoder():
    vae, x = _vae_and_data(batch=32)
    svi = SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 1e-2}), TraceIWAE_ELBO(num_particles=5))
    svi.step(x, num_data=320)
    before = {name: value.detach().clone() for name, value in pyro.get_param_store().items()}
    assert any("encoder" in name for name in before) and any("decoder" in name for name in before)
    losses = [svi.step(x, num_data=320) for _ in range(30)]
    for name, value in pyro.get_param_store().items():
        assert not torch.equal(value.detach(), before[name]), name
    assert all(math.isfinite(v) for v in losses) and sum(losses[-5:]) < sum(losses[:5])


def test_dreg_keeps_the_decoder_gradient_and_the_loss():
    vae, x = _vae_and_data()
    losses, grads = [], []
    for dreg in (False, True):
        loss = _seeded(4, TraceIWAE_ELBO(num_particles=5, dreg=dreg).differentiable_loss, vae.model, vae.guide, x)
        losses.append(loss.item())
        grads.append(torch.autograd.grad(loss, [*vae.decoder.parameters(), *vae.encoder.parameters()]))
    assert losses[0] == pytest.approx(losses[1], rel=1e-6)
    num_decoder = len(list(vae.decoder.parameters()))
    for g, h in zip(grads[0][:num_decoder], grads[1][:num_decoder], strict=True):
        assert torch.allclose(g, h, rtol=1e-4, atol=1e-5)
    assert not all(torch.allclose(g, h) for g, h in zip(grads[0][num_decoder:], grads[1][num_decoder:], strict=True))


def test_dreg_guide_gradient_vanishes_at_the_exact_posterior():
    x = torch.tensor([-1.0, 0.4, 2.0])
    guide = gauss_guide_with(0.5, 0.0, math.sqrt(0.5))
    plain = _guide_grads(TraceIWAE_ELBO(num_particles=5), gauss_model, guide, x, seed=5)
    dreg = _guide_grads(TraceIWAE_ELBO(num_particles=5, dreg=True), gauss_model, guide, x, seed=5)
    assert plain.abs().max() > 1e-2  # the plain estimator is noise around zero
    assert dreg.abs().max() < 1e-5


def test_dreg_guide_gradient_is_unbiased_with_lower_variance():
    x = torch.tensor([-1.0, 0.4, 2.0])
    guide = gauss_guide_with(0.1, 0.5, 1.5)
    runs = 300
    plain = torch.stack([_guide_grads(TraceIWAE_ELBO(num_particles=8), gauss_model, guide, x, s) for s in range(runs)])
    dreg = torch.stack(
        [_guide_grads(TraceIWAE_ELBO(num_particles=8, dreg=True), gauss_model, guide, x, s) for s in range(runs)]
    )
    stderr = (plain.var(0) / runs + dreg.var(0) / runs).sqrt()
    assert ((plain.mean(0) - dreg.mean(0)).abs() < 4 * stderr).all()
    assert (plain.mean(0).abs() > 4 * stderr).any()  # the expected gradient is not zero: the test has power
    assert (dreg.var(0) < 0.1 * plain.var(0)).all()  # 0.03-0.04 times here


def test_unsupported_models_get_clear_errors():
    x = torch.tensor([0.0, 1.0])
    guide = gauss_guide_with(0.5, 0.0, 0.7)

    def global_model(x, num_data=None):
        shift = pyro.sample("shift", dist.Normal(0.0, 1.0))
        with data_plate("data", len(x), num_data, x.device):
            pyro.sample("x", dist.Normal(shift, 1.0), obs=x)

    def global_guide(x, num_data=None):
        pyro.sample("shift", dist.Normal(pyro.param("m", torch.tensor(0.0)), 1.0))

    with pytest.raises(NotImplementedError, match="'shift' is not in the vectorized data plate 'data'"):
        TraceIWAE_ELBO(num_particles=3).loss(global_model, global_guide, x)
    with pytest.raises(NotImplementedError, match="not in the vectorized data plate 'obs'"):
        TraceIWAE_ELBO(num_particles=3, data_plate="obs").loss(gauss_model, guide, x)

    def discrete_model(x, num_data=None):
        with data_plate("data", len(x), num_data, x.device):
            c = pyro.sample("c", dist.Bernoulli(0.5))
            pyro.sample("x", dist.Normal(c, 1.0), obs=x)

    def discrete_guide(x, num_data=None):
        p = pyro.param("p", torch.tensor(0.3), constraint=dist.constraints.unit_interval)
        with data_plate("data", len(x), num_data, x.device):
            pyro.sample("c", dist.Bernoulli(p))

    iwae = TraceIWAE_ELBO(num_particles=3)
    assert math.isfinite(iwae.loss(discrete_model, discrete_guide, x))  # the value is fine
    with pytest.raises(NotImplementedError, match=r"\['c'\] are not reparameterizable"):
        iwae.differentiable_loss(discrete_model, discrete_guide, x)
    with pytest.raises(ValueError, match="propose exactly the model's latent"), pytest.warns(UserWarning):
        TraceIWAE_ELBO(num_particles=3).loss(gauss_model, lambda x, num_data=None: None, x)
    for bad in (0, 2.5):
        with pytest.raises(ValueError, match="num_particles must be a positive integer"):
            TraceIWAE_ELBO(num_particles=bad)


def test_prefixed_vae_with_its_data_plate():
    pyro.set_rng_seed(0)
    vae = pyrovae.VAE(8, z_dim=2, hidden=(8,), prefix="top")
    x = torch.rand(5, 8).bernoulli()
    with pytest.raises(NotImplementedError, match="data plate 'data'"):
        TraceIWAE_ELBO(num_particles=3).loss(vae.model, vae.guide, x)
    bound = TraceIWAE_ELBO(num_particles=3, data_plate=vae.site("data")).bound(vae.model, vae.guide, x)
    assert bound.shape == (5,) and torch.isfinite(bound).all()


def test_renyi_elbo_alpha_0_is_not_the_per_datapoint_iwae_with_minibatches_or_global_sites():
    """Pyro's RenyiELBO(alpha=0) takes the log-mean-exp of *scaled* log-weights, summed over every plate
    that not all sites share. For a VAE (all sites in the data plate) without num_data it is the
    per-datapoint bound; with num_data = N it tempers the weights by N/B instead of scaling the bound;
    with any site outside the data plate it is the joint bound of the whole batch."""
    vae, x = _vae_and_data()
    k = 5
    renyi = RenyiELBO(alpha=0, num_particles=k, vectorize_particles=True, max_plate_nesting=1)
    log_w = _seeded(1, TraceIWAE_ELBO(num_particles=k, max_plate_nesting=1).log_weights, vae.model, vae.guide, x)
    per_point = (log_w.logsumexp(0) - math.log(k)).sum().item()
    joint = (log_w.sum(1).logsumexp(0) - math.log(k)).item()
    elbo = log_w.mean(0).sum().item()
    assert elbo < joint < per_point - 0.5  # the joint bound is much looser, close to the ELBO

    # 1. no subsampling, every site in the data plate: per data point, the same as ours
    assert -_seeded(1, renyi.loss, vae.model, vae.guide, x) == pytest.approx(per_point, rel=1e-6)

    # 2. with num_data: log-mean-exp of (N/B) log w, which is not (N/B) times the bound and lies above it
    scale = 600 / len(x)
    renyi_value = -_seeded(1, renyi.loss, vae.model, vae.guide, x, num_data=600)
    tempered = ((scale * log_w).logsumexp(0) - math.log(k)).sum().item()
    assert renyi_value == pytest.approx(tempered, rel=1e-6)
    ours = -_seeded(1, TraceIWAE_ELBO(num_particles=k, max_plate_nesting=1).loss, vae.model, vae.guide, x,
                    num_data=600)
    assert ours == pytest.approx(scale * per_point, rel=1e-6)
    assert renyi_value > ours + 10

    # 3. a site outside the data plate (a zero factor here) turns it into the joint bound of the batch
    def model_with_global_site(x, num_data=None):
        pyro.factor("zero", torch.zeros(()))
        return vae.model(x, num_data)

    assert -_seeded(1, renyi.loss, model_with_global_site, vae.guide, x) == pytest.approx(joint, rel=1e-6)
    with pytest.raises(NotImplementedError, match="'zero' is not in the vectorized data plate"):
        TraceIWAE_ELBO(num_particles=k).loss(model_with_global_site, vae.guide, x)


def test_train_config_and_make_elbo():
    elbo = make_elbo(TrainConfig(elbo="iwae", num_particles=7))
    assert isinstance(elbo, TraceIWAE_ELBO) and elbo.num_particles == 7 and not elbo.dreg
    assert make_elbo(TrainConfig(elbo="iwae", dreg=True)).dreg
    with pytest.raises(ValueError, match="no JIT-compiled variant"):
        TrainConfig(elbo="iwae", jit=True)
    with pytest.raises(ValueError, match="dreg is a gradient estimator of the IWAE objective"):
        TrainConfig(dreg=True)


@pytest.mark.parametrize("dreg", [False, True])
def test_fit_with_iwae_improves_the_test_elbo(dreg):
    data = pyrovae.load_dataset("digits")
    vae = pyrovae.VAE(data.x_dim, z_dim=8, hidden=(64,))
    config = TrainConfig(epochs=4, batch_size=64, lr=3e-3, elbo="iwae", num_particles=5, dreg=dreg, device="cpu")
    history = fit(vae.model, vae.guide, data, config, verbose=False)
    assert history[-1]["test_elbo"] > history[0]["test_elbo"] + 3
    assert all(row["test_iwae"] > row["test_elbo"] for row in history)


def test_fit_with_iwae_on_a_tiny_set_is_finite():
    vae = tiny_vae()
    config = TrainConfig(epochs=2, batch_size=16, elbo="iwae", num_particles=3, device="cpu")
    history = fit(vae.model, vae.guide, tiny_dataset(), config, verbose=False)
    assert all(math.isfinite(row[key]) for row in history for key in ("train_elbo", "test_elbo", "test_iwae"))


def test_cli_trains_with_the_iwae_objective(tmp_path, capsys):
    main(["train", "--objective", "iwae", "--particles", "3", "--dreg", "--epochs", "2", "--z-dim", "4",
          "--hidden", "32", "--out", str(tmp_path), "--device", "cpu", "--quiet"])
    summary = json.loads(capsys.readouterr().out)
    assert summary["epoch"] == 2 and summary["test_iwae"] > summary["test_elbo"]
    config = pyrovae.load_checkpoint(tmp_path / "checkpoint.pt")["extra"]["train"]
    assert config["elbo"] == "iwae" and config["num_particles"] == 3 and config["dreg"]
    assert build_parser().parse_args(["train", "--elbo", "iwae"]).elbo == "iwae"  # the old name still works
