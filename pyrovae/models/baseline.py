r"""The deterministic baseline of Sohn et al.'s structured-output task: a network that predicts the hidden
quadrants :math:`y` of an image from its observed quadrants :math:`x` (:mod:`pyrovae.models.quadrants`), written
as a Pyro model with no latent variable:

.. math::

    \hat y = \sigma(g_\theta(x)), \qquad p(y | x) = \prod_d \mathrm{Bernoulli}(y_d; \hat y_d),

:math:`g_\theta` an MLP of the whole image with its hidden pixels set to -1 (``"continuous-bernoulli"``: the
continuous Bernoulli of :math:`\sigma(g_\theta(x))` for grey levels). Its guide is empty, so the ELBO is the exact
conditional log-likelihood :math:`\log p(y | x)`: the negated masked binary cross-entropy that the tutorial trains
the network with. :func:`pyrovae.fit` trains it like any model. The :class:`pyrovae.models.cvae.CVAE` feeds its
prediction :math:`\hat y` to its prior network.

Sites, with ``prefix="p"`` each ``"p/<name>"``:

==============  =========================================================  ========================
site            what                                                       shape
==============  =========================================================  ========================
``"data"``      the data plate, size ``num_data`` (subsampled minibatch)   dim -1
``"y"``         the hidden pixels, observed: :math:`p(y | x)`              ``(batch, y_dim)``
``"net"``       ``pyro.module`` name of :math:`g_\theta` (model)
==============  =========================================================  ========================

**References**

[1] Learning Structured Output Representation using Deep Conditional Generative Models, K. Sohn, H. Lee and
    X. Yan, NeurIPS 2015.

[2] Conditional Variational Auto-encoder, Pyro's tutorial (``examples/cvae/baseline.py``).
"""

from __future__ import annotations

from collections.abc import Sequence

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from pyrovae.device import evaluation_method
from pyrovae.models.nets import mlp
from pyrovae.models.quadrants import QuadrantModel, hide, paste
from pyrovae.seeding import seeded


class Baseline(QuadrantModel):
    """The baseline network as a Pyro model: :meth:`model` scores the hidden pixels of whole images by the
    network's prediction; :meth:`guide` has no site.

    :param image_shape: ``(C, H, W)`` of the images, ``H`` and ``W`` even.
    :param int quadrants: the number of observed quadrants, 1, 2 or 3 (:mod:`pyrovae.models.quadrants`).
    :param hidden: hidden layer sizes of the MLP (the tutorial's ``(500, 500)``).
    :param activation: activation of the MLP (name or ``nn.Module`` class).
    :param str prefix: prepended to every site and module name.
    :param str likelihood: ``"bernoulli"`` or ``"continuous-bernoulli"``.
    :param int seed: seed of the initial weights (as :class:`pyrovae.VAE`'s).
    """

    kind = "cvae-baseline"
    #: the model has no latent site (``pyrovae evaluate`` counts no active units)
    latent_sites = ()

    def __init__(
        self,
        image_shape: Sequence[int],
        quadrants: int = 1,
        hidden: Sequence[int] = (500, 500),
        activation: str | type[nn.Module] = "relu",
        prefix: str = "",
        likelihood: str = "bernoulli",
        seed: int | None = None,
    ) -> None:
        super().__init__(image_shape, quadrants, prefix, likelihood)
        with seeded(seed):
            self.net = mlp([self.x_dim, *hidden, self.y_dim], activation)
        if isinstance(activation, str):
            self.config = {**self._settings(), "hidden": [int(h) for h in hidden], "activation": activation}

    def observation(self, x: torch.Tensor) -> dist.TorchDistribution:
        """The distribution :math:`p(y | x)` of the hidden pixels given the images ``x`` (only their observed pixels
        are read), event shape ``(y_dim,)``."""
        return self._observe(self.net(hide(x, self.mask)))

    def model(
        self,
        x: torch.Tensor,
        num_data: int | None = None,
        *,
        subsample: torch.Tensor | None = None,
        plate: str | None = None,
    ) -> torch.Tensor:
        """:math:`p(y | x)` of whole images ``x`` ``(batch, D)``: the hidden pixels are observed at site ``"y"``.

        :param int num_data: size of the full dataset when ``x`` is a minibatch (scales the log-likelihood).
        :param torch.Tensor subsample: as in :meth:`pyrovae.VAE.model`.
        :param str plate: as in :meth:`pyrovae.VAE.model`.
        :returns: ``y``, the hidden pixels.
        """
        if x is None:
            raise ValueError("the baseline predicts the hidden quadrants of images x: give x (whole images)")
        self.register("net")
        data, _, _ = self._data_plate(x, num_data, subsample, plate)
        with data:
            return pyro.sample(self.site("y"), self.observation(x), obs=self.target(x))

    def guide(self, x: torch.Tensor | None = None, num_data: int | None = None, *,
              subsample: torch.Tensor | None = None, plate: str | None = None) -> dict[str, torch.Tensor]:  # fmt: skip
        """No latent variable: an empty guide, so that the ELBO is :math:`\\log p(y | x)` exactly."""
        return {}

    def guess(self, x: torch.Tensor) -> torch.Tensor:
        """The prediction :math:`\\hat y = \\mathbb{E}[y | x]` of the hidden pixels ``(batch, y_dim)``, with
        gradients (what :class:`~pyrovae.models.cvae.CVAE` reads, without them)."""
        return self.observation(x).mean

    @evaluation_method
    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """The exact conditional log-likelihood :math:`\\log p(y | x)` of each image ``x`` ``(batch, D)``, ``(batch,)``,
        computed without Pyro (so also while a :class:`~pyrovae.models.cvae.CVAE` holds this baseline's weights in
        Pyro's param store under its own names, where running :meth:`model` would register them a second time). No
        gradients; evaluation mode."""
        self._check(x)
        return self.observation(x).log_prob(self.target(x))

    @evaluation_method
    def complete(self, x: torch.Tensor) -> torch.Tensor:
        """The images ``x`` ``(batch, D)`` with their hidden pixels replaced by the prediction :math:`\\hat y`. No
        gradients; evaluation mode."""
        self._check(x)
        return paste(x, self.mask, self.guess(x))
