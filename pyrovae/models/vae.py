r"""The variational autoencoder as a Pyro model and guide (Kingma & Welling 2014; Rezende et al. 2014).

Generative model and amortized guide, for each data point :math:`n` in the data plate:

.. math::

    p(z_n) = \mathcal{N}(0, I), \qquad p(x_n | z_n) = \prod_d \mathrm{Bernoulli}(x_{nd}; \sigma(f_\theta(z_n)_d)),

    q(z_n | x_n) = \mathcal{N}(\mu_\phi(x_n), \mathrm{diag}\,\sigma_\phi(x_n)^2).

The Bernoulli :math:`p(x|z)` is the default; ``likelihood="continuous-bernoulli"`` or ``"normal"`` model grey
levels instead (:mod:`pyrovae.models.likelihoods`).

Sites (documented, because users condition on them); with ``prefix="p"`` each becomes ``"p/<name>"``:

==============  =========================================================  ========================
site            what                                                       shape
==============  =========================================================  ========================
``"data"``      the data plate, size ``num_data`` (subsampled minibatch)   dim -1
``"z"``         latent code, ``Normal(0, I).to_event(1)`` / guide Normal   ``(batch, z_dim)``
``"x"``         observation :math:`p(x|z)` chosen by ``likelihood``:       ``(batch, x_dim)``
                ``IndependentBernoulli(logits)`` (default), continuous
                Bernoulli or Normal (:mod:`pyrovae.models.likelihoods`)
``"encoder"``   ``pyro.module`` name of the encoder (guide)
``"decoder"``   ``pyro.module`` name of the decoder (model)
``"scale"``     ``pyro.module`` name of the learned Gaussian scale
                (model; ``likelihood="normal"``, ``scale=None`` only)
==============  =========================================================  ========================

**References**

[1] Auto-Encoding Variational Bayes, D. P. Kingma and M. Welling, ICLR 2014.

[2] Stochastic Backpropagation and Approximate Inference in Deep Generative Models,
    D. J. Rezende, S. Mohamed and D. Wierstra, ICML 2014.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from pyrovae.data.validation import check_shape, parameter_dtype
from pyrovae.device import evaluation_method
from pyrovae.models.base import ObservedModel, standard_normal
from pyrovae.models.nets import NETS, ConvDecoder, ConvEncoder, Decoder, Encoder
from pyrovae.seeding import seeded


class VAE(ObservedModel):
    """A VAE whose :meth:`model` and :meth:`guide` are ordinary Pyro callables.

    Train with any Pyro ELBO, e.g. ``SVI(vae.model, vae.guide, Adam({"lr": 1e-3}), Trace_ELBO())``,
    passing ``num_data=N`` with each minibatch so that the ELBO is scaled to the whole dataset.

    :param int x_dim: data dimension (flattened images, e.g. 784).
    :param int z_dim: latent dimension.
    :param hidden: hidden layer sizes of the default MLP encoder; the decoder mirrors them.
    :param activation: activation of the default MLPs (name such as ``"relu"``/``"tanh"`` or class).
    :param nn.Module encoder: replaces the default encoder; maps ``(batch, x_dim)`` to ``(loc, scale)``
        each ``(batch, z_dim)``.
    :param nn.Module decoder: replaces the default decoder; maps ``(batch, z_dim)`` to ``(batch, x_dim)``
        logits (Bernoulli and continuous Bernoulli) or means (Normal).
    :param str prefix: prepended to every site and module name (``"p/z"``), so that several VAEs can
        live in one Pyro program.
    :param str likelihood: the observation model p(x|z), one of :data:`pyrovae.models.likelihoods.LIKELIHOODS`:
        ``"bernoulli"`` (binary data), ``"continuous-bernoulli"`` (grey levels in [0, 1]) or ``"normal"``
        (real values; identity link, the decoder's output is the mean). See :mod:`pyrovae.models.likelihoods`.
    :param float scale: ``"normal"`` only: a fixed standard deviation of every coordinate; ``None``
        (default) learns one per coordinate (:class:`pyrovae.models.likelihoods.PixelScale`, initially 1, the
        ``pyro.module`` ``"scale"``).
    :param str net: the default networks: ``"mlp"`` (:class:`~pyrovae.models.nets.Encoder`,
        :class:`~pyrovae.models.nets.Decoder`)
        or ``"conv"`` (:class:`~pyrovae.models.nets.ConvEncoder`, :class:`~pyrovae.models.nets.ConvDecoder`: two
        stride-2 convolutions with 32 and 64 channels, then the MLP of ``hidden``; the decoder mirrors them).
    :param image_shape: ``(C, H, W)`` of the images, needed by ``net="conv"`` (e.g. ``data.image_shape``).
    :param int seed: seed of the initial weights of the default networks (:func:`pyrovae.seeding.seeded`: drawn from
        torch's generator seeded with it, the caller's random state left as it was), so that two models built with
        one seed are identical; ``None`` (default) draws them from torch's global generator.

    A variant changes the distributions of ``z`` by overriding :meth:`prior` and :meth:`posterior`
    (as :class:`pyrovae.Autoencoder` does); :meth:`model` and :meth:`guide` stay the same.

    :meth:`encode`, :meth:`decode_mean` and :meth:`reconstruct` are the trained model's codes, decoded means
    and reconstructions, computed without gradients and in evaluation mode.
    """

    kind = "vae"

    def __init__(
        self,
        x_dim: int,
        z_dim: int = 50,
        hidden: Sequence[int] = (400,),
        activation: str | type[nn.Module] = "relu",
        encoder: nn.Module | None = None,
        decoder: nn.Module | None = None,
        prefix: str = "",
        likelihood: str = "bernoulli",
        scale: float | None = None,
        net: str = "mlp",
        image_shape: Sequence[int] | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(x_dim, prefix, likelihood)
        if net not in NETS:
            raise ValueError(f"unknown net {net!r}: choose one of {NETS}")
        if net == "conv" and (image_shape is None or math.prod(image_shape) != int(x_dim)):
            raise ValueError(f"net='conv' needs the image_shape (C, H, W) of the data, with C*H*W = x_dim = {x_dim}")
        if int(x_dim) < 1 or int(z_dim) < 1:
            raise ValueError(f"x_dim and z_dim must be positive, got x_dim={x_dim}, z_dim={z_dim}")
        self._init_scale(scale)
        self.z_dim = int(z_dim)
        custom = encoder is not None or decoder is not None
        with seeded(seed):
            if encoder is None:
                encoder = (ConvEncoder(image_shape, z_dim, hidden, activation) if net == "conv"
                           else Encoder(x_dim, z_dim, hidden, activation))  # fmt: skip
            if decoder is None:
                decoder = (ConvDecoder(z_dim, image_shape, tuple(reversed(hidden)), activation) if net == "conv"
                           else Decoder(z_dim, x_dim, tuple(reversed(hidden)), activation))  # fmt: skip
        self.encoder, self.decoder = encoder, decoder
        if not custom and isinstance(activation, str):
            self.config = {
                "model": self.kind,
                "x_dim": self.x_dim,
                "z_dim": self.z_dim,
                "hidden": [int(h) for h in hidden],
                "activation": activation,
                "prefix": prefix,
                "likelihood": likelihood,
                "scale": None if scale is None else float(scale),
            }
            if net != "mlp":  # older checkpoints have no key: MLP nets
                self.config.update(net=net, image_shape=[int(s) for s in image_shape])

    def observation(self, z: torch.Tensor) -> dist.TorchDistribution:
        """The distribution p(x|z) of the chosen likelihood, event shape ``(x_dim,)``."""
        return self._observe(self.decoder(z))

    def prior(self, batch_size: int, device: torch.device) -> dist.TorchDistribution:
        """The distribution of ``z`` in the model, :math:`\\mathcal{N}(0, I)` with batch shape ``(batch_size,)``."""
        return standard_normal(batch_size, self.z_dim, device)

    def posterior(self, x: torch.Tensor) -> dist.TorchDistribution:
        """The distribution of ``z`` in the guide, :math:`\\mathcal{N}(\\mu(x), \\mathrm{diag}\\,\\sigma(x)^2)`."""
        loc, scale = self.encoder(x)
        return dist.Normal(loc, scale).to_event(1)

    def model(
        self,
        x: torch.Tensor | None = None,
        num_data: int | None = None,
        *,
        subsample: torch.Tensor | None = None,
        plate: str | None = None,
    ) -> torch.Tensor:
        """Generative model :math:`p(z)\\,p(x|z)`.

        :param torch.Tensor x: observed data ``(batch, x_dim)``, or ``None`` to generate.
        :param int num_data: size of the full dataset when ``x`` is a minibatch (scales the ELBO);
            with ``x=None``, the number of data points to generate (default 1).
        :param torch.Tensor subsample: the indices of the rows of ``x`` in the data set (default the first
            ``batch`` indices), the data plate's subsample: what a guide with per-point parameters reads.
        :param str plate: the name of a plate over the rows of ``x`` that the caller has opened around the call,
            used as the data plate instead of a new one (:mod:`pyrovae.models.plate`); by default a caller's plate
            named ``site("data")`` is used.
        :returns: ``x`` (observed or sampled).
        """
        self.register("decoder")
        data, batch_size, device = self._data_plate(x, num_data, subsample, plate)
        with data:
            z = pyro.sample(self.site("z"), self.prior(batch_size, device))
            return pyro.sample(self.site("x"), self.observation(z), obs=x)

    def guide(
        self,
        x: torch.Tensor | None = None,
        num_data: int | None = None,
        *,
        subsample: torch.Tensor | None = None,
        plate: str | None = None,
    ) -> dict[str, torch.Tensor]:
        """Amortized guide :math:`q(z|x)`, a diagonal Gaussian from the encoder (reparameterized).

        :param torch.Tensor x: data ``(batch, x_dim)``; the guide needs it.
        :param int num_data: as in :meth:`model`.
        :param torch.Tensor subsample: as in :meth:`model`.
        :param str plate: as in :meth:`model`.
        :returns: ``{site("z"): z}``, the sampled latents by site name (what Pyro's autoguides return, so that
            the guide can be a part of an :class:`~pyro.infer.autoguide.AutoGuideList`).
        """
        if x is None:
            raise ValueError("the guide q(z|x) needs data x; to generate from the prior, run the model alone")
        self.register("encoder")
        data, _, _ = self._data_plate(x, num_data, subsample, plate)
        with data:
            return {self.site("z"): pyro.sample(self.site("z"), self.posterior(x))}

    @evaluation_method
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        r"""The code of each row of ``x`` that :meth:`reconstruct` decodes, ``(batch, z_dim)``: the mean
        :math:`\mu(x)` of :math:`q(z|x)` (of the point mass, for :class:`pyrovae.Autoencoder`; a flow guide,
        :class:`pyrovae.models.iaf.IAFVAE`, pushes it through its steps). No gradients; evaluation mode.

        :param torch.Tensor x: data ``(batch, x_dim)``.
        :raises ValueError: on a wrong shape (:func:`pyrovae.data.validation.check_shape`), or, while Pyro's
            validation is on, values outside the likelihood's support.
        :raises TypeError: if ``x`` is not a floating point tensor of the parameters' dtype.
        """
        self._check(x)
        return self.posterior(x).mean

    @evaluation_method
    def decode_mean(self, z: torch.Tensor) -> torch.Tensor:
        r"""The mean :math:`\mathbb{E}_{p(x|z)}[x]` of the observation for each code, ``(batch, x_dim)``: pixel
        probabilities :math:`\sigma(f_\theta(z))` for the Bernoulli likelihood, the continuous Bernoulli's mean (not
        :math:`\sigma(f_\theta(z))`), the Gaussian's mean :math:`f_\theta(z)`; what pictures show. No gradients;
        evaluation mode (BatchNorm's running statistics, no dropout).

        :param torch.Tensor z: codes ``(batch, z_dim)``, e.g. from :meth:`encode` or the prior.
        :raises ValueError: on a wrong shape.
        :raises TypeError: if ``z`` is not a floating point tensor of the parameters' dtype.
        """
        check_shape(z, self.z_dim, "z", dtype=parameter_dtype(self))
        return self.observation(z).mean

    @evaluation_method
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        r"""The reconstruction of each row of ``x``, ``(batch, x_dim)``: :meth:`decode_mean` at :meth:`encode`, the
        mean of :math:`p(x|z)` at the mean of :math:`q(z|x)` (for a flow guide, the flow's output at the base
        Gaussian's mean); deterministic. No gradients; evaluation mode.

        :param torch.Tensor x: data ``(batch, x_dim)``, as the guide takes it (binarized for the Bernoulli
            likelihood).
        :raises ValueError: as :meth:`encode`.
        """
        return self.decode_mean(self.encode(x))
