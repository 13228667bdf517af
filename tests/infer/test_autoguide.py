import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO
from pyro.infer.autoguide import AutoGuideList, AutoNormal

import pyrovae
from pyrovae import TrainConfig, fit, load_dataset
from pyrovae.infer.autoguide import AmortizedGuide
from tests.common import binary, tiny_vae


def tempered(vae):
    """A VAE whose decoder logits share a global temperature (a site outside the data plate)."""

    def model(x, num_data=None, subsample=None):
        vae.register("decoder")
        temperature = pyro.sample("temperature", dist.LogNormal(0.0, 0.5))
        with vae.data_plate(x, num_data, subsample=subsample):
            z = pyro.sample("z", vae.prior(len(x), x.device))
            pyro.sample("x", dist.Bernoulli(logits=vae.decoder(z) / temperature).to_event(1), obs=x)

    guide = AutoGuideList(model, create_plates=vae.data_plate)
    guide.append(AutoNormal(poutine.block(model, expose=["temperature"])))
    guide.append(AmortizedGuide(model, vae.guide))
    return model, guide


def test_a_vae_guide_is_a_part_of_an_autoguide_list():
    """One "data" plate in the guide trace (the list's), the latents returned by site, and the guide's z drawn by
    the VAE's encoder inside it, scaled as the model's."""
    vae, x = tiny_vae(x_dim=5), binary(6)
    model, guide = tempered(vae)
    trace = poutine.trace(guide).get_trace(x, num_data=30, subsample=torch.arange(6, 12))
    latents = guide(x, num_data=30)
    assert set(latents) == {"temperature", "z"} and latents["z"].shape == (6, 2)
    assert [f.name for f in trace.nodes["z"]["cond_indep_stack"]] == ["data"]
    assert trace.nodes["data"]["value"].tolist() == list(range(6, 12))
    assert trace.nodes["z"]["scale"] == 5.0 and trace.nodes["temperature"]["scale"] == 1.0
    assert isinstance(vae, torch.nn.Module) and any(m is vae for m in guide.modules())  # moved and saved with it


def test_used_alone_it_is_the_vae_guide():
    """Alone, it opens the model's plate (here over all rows: no random subsample) and runs the guide in it."""
    vae, x = tiny_vae(x_dim=5), binary(6)
    amortized = AmortizedGuide(vae.model, vae.guide)
    amortized(x)  # its first call traces the model to find the plates
    pyro.set_rng_seed(1)
    plain = Trace_ELBO().loss(vae.model, vae.guide, x)
    pyro.set_rng_seed(1)
    assert Trace_ELBO().loss(vae.model, amortized, x) == pytest.approx(plain, rel=1e-6)
    with pytest.raises(ValueError, match=r"the model has no plate 'rows' \(its plates: \['data'\]\)"):
        AmortizedGuide(vae.model, vae.guide, plate="rows")(x)


def test_fit_trains_a_global_latent_with_the_vae():
    data = load_dataset("digits")
    vae = pyrovae.VAE(data.x_dim, z_dim=4, hidden=(64,), seed=0)
    model, guide = tempered(vae)
    history = fit(model, guide, data, TrainConfig(epochs=4, lr=3e-3, seed=0), verbose=False)
    assert history[-1]["test_elbo"] > history[0]["test_elbo"] + 3
    temperature = guide.median(data.test.x)["temperature"]
    assert 0.2 < temperature < 5 and temperature != pytest.approx(1.0, abs=1e-3)  # learned, from its prior's median
