"""Evaluation metrics computed from a model and a guide, whichever VAE they come from."""

from __future__ import annotations

import pyro.infer
import torch
from pyro.infer import Trace_ELBO

from pyrovae.data.validation import check_not_nan
from pyrovae.device import chunks, device_of, evaluating
from pyrovae.infer.traces import log_prob_sum, model_and_guide_traces


def elbo_per_datapoint(
    model,
    guide,
    x: torch.Tensor,
    *,
    batch_size: int = 1000,
    elbo: pyro.infer.ELBO | None = None,
) -> float:
    r"""A Monte-Carlo estimate of the average evidence lower bound per data point, in nats:

    .. math:: \frac{1}{N} \sum_{n=1}^N \mathbb{E}_{q(z|x_n)}[\log p(x_n, z) - \log q(z|x_n)].

    ``model(x_chunk)`` and ``guide(x_chunk)`` are called on chunks of ``batch_size`` rows with no
    subsampling, so the plate is the chunk itself; the chunks' ELBOs are summed and divided by ``N``. The modules
    owning ``model`` and ``guide`` are in evaluation mode meanwhile (:func:`pyrovae.device.evaluating`).

    :param torch.Tensor x: data ``(N, ...)``, on the model's device or in host memory (e.g. memory-mapped): each
        chunk is moved to the device of the modules owning ``model`` and ``guide`` (:func:`pyrovae.device.device_of`).
    :param pyro.infer.ELBO elbo: the estimator (default ``Trace_ELBO()``, one particle); must not be a JIT ELBO,
        since the last chunk may have another shape.
    """
    if len(x) == 0:
        raise ValueError("cannot evaluate the ELBO of an empty dataset")
    elbo, device = Trace_ELBO() if elbo is None else elbo, device_of(model, guide, default=x.device)
    with torch.no_grad(), evaluating(model, guide):
        total = sum(elbo.loss(model, guide, chunk) for chunk in chunks(x, batch_size, device))
    return check_not_nan("the ELBO", -float(total) / len(x), x)


def elbo_terms(model, guide, x: torch.Tensor, *, batch_size: int = 1000) -> dict[str, float]:
    r"""The ELBO split into its reconstruction and KL terms, averaged per data point, in nats:

    .. math:: \mathcal{L}(x) = \underbrace{\mathbb{E}_{q(z|x)}[\log p(x|z)]}_{\text{reconstruction}}
        - \underbrace{\mathrm{KL}(q(z|x) \,\|\, p(z))}_{\text{kl}},

    each expectation estimated with one sample :math:`z_n \sim q(z|x_n)` per data point:

    .. math:: \text{reconstruction} = \frac{1}{N} \sum_{n=1}^N \log p(x_n | z_n), \qquad
        \text{kl} = \frac{1}{N} \sum_{n=1}^N [\log q(z_n|x_n) - \log p(z_n)],

    and ``elbo = reconstruction - kl`` exactly. The KL term is thus a Monte-Carlo estimate (unbiased,
    and it may come out negative for a single point), as in ``Trace_ELBO``, not the analytic KL.

    The guide is traced on each chunk of ``batch_size`` rows and the model replayed on its samples,
    called as ``model(chunk)`` / ``guide(chunk)`` with no subsampling. Which sites count where:

    * ``reconstruction``: the model's observed sample sites (``site["is_observed"]``), e.g. ``"x"``;
      in a model with observed labels (an :class:`~pyrovae.SSVAE` given ``y``) it includes :math:`\log p(y)`.
    * ``kl``: the guide's latent sample sites minus the model's latent sample sites; a model site the
      guide does not sample is drawn from its prior by the replay and counts with its :math:`-\log p`.
    * ``pyro.factor`` sites (observed sites with a ``Unit`` distribution, marked ``is_auxiliary``) are
      skipped: they are terms of a training objective, not of the density, so the result is the ELBO of
      the model without them (e.g. without an SSVAE's classification factor, as for
      :meth:`pyrovae.SSVAE.generative_model`). In a model with factors, ``elbo`` therefore differs from
      ``-Trace_ELBO().loss``; in a model without, it is the same one-sample estimate.
    * params, plates and other non-sample nodes are ignored.

    Log-probabilities include any ``poutine.scale`` and mask the model applies. The modules owning ``model`` and
    ``guide`` are in evaluation mode meanwhile (:func:`pyrovae.device.evaluating`).

    :param torch.Tensor x: data ``(N, ...)``, on the model's device or in host memory: each chunk is moved to the
        model's device (:func:`pyrovae.device.device_of`).
    :param int batch_size: rows per chunk.
    :returns: ``{"elbo": ..., "reconstruction": ..., "kl": ...}`` in nats per data point.
    :raises ValueError: if ``x`` is empty.
    """
    if len(x) == 0:
        raise ValueError("cannot compute the ELBO terms of an empty dataset")
    reconstruction = kl = 0.0
    device = device_of(model, guide, default=x.device)
    with torch.no_grad(), evaluating(model, guide):
        for chunk in chunks(x, batch_size, device):
            model_trace, guide_trace = model_and_guide_traces(model, guide, chunk)
            reconstruction += float(log_prob_sum(model_trace, observed=True))
            kl -= float(log_prob_sum(model_trace, observed=False))
            kl += float(log_prob_sum(guide_trace, observed=False))
    reconstruction, kl = reconstruction / len(x), check_not_nan("the KL term", kl / len(x), x)
    check_not_nan("the reconstruction term", reconstruction, x)
    return {"elbo": reconstruction - kl, "reconstruction": reconstruction, "kl": kl}

