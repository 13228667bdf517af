import itertools

import pyro
import pyro.poutine as poutine
import pytest
import torch
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO

import pyrovae
from tests.common import tiny_vae


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
