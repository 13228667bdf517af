r"""M2 (Kingma et al. 2014) written out in plain PyTorch on an :class:`pyrovae.SSVAE`'s own networks: the reference
that ``step_time.py`` times pyrovae's M2 steps against, and that ``tests/test_plain_m2.py`` checks against
``TraceEnum_ELBO``'s loss.

With the classifier :math:`q(y|x)`, the encoder :math:`q(z|x,y)`, the decoder :math:`p(x|y,z)` (Bernoulli logits),
:math:`p(y) = 1/C` and :math:`p(z) = \mathcal{N}(0, I)`, one reparameterized :math:`z_y = \mu(x,y) + \sigma(x,y)
\odot \epsilon_y` per class:

.. math::

    \mathcal{L}(x, y) = \log p(x|y,z_y) + \log p(y) + \log p(z_y) - \log q(z_y|x,y),

    \mathcal{U}(x) = \sum_y q(y|x)\,\mathcal{L}(x, y) + \mathcal{H}[q(y|x)]
                   = \sum_y q(y|x)\,[\mathcal{L}(x, y) - \log q(y|x)],

:math:`\mathcal{U}` computed for the :math:`C` classes at once (labels ``(C, 1)`` against a batch ``(B, ·)``,
as Pyro's parallel enumeration lays them out; the Bernoulli log-likelihood written
:math:`\sum_d x_d l_d - \mathrm{softplus}(l_d)`, the Gaussian ones with ``torch.distributions.Normal`` as the plain
VAE step of ``step_time.py`` writes them), and the loss of a minibatch is
:math:`-\frac{N}{B}\sum_n [\mathcal{L}(x_n, y_n) + \alpha \log q(y_n|x_n)]` (labelled) or
:math:`-\frac{N}{B}\sum_n \mathcal{U}(x_n)` (unlabelled), as pyrovae's model and guide scale it.

**References**

[1] Semi-Supervised Learning with Deep Generative Models, D. P. Kingma, D. J. Rezende, S. Mohamed and
    M. Welling, NeurIPS 2014.
"""

from __future__ import annotations

import math

import torch
import torch.distributions as td
import torch.nn.functional as F

from pyrovae import SSVAE
from pyrovae.train.step import adam


def labelled_bound(ssvae: SSVAE, x: torch.Tensor, y: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
    r""":math:`\mathcal{L}(x, y)` with one draw of :math:`z`, shape ``y.shape`` broadcast with ``x.shape[:-1]``:
    ``y`` ``(B,)`` labels, or ``(C, 1)`` every class for each row. ``noise`` is :math:`\epsilon` (default: drawn
    with ``torch.randn``).

    :raises ValueError: for a model other than M2 with a Bernoulli likelihood (an ADGM, say), which this does not
        write out."""
    _check(ssvae)
    loc, scale = ssvae.encoder(x, y)
    z = loc + scale * (torch.randn_like(loc) if noise is None else noise)
    logits = ssvae.decoder(z, y)
    log_lik = (logits * x).sum(-1) - F.softplus(logits).sum(-1)
    log_p_z = td.Normal(0.0, 1.0).log_prob(z).sum(-1)
    log_q_z = td.Normal(loc, scale).log_prob(z).sum(-1)
    return log_lik - math.log(ssvae.num_classes) + log_p_z - log_q_z


def unlabelled_bound(ssvae: SSVAE, x: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
    r""":math:`\mathcal{U}(x)`, shape ``(B,)``, the label summed out over the :math:`C` classes at once; ``noise``
    ``(C, B, z_dim)`` is the :math:`\epsilon_y` of every class (default: drawn with ``torch.randn``).

    :raises ValueError: as :func:`labelled_bound`."""
    _check(ssvae)
    log_q_y = ssvae.classifier(x).log_softmax(-1).T  # (C, B)
    classes = torch.arange(ssvae.num_classes, device=x.device)[:, None]  # (C, 1)
    return (log_q_y.exp() * (labelled_bound(ssvae, x, classes, noise) - log_q_y)).sum(0)


def m2_loss(
    ssvae: SSVAE,
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    num_data: int | None = None,
    noise: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""The loss of one minibatch: :math:`-\frac{N}{B}\sum_n \mathcal{U}(x_n)` when ``y`` is ``None``, else
    :math:`-\frac{N}{B}\sum_n [\mathcal{L}(x_n, y_n) + \alpha \log q(y_n|x_n)]`; ``N = num_data`` (default
    ``B``, the minibatch's sum), ``noise`` as :func:`labelled_bound` or :func:`unlabelled_bound` take it."""
    if y is None:
        bound = unlabelled_bound(ssvae, x, noise)
    else:
        bound = labelled_bound(ssvae, x, y, noise)
        if ssvae.alpha > 0:
            log_q = ssvae.classifier(x).log_softmax(-1).gather(-1, y[:, None])[:, 0]
            bound = bound + ssvae.alpha * log_q
    return -bound.sum() * ((num_data or len(x)) / len(x))


def _check(ssvae: SSVAE) -> None:
    if type(ssvae) is not SSVAE or ssvae.likelihood != "bernoulli":
        raise ValueError(f"the plain M2 is written out for an SSVAE with a Bernoulli likelihood, got "
                         f"{type(ssvae).__name__} with {ssvae.likelihood!r}")  # fmt: skip


def plain_m2_step_fn(ssvae: SSVAE, lr: float = 1e-3):
    """A hand-written M2 training step on ``ssvae``'s networks, one fused Adam (:func:`pyrovae.train.step.adam`):
    returns ``step(x, y=None, num_data=None) -> loss`` (detached), labelled when ``y`` is given."""
    optim = adam(ssvae.parameters(), lr)

    def step(x: torch.Tensor, y: torch.Tensor | None = None, num_data: int | None = None) -> torch.Tensor:
        loss = m2_loss(ssvae, x, y, num_data)
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
        return loss.detach()

    return step
