"""Pyro's JIT ``Trace_ELBO`` compiled with ``torch.compile`` instead of ``torch.jit.trace``.

Pyro's JIT ELBOs hand a pure tensor computation of the loss to ``pyro.ops.jit.trace``: a Python function of the
data that runs the guide and the model under Pyro's effect handlers and adds up the log-densities of their sites,
with no host read. TorchScript, which that function goes to, is deprecated; ``torch.compile`` run directly on Pyro's
Python breaks its graph at every effect handler and recompiles as the traces change. The ELBO here runs that same
function once per set of arguments, with Pyro's Python, and record the tensor operations it performs as an FX graph
(``torch.fx.experimental.proxy_tensor.make_fx``): a function of the parameters' unconstrained values and the data,
with the latents' noise drawn inside it. ``torch.compile`` then compiles that graph, forward and backward (AOT
autograd), by default with inductor, which fuses the elementwise work of the log-densities and their gradients.

* **The same maths as eager Pyro, on the same noise.** The graph draws its noise with the random operations the
  eager run draws it with, and inductor is told to keep them (``fallback_random``), so a compiled step takes the
  same draws from torch's global generator as an eager one: the same loss and gradient, up to the order of
  floating-point sums in the fused kernels. Recording the graph runs Pyro's Python once with the generator saved
  and restored around it (``torch.random.fork_rng``), so compiling consumes no noise either.
* **Fixed shapes, one graph per shape.** Like ``torch.jit.trace``, a recorded graph holds the shapes and the Python
  numbers of the run it was recorded from (the minibatch size, ``num_data``, a KL weight). A call with tensors of
  other shapes, or other keyword arguments, records and compiles another graph: a training epoch whose last
  minibatch is smaller compiles a second graph, once, and keeps every row.
* **Recording runs the model.** The two runs that find the parameters and record the graph update whatever the
  model and guide update as they run, such as BatchNorm's running statistics; :func:`pyrovae.fit` refuses modules
  with running statistics under ``compile``.
* **Parameters by name.** The graph takes the tensors Pyro's param store holds for the parameters the loss
  declares (found by running it once, as ``pyro.ops.jit`` does), so modules are not wrapped and their parameter
  names, and a checkpoint's, are those of the eager model.

:class:`CompiledTrace_ELBO` is :class:`pyrovae.infer.jit.JitTrace_ELBO` with its loss built by
``pyro.ops.jit.trace`` pointed, for the duration of the call, at :func:`compiled_trace`. Pyro's other JIT ELBOs do
not record: ``JitTraceMeanField_ELBO`` reads its loss as a Python number (``torch_item``), which a trace bakes in as
a constant, and ``JitTraceEnum_ELBO`` (M2's) drops the enumerated values of probability zero with ``masked_select``,
whose shape depends on the data; ``torch.jit.trace`` records them with a warning, ``make_fx`` refuses them.

**References**

[1] PyTorch 2: Faster Machine Learning Through Dynamic Python Bytecode Transformation and Graph Compilation,
J. Ansel et al., ASPLOS 2024.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pyro
import pyro.ops.jit
import pyro.poutine as poutine
import torch
from pyro.ops.jit import _hashable_args_kwargs
from torch.fx.experimental.proxy_tensor import make_fx

from pyrovae.infer import jit

#: the ``torch.compile`` backend of the compiled ELBOs unless one is given
BACKEND = "inductor"


class CompiledLoss:
    """What ``pyro.ops.jit.trace`` makes of ``fn``, compiled with ``torch.compile``: called like ``fn``, it records
    ``fn``'s tensor operations once per key (the number of positional arguments, the keyword arguments, and the
    shapes, dtypes and devices of the tensor arguments) and runs the compiled graph of that key.

    :param fn: a function of tensors and keyword arguments that reads its parameters with ``pyro.param``.
    :param str backend: the ``torch.compile`` backend (``"inductor"``; ``"aot_eager"`` runs the recorded graph
        with eager kernels, without generating any code, which checks the recording quickly).
    """

    def __init__(self, fn: Callable, backend: str = BACKEND) -> None:
        self.fn, self.backend = fn, backend
        self.compiled: dict = {}  # key -> (parameter names, compiled graph)

    def __call__(self, *args, **kwargs):
        shapes = tuple((a.shape, a.dtype, a.device) for a in args if torch.is_tensor(a))
        key = (_hashable_args_kwargs(args, kwargs), shapes)
        if key not in self.compiled:
            self.compiled[key] = self._compile(args, kwargs)
        names, graph = self.compiled[key]
        return graph([pyro.param(name).unconstrained() for name in names], *args)

    def _compile(self, args: tuple, kwargs: dict) -> tuple[list[str], Callable]:
        cuda = sorted({a.device for a in args if torch.is_tensor(a) and a.is_cuda}, key=str)
        with torch.random.fork_rng(devices=cuda), pyro.validation_enabled(False):
            with poutine.block(), poutine.trace(param_only=True) as capture:
                self.fn(*args, **kwargs)
            names = list(capture.trace.nodes)

            def loss(params: list[torch.Tensor], *args):  # reads the same tensors through pyro.param
                return self.fn(*args, **kwargs)

            graph = make_fx(loss)([pyro.param(name).unconstrained() for name in names], *args)
        options = {"fallback_random": True} if self.backend == "inductor" else None
        return names, torch.compile(graph, backend=self.backend, options=options)


@contextmanager
def compiled_trace(backend: str) -> Iterator[None]:
    """``pyro.ops.jit.trace`` makes a :class:`CompiledLoss` in the block (Pyro's JIT ELBOs look it up when they
    build their loss, on their first call); the attribute is given back after it."""
    pyro_trace = pyro.ops.jit.trace

    def trace(fn=None, ignore_warnings=False, jit_options=None):
        return CompiledLoss(fn, backend) if fn is not None else lambda fn: CompiledLoss(fn, backend)

    pyro.ops.jit.trace = trace
    try:
        yield
    finally:
        pyro.ops.jit.trace = pyro_trace


class CompiledTrace_ELBO(jit.JitTrace_ELBO):
    """:class:`pyrovae.infer.jit.JitTrace_ELBO` (Pyro's ``Trace_ELBO`` as a tensor computation, no host read)
    compiled with ``torch.compile`` (:class:`CompiledLoss`) instead of ``torch.jit.trace``.

    :param str backend: the ``torch.compile`` backend (default :data:`BACKEND`); the other arguments are
        ``JitTrace_ELBO``'s (``num_particles``, ``vectorize_particles``, ...).
    """

    def __init__(self, *args, backend: str = BACKEND, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.backend = backend

    def loss_and_surrogate_loss(self, model, guide, *args, **kwargs):
        """Pyro's loss and surrogate loss, from the compiled graph of this model, guide and arguments."""
        with compiled_trace(self.backend):
            return super().loss_and_surrogate_loss(model, guide, *args, **kwargs)
