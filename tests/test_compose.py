"""The VAE's model and guide inside user Pyro programs."""

import pyro
import pyro.poutine as poutine
import torch
from pyro.infer import SVI, Predictive, Trace_ELBO
from pyro.optim import Adam

from tests.common import tiny_vae


def test_two_prefixed_vaes_in_one_program_train_together():
    left, right = tiny_vae(prefix="left"), tiny_vae(prefix="right")
    x = torch.bernoulli(torch.full((10, 12), 0.3))

    def model(x):
        left.model(x[:, :6])
        right.model(x[:, 6:])

    def guide(x):
        left.guide(x[:, :6])
        right.guide(x[:, 6:])

    trace = poutine.trace(model).get_trace(x)
    assert {"left/z", "left/x", "right/z", "right/x", "left/data", "right/data"} <= set(trace.nodes)
    before = {k: v.detach().clone() for k, v in pyro.get_param_store().named_parameters()}
    poutine.trace(guide).get_trace(x)
    svi = SVI(model, guide, Adam({"lr": 0.05}), Trace_ELBO())
    for _ in range(5):
        svi.step(x)
    store = dict(pyro.get_param_store().named_parameters())
    for prefix in ("left/encoder", "right/encoder", "left/decoder", "right/decoder"):
        names = [n for n in store if n.startswith(prefix + "$$$")]
        assert names, prefix
        if "decoder" in prefix:
            assert any(not torch.equal(before[n], store[n]) for n in names), prefix


def test_condition_on_z_decodes_the_given_codes():
    vae = tiny_vae(z_dim=2)
    z = torch.randn(4, 2)
    trace = poutine.trace(poutine.condition(vae.model, data={"z": z})).get_trace(None, num_data=4)
    assert torch.equal(trace.nodes["z"]["value"], z)
    assert torch.allclose(trace.nodes["x"]["fn"].base_dist.logits, vae.decoder(z))


def test_condition_on_x_equals_passing_x():
    vae = tiny_vae()
    x = torch.bernoulli(torch.full((3, 6), 0.5))
    z = torch.randn(3, 2)
    conditioned = poutine.trace(poutine.condition(vae.model, data={"x": x, "z": z})).get_trace(None, num_data=3)
    direct = poutine.trace(poutine.condition(vae.model, data={"z": z})).get_trace(x)
    assert torch.allclose(conditioned.log_prob_sum(), direct.log_prob_sum())


def test_predictive_shapes():
    vae = tiny_vae(x_dim=6, z_dim=2)
    prior = Predictive(vae.model, num_samples=5)(None, num_data=3)
    assert prior["z"].shape == (5, 3, 2) and prior["x"].shape == (5, 3, 6)
    x = torch.bernoulli(torch.full((4, 6), 0.5))
    codes = Predictive(vae.guide, num_samples=7)(x)["z"]
    assert codes.shape == (7, 4, 2)
    recon = Predictive(vae.model, posterior_samples={"z": codes})(None, num_data=4)
    assert recon["x"].shape == (7, 4, 6)
