import itertools

import pyro
import pyro.poutine as poutine
import pytest
import torch
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO

import pyrovae
from pyrovae.viz import latent
from tests.common import BatchNormEncoder, binary, tiny_vae


def test_sites_and_shapes():
    vae = tiny_vae(x_dim=6, z_dim=3)
    x = torch.bernoulli(torch.full((5, 6), 0.5))
    guide_trace = poutine.trace(vae.guide).get_trace(x)
    model_trace = poutine.trace(poutine.replay(vae.model, trace=guide_trace)).get_trace(x)
    assert guide_trace.nodes["z"]["value"].shape == (5, 3)
    assert guide_trace.nodes["z"]["fn"].has_rsample
    assert model_trace.nodes["x"]["is_observed"]
    assert model_trace.nodes["x"]["fn"].event_shape == (6,)
    assert model_trace.nodes["z"]["fn"].event_shape == (3,)
    assert [f.name for f in model_trace.nodes["z"]["cond_indep_stack"]] == ["data"]
    params = set(pyro.get_param_store().keys())
    assert any(p.startswith("encoder$$$") for p in params) and any(p.startswith("decoder$$$") for p in params)


def test_prefix_renames_sites_and_modules():
    vae = tiny_vae(prefix="left")
    x = torch.ones(2, 6)
    trace = poutine.trace(vae.model).get_trace(x)
    assert {"left/data", "left/z", "left/x"} <= set(trace.nodes)
    assert vae.site("z") == "left/z"
    assert all(name.startswith("left/decoder$$$") for name in pyro.get_param_store().keys())


def test_generation_without_data():
    vae = tiny_vae(z_dim=2)
    trace = poutine.trace(vae.model).get_trace(None, num_data=7)
    assert trace.nodes["x"]["value"].shape == (7, 6)
    assert not trace.nodes["x"]["is_observed"]
    assert set(trace.nodes["x"]["value"].unique().tolist()) <= {0.0, 1.0}


def test_minibatch_elbo_is_unbiased_for_full_data_elbo():
    """With analytic KL (TraceMeanField_ELBO) and a decoder whose logits do not depend on z, each data
    point's ELBO is deterministic; averaging the scaled minibatch ELBO over all C(N, B) minibatches must
    then give the full-data ELBO to float precision (relative 1e-5): the plate scales each term by N / B."""
    N, B = 6, 2
    vae = tiny_vae(x_dim=6, z_dim=2)
    with torch.no_grad():
        vae.decoder.net[-1].weight.zero_()
        vae.decoder.net[-1].bias.normal_()
    x = torch.bernoulli(torch.full((N, 6), 0.3))

    def loss(idx, num_data):
        return TraceMeanField_ELBO().loss(vae.model, vae.guide, x[idx], num_data=num_data)

    full = loss(torch.arange(N), None)
    assert loss(torch.arange(N), None) == pytest.approx(full, rel=1e-6)  # deterministic
    subsets = [torch.tensor(s) for s in itertools.combinations(range(N), B)]
    minibatch = [loss(idx, N) for idx in subsets]
    assert sum(minibatch) / len(minibatch) == pytest.approx(full, rel=1e-5)
    # each minibatch term is its unscaled ELBO times N / B, and minibatches differ
    assert minibatch[0] == pytest.approx(loss(subsets[0], None) * N / B, rel=1e-6)
    assert max(minibatch) - min(minibatch) > 1e-3


def test_stochastic_minibatch_average_matches_full_elbo():
    """The same by Monte Carlo with random minibatches and fresh z: mean within 4 standard errors."""
    N, B, draws = 20, 5, 2000
    vae = tiny_vae(x_dim=6, z_dim=2)
    x = torch.bernoulli(torch.full((N, 6), 0.4))
    full = torch.tensor([Trace_ELBO().loss(vae.model, vae.guide, x) for _ in range(draws)])
    mini = torch.tensor(
        [Trace_ELBO().loss(vae.model, vae.guide, x[torch.randperm(N)[:B]], num_data=N) for _ in range(draws)]
    )
    se = (full.var() / draws + mini.var() / draws).sqrt()
    assert abs(full.mean() - mini.mean()) < 4 * se


@pytest.mark.parametrize(
    "x, error, match",
    [
        (torch.ones(3, 5), ValueError, r"shape \(batch, 6\)"),
        (torch.ones(2, 1, 6), ValueError, "flatten"),
        (torch.ones(0, 6), ValueError, "empty"),
        (torch.ones(3, 6, dtype=torch.long), TypeError, "floating point"),
        (torch.tensor([[0.0, 1, 1, 0, float("nan"), 1]]), ValueError, "NaN or inf"),
        (torch.tensor([[0.0, 1, 1, 0, 0.5, 1]]), ValueError, r"outside \{0, 1\}.*binarize"),
        (torch.tensor([[0.0, 1, 1, 0, 2.0, 1]]), ValueError, r"outside \{0, 1\}"),
    ],
)
def test_bad_data_is_rejected_with_a_clear_error(x, error, match):
    vae = tiny_vae()
    with pytest.raises(error, match=match):
        vae.model(x)
    with pytest.raises(error, match=match):
        vae.guide(x)


def test_guide_needs_data_and_num_data_must_cover_batch():
    vae = tiny_vae()
    with pytest.raises(ValueError, match="needs data"):
        vae.guide(None)
    with pytest.raises(ValueError, match="smaller than the batch"):
        vae.model(torch.ones(4, 6), num_data=3)


