"""pyrovae.infer.compiled: the ELBO compiled with torch.compile gives the eager loss and gradient on the same noise,
consumes no noise to compile, compiles once per shape, and leaves the parameters' names alone."""

import pyro
import pytest
import torch
from pyro.infer import Trace_ELBO

from pyrovae.infer.compiled import CompiledTrace_ELBO
from pyrovae.train.step import trained_params
from tests.common import tiny_vae

X = torch.tensor([[1.0, 0, 1, 1, 0, 0], [0, 1, 1, 0, 1, 0], [1, 1, 0, 0, 0, 1], [0, 0, 1, 1, 1, 0]])

#: inductor generates and builds C++ for the graph (seconds to a minute on a CPU); aot_eager runs the same recorded
#: graph, forward and backward, with eager kernels, which tests the recording and the wiring in about a second
BACKENDS = ["aot_eager", pytest.param("inductor", marks=pytest.mark.slow)]


def losses_and_grads(elbo, vae, batches):
    """``elbo``'s loss and the gradients of ``vae``'s parameters on each of ``batches`` in turn, the global RNG seeded
    once before the first."""
    model, guide = vae.model, vae.guide  # bound once: Pyro keys its compiled functions by their ids
    params = list(trained_params(model, guide, batches[0], num_data=30).values())
    pyro.set_rng_seed(5)
    results = []
    for x in batches:
        loss = elbo.differentiable_loss(model, guide, x, num_data=30)
        results.append((loss.detach(), torch.autograd.grad(loss, params)))
    return results


@pytest.mark.parametrize("backend", BACKENDS)
def test_compiled_loss_and_gradients_are_the_eager_ones_on_the_same_noise(backend):
    """From the same seed, the compiled ELBO's losses and gradients on a batch of 4, the same batch again and a batch
    of 2 (a second graph) are eager Trace_ELBO's: compiling draws no noise and the graph draws what eager Pyro draws.
    Tolerance rtol 1e-5, atol 1e-5: inductor's fused kernels add in another order (measured: 1e-7 relative)."""
    vae = tiny_vae()
    batches = [X, X, X[:2]]
    elbo = CompiledTrace_ELBO(backend=backend)
    compiled = losses_and_grads(elbo, vae, batches)
    eager = losses_and_grads(Trace_ELBO(), vae, batches)
    for (loss, grads), (eager_loss, eager_grads) in zip(compiled, eager, strict=True):
        torch.testing.assert_close(loss, eager_loss, rtol=1e-5, atol=1e-5)
        for g, h in zip(grads, eager_grads, strict=True):
            torch.testing.assert_close(g, h, rtol=1e-5, atol=1e-5)
    assert len(elbo._loss_and_surrogate_loss.compiled) == 2  # one graph per batch shape


def test_the_modules_and_their_parameter_names_are_left_alone():
    """The compiled graph reads the param store's tensors: the modules are not wrapped (no ``_orig_mod``), and the
    store holds the modules' own parameters under their usual names."""
    vae = tiny_vae()
    names = [name for name, _ in vae.named_parameters()]
    CompiledTrace_ELBO(backend="aot_eager").differentiable_loss(vae.model, vae.guide, X, num_data=30)
    assert [name for name, _ in vae.named_parameters()] == names
    store = pyro.get_param_store()
    expected = {f"{net}$$${name}": p for net in ("encoder", "decoder")
                for name, p in getattr(vae, net).named_parameters()}  # fmt: skip
    assert set(store.keys()) == set(expected)
    assert all(store[name] is p for name, p in expected.items())
