"""pyrovae.infer.jit: JitTraceMeanField_ELBO compiled once, and the same loss as the eager TraceMeanField_ELBO;
JitTrace_ELBO the same loss as Pyro's, with no host read in a training step."""

from functools import partial

import pyro
import pytest
import torch
from pyro.infer import TraceMeanField_ELBO

from pyrovae import TraceIWAE_ELBO
from pyrovae.infer.jit import JitTrace_ELBO, JitTraceMeanField_ELBO
from pyrovae.train.step import AdamStep, trained_params
from tests.common import HostReads, tiny_vae

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


def test_jit_trace_elbo_is_pyros_loss_and_gradient():
    vae = tiny_vae()
    model, guide = vae.model, vae.guide
    results = []
    for elbo in (JitTrace_ELBO(ignore_jit_warnings=True), pyro.infer.JitTrace_ELBO(ignore_jit_warnings=True)):
        pyro.clear_param_store()
        pyro.set_rng_seed(0)
        vae.zero_grad()
        loss = elbo.differentiable_loss(model, guide, X, num_data=30)
        loss.backward()
        results.append((loss.detach(), [p.grad.clone() for p in vae.parameters()]))
    (loss, grads), (pyro_loss, pyro_grads) = results
    torch.testing.assert_close(loss, pyro_loss)
    for g, h in zip(grads, pyro_grads, strict=True):
        torch.testing.assert_close(g, h)


@pytest.mark.parametrize("elbo", [JitTrace_ELBO(ignore_jit_warnings=True), TraceIWAE_ELBO(num_particles=3)],
                         ids=["jit", "iwae"])  # fmt: skip
def test_a_training_step_never_reads_a_value_on_the_host(elbo):
    """pyrovae.fit's step (loss, backward, fused Adam) with the compiled ELBO or the IWAE objective makes no
    host read, so on a GPU it queues its kernels without waiting for the device; Pyro's JitTrace_ELBO makes two
    (warn_if_nan on the loss and on its gradient)."""
    pyro.clear_param_store()
    vae = tiny_vae()
    model, guide = vae.model, vae.guide
    reads = []
    for objective in (elbo, pyro.infer.JitTrace_ELBO(ignore_jit_warnings=True)):
        step = AdamStep(trained_params(model, guide, X, num_data=30), partial(objective.differentiable_loss, model,
                        guide), 1e-3)  # fmt: skip
        step(X, num_data=30)  # compiles
        with pyro.validation_enabled(False), HostReads() as host:
            step(X, num_data=30)
        reads.append(host.count)
    assert reads == [0, 2]
