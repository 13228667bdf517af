"""Evaluation metrics computed from a model and a guide, whichever VAE they come from."""

from __future__ import annotations

import torch
from pyro.infer import ELBO, Trace_ELBO


def elbo_per_datapoint(
    model,
    guide,
    x: torch.Tensor,
    *,
    batch_size: int = 1000,
    elbo: ELBO | None = None,
) -> float:
    r"""A Monte-Carlo estimate of the average evidence lower bound per data point, in nats:

    .. math:: \frac{1}{N} \sum_{n=1}^N \mathbb{E}_{q(z|x_n)}[\log p(x_n, z) - \log q(z|x_n)].

    ``model(x_chunk)`` and ``guide(x_chunk)`` are called on chunks of ``batch_size`` rows with no
    subsampling, so the plate is the chunk itself; the chunks' ELBOs are summed and divided by ``N``.

    :param torch.Tensor x: data ``(N, ...)``.
    :param ELBO elbo: the estimator (default ``Trace_ELBO()``, one particle); must not be a JIT ELBO,
        since the last chunk may have another shape.
    """
    if len(x) == 0:
        raise ValueError("cannot evaluate the ELBO of an empty dataset")
    elbo = Trace_ELBO() if elbo is None else elbo
    with torch.no_grad():
        total = sum(elbo.loss(model, guide, chunk) for chunk in x.split(batch_size))
    return -float(total) / len(x)
