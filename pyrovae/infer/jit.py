"""Pyro's JIT-compiled ELBOs, adjusted for a training loop that runs ahead of the device.

In pyro-ppl 1.9.2, ``JitTraceMeanField_ELBO.differentiable_loss`` stores its compiled function as
``_differentiable_loss`` but checks ``_loss_and_surrogate_loss`` to decide whether to build it, so it builds and
traces a new one on **every** call, which makes a training step several times slower than ``JitTrace_ELBO``'s on
the same VAE (the figure is on the documentation's results page). :class:`JitTraceMeanField_ELBO` here compiles
once, and is otherwise Pyro's class.

**Quiet tracing.** ``torch.jit.trace``, which Pyro's JIT ELBOs call (through ``pyro.ops.jit.trace``) the first time
they see a set of arguments, is deprecated in torch 2.14 and says so with a ``FutureWarning`` at every trace. Every
JIT ELBO here (:class:`JitTrace_ELBO`, :class:`JitTraceMeanField_ELBO` and :class:`JitTraceEnum_ELBO`, the one
pyrovae's semi-supervised training uses) ignores that warning, and that warning alone (its category and message,
:func:`trace_deprecation_ignored`), during the calls that trace; other warnings, and the same one raised by other
code, are left as they are. ``ignore_jit_warnings=True`` (Pyro's option) ignores the ``TracerWarning`` s that
tracing Pyro's Python raises (tensors converted to Python numbers, ``torch.tensor`` constants).
:mod:`pyrovae.infer.compiled` compiles the same losses with ``torch.compile`` instead.

``JitTrace_ELBO.differentiable_loss`` passes the compiled loss through ``pyro.util.warn_if_nan``, which reads it on
the host and registers a backward hook that reads its gradient too: two device synchronisations per training
step, which on a GPU make the host wait for the device's queue to drain instead of launching the next kernels.
:class:`JitTrace_ELBO` here returns the loss without them; :func:`pyrovae.fit` checks the epoch's summed
loss for NaN or infinity instead, once per epoch. Pyro's returns ``loss + (surrogate - surrogate.detach())`` with
both terms differentiable, so that its gradient is **twice** the ELBO's (``Trace_ELBO.differentiable_loss`` adds
the loss as a Python number); here the loss is detached, so the gradient is the ELBO's surrogate gradient, the
same as the eager ``Trace_ELBO``'s on the same noise.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pyro.infer
import torch
from pyro.ops.jit import _hashable_args_kwargs

#: the message of the ``FutureWarning`` that every ``torch.jit.trace`` raises in torch 2.14 (a regular expression)
TRACE_DEPRECATION = r"`torch\.jit\.trace` is deprecated"


@contextmanager
def trace_deprecation_ignored() -> Iterator[None]:
    """Ignore ``torch.jit.trace``'s deprecation (a ``FutureWarning`` whose message matches
    :data:`TRACE_DEPRECATION`) in the block; every other warning is shown or raised as the filters say."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=TRACE_DEPRECATION, category=FutureWarning)
        yield


class QuietTracing:
    """A mixin for Pyro's JIT ELBOs: the calls that trace (the first with a model, guide and set of keyword
    arguments, as Pyro keys its compiled functions) run under :func:`trace_deprecation_ignored`; the others change
    no warning filter (entering ``warnings.catch_warnings`` resets Python's record of warnings already shown, so a
    block around every step would repeat other code's once-only warnings)."""

    def _quietly(self, method: Callable, model: Callable, guide: Callable, *args, **kwargs):
        """``method(model, guide, *args, **kwargs)``, under :func:`trace_deprecation_ignored` the first time."""
        seen = self.__dict__.setdefault("_traced_keys", set())
        key = (id(model), id(guide), _hashable_args_kwargs(args, kwargs))
        if key in seen:
            return method(model, guide, *args, **kwargs)
        with trace_deprecation_ignored():
            result = method(model, guide, *args, **kwargs)
        seen.add(key)
        return result

    def loss(self, model, guide, *args, **kwargs):
        return self._quietly(super().loss, model, guide, *args, **kwargs)

    def loss_and_grads(self, model, guide, *args, **kwargs):
        return self._quietly(super().loss_and_grads, model, guide, *args, **kwargs)

    def differentiable_loss(self, model, guide, *args, **kwargs):
        return self._quietly(super().differentiable_loss, model, guide, *args, **kwargs)


class JitTraceEnum_ELBO(QuietTracing, pyro.infer.JitTraceEnum_ELBO):
    """Pyro's ``JitTraceEnum_ELBO`` (discrete sites summed out by enumeration, compiled with ``torch.jit.trace``),
    tracing without the deprecation warning (:class:`QuietTracing`)."""


class JitTraceMeanField_ELBO(QuietTracing, pyro.infer.JitTraceMeanField_ELBO):
    """Pyro's ``JitTraceMeanField_ELBO`` (analytic KL where available, compiled with ``torch.jit.trace``) that
    compiles once per set of keyword arguments instead of on every call, without the deprecation warning
    (:class:`QuietTracing`)."""

    def differentiable_loss(self, model, guide, *args, **kwargs):
        """Pyro's compiled loss, then marks it as built so that the next call reuses it."""
        loss = super().differentiable_loss(model, guide, *args, **kwargs)
        self._loss_and_surrogate_loss = self._differentiable_loss  # the attribute Pyro's check looks at
        return loss


class JitTrace_ELBO(QuietTracing, pyro.infer.JitTrace_ELBO):
    """Pyro's ``JitTrace_ELBO`` whose :meth:`differentiable_loss` does not read the loss on the host (no NaN
    warning, no device synchronisation): check the loss yourself where a sync costs nothing, as
    :func:`pyrovae.fit` does once per epoch. Traces without the deprecation warning (:class:`QuietTracing`)."""

    def differentiable_loss(self, model, guide, *args, **kwargs) -> torch.Tensor:
        """The compiled loss, whose gradient is the ELBO's surrogate gradient, as a tensor not read on the host."""
        loss, surrogate_loss = self._quietly(self.loss_and_surrogate_loss, model, guide, *args, **kwargs)
        return loss.detach() + (surrogate_loss - surrogate_loss.detach())
