import math

import pytest
import torch
from pyro.infer import Trace_ELBO

import pyrovae
from pyrovae.data.standardize import Standardization
from pyrovae.objects import VAEModel

SMALL = {"z_dim": 4, "hidden": (32,)}


@pytest.fixture(scope="module")
def digits():
    return pyrovae.load_dataset("digits", binarize="none")


@pytest.fixture(scope="module")
def trained(digits):
    m = VAEModel(digits, **SMALL)
    m.train(epochs=1, verbose=False)
    return m


def test_auto_likelihood_is_the_values_and_says_why(digits):
    m = VAEModel(digits, **SMALL)
    assert m.likelihood == m.module.likelihood == "continuous-bernoulli" and "[0, 1]" in m.likelihood_reason
    assert VAEModel(digits.train.x.round(), **SMALL).likelihood == "bernoulli"
    assert VAEModel(digits.train.x.numpy(), binarize="dynamic", **SMALL).likelihood == "bernoulli"
    assert m.standardization is None


def test_latent_is_the_guides_posterior_mean_and_draws_are_seeded(trained, digits):
    x = digits.test.x[:50]
    z = trained.latent(x)
    assert z.shape == (50, 4)
    torch.testing.assert_close(z, trained.module.encode(x))
    assert torch.equal(trained.latent(x, mean=False, seed=3), trained.latent(x, mean=False, seed=3))
    assert not torch.equal(trained.latent(x, mean=False, seed=3), z)
    assert trained.reconstruct(x).shape == (50, 64) and trained.sample(5, seed=0).shape == (5, 64)
    assert torch.equal(trained.sample(5, seed=1, mean=False), trained.sample(5, seed=1, mean=False))


def test_model_and_guide_are_the_pyro_callables(trained, digits):
    assert math.isfinite(Trace_ELBO().loss(trained.model, trained.guide, digits.test.x[:16]))


def test_save_load_round_trip_gives_identical_latent_and_log_px(trained, digits, tmp_path):
    x = digits.test.x[:20]
    z, log_px = trained.latent(x), trained.log_px(x, num_samples=50, seed=1)
    trained.save(tmp_path)
    loaded = VAEModel.load(tmp_path)
    assert torch.equal(loaded.latent(x), z) and torch.equal(loaded.log_px(x, num_samples=50, seed=1), log_px)
    assert loaded.history == trained.history and loaded.likelihood == trained.likelihood and loaded.data is None
    assert pyrovae.load_model(tmp_path / "checkpoint.pt").model.config == trained.module.config
    with pytest.raises(ValueError, match="loaded without"):
        loaded.train(epochs=2)


def test_real_data_are_standardized_and_log_px_is_in_the_datas_units():
    x = torch.randn(400, 3, generator=torch.Generator().manual_seed(0)) * torch.tensor([1.0, 5.0, 0.2]) + 7
    models = {}
    for factor in (1, 2):
        m = models[factor] = VAEModel(x * factor, z_dim=2, hidden=(16,))
        m.train(epochs=1, verbose=False)
        assert m.likelihood == "normal" and m.data.standardization is m.standardization
    m = models[1]
    scale = Standardization.fit(x)
    direct = pyrovae.log_marginal_likelihood(m.model, m.guide, scale(x[:10]), 50, seed=0).log_px
    torch.testing.assert_close(m.log_px(x[:10], 50), direct + scale.log_abs_det_jacobian)
    # the same standardized data, so the same model: doubling the data lowers log p(x) by D log 2
    torch.testing.assert_close(models[2].log_px(2 * x[:10], 50), m.log_px(x[:10], 50) - 3 * math.log(2),
                               rtol=0, atol=1e-3)  # fmt: skip
    assert (m.reconstruct(x[:200]).mean(0) - x.mean(0)).abs().max() < 1.5  # back in the data's units
    assert m.sample(200, seed=0).mean(0)[0] > 5


def test_later_calls_train_on_to_the_total(digits, tmp_path):
    m = VAEModel(digits, **SMALL)
    m.train(epochs=1, verbose=False, batch_size=256)
    m.train(epochs=2, verbose=False, batch_size=256)
    assert [row["epoch"] for row in m.history] == [1, 2]
    with pytest.raises(ValueError, match="total to reach"):
        m.train(epochs=1)
    with pytest.raises(ValueError, match="would not hold"):
        m.train(epochs=3, out_dir=tmp_path / "run")


@pytest.mark.slow
def test_a_run_folder_resumes_as_an_uninterrupted_run(digits, tmp_path):
    whole = VAEModel(digits, **SMALL)
    whole.train(epochs=2, out_dir=tmp_path / "a", verbose=False, batch_size=256)
    split = VAEModel(digits, **SMALL)
    split.train(epochs=1, out_dir=tmp_path / "b", verbose=False, batch_size=256)
    split.train(epochs=2, out_dir=tmp_path / "b", verbose=False, batch_size=256)
    x = digits.test.x[:10]
    assert torch.equal(whole.latent(x), split.latent(x))
    assert torch.equal(VAEModel.load(tmp_path / "b").latent(x), whole.latent(x))


def test_bad_input_is_a_clear_error(trained, digits):
    with pytest.raises(ValueError, match=r"\(N, 64\).*x\[None\]"):
        trained.latent(digits.test.x[0])
    with pytest.raises(ValueError, match=r"\(N, 64\)"):
        trained.log_px(digits.test.x[:3, :10])
    with pytest.raises(ValueError, match="unknown likelihood"):
        VAEModel(digits, likelihood="poisson")
    with pytest.raises(ValueError, match="binarize='dynamic'"):
        VAEModel(digits, likelihood="bernoulli")
    with pytest.raises(ValueError, match="likelihood='normal'"):
        VAEModel(torch.randn(20, 3) * 5, likelihood="continuous-bernoulli")
    with pytest.raises(TypeError, match="unknown training settings"):
        trained.train(epochs=5, batch_sise=3)
    with pytest.raises(TypeError, match="tensor or a NumPy array"):
        VAEModel([[0.0, 1.0]])
