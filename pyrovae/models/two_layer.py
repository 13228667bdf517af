r"""A VAE with two stochastic layers, :math:`z_1` and :math:`z_2`, as Burda et al.'s two-layer model (2016).

Generative model and bottom-up guide, for each data point :math:`n` in the data plate:

.. math::

    p(z_{2n}) = \mathcal{N}(0, I), \qquad
    p(z_{1n} | z_{2n}) = \mathcal{N}(\mu_\theta(z_{2n}), \mathrm{diag}\,\sigma_\theta(z_{2n})^2), \qquad
    p(x_n | z_{1n}) = \prod_d \mathrm{Bernoulli}(x_{nd}; \sigma(f_\theta(z_{1n})_d)),

    q(z_{1n} | x_n) = \mathcal{N}(\mu_\phi(x_n), \mathrm{diag}\,\sigma_\phi(x_n)^2), \qquad
    q(z_{2n} | z_{1n}) = \mathcal{N}(\mu_\phi(z_{1n}), \mathrm{diag}\,\sigma_\phi(z_{1n})^2).

The guide samples :math:`z_1` first (reparameterized) and :math:`z_2` from it, so one importance weight is

.. math::

    \log w = \log p(x | z_1) + \log p(z_1 | z_2) + \log p(z_2) - \log q(z_1 | x) - \log q(z_2 | z_1).

Both latent sites sit in the data plate, so every Pyro ELBO, :class:`pyrovae.TraceIWAE_ELBO` and
:func:`pyrovae.log_marginal_likelihood` use the model and guide unchanged. The Bernoulli :math:`p(x|z_1)` is the
default; ``likelihood="continuous-bernoulli"`` or ``"normal"`` model grey levels (:mod:`pyrovae.models.likelihoods`).

**Architecture.** The defaults are those of Burda et al.'s two-stochastic-layer MNIST model (described in the
paper's experiments section; the sizes were checked against the authors' code, ``experiments.py`` of
github.com/yburda/iwae:
latent units ``[100, 50]``, q hidden ``[[200, 200], [100, 100]]``, p hidden ``[[100, 100], [200, 200]]``):
x → 200 → 200 → :math:`z_1` (100) → 100 → 100 → :math:`z_2` (50) in the guide, the mirror image in the model,
tanh between hidden layers. Two differences: their Gaussian scales are :math:`\exp` of a linear layer, ours are
softplus plus 1e-4 (:class:`pyrovae.models.nets.Encoder`), and their output layer's bias is initialised from the
training data's pixel means, ours as PyTorch initialises it.

Sites (documented, because users condition on them); with ``prefix="p"`` each becomes ``"p/<name>"``:

==============  ==============================================================  ======================
site            what                                                            shape
==============  ==============================================================  ======================
``"data"``      the data plate, size ``num_data`` (subsampled minibatch)        dim -1
``"z2"``        top latent: prior ``Normal(0, I).to_event(1)``, guide           ``(batch, z2_dim)``
                ``Normal(μ(z1), σ(z1)).to_event(1)``
``"z1"``        bottom latent: model ``Normal(μ(z2), σ(z2)).to_event(1)``,      ``(batch, z1_dim)``
                guide ``Normal(μ(x), σ(x)).to_event(1)``
``"x"``         observation :math:`p(x|z_1)` chosen by ``likelihood``           ``(batch, x_dim)``
``"encoder1"``  ``pyro.module``: x → (loc, scale) of z1 (guide)
``"encoder2"``  ``pyro.module``: z1 → (loc, scale) of z2 (guide)
``"decoder2"``  ``pyro.module``: z2 → (loc, scale) of z1 (model)
``"decoder1"``  ``pyro.module``: z1 → logits (or mean) of x (model)
``"scale"``     ``pyro.module`` of the learned Gaussian scale of x (model;
                ``likelihood="normal"``, ``scale=None`` only)
==============  ==============================================================  ======================

**References**

[1] Importance Weighted Autoencoders, Y. Burda, R. Grosse and R. Salakhutdinov, ICLR 2016.

[2] Stochastic Backpropagation and Approximate Inference in Deep Generative Models,
    D. J. Rezende, S. Mohamed and D. Wierstra, ICML 2014.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyro
import pyro.distributions as dist
import torch

from pyrovae.data.validation import check_shape, parameter_dtype
from pyrovae.device import evaluation_method
from pyrovae.models.base import ObservedModel, standard_normal
from pyrovae.models.nets import Decoder, Encoder
from pyrovae.seeding import seeded


class TwoLayerVAE(ObservedModel):
    """A VAE with two stochastic layers (see the module docstring) whose :meth:`model` and :meth:`guide` are
    ordinary Pyro callables, trained and evaluated like :class:`pyrovae.VAE`.

    The conditional Gaussians (q(z1|x), q(z2|z1), p(z1|z2)) are :class:`~pyrovae.models.nets.Encoder` networks, the
    observation network a :class:`~pyrovae.models.nets.Decoder`; each model network mirrors the hidden sizes of its
    guide network.

    :param int x_dim: data dimension (flattened images, e.g. 784).
    :param int z1_dim: dimension of the bottom latent z1 (Burda et al.: 100).
    :param int z2_dim: dimension of the top latent z2 (Burda et al.: 50).
    :param hidden1: hidden sizes between x and z1: of ``encoder1`` and, reversed, ``decoder1`` (Burda: 200, 200).
    :param hidden2: hidden sizes between z1 and z2: of ``encoder2`` and, reversed, ``decoder2`` (Burda: 100, 100).
    :param str activation: activation between hidden layers (Burda: tanh).
    :param str prefix: prepended to every site and module name (``"p/z1"``).
    :param str likelihood: the observation model p(x|z1), as for :class:`pyrovae.VAE`.
    :param float scale: ``"normal"`` only: a fixed standard deviation, or ``None`` to learn one per coordinate.
    :param int seed: seed of the initial weights (as :class:`pyrovae.VAE`'s); ``None`` draws them from torch's
        global generator.
    """

    kind = "two-layer"

    def __init__(
        self,
        x_dim: int,
        z1_dim: int = 100,
        z2_dim: int = 50,
        hidden1: Sequence[int] = (200, 200),
        hidden2: Sequence[int] = (100, 100),
        activation: str = "tanh",
        prefix: str = "",
        likelihood: str = "bernoulli",
        scale: float | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(x_dim, prefix, likelihood)
        if min(int(x_dim), int(z1_dim), int(z2_dim)) < 1:
            raise ValueError(f"x_dim, z1_dim and z2_dim must be positive, got {x_dim}, {z1_dim}, {z2_dim}")
        self._init_scale(scale)
        self.z1_dim, self.z2_dim = int(z1_dim), int(z2_dim)
        hidden1, hidden2 = [int(h) for h in hidden1], [int(h) for h in hidden2]
        with seeded(seed):
            self.encoder1 = Encoder(self.x_dim, self.z1_dim, hidden1, activation)
            self.encoder2 = Encoder(self.z1_dim, self.z2_dim, hidden2, activation)
            self.decoder2 = Encoder(self.z2_dim, self.z1_dim, hidden2[::-1], activation)
            self.decoder1 = Decoder(self.z1_dim, self.x_dim, hidden1[::-1], activation)
        self.config = {
            "model": self.kind,
            "x_dim": self.x_dim,
            "z1_dim": self.z1_dim,
            "z2_dim": self.z2_dim,
            "hidden1": hidden1,
            "hidden2": hidden2,
            "activation": activation,
            "prefix": prefix,
            "likelihood": likelihood,
            "scale": None if scale is None else float(scale),
        }

    @property
    def latent_sites(self) -> tuple[str, str]:
        """The full names of the latent sites, bottom layer first: ``(site("z1"), site("z2"))``."""
        return self.site("z1"), self.site("z2")

    def observation(self, z1: torch.Tensor) -> dist.TorchDistribution:
        """The distribution p(x|z1) of the chosen likelihood, event shape ``(x_dim,)``."""
        return self._observe(self.decoder1(z1))

    def model(
        self,
        x: torch.Tensor | None = None,
        num_data: int | None = None,
        *,
        subsample: torch.Tensor | None = None,
        plate: str | None = None,
    ) -> torch.Tensor:
        """Generative model :math:`p(z_2)\\,p(z_1|z_2)\\,p(x|z_1)`.

        :param torch.Tensor x: observed data ``(batch, x_dim)``, or ``None`` to generate.
        :param int num_data: size of the full dataset when ``x`` is a minibatch (scales the ELBO);
            with ``x=None``, the number of data points to generate (default 1).
        :param torch.Tensor subsample: the data plate's indices, as in :meth:`pyrovae.VAE.model`.
        :param str plate: a caller's plate to use, as in :meth:`pyrovae.VAE.model`.
        :returns: ``x`` (observed or sampled).
        """
        self.register("decoder2", "decoder1")
        data, batch_size, device = self._data_plate(x, num_data, subsample, plate)
        with data:
            z2 = pyro.sample(self.site("z2"), standard_normal(batch_size, self.z2_dim, device))
            z1 = pyro.sample(self.site("z1"), dist.Normal(*self.decoder2(z2)).to_event(1))
            return pyro.sample(self.site("x"), self.observation(z1), obs=x)

    def guide(
        self,
        x: torch.Tensor | None = None,
        num_data: int | None = None,
        *,
        subsample: torch.Tensor | None = None,
        plate: str | None = None,
    ) -> dict[str, torch.Tensor]:
        """Bottom-up guide :math:`q(z_1|x)\\,q(z_2|z_1)`, diagonal Gaussians, reparameterized, z1 sampled first.

        :param torch.Tensor x: data ``(batch, x_dim)``; the guide needs it.
        :param int num_data: as in :meth:`model`.
        :param torch.Tensor subsample: as in :meth:`model`.
        :param str plate: as in :meth:`model`.
        :returns: ``{site("z1"): z1, site("z2"): z2}``, the sampled latents by site name.
        """
        if x is None:
            raise ValueError("the guide q(z1|x) q(z2|z1) needs data x; to generate from the prior, run the model alone")
        self.register("encoder1", "encoder2")
        data, _, _ = self._data_plate(x, num_data, subsample, plate)
        with data:
            z1 = pyro.sample(self.site("z1"), dist.Normal(*self.encoder1(x)).to_event(1))
            z2 = pyro.sample(self.site("z2"), dist.Normal(*self.encoder2(z1)).to_event(1))
        return {self.site("z1"): z1, self.site("z2"): z2}

    @evaluation_method
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        r"""The bottom code of each row of ``x`` that :meth:`reconstruct` decodes, ``(batch, z1_dim)``: the mean
        :math:`\mu_\phi(x)` of :math:`q(z_1|x)` (:math:`z_2` does not enter :math:`p(x|z_1)`). No gradients;
        evaluation mode.

        :raises ValueError: as :meth:`pyrovae.VAE.encode`.
        """
        self._check(x)
        return self.encoder1(x)[0]

    @evaluation_method
    def decode_mean(self, z1: torch.Tensor) -> torch.Tensor:
        r"""The mean of :math:`p(x|z_1)` for each bottom code, ``(batch, x_dim)``, as :meth:`pyrovae.VAE.decode_mean`.

        :param torch.Tensor z1: codes ``(batch, z1_dim)``.
        """
        check_shape(z1, self.z1_dim, "z1", dtype=parameter_dtype(self))
        return self.observation(z1).mean

    @evaluation_method
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        r""":meth:`decode_mean` at :meth:`encode`: the mean of :math:`p(x|z_1)` at the mean of :math:`q(z_1|x)`,
        ``(batch, x_dim)``. No gradients; evaluation mode."""
        return self.decode_mean(self.encode(x))
