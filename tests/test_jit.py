"""pyrovae.jit.JitTraceMeanField_ELBO: compiled once, and the same loss as the eager TraceMeanField_ELBO."""

import pyro
import torch
from pyro.infer import TraceMeanField_ELBO

from pyrovae.jit import JitTraceMeanField_ELBO
from tests.common import tiny_vae

X = torch.tensor([[1.0, 0, 1, 1, 0, 0], [0, 1, 1, 0, 1, 0], [1, 1, 0, 0, 0, 1]])


def test_compiles_once_and_matches_the_eager_loss():
    pyro.clear_param_store()
    vae = tiny_vae()
    model, guide = vae.model, vae.guide  # one bound method each: Pyro keys compiled functions by their ids
    elbo = JitTraceMeanField_ELBO(ignore_jit_warnings=True)
    elbo.differentiable_loss(model, guide, X, num_data=30)
    compiled = elbo._differentiable_loss
    for seed in range(3):
        pyro.set_rng_seed(seed)
        loss = elbo.differentiable_loss(model, guide, X, num_data=30)
        pyro.set_rng_seed(seed)
        eager = TraceMeanField_ELBO().differentiable_loss(model, guide, X, num_data=30)
        torch.testing.assert_close(loss, eager)
    assert elbo._differentiable_loss is compiled and len(compiled.compiled) == 1  # one trace, reused
