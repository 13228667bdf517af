r"""The importance-weighted bound (IWAE) as a Pyro ELBO, per data point.

For each data point :math:`x_n` of the data plate and :math:`k` reparameterized samples
:math:`z_{1n}, \dots, z_{kn} \sim q_\phi(z | x_n)` drawn in parallel (a particle ``pyro.plate``),

.. math::

    \log w_{in} = \log p_\theta(x_n, z_{in}) - \log q_\phi(z_{in} | x_n), \qquad
    \mathcal{L}_k(x_n) = \log \frac{1}{k} \sum_{i=1}^k w_{in}
                       = \operatorname{logsumexp}_i \log w_{in} - \log k .

:math:`\mathbb{E}[\mathcal{L}_k(x_n)]` is a lower bound on :math:`\log p(x_n)` that equals the ELBO for
:math:`k = 1`, never decreases with :math:`k` and tends to :math:`\log p(x_n)` (Burda et al. 2016). The
objective of a minibatch :math:`B` out of :math:`N` data points is
:math:`\frac{N}{|B|} \sum_{n \in B} \mathcal{L}_k(x_n)`: the data plate's subsample scale :math:`N/|B|`
is applied *outside* the log-mean-exp, so the minibatch loss is an unbiased estimate of
:math:`-\sum_{n=1}^N \mathbb{E}[\mathcal{L}_k(x_n)]`, as with ``Trace_ELBO``. Any other scale of a site
(``poutine.scale``, :class:`pyrovae.infer.kl_scale.KLScaleMessenger`'s :math:`\beta`) multiplies that site's
log-density inside :math:`\log w`.

Gradients are reparameterized: :math:`\nabla \mathcal{L}_k = \sum_i \tilde w_i \nabla \log w_i` with the
normalized weights :math:`\tilde w_i = w_i / \sum_j w_j`. With ``dreg=True`` the guide's parameters get the
doubly reparameterized estimator of Tucker et al. (2019) instead,

.. math:: \nabla_\phi \mathcal{L}_k \approx \sum_i \tilde w_i^2 \,
    \frac{\partial \log w_i}{\partial z_i} \frac{\partial z_i}{\partial \phi},

(the partial derivative in :math:`z` with :math:`\phi` held fixed), which has the same expectation, does
not lose its signal-to-noise ratio as :math:`k` grows, and is exactly zero when :math:`q` is the exact
posterior; the model's parameters keep :math:`\sum_i \tilde w_i \nabla_\theta \log p_\theta(x, z_i)`.

Note that ``pyro.infer.RenyiELBO(alpha=0)`` is *not* this objective in general: it applies the
log-mean-exp to the log-weights after the plate's scale (``N/|B|``) has multiplied them, so with
``num_data`` it computes :math:`\sum_n \log \frac1k \sum_i w_{in}^{N/|B|}` (a tempered average, not a
bound), and when some site lies outside the data plate it sums the data plate before the log-mean-exp,
giving the far looser joint bound of the whole batch (``tests/infer/test_iwae.py`` shows both).

**References**

[1] Importance Weighted Autoencoders, Y. Burda, R. Grosse and R. Salakhutdinov, ICLR 2016.

[2] Doubly Reparameterized Gradient Estimators for Monte Carlo Objectives, G. Tucker, D. Lawson, S. Gu and
    C. J. Maddison, ICLR 2019.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from pyro import poutine
from pyro.infer.elbo import ELBO
from pyro.infer.util import is_validation_enabled
from pyro.util import check_if_enumerated, check_model_guide_match, check_site_shape, warn_if_nan

from pyrovae.infer.traces import (
    compute_log_probs,
    data_plate_frame,
    outside_plate,
    per_datapoint_log_prob,
    replay_model,
    site_names,
    subsample_scale,
)

#: default name of the plate that indexes data points (``VAE.site("data")`` without prefix)
DATA_PLATE = "data"


class TraceIWAE_ELBO(ELBO):
    r"""The IWAE bound with ``num_particles`` importance samples per data point, as a Pyro ELBO.

    ``loss`` and ``differentiable_loss`` return :math:`-\frac{N}{|B|}\sum_{n \in B} \mathcal{L}_k(x_n)`
    (see :mod:`pyrovae.infer.iwae`), ``loss_and_grads`` also back-propagates it, so
    ``SVI(model, guide, optim, TraceIWAE_ELBO(num_particles=5))`` trains an IWAE. The particles are always
    vectorized (an outermost ``pyro.plate("num_particles_vectorized", k)``, as in Pyro's ELBOs), which needs
    static model and guide structure.

    Every sample site of the model and the guide must lie in the data plate (global latent variables have no
    per-datapoint bound: ``NotImplementedError``); the guide must propose exactly the model's latent sites
    (``ValueError``) and, for gradients, sample them with ``rsample`` (``NotImplementedError``).

    :param int num_particles: :math:`k`, importance samples per data point; :math:`k = 1` is ``Trace_ELBO``.
    :param str data_plate: name of the plate indexing data points (``"data"``; ``"p/data"`` for
        ``VAE(prefix="p")``).
    :param bool dreg: the doubly reparameterized gradient for the guide's parameters (Tucker et al. 2019);
        the loss is the same. It assumes model and guide share no parameters and supports first-order
        gradients only.
    :param int max_plate_nesting: plates nested in model and guide, not counting the particle plate
        (default: guessed by running them once).
    :param bool retain_graph: passed to ``backward`` in :meth:`loss_and_grads`.
    """

    def __init__(
        self,
        num_particles: int = 5,
        data_plate: str = DATA_PLATE,
        dreg: bool = False,
        max_plate_nesting: float = float("inf"),
        retain_graph: bool | None = None,
    ) -> None:
        if int(num_particles) != num_particles or num_particles < 1:
            raise ValueError(f"num_particles must be a positive integer, got {num_particles}")
        super().__init__(
            num_particles=int(num_particles),
            max_plate_nesting=max_plate_nesting,
            vectorize_particles=True,
            retain_graph=retain_graph,
        )
        self.data_plate = data_plate
        self.dreg = bool(dreg)

    def _get_trace(self, model, guide, args, kwargs):  # required by ELBO; the work is in _log_weights
        raise NotImplementedError("TraceIWAE_ELBO computes its traces in log_weights")

    def log_weights(self, model: Callable, guide: Callable, *args, **kwargs) -> torch.Tensor:
        """The ``(num_particles, batch)`` log importance weights :math:`\\log w_{in}` of one draw of
        particles, without the data plate's subsample scale; differentiable (plain reparameterized path).

        Their mean over particles is the ELBO estimate and their log-mean-exp the IWAE bound, of the same
        samples.
        """
        log_w, _, _ = self._log_weights(model, guide, args, kwargs, grads=False)
        return log_w

    def bound(self, model: Callable, guide: Callable, *args, **kwargs) -> torch.Tensor:
        """:math:`\\mathcal{L}_k(x_n)` for each data point of the batch, a ``(batch,)`` tensor (no subsample
        scale), differentiable."""
        return _log_mean_exp(self.log_weights(model, guide, *args, **kwargs))

    @torch.no_grad()
    def loss(self, model: Callable, guide: Callable, *args, **kwargs) -> float:
        """:returns: an estimate of :math:`-\\frac{N}{|B|}\\sum_{n \\in B} \\mathcal{L}_k(x_n)`.
        :rtype: float"""
        log_w, scale, _ = self._log_weights(model, guide, args, kwargs, grads=False)
        loss = -(scale * _log_mean_exp(log_w).sum()).item()
        warn_if_nan(loss, "loss")
        return loss

    def differentiable_loss(self, model: Callable, guide: Callable, *args, **kwargs) -> torch.Tensor:
        """The loss as a tensor whose gradient is the IWAE (or, with ``dreg``, DReG) gradient. It is not read on the
        host (no NaN warning, so no device synchronisation per step): :meth:`loss_and_grads` and
        :func:`pyrovae.fit` (once per epoch) check it."""
        dreg = self.dreg and torch.is_grad_enabled()
        log_w, scale, leaves = self._log_weights(model, guide, args, kwargs, grads=True, dreg=dreg)
        if not dreg:
            loss = -scale * _log_mean_exp(log_w).sum()
        else:
            log_p, log_q = log_w
            bound = _log_mean_exp(log_p.detach() - log_q.detach()).sum()
            weights = (log_p - log_q).detach().softmax(0)
            # model parameters: sum_i w_i grad log p(x, z_i), with z_i a leaf (no path into the guide)
            surrogate = (weights * log_p).sum()
            # guide parameters: sum_i w_i^2 (d log w_i / d z_i) dz_i/dphi, the partial in z at fixed phi
            dz = torch.autograd.grad(
                (weights.square() * (log_p - log_q)).sum(), [leaf for _, leaf in leaves],
                retain_graph=True, allow_unused=True,
            ) if leaves else ()
            for (value, _), grad in zip(leaves, dz, strict=True):
                if grad is not None:
                    surrogate = surrogate + (grad.detach() * value).sum()
            loss = -scale * (bound + surrogate - surrogate.detach())
        return loss

    def loss_and_grads(self, model: Callable, guide: Callable, *args, **kwargs) -> float:
        """Compute the loss and back-propagate its gradient into the parameters (what ``SVI.step`` calls).

        :returns: the loss.
        :rtype: float
        """
        loss = self.differentiable_loss(model, guide, *args, **kwargs)
        if loss.requires_grad:
            loss.backward(retain_graph=self.retain_graph)
        return warn_if_nan(loss.item(), "loss")

    def _log_weights(self, model, guide, args, kwargs, grads, dreg=False):
        """Trace the guide under the particle plate and replay the model on it. Returns the ``(k, batch)``
        log-weights (``(log p, log q)`` with ``dreg``), the data plate's subsample scale, and with ``dreg``
        the guide's ``(sample, leaf)`` pairs, the model having been replayed on detached leaves (and log q
        evaluated at them)."""
        if self.num_particles > 1 and self.max_plate_nesting == float("inf"):
            self._guess_max_plate_nesting(model, guide, args, kwargs)
        model = self._vectorized_num_particles(model)
        guide = self._vectorized_num_particles(guide)
        guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
        # with dreg, q's trace holds detached leaves: their log q has the z-derivative at fixed guide parameters
        q_trace, leaves = _detached_latents(guide_trace) if dreg else (guide_trace, [])
        model_trace = replay_model(model, q_trace, *args, **kwargs)
        if is_validation_enabled():
            check_model_guide_match(model_trace, guide_trace, self.max_plate_nesting)
            check_if_enumerated(guide_trace)
        compute_log_probs(model_trace, q_trace)
        self._check(model_trace, q_trace, grads)
        frame = data_plate_frame(self.data_plate, model_trace, q_trace)
        particle_dim = -self.max_plate_nesting if self.num_particles > 1 else None
        scale = subsample_scale(frame)
        log_p, log_q = (
            per_datapoint_log_prob(trace, frame, self.num_particles, particle_dim) / scale
            for trace in (model_trace, q_trace)
        )
        return ((log_p, log_q) if dreg else log_p - log_q), scale, leaves

    def _check(self, model_trace, guide_trace, grads: bool) -> None:
        """Every sample site in the (vectorized) data plate; guide and model latents the same; rsample for
        gradients."""
        for role, trace in (("model", model_trace), ("guide", guide_trace)):
            if is_validation_enabled():
                for name in site_names(trace):
                    check_site_shape(trace.nodes[name], self.max_plate_nesting)
            outside = outside_plate(trace, self.data_plate)
            if outside:
                raise NotImplementedError(
                    f"the {role}'s site {outside[0]!r} is not in the vectorized data plate {self.data_plate!r}: the "
                    "IWAE bound is per data point, so every sample site must lie in that plate (global latent "
                    "variables are not supported; pass data_plate= if the plate has another name)"
                )
        guide_sites, latent = set(site_names(guide_trace)), set(site_names(model_trace, observed=False))
        if latent != guide_sites:
            raise ValueError(
                f"the guide samples {sorted(guide_sites)} but the model's latent sites are {sorted(latent)}: "
                "importance weights need the guide to propose exactly the model's latent variables"
            )
        if grads:
            discrete = sorted(n for n in guide_sites if not guide_trace.nodes[n]["fn"].has_rsample)
            if discrete:
                raise NotImplementedError(
                    f"the guide's sites {discrete} are not reparameterizable: TraceIWAE_ELBO's gradient needs "
                    "rsample (score-function IWAE gradients are not implemented)"
                )


def _detached_latents(guide_trace: poutine.Trace) -> tuple[poutine.Trace, list[tuple[torch.Tensor, torch.Tensor]]]:
    """A copy of the guide trace whose latent values are detached leaves that require grad, and the
    ``(value, leaf)`` pairs of the guide's sample and its leaf."""
    trace, leaves = guide_trace.copy(), []
    for name in site_names(guide_trace, observed=False):
        site = guide_trace.nodes[name]
        leaf = site["value"].detach().requires_grad_()
        trace.nodes[name] = {**site, "value": leaf}
        leaves.append((site["value"], leaf))
    return trace, leaves


def _log_mean_exp(log_w: torch.Tensor) -> torch.Tensor:
    """:math:`\\log \\frac1k \\sum_i e^{\\log w_i}` over the particle dim 0."""
    return log_w.logsumexp(0) - math.log(len(log_w))
