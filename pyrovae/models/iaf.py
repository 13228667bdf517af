r"""Inverse autoregressive flow guides (Kingma et al. 2016), built from ``pyro.distributions.transforms``.

The guide's distribution of :math:`z` is a diagonal Gaussian pushed through :math:`T` affine autoregressive
steps conditioned on a context :math:`h(x)` (the encoder's last hidden layer):

.. math::

    z_0 = \mu(x) + \sigma(x) \odot \varepsilon, \quad \varepsilon \sim \mathcal{N}(0, I), \qquad
    z_t = m_t(z_{t-1}, h) + s_t(z_{t-1}, h) \odot z_{t-1}, \quad t = 1..T,

where :math:`(m_t, s_t)_i` depend on :math:`z_{t-1}` only through its coordinates before :math:`i` (a MADE
network, Pyro's ``ConditionalAutoRegressiveNN``; the order is reversed from one step to the next). The
Jacobian of each step is triangular, so

.. math:: \log q(z_T | x) = \log \mathcal{N}(z_0; \mu, \sigma^2) - \sum_{t=1}^T \sum_i \log s_{t,i}.

The guide is still one Pyro sample site ``"z"``, now a ``TransformedDistribution``: SVI with any ELBO, the
IWAE objective and the marginal-likelihood estimator use it unchanged (sampling caches each step's inverse,
so ``log_prob`` of the guide's own samples needs no inversion). Each step starts as the identity (its output
layer is zero), so an untrained IAF guide is exactly the Gaussian guide.

**References**

[1] Improved Variational Inference with Inverse Autoregressive Flow, D. P. Kingma, T. Salimans,
    R. Jozefowicz, X. Chen, I. Sutskever and M. Welling, NeurIPS 2016.
[2] MADE: Masked Autoencoder for Distribution Estimation, M. Germain, K. Gregor, I. Murray and
    H. Larochelle, ICML 2015.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyro.distributions as dist
import torch
from pyro.distributions.transforms import ConditionalAffineAutoregressive
from pyro.nn import ConditionalAutoRegressiveNN
from torch import nn

from pyrovae.device import evaluation_method
from pyrovae.models.nets import Encoder
from pyrovae.models.vae import VAE
from pyrovae.seeding import seeded


class IAFEncoder(nn.Module):
    """A Gaussian encoder followed by ``depth`` conditional IAF steps.

    Called on ``x`` it returns the base Gaussian's ``(loc, scale)`` like a plain encoder; :meth:`posterior`
    gives the flow distribution.

    :param base: the Gaussian encoder, an :class:`~pyrovae.models.nets.Encoder` or
        :class:`~pyrovae.models.nets.ConvEncoder` (its ``hidden(x)`` is the flow's context).
    :param int x_dim: data dimension.
    :param int depth: number of IAF steps.
    :param flow_hidden: hidden sizes of each step's MADE network (default ``(10 * z_dim,)``, Pyro's
        default); each must be at least ``z_dim``.
    """

    def __init__(
        self, base: Encoder, x_dim: int, depth: int = 2, flow_hidden: Sequence[int] | None = None
    ) -> None:
        super().__init__()
        if int(depth) < 1:
            raise ValueError(f"an IAF needs at least one step, got depth={depth}")
        z_dim = base.z_dim
        flow_hidden = list(flow_hidden or [10 * z_dim])
        self.base = base
        with torch.no_grad():
            context_dim = base.hidden(torch.zeros(1, x_dim)).shape[-1]
        order = torch.arange(z_dim)
        self.steps = nn.ModuleList()
        for t in range(int(depth)):
            made = ConditionalAutoRegressiveNN(
                z_dim, context_dim, flow_hidden, permutation=order if t % 2 == 0 else order.flip(0)
            )
            nn.init.zeros_(made.layers[-1].weight)  # m = 0, log s = 0: the step starts as the identity
            nn.init.zeros_(made.layers[-1].bias)
            self.steps.append(ConditionalAffineAutoregressive(made))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.base(x)

    def posterior(self, x: torch.Tensor) -> dist.TransformedDistribution:
        """:math:`q(z|x)`: the base Gaussian pushed through the steps conditioned on the context."""
        h = self.base.hidden(x)
        loc, scale = self.base.head(h)
        return dist.TransformedDistribution(
            dist.Normal(loc, scale).to_event(1), [step.condition(h) for step in self.steps]
        )


class IAFVAE(VAE):
    """A :class:`pyrovae.VAE` whose guide is an inverse autoregressive flow (see the module docstring).

    Same sites, module names (the flow lives inside the ``"encoder"`` module) and checkpoints as the VAE.

    :param int flow_depth: number of IAF steps.
    :param flow_hidden: hidden sizes of each step's MADE network (default ``(10 * z_dim,)``).
    :param int seed: seed of the initial weights, the flow's included (as :class:`~pyrovae.VAE`'s).
    :param kwargs: the other :class:`~pyrovae.VAE` settings (``prefix``, ``likelihood``, ``net``, ...), except
        a custom ``encoder``; the flow's context is the last hidden layer of the MLP or convolutional encoder.
    """

    kind = "iaf"

    def __init__(self, x_dim: int, z_dim: int = 50, hidden: Sequence[int] = (400,), activation: str = "relu",
                 flow_depth: int = 2, flow_hidden: Sequence[int] | None = None, seed: int | None = None,
                 **kwargs) -> None:  # fmt: skip
        if "encoder" in kwargs:
            raise ValueError("IAFVAE builds its own encoder (a Gaussian encoder followed by the flow)")
        with seeded(seed):  # the flow's initial weights too
            super().__init__(x_dim, z_dim, hidden, activation, **kwargs)
            self.encoder = IAFEncoder(self.encoder, x_dim, flow_depth, flow_hidden)
        self.config.update(
            flow_depth=int(flow_depth), flow_hidden=None if flow_hidden is None else [int(h) for h in flow_hidden]
        )

    def posterior(self, x: torch.Tensor) -> dist.TransformedDistribution:
        return self.encoder.posterior(x)

    @evaluation_method
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        r"""The code of each row of ``x`` that :meth:`~pyrovae.VAE.reconstruct` decodes, ``(batch, z_dim)``: the base
        Gaussian's mean :math:`\mu(x)` pushed through the flow's steps (:math:`z_T` at :math:`\varepsilon = 0`),
        since the mean of :math:`q(z_T|x)` has no closed form. No gradients; evaluation mode.

        :raises ValueError: as :meth:`pyrovae.VAE.encode`.
        """
        self._check(x)
        q = self.posterior(x)
        z = q.base_dist.mean
        for step in q.transforms:
            z = step(z)
        return z
