r"""The VampPrior (Tomczak & Welling 2018): a VAE whose prior is the mixture of its own posteriors at :math:`K`
learned pseudo-inputs.

.. math::

    p_\lambda(z) = \frac1K \sum_{k=1}^K q_\phi(z | u_k)
    = \frac1K \sum_{k=1}^K \mathcal{N}(z; \mu_\phi(u_k), \mathrm{diag}\,\sigma_\phi(u_k)^2),

with the pseudo-inputs :math:`u_1, \dots, u_K` (points in the data space) learned with the networks. The prior
approximates the aggregated posterior :math:`\frac1N \sum_n q(z | x_n)`, the prior that maximises the ELBO, with
:math:`K \ll N` components. Only :meth:`VampVAE.prior` changes: the model's ``"z"`` is drawn from the mixture
(:class:`pyrovae.models.distributions.NormalMixture`, whose ``log_prob`` takes ``(N, K)`` matrix products, not
``(N, K, D)`` differences), :math:`p(x|z)` and the guide :math:`q(z|x)` are the :class:`pyrovae.VAE`'s, so any Pyro
ELBO, the IWAE objective and :func:`pyrovae.log_marginal_likelihood` work unchanged. The model now runs the encoder
too: it registers ``"encoder"`` (shared with the guide) and ``"pseudo_inputs"`` with Pyro's param store.

Pseudo-inputs as in the paper's code: :math:`u_k = \mathrm{hardtanh}_{[0, 1]}(w_k)` with :math:`w_k` initialised
:math:`\mathcal{N}(0.05, 0.01^2)` per coordinate, so that they stay in the data's range :math:`[0, 1]` (Bernoulli and
continuous Bernoulli likelihoods); for ``likelihood="normal"`` (real values) :math:`u_k = w_k`. The paper's
alternative, pseudo-inputs initialised at training points, needs the data at construction and is not offered.

Sites and module names are the :class:`pyrovae.VAE`'s, with one more module:

====================  ===========================================================  ========================
name                  what                                                         shape
====================  ===========================================================  ========================
``"z"``               latent code, ``NormalMixture`` prior / guide Normal          ``(batch, z_dim)``
``"pseudo_inputs"``   ``pyro.module`` name of the :class:`PseudoInputs` (model)    ``(K, x_dim)``
``"encoder"``         ``pyro.module`` name of the encoder (guide, and the model's
                      prior)
====================  ===========================================================  ========================

**References**

[1] VAE with a VampPrior, J. M. Tomczak and M. Welling, AISTATS 2018 (code: github.com/jmtomczak/vae_vampprior).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from pyrovae.models.distributions import NormalMixture
from pyrovae.models.vae import VAE
from pyrovae.seeding import seeded

#: mean and standard deviation of the pseudo-inputs' initial values (the paper's code, MNIST)
PSEUDO_INPUT_INIT = (0.05, 0.01)


class PseudoInputs(nn.Module):
    """``num`` learned points :math:`u_k` of the data space; called, returns them, ``(num, x_dim)``.

    :param int num: the number :math:`K` of pseudo-inputs.
    :param int x_dim: data dimension.
    :param bool bounded: clamp them to :math:`[0, 1]` by a hardtanh (data in :math:`[0, 1]`); else unbounded.
    """

    def __init__(self, num: int, x_dim: int, bounded: bool = True) -> None:
        super().__init__()
        if int(num) < 1:
            raise ValueError(f"the VampPrior needs at least one pseudo-input, got {num}")
        self.bounded = bounded
        self.weight = nn.Parameter(torch.empty(int(num), int(x_dim)).normal_(*PSEUDO_INPUT_INIT))

    def forward(self) -> torch.Tensor:
        return F.hardtanh(self.weight, 0.0, 1.0) if self.bounded else self.weight


class VampVAE(VAE):
    """A :class:`pyrovae.VAE` with the VampPrior (see the module docstring): :math:`p(z)` is the mixture of the
    encoder's Gaussians at ``pseudo_inputs`` learned points.

    :param int pseudo_inputs: the number :math:`K` of pseudo-inputs (the paper: 500 on MNIST).
    :param int seed: seed of the initial weights, the pseudo-inputs' included (as :class:`~pyrovae.VAE`'s).
    :param kwargs: the other :class:`~pyrovae.VAE` settings (``prefix``, ``likelihood``, ``net``, custom
        ``encoder`` / ``decoder``, ...); the encoder must give a diagonal Gaussian (``(loc, scale)``).
    """

    kind = "vamp"

    def __init__(self, x_dim: int, z_dim: int = 50, hidden: Sequence[int] = (400,), activation: str = "relu",
                 pseudo_inputs: int = 500, seed: int | None = None, **kwargs) -> None:  # fmt: skip
        with seeded(seed):  # the pseudo-inputs' initial values too
            super().__init__(x_dim, z_dim, hidden, activation, **kwargs)
            self.pseudo_inputs = PseudoInputs(pseudo_inputs, x_dim, bounded=self.likelihood != "normal")
        if self.config is not None:
            self.config["pseudo_inputs"] = int(pseudo_inputs)

    def prior(self, batch_size: int, device: torch.device) -> NormalMixture:
        """:math:`\\frac1K \\sum_k q(z | u_k)`, batch shape ``(batch_size,)``; registers ``"encoder"`` and
        ``"pseudo_inputs"`` with Pyro's param store, whose values it reads."""
        self.register("encoder", "pseudo_inputs")
        loc, scale = self.encoder(self.pseudo_inputs())
        return NormalMixture(loc, scale).expand([batch_size])


#: the priors of a VAE by name (``pyrovae train --prior``, :class:`pyrovae.VAEModel`'s ``prior``): the class built
PRIORS: dict[str, type[VAE]] = {"standard": VAE, "vamp": VampVAE}
