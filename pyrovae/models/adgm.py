r"""The auxiliary deep generative model (ADGM) of Maaløe et al. (2016): the semi-supervised M2
(:class:`pyrovae.SSVAE`) with an auxiliary latent :math:`a`, as a Pyro model and guide.

An auxiliary latent :math:`a_n` leaves the marginal :math:`p(x, y, z)` unchanged and makes the guide richer. For
each data point :math:`n` in the data plate the model gains

.. math::

    p(a_n | x_n, y_n, z_n) = \mathcal{N}(\mu_\theta(x_n, y_n, z_n), \mathrm{diag}\,\sigma_\theta(x_n, y_n, z_n)^2),

which integrates to one, and the guide becomes

.. math::

    q(a_n | x_n)\, q(y_n | a_n, x_n)\, q(z_n | a_n, x_n, y_n),

all Gaussians but the classifier, which, like q(z|·), takes :math:`[x, a]` in place of :math:`x`. Its
marginal :math:`q(y|x) = \mathbb{E}_{q(a|x)}[q(y|a, x)]` is no longer a single softmax: :meth:`~pyrovae.SSVAE.predict`
averages :math:`q(y|a_s, x)` over ``predict_samples`` draws :math:`a_s \sim q(a|x)`. The label is still summed
out exactly (parallel enumeration) given the sampled :math:`a`, so the unlabelled ELBO is

.. math::

    \mathcal{U}(x) = \mathbb{E}_{q(a|x)}\Big[\sum_y q(y|a, x)\, \mathcal{L}(x, y, a) + \mathcal{H}[q(y|a, x)]
    - \log q(a|x)\Big],

and the classification term of a labelled point is :math:`\alpha \log q(y|a, x)` at the guide's :math:`a`.
A partially labelled call (-1 where a label is missing, :mod:`pyrovae.models.ssvae`) draws :math:`a` on every row,
then :math:`y` from :math:`q(y|a, x)`, or from the point mass on its label, as the SSVAE's does.

Sites: those of :class:`pyrovae.SSVAE` (``prefix="p"`` makes them ``"p/<name>"``), and

=================  ==========================================================================  ==================
site               what                                                                        shape
=================  ==========================================================================  ==================
``"a"``            auxiliary latent: model p(a|x,y,z), guide q(a|x), both ``Normal.to_event``  ``(batch, a_dim)``
``"aux_encoder"``  ``pyro.module``: :math:`x \mapsto` loc, scale of q(a|x) (guide)
``"aux_decoder"``  ``pyro.module``: :math:`([x, z], y) \mapsto` loc, scale of p(a|x,y,z)
                   (model)
=================  ==========================================================================  ==================

``"classifier"`` maps :math:`[x, a]` to the logits of q(y|a,x), ``"encoder"`` maps :math:`([x, a], y)` to
q(z|a,x,y), and the ``"classification"`` factor is :math:`\alpha \log q(y|a, x)`.

**References**

[1] Auxiliary Deep Generative Models, L. Maaløe, C. K. Sønderby, S. K. Sønderby and O. Winther, ICML 2016.

[2] Semi-Supervised Learning with Deep Generative Models, D. P. Kingma, D. J. Rezende, S. Mohamed and
    M. Welling, NeurIPS 2014.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from pyrovae.models.nets import Encoder
from pyrovae.models.ssvae import SSVAE, ConditionalEncoder


def concat(x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """``[x, h]`` along the last dimension, the other dimensions broadcast (enumerated or sampled ones)."""
    shape = torch.broadcast_shapes(x.shape[:-1], h.shape[:-1])
    return torch.cat([x.expand(*shape, x.shape[-1]), h.expand(*shape, h.shape[-1])], -1)


class ADGM(SSVAE):
    """The auxiliary deep generative model: an :class:`pyrovae.SSVAE` whose classifier and q(z|·) take
    :math:`[x, a]`, :math:`a \\sim q(a|x)` (see the module docstring); :meth:`~pyrovae.SSVAE.model` and
    :meth:`~pyrovae.SSVAE.guide` are ordinary Pyro callables, trained and evaluated as the SSVAE's.

    :param int a_dim: dimension of the auxiliary latent ``a`` (at least 1).
    :param int predict_samples: draws of ``a`` that :meth:`~pyrovae.SSVAE.predict` averages ``q(y|a, x)`` over.
    :param args: the settings of :class:`pyrovae.SSVAE` (``x_dim``, ``num_classes``, ``z_dim``, ``hidden``, ...,
        ``seed``), by position or, with ``kwargs``, by name; ``seed`` seeds ``a``'s networks too, and they have the
        ``hidden`` layers and ``activation`` of the classifier.
    """

    kind = "adgm"

    def __init__(self, *args: Any, a_dim: int, predict_samples: int = 10, **kwargs: Any) -> None:
        if int(a_dim) < 1 or int(predict_samples) < 1:
            raise ValueError(f"need a_dim >= 1 and predict_samples >= 1, got {a_dim} and {predict_samples}")
        # set before SSVAE.__init__, whose hooks (_context_dim, _build_nets) read a_dim
        self.a_dim, self.predict_samples = int(a_dim), int(predict_samples)
        super().__init__(*args, **kwargs)
        if self.config is not None:
            self.config.update(a_dim=self.a_dim, predict_samples=self.predict_samples)

    def _build_nets(self, hidden: Sequence[int], activation: str | type[nn.Module]) -> None:
        """The SSVAE's networks, then q(a|x) (``"aux_encoder"``) and p(a|x,y,z) (``"aux_decoder"``), with the
        classifier's ``hidden`` layers and ``activation``."""
        super()._build_nets(hidden, activation)
        self.aux_encoder = Encoder(self.x_dim, self.a_dim, hidden, activation)
        self.aux_decoder = ConditionalEncoder((self.x_dim, self.z_dim), self.num_classes, self.a_dim, hidden,
                                              activation)  # fmt: skip

    def _context_dim(self) -> int:
        """The size of :math:`[x, a]`."""
        return self.x_dim + self.a_dim

    def _guide_context(self, x: torch.Tensor) -> torch.Tensor:
        """:math:`[x, a]`, :math:`a \\sim q(a|x)` sampled at site ``"a"``."""
        self.register("aux_encoder")
        return concat(x, pyro.sample(self.site("a"), dist.Normal(*self.aux_encoder(x)).to_event(1)))

    def _model_context(self, x: torch.Tensor, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """:math:`[x, a]`, :math:`a \\sim p(a|x,y,z)` sampled at site ``"a"``."""
        self.register("aux_decoder")
        loc, scale = self.aux_decoder((x, z), y)  # x mapped once, not once per enumerated label
        return concat(x, pyro.sample(self.site("a"), dist.Normal(loc, scale).to_event(1)))

    def _mean_context(self, x: torch.Tensor) -> torch.Tensor:
        """:math:`[x, a]` at the mean of q(a|x)."""
        return concat(x, self.aux_encoder(x)[0])

    def class_log_probs(self, x: torch.Tensor, num_samples: int = 1) -> torch.Tensor:
        r"""Differentiable log class probabilities, ``(batch, num_classes)``: the Monte Carlo estimate
        :math:`\log \frac1S \sum_s q(y|a_s, x)` of :math:`\log q(y|x)` from ``S = num_samples`` reparameterized
        draws :math:`a_s \sim q(a|x)`. ``x`` is not checked (see :meth:`~pyrovae.SSVAE.log_predict`)."""
        a = dist.Normal(*self.aux_encoder(x)).rsample((num_samples,))
        return self.classifier(concat(x, a)).log_softmax(-1).logsumexp(0) - math.log(num_samples)
