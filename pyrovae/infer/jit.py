"""Pyro's JIT-compiled ELBOs, adjusted for a training loop that runs ahead of the device.

In pyro-ppl 1.9.2, ``JitTraceMeanField_ELBO.differentiable_loss`` stores its compiled function as
``_differentiable_loss`` but checks ``_loss_and_surrogate_loss`` to decide whether to build it, so it builds and
traces a new one on **every** call, which makes a training step several times slower than ``JitTrace_ELBO``'s on
the same VAE (the figure is on the documentation's results page). :class:`JitTraceMeanField_ELBO` here compiles
once, and is otherwise Pyro's class.

``JitTrace_ELBO.differentiable_loss`` passes the compiled loss through ``pyro.util.warn_if_nan``, which reads it on
the host and registers a backward hook that reads its gradient too: two device synchronisations per training
step, which on a GPU make the host wait for the device's queue to drain instead of launching the next kernels.
:class:`JitTrace_ELBO` here returns the same tensor without them; :func:`pyrovae.fit` checks the epoch's summed
loss for NaN or infinity instead, once per epoch.
"""

from __future__ import annotations

import pyro.infer
import torch


class JitTraceMeanField_ELBO(pyro.infer.JitTraceMeanField_ELBO):
    """Pyro's ``JitTraceMeanField_ELBO`` (analytic KL where available, compiled with ``torch.jit.trace``) that
    compiles once per set of keyword arguments instead of on every call."""

    def differentiable_loss(self, model, guide, *args, **kwargs):
        """Pyro's compiled loss, then marks it as built so that the next call reuses it."""
        loss = super().differentiable_loss(model, guide, *args, **kwargs)
        self._loss_and_surrogate_loss = self._differentiable_loss  # the attribute Pyro's check looks at
        return loss


class JitTrace_ELBO(pyro.infer.JitTrace_ELBO):
    """Pyro's ``JitTrace_ELBO`` whose :meth:`differentiable_loss` does not read the loss on the host (no NaN
    warning, no device synchronisation): check the loss yourself where a sync costs nothing, as
    :func:`pyrovae.fit` does once per epoch."""

    def differentiable_loss(self, model, guide, *args, **kwargs) -> torch.Tensor:
        """The compiled loss, whose gradient is the ELBO's surrogate gradient, as a tensor not read on the host."""
        loss, surrogate_loss = self.loss_and_surrogate_loss(model, guide, *args, **kwargs)
        return loss + (surrogate_loss - surrogate_loss.detach())
