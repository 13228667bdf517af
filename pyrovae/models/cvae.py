r"""The conditional variational autoencoder (Sohn et al. 2015) as a Pyro model and guide, for the structured-output
task of predicting the hidden quadrants :math:`y` of an image from its observed quadrants :math:`x`
(:mod:`pyrovae.models.quadrants`), as in Pyro's CVAE tutorial.

Three networks and the trained, frozen :class:`~pyrovae.models.baseline.Baseline` :math:`\hat y(x)`, for each image
:math:`n` in the data plate:

.. math::

    p_\theta(z_n | x_n) = \mathcal{N}(\mu_\theta(\tilde x_n), \mathrm{diag}\,\sigma_\theta(\tilde x_n)^2),
    \quad \tilde x_n = (x_n, \hat y(x_n)) \qquad \text{(prior network)}

    p_\theta(y_n | x_n, z_n) = \prod_d \mathrm{Bernoulli}(y_{nd}; \sigma(f_\theta(z_n))_d)
    \qquad \text{(generation network)}

    q_\phi(z_n | x_n, y_n) = \mathcal{N}(\mu_\phi(x_n, y_n), \mathrm{diag}\,\sigma_\phi(x_n, y_n)^2)
    \qquad \text{(recognition network, the guide)}

The prior network sees the image with its hidden pixels filled by the baseline's prediction :math:`\hat y` ("the
CVAE is built on top of the NN", Sohn et al. Sec. 4.3; the tutorial's ``y_hat``), the recognition network the
whole image; the baseline is read without gradients, so that training the CVAE leaves it as trained. The
objective is the conditional ELBO

.. math:: \log p(y | x) \ge \mathbb{E}_{q_\phi(z | x, y)}[\log p_\theta(y | x, z)]
    - \mathrm{KL}(q_\phi(z | x, y) \,\|\, p_\theta(z | x)),

Pyro's ``Trace_ELBO`` of :meth:`CVAE.model` and :meth:`CVAE.guide`. Both take **whole images** and cut them with
the model's mask: the input :math:`x` is conditioned on, not a sample site, so :func:`pyrovae.fit` trains the model
and :func:`pyrovae.infer.importance.log_marginal_likelihood` estimates the conditional log-likelihood
:math:`\log p(y | x)` (the guide as proposal) unchanged. :meth:`CVAE.complete` draws completions from the prior
network, as the tutorial's predictions do.

Sites, with ``prefix="p"`` each ``"p/<name>"``:

=====================  =========================================================  ========================
site                   what                                                       shape
=====================  =========================================================  ========================
``"data"``             the data plate, size ``num_data`` (subsampled minibatch)   dim -1
``"z"``                latent code: prior network / recognition network Normal    ``(batch, z_dim)``
``"y"``                the hidden pixels, observed: :math:`p(y | x, z)`           ``(batch, y_dim)``
``"baseline"``         ``pyro.module`` name of the baseline (model; frozen)
``"prior_net"``        ``pyro.module`` name of the prior network (model)
``"generation_net"``   ``pyro.module`` name of the generation network (model)
``"recognition_net"``  ``pyro.module`` name of the recognition network (guide)
=====================  =========================================================  ========================

**References**

[1] Learning Structured Output Representation using Deep Conditional Generative Models, K. Sohn, H. Lee and
    X. Yan, NeurIPS 2015.

[2] Conditional Variational Auto-encoder, Pyro's tutorial (``examples/cvae``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from pyrovae.device import evaluation_method
from pyrovae.models.baseline import Baseline
from pyrovae.models.nets import Decoder, Encoder
from pyrovae.models.quadrants import QuadrantModel, paste
from pyrovae.seeding import seeded


class CVAE(QuadrantModel):
    """The conditional VAE of the module docstring; :meth:`model` and :meth:`guide` are ordinary Pyro callables of
    whole images ``x`` ``(batch, D)``.

    Train the :class:`~pyrovae.models.baseline.Baseline` first, then the CVAE built on it (as the tutorial)::

        baseline = Baseline(data.image_shape, quadrants=1)
        pyrovae.fit(baseline.model, baseline.guide, data)
        cvae = CVAE(data.image_shape, quadrants=1, baseline=baseline)
        pyrovae.fit(cvae.model, cvae.guide, data)

    :param image_shape: ``(C, H, W)`` of the images, ``H`` and ``W`` even.
    :param int quadrants: the number of observed quadrants, 1, 2 or 3 (:mod:`pyrovae.models.quadrants`).
    :param int z_dim: latent dimension (the tutorial's 200).
    :param hidden: hidden layer sizes of the prior and recognition networks; the generation network mirrors them
        (the tutorial's ``(500, 500)``).
    :param activation: activation of the MLPs (name or ``nn.Module`` class).
    :param baseline: the trained :class:`~pyrovae.models.baseline.Baseline` whose prediction the prior network
        reads (its weights are the CVAE's ``baseline``, frozen), or its settings (a ``config`` dict, as checkpoints
        hold them: a new baseline with those settings), or ``None`` for a new one with ``hidden`` and
        ``activation``; it must cut images as the CVAE does.
    :param str prefix: prepended to every site and module name.
    :param str likelihood: ``"bernoulli"`` (binary pixels) or ``"continuous-bernoulli"`` (grey levels).
    :param int seed: seed of the initial weights of the new networks (as :class:`pyrovae.VAE`'s).
    :raises ValueError: for bad settings, or a baseline of other images, quadrants or likelihood.
    """

    kind = "cvae"

    def __init__(
        self,
        image_shape: Sequence[int],
        quadrants: int = 1,
        z_dim: int = 200,
        hidden: Sequence[int] = (500, 500),
        activation: str | type[nn.Module] = "relu",
        baseline: Baseline | dict[str, Any] | None = None,
        prefix: str = "",
        likelihood: str = "bernoulli",
        seed: int | None = None,
    ) -> None:
        super().__init__(image_shape, quadrants, prefix, likelihood)
        if int(z_dim) < 1:
            raise ValueError(f"z_dim must be positive, got {z_dim}")
        self.z_dim = int(z_dim)
        with seeded(seed):
            if not isinstance(baseline, Baseline):
                settings = {"hidden": hidden, "activation": activation, **(baseline or {})}
                settings.pop("model", None)
                baseline = Baseline(**{"image_shape": image_shape, "quadrants": quadrants, "prefix": prefix,
                                       "likelihood": likelihood, **settings})  # fmt: skip
            self.prior_net = Encoder(self.x_dim, self.z_dim, hidden, activation)
            self.recognition_net = Encoder(self.x_dim, self.z_dim, hidden, activation)
            self.generation_net = Decoder(self.z_dim, self.y_dim, tuple(reversed(hidden)), activation)
        mine = (self.image_shape, self.quadrants, self.likelihood)
        if (baseline.image_shape, baseline.quadrants, baseline.likelihood) != mine:
            raise ValueError(
                f"the baseline cuts {baseline.image_shape} images with {baseline.quadrants} observed quadrant(s) "
                f"under a {baseline.likelihood} likelihood, the CVAE {mine[0]} images with {mine[1]} under a {mine[2]} "
                "likelihood: train a baseline with the CVAE's settings"
            )
        self.baseline = baseline
        if isinstance(activation, str) and baseline.config is not None:
            self.config = {**self._settings(), "z_dim": self.z_dim, "hidden": [int(h) for h in hidden],
                           "activation": activation, "baseline": baseline.config}  # fmt: skip

    def prior(self, x: torch.Tensor) -> dist.TorchDistribution:
        r"""The prior network's :math:`p(z | x)` of the images ``x`` (their observed pixels; the hidden ones filled
        by the baseline's :math:`\hat y`, computed without gradients), batch shape ``(batch,)``."""
        with torch.no_grad():
            guess = self.baseline.guess(x)
        loc, scale = self.prior_net(paste(x, self.mask, guess))
        return dist.Normal(loc, scale).to_event(1)

    def posterior(self, x: torch.Tensor) -> dist.TorchDistribution:
        """The recognition network's :math:`q(z | x, y)` of the whole images ``x``, batch shape ``(batch,)``."""
        loc, scale = self.recognition_net(x)
        return dist.Normal(loc, scale).to_event(1)

    def observation(self, z: torch.Tensor) -> dist.TorchDistribution:
        """The generation network's :math:`p(y | x, z)`, event shape ``(y_dim,)``."""
        return self._observe(self.generation_net(z))

    def model(
        self,
        x: torch.Tensor,
        num_data: int | None = None,
        *,
        subsample: torch.Tensor | None = None,
        plate: str | None = None,
    ) -> torch.Tensor:
        """:math:`p(z | x)\\, p(y | x, z)` of whole images ``x`` ``(batch, D)``; the hidden pixels are observed at
        site ``"y"``.

        :param int num_data: size of the full dataset when ``x`` is a minibatch (scales the ELBO).
        :param torch.Tensor subsample: as in :meth:`pyrovae.VAE.model`.
        :param str plate: as in :meth:`pyrovae.VAE.model`.
        :returns: ``y``, the hidden pixels.
        """
        if x is None:
            raise ValueError("the CVAE models the hidden quadrants of images x given the others: give x (whole "
                             "images); to draw completions, use complete(x)")  # fmt: skip
        self.register("baseline", "prior_net", "generation_net")
        data, _, _ = self._data_plate(x, num_data, subsample, plate)
        with data:
            z = pyro.sample(self.site("z"), self.prior(x))
            return pyro.sample(self.site("y"), self.observation(z), obs=self.target(x))

    def guide(
        self,
        x: torch.Tensor,
        num_data: int | None = None,
        *,
        subsample: torch.Tensor | None = None,
        plate: str | None = None,
    ) -> dict[str, torch.Tensor]:
        """The recognition network :math:`q(z | x, y)` of whole images ``x`` (reparameterized).

        :returns: ``{site("z"): z}``.
        """
        if x is None:
            raise ValueError("the guide q(z|x, y) needs whole images x")
        self.register("recognition_net")
        data, _, _ = self._data_plate(x, num_data, subsample, plate)
        with data:
            return {self.site("z"): pyro.sample(self.site("z"), self.posterior(x))}

    @evaluation_method
    def complete(self, x: torch.Tensor, num_samples: int = 1) -> torch.Tensor:
        """``num_samples`` completions of each image ``x`` ``(batch, D)``: :math:`z \\sim p(z | x)` from the prior
        network, the hidden pixels replaced by the mean of :math:`p(y | x, z)`, ``(num_samples, batch, D)``. Draws
        come from torch's global generator. No gradients; evaluation mode.
        """
        self._check(x)
        z = self.prior(x).sample((int(num_samples),))
        return paste(x, self.mask, self.observation(z).mean)
