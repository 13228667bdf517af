import json

import pyro.poutine as poutine
import pytest
import torch
import torch.nn.functional as F

from pyrovae.models.base import ObservedModel, standard_normal
from pyrovae.models.likelihoods import MIN_SCALE, PixelScale
from pyrovae.models.registry import MODELS, model_from_config
from tests.common import binary

#: a small model of each kind, by the settings its config holds
SMALL = {
    "vae": {"z_dim": 2, "hidden": [8]},
    "autoencoder": {"z_dim": 2, "hidden": [8]},
    "iaf": {"z_dim": 2, "hidden": [8], "flow_depth": 1},
    "vamp": {"z_dim": 2, "hidden": [8], "pseudo_inputs": 3},
    "two-layer": {"z1_dim": 3, "z2_dim": 2, "hidden1": [8], "hidden2": [4]},
    "ssvae": {"num_classes": 3, "z_dim": 2, "hidden": [8]},
    "adgm": {"num_classes": 3, "z_dim": 2, "hidden": [8], "a_dim": 2},
}


def small(kind: str, **kwargs) -> ObservedModel:
    return model_from_config({"model": kind, "x_dim": 6, **SMALL[kind], **kwargs}, seed=0)


def test_the_standard_normal_prior():
    prior = standard_normal(4, 3, torch.device("cpu"))
    assert prior.batch_shape == (4,) and prior.event_shape == (3,)
    z = torch.randn(4, 3)
    expected = -0.5 * (z**2).sum(-1) - 1.5 * torch.log(torch.tensor(2 * torch.pi))
    assert torch.allclose(prior.log_prob(z), expected)


#: the models of images cut in quadrants (whole images in, site "y"), tested in test_baseline.py and test_cvae.py
QUADRANT_KINDS = ("cvae", "cvae-baseline")


def test_every_kind_is_a_model_of_the_registry():
    assert sorted(MODELS) == sorted([*SMALL, *QUADRANT_KINDS])
    assert all(issubclass(cls, ObservedModel) for cls in MODELS.values())


@pytest.mark.parametrize("kind", sorted(SMALL))
def test_every_model_names_its_sites_with_its_prefix_and_records_plain_settings(kind):
    model = small(kind, prefix="p")
    assert model.site("x") == "p/x" and small(kind).site("x") == "x"
    trace = poutine.trace(model.model).get_trace(binary(3, 6))
    sites = [name for name, site in trace.nodes.items() if site["type"] in ("sample", "param")]
    assert {"p/data", "p/x"} <= set(sites) and all(name.startswith("p/") for name in sites)
    assert json.loads(json.dumps(model.config)) == model.config and model.config["model"] == kind


@pytest.mark.parametrize("kind", sorted(SMALL))
def test_every_model_checks_its_data_alike(kind):
    model = small(kind)
    with pytest.raises(ValueError, match=r"shape \(batch, 6\)"):
        model.model(torch.zeros(3, 5))
    with pytest.raises(ValueError, match=r"outside \{0, 1\}"):
        model.model(torch.full((3, 6), 0.5))
    with pytest.raises(ValueError, match="unknown likelihood"):
        small(kind, likelihood="poisson")


def test_the_gaussian_scale_is_fixed_per_pixel_or_given_by_the_decoder():
    """scale=None learns one per coordinate (VAE family); a fixed number is used as it is; the SSVAE's decoder
    gives the mean and the raw scale, sigma = softplus(raw) + MIN_SCALE."""
    learned, fixed = small("vae", likelihood="normal"), small("two-layer", likelihood="normal", scale=0.5)
    assert isinstance(learned.scale, PixelScale) and fixed.scale == 0.5
    assert learned.output_dim == fixed.output_dim == 6 and small("vae").scale is None
    ssvae = small("ssvae", likelihood="normal")
    z, y = torch.randn(4, 2), torch.tensor([0, 1, 2, 0])
    assert ssvae.scale is None and ssvae.output_dim == 12 == ssvae.decoder(z, y).shape[-1]
    loc, raw = ssvae.decoder(z, y).split(6, dim=-1)
    p = ssvae.observation(z, y).base_dist
    assert torch.allclose(p.loc, loc) and torch.allclose(p.scale, F.softplus(raw) + MIN_SCALE)
    with pytest.raises(ValueError, match="it needs likelihood='normal'"):
        small("vae", scale=0.5)
    with pytest.raises(ValueError, match="scale must be a positive number"):
        small("two-layer", likelihood="normal", scale=0.0)