@pytest.mark.parametrize("model", [tiny_vae(), pyrovae.TwoLayerVAE(6, 4, 2, (8,), (4,)), pyrovae.SSVAE(6, 3, 2, (8,))])
def test_generating_zero_points_and_float64_data_are_errors(model):
    assert model.model(None, num_data=3).shape == (3, 6)
    for bad in (0, -2, 1.5):  # num_data=0 once generated one point
        with pytest.raises(ValueError, match="num_data must be a positive number of data points to generate"):
            model.model(None, num_data=bad)
    with pytest.raises(TypeError, match=r"x has dtype torch.float64 but the model's parameters are torch.float32: "
                       r"convert the data with x.float\(\)"):  # fmt: skip
        model.guide(torch.ones(2, 6, dtype=torch.float64))
    model.double().guide(torch.ones(2, 6, dtype=torch.float64))  # float64 data for a float64 model


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="unknown activation"):
        pyrovae.VAE(6, activation="sigmoidish")
    with pytest.raises(ValueError, match="positive"):
        pyrovae.VAE(0)
    with pytest.raises(ValueError, match="two positive layer sizes"):
        pyrovae.VAE(6, hidden=(0,))


def test_custom_nets_replace_defaults():
    class Linear(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(6, 4)

        def forward(self, x):
            loc, log_scale = self.lin(x).chunk(2, -1)
            return loc, log_scale.exp()

    vae = pyrovae.VAE(6, z_dim=2, encoder=Linear(), decoder=torch.nn.Linear(2, 6))
    assert vae.config is None  # cannot be rebuilt from settings alone
    loss = Trace_ELBO().loss(vae.model, vae.guide, torch.ones(3, 6))
    assert torch.isfinite(torch.tensor(loss))


@pytest.mark.parametrize("likelihood", ["bernoulli", "continuous-bernoulli", "normal"])
def test_decode_mean_is_the_mean_of_the_observation_and_what_the_pictures_decode(likelihood):
    torch.manual_seed(0)
    vae = tiny_vae(likelihood=likelihood)
    z = torch.randn(4, 2)
    mean = vae.decode_mean(z)
    assert mean.shape == (4, 6) and not mean.requires_grad
    assert torch.equal(mean, vae.observation(z).mean.detach())
    assert torch.equal(mean, latent.decode(vae.model, z))
    if likelihood == "bernoulli":  # pixel probabilities
        assert torch.allclose(mean, torch.sigmoid(vae.decoder(z)).detach())


@pytest.mark.parametrize("kind", [pyrovae.VAE, pyrovae.Autoencoder])
def test_reconstruct_decodes_the_posterior_mean(kind):
    torch.manual_seed(0)
    vae = kind(6, z_dim=2, hidden=(8,))
    x = binary(5, 6)
    code = vae.encode(x)
    assert torch.equal(code, vae.encoder(x)[0].detach())  # the mean of q(z|x), or the point mass's location
    assert torch.equal(code, latent.posterior_means(vae.guide, x))
    reconstruction = vae.reconstruct(x)
    assert reconstruction.shape == (5, 6) and not reconstruction.requires_grad
    assert torch.equal(reconstruction, vae.decode_mean(code))
    assert torch.equal(reconstruction, vae.reconstruct(x))  # deterministic


def test_reconstruct_of_a_trained_vae_is_closer_to_the_data_than_before():
    """Mean absolute error per pixel on 100 test digits, measured: 0.50 untrained, 0.33 after 2 epochs."""
    data = pyrovae.load_dataset("digits", binarize="static")
    x = data.test.x[:100]
    vae = pyrovae.VAE(data.x_dim, z_dim=8, hidden=(64,), seed=0)
    before = (vae.reconstruct(x) - x).abs().mean()
    config = pyrovae.TrainConfig(epochs=2, batch_size=64, lr=3e-3, device="cpu")
    pyrovae.fit(vae.model, vae.guide, pyrovae.Dataset.from_tensors(data.train.x), config, verbose=False)
    after = (vae.reconstruct(x) - x).abs().mean()
    assert after < before - 0.1, (before, after)


def test_encode_decode_and_reconstruct_run_in_evaluation_mode_and_give_the_mode_back():
    """With a BatchNorm encoder in training mode, one row is encoded with the running statistics, which stay as
    they were, and the module is in training mode again after."""
    torch.manual_seed(0)
    vae = pyrovae.VAE(6, z_dim=2, encoder=BatchNormEncoder(6, 2))
    vae.encoder.norm.running_mean.normal_()
    running_mean = vae.encoder.norm.running_mean.clone()
    x = binary(1, 6)
    reconstruction = vae.reconstruct(x)
    assert vae.training and vae.encoder.norm.training
    assert torch.equal(vae.encoder.norm.running_mean, running_mean)
    vae.eval()
    assert torch.equal(reconstruction, vae.reconstruct(x))
    assert not vae.training


@pytest.mark.parametrize(
    ("method", "value", "error", "match"),
    [
        ("decode_mean", torch.zeros(3, 5), ValueError, r"z must have shape \(batch, 2\), got \(3, 5\)"),
        ("decode_mean", torch.zeros(2), ValueError, r"z must have shape \(batch, 2\)"),
        ("decode_mean", torch.zeros(3, 2, dtype=torch.float64), TypeError, "model's parameters are torch.float32"),
        ("decode_mean", torch.zeros(3, 2, dtype=torch.long), TypeError, "floating point"),
        ("reconstruct", torch.zeros(3, 5), ValueError, r"x must have shape \(batch, 6\)"),
        ("reconstruct", torch.full((3, 6), 0.5), ValueError, "outside {0, 1}"),
        ("encode", torch.zeros(0, 6), ValueError, "empty"),
        ("encode", [[0.0] * 6], TypeError, "torch.Tensor"),
    ],
)
def test_encode_decode_and_reconstruct_check_their_input(method, value, error, match):
    with pytest.raises(error, match=match):
        getattr(tiny_vae(), method)(value)
