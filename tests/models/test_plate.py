import pyro
import pytest
import torch
from pyro.infer import Trace_ELBO
from pyro.infer.autoguide import AutoNormal
from torch import nn

import pyrovae
from pyrovae import TrainConfig, fit
from pyrovae.data.datasets import Dataset, Split
from tests.common import binary, tiny_ssvae, tiny_vae


def _loss(model, guide, *args, **kwargs):
    pyro.set_rng_seed(0)
    return Trace_ELBO().loss(model, guide, *args, **kwargs)


@pytest.mark.parametrize("subsampled", [False, True])
def test_a_model_in_the_callers_plate_has_the_plain_elbo(subsampled):
    """A VAE run inside the caller's plate over its rows (passed by name, or named like its own data plate) has
    exactly the ELBO of a plain run on the same noise: no second plate, so no point counted |B| times; a subsampled
    caller's plate scales it as num_data does."""
    vae, x = tiny_vae(x_dim=5), binary(10)
    plain = _loss(vae.model, vae.guide, x, num_data=40 if subsampled else None)
    idx = torch.arange(10, 20)

    def outer(name, **plate_kwargs):
        size, kwargs = (40, {"subsample": idx}) if subsampled else (10, {})

        def run(fn):
            def wrapped(x):
                with pyro.plate(name, size, **kwargs):
                    return fn(x, **plate_kwargs)

            return wrapped

        return run

    by_name = outer("outer", plate="outer")
    assert _loss(by_name(vae.model), by_name(vae.guide), x) == pytest.approx(plain, rel=1e-5)
    default = outer("data")
    assert _loss(default(vae.model), default(vae.guide), x) == pytest.approx(plain, rel=1e-5)


def test_an_ssvae_and_a_two_layer_vae_use_the_callers_plate():
    x, y = binary(6), torch.tensor([0, 1, 2, 0, 1, 2])
    ssvae = tiny_ssvae()
    plain = _loss(ssvae.model, ssvae.guide, x, y)

    def inside(fn):
        def wrapped(x, y):
            with pyro.plate("rows", 6):
                return fn(x, y, plate="rows")

        return wrapped

    assert _loss(inside(ssvae.model), inside(ssvae.guide), x, y) == pytest.approx(plain, rel=1e-5)
    two = pyrovae.TwoLayerVAE(5, z1_dim=3, z2_dim=2, hidden1=(8,), hidden2=(8,), seed=0)
    plain = _loss(two.model, two.guide, x)
    assert _loss(inside(lambda x, y, **k: two.model(x, **k)), inside(lambda x, y, **k: two.guide(x, **k)), x, y) == (
        pytest.approx(plain, rel=1e-5)
    )


def test_the_callers_plate_is_checked():
    vae, x = tiny_vae(x_dim=5), binary(4)
    with pytest.raises(ValueError, match="plate='outer': no plate of that name encloses the call"):
        vae.model(x, plate="outer")
    with pyro.plate("outer", 3), pytest.raises(ValueError, match="'outer' has 3 entries but the model runs on 4"):
        vae.model(x, plate="outer")
    with pyro.plate("outer", 10, subsample=torch.arange(4)), pytest.raises(ValueError, match="num_data=20 but"):
        vae.model(x, 20, plate="outer")
    with pyro.plate("data", 4), pytest.raises(ValueError, match="subsample indices are the enclosing plate"):
        vae.guide(x, subsample=torch.arange(4))
    with pyro.plate("data", 4, dim=-2), pytest.raises(ValueError, match="at dim -2"):
        vae.model(x)
    with pytest.raises(ValueError, match="subsample must be the 4 row indices"):
        vae.model(x, 10, subsample=torch.arange(3))
    with pytest.raises(ValueError, match=r"must lie in \[0, num_data=10\), got 8 to 11"):
        vae.model(x, 10, subsample=torch.arange(8, 12))
    with pytest.raises(ValueError, match="subsample indices need num_data"):
        vae.model(x, subsample=torch.arange(4))
    plate = vae.data_plate(x, 10, subsample=torch.tensor([1, 3, 5, 7]))
    with plate as rows:
        assert rows.tolist() == [1, 3, 5, 7] and plate.name == "data"


class Identity(nn.Module):
    """z -> z, the mean of x: with a N(0, I) prior and unit noise, q(z_n | x_n) = N(x_n / 2, I / 2)."""

    def forward(self, z):
        return z


def test_fit_passes_each_minibatch_rows_to_a_guide_with_per_point_parameters():
    """A non-amortized guide (AutoNormal over the VAE's local z, one location per data point) trained by fit in
    minibatches learns each point's own posterior mean x_n / 2: fit passes the rows' indices as the data plate's
    subsample, which the guide's plate (create_plates=vae.data_plate) shares with the model."""
    torch.manual_seed(0)
    n, x_dim = 32, 2
    x = torch.randn(n, x_dim) * 2**0.5
    vae = pyrovae.VAE(x_dim, z_dim=x_dim, likelihood="normal", scale=1.0, decoder=Identity(), encoder=nn.Identity())
    guide = AutoNormal(vae.model, create_plates=vae.data_plate, init_scale=0.5)
    empty = Split(torch.zeros(0, x_dim))
    data = Dataset("gauss", Split(x), empty, empty, (1, 1, x_dim), 0)
    fit(vae.model, guide, data, TrainConfig(epochs=150, batch_size=8, lr=0.05, lr_decay=0.97, seed=0),
        verbose=False)  # fmt: skip
    locs = pyro.param("AutoNormal.locs.z").detach()
    assert locs.shape == (n, x_dim)
    error = (locs - x / 2).abs()  # at rows never trained: |x| / 2, 0.55 on average, up to 2.4
    assert error.mean() < 0.1 and error.max() < 0.4


@pytest.mark.parametrize("settings", [{"jit": True}, {"compile": "aot_eager"}, {"own_functions": True}])
def test_fit_refuses_per_point_parameters_it_cannot_give_the_rows(settings):
    """A step that cannot pass the minibatch's rows (JIT, compile, or a model and guide without a subsample keyword)
    would read and update the first rows' locations at every step, silently: fit refuses it, naming the
    parameters; the amortized guide of the same VAE trains under the same settings."""
    vae = pyrovae.VAE(2, z_dim=2, likelihood="normal", scale=1.0, decoder=Identity(), encoder=nn.Identity())
    guide = AutoNormal(vae.model, create_plates=vae.data_plate, init_scale=0.5)
    model = vae.model
    if settings.pop("own_functions", False):
        autoguide = guide
        model = lambda x, num_data=None: vae.model(x, num_data)  # noqa: E731
        guide = lambda x, num_data=None: autoguide(x, num_data)  # noqa: E731
    empty = Split(torch.zeros(0, 2))
    data = Dataset("gauss", Split(torch.randn(32, 2)), empty, empty, (1, 1, 2), 0)
    config = TrainConfig(epochs=1, batch_size=8, seed=0, **settings)
    with pytest.raises(ValueError, match=r"\['AutoNormal.locs.z', 'AutoNormal.scales.z'\] are per data point"):
        fit(model, guide, data, config, verbose=False)
    pyro.clear_param_store()
    amortized = pyrovae.VAE(2, z_dim=2, likelihood="normal", scale=1.0, hidden=(4,))
    assert len(fit(amortized.model, amortized.guide, data, config, verbose=False)) == 1
