"""pyrovae.infer.jit: JitTraceMeanField_ELBO compiled once, and the same loss as the eager TraceMeanField_ELBO;
JitTrace_ELBO the eager loss and gradient, with no host read in a training step; every JIT ELBO traces without
torch's deprecation warning."""

import warnings
from functools import partial

import pyro
import pytest
import torch
from pyro.infer import TraceMeanField_ELBO

from pyrovae import SSVAE, TraceIWAE_ELBO
from pyrovae.infer.jit import TRACE_DEPRECATION, JitTrace_ELBO, JitTraceEnum_ELBO, JitTraceMeanField_ELBO
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


def loss_and_grads(elbo, model, guide, params, seed):
    """``elbo``'s differentiable loss of ``model``/``guide`` on ``X`` with the global RNG seeded ``seed``, and the
    gradients of ``params``."""
    pyro.set_rng_seed(seed)
    loss = elbo.differentiable_loss(model, guide, X, num_data=30)
    return loss.detach(), torch.autograd.grad(loss, params)


@pytest.mark.filterwarnings("ignore:`torch.jit.trace` is deprecated:FutureWarning")  # Pyro's class, compared
def test_jit_trace_elbo_is_the_eager_loss_and_gradient_and_pyros_gradient_is_twice_that():
    """Once traced, the JIT ELBO draws the same noise as the eager ``Trace_ELBO``, so on the same seed it gives the
    same loss and gradient (to 1e-5: TorchScript runs the same operations, but may reorder sums). Pyro's own
    JitTrace_ELBO returns ``loss + (surrogate - surrogate.detach())`` with both differentiable: twice the gradient."""
    vae = tiny_vae()
    model, guide = vae.model, vae.guide
    params = list(trained_params(model, guide, X, num_data=30).values())
    eager = loss_and_grads(pyro.infer.Trace_ELBO(), model, guide, params, seed=1)
    for elbo, factor in ((JitTrace_ELBO(ignore_jit_warnings=True), 1),
                         (pyro.infer.JitTrace_ELBO(ignore_jit_warnings=True), 2)):  # fmt: skip
        elbo.differentiable_loss(model, guide, X, num_data=30)  # traces
        loss, grads = loss_and_grads(elbo, model, guide, params, seed=1)
        torch.testing.assert_close(loss, eager[0], rtol=1e-5, atol=1e-5)
        for g, h in zip(grads, eager[1], strict=True):
            torch.testing.assert_close(g, factor * h, rtol=1e-5, atol=1e-5)


def jit_elbos():
    """Each JIT ELBO pyrovae uses, Pyro's class it adjusts, and a model, guide and arguments to trace it on."""
    vae, ssvae = tiny_vae(), SSVAE(6, num_classes=3, z_dim=2, hidden=(8,))
    return [
        (JitTrace_ELBO(ignore_jit_warnings=True), pyro.infer.JitTrace_ELBO(ignore_jit_warnings=True), vae),
        (JitTraceMeanField_ELBO(ignore_jit_warnings=True), pyro.infer.JitTraceMeanField_ELBO(ignore_jit_warnings=True),
         vae),
        (JitTraceEnum_ELBO(max_plate_nesting=1, ignore_jit_warnings=True),
         pyro.infer.JitTraceEnum_ELBO(max_plate_nesting=1, ignore_jit_warnings=True), ssvae),
    ]  # fmt: skip


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("index", range(3), ids=["trace", "meanfield", "enum"])
def test_pyrovae_jit_elbos_trace_without_a_warning_where_pyros_warn(index):
    """torch 2.14 deprecates torch.jit.trace with a FutureWarning at every trace: Pyro's classes raise it (an error
    here), pyrovae's ignore it, and raise no other warning, when tracing and after."""
    ours, pyros, net = jit_elbos()[index]
    model, guide = net.model, net.guide
    with pytest.warns(FutureWarning, match=TRACE_DEPRECATION):
        pyros.differentiable_loss(model, guide, X, num_data=30)
    for _ in range(2):
        ours.differentiable_loss(model, guide, X, num_data=30).backward()


def test_only_the_deprecation_is_ignored_and_only_while_tracing():
    """A model's own FutureWarning still shows while the ELBO traces; the deprecation raised outside a JIT ELBO
    (here, by another torch.jit.trace) is left alone."""
    vae = tiny_vae()

    def model(x, num_data=None):
        warnings.warn("the model's own warning", FutureWarning, stacklevel=1)
        return vae.model(x, num_data)

    with pytest.warns(FutureWarning, match="the model's own warning"):
        JitTrace_ELBO(ignore_jit_warnings=True).differentiable_loss(model, vae.guide, X, num_data=30)
    with pytest.warns(FutureWarning, match=TRACE_DEPRECATION):
        torch.jit.trace(torch.sin, torch.zeros(2))


@pytest.mark.filterwarnings("ignore:`torch.jit.trace` is deprecated:FutureWarning")  # Pyro's class, compared
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
