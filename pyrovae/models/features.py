r"""Latent features of a trained VAE, for the stacked "M1+M2" model of Kingma et al. (2014).

M1 is a VAE trained without labels; M2 (:class:`pyrovae.SSVAE`) is then trained on its codes
:math:`z_1 \sim q(z_1|x)` instead of the pixels. :class:`LatentFeatures` is that map: the VAE's encoder,
restricted to its **active units** (Burda et al. 2016: :math:`\mathrm{Cov}_x(\mathbb{E}_{q(z|x)}[z_i]) > 10^{-2}`;
the other units carry no information about ``x``), drawing :math:`z_1` in training mode and returning the
posterior mean in evaluation mode.

**References**

[1] Semi-Supervised Learning with Deep Generative Models, D. P. Kingma, D. J. Rezende, S. Mohamed and
    M. Welling, NeurIPS 2014.

[2] Importance Weighted Autoencoders, Y. Burda, R. Grosse and R. Salakhutdinov, ICLR 2016.
"""

from __future__ import annotations

import torch
from torch import nn

from pyrovae.models.likelihoods import check_likelihood, observation

#: Burda et al.'s threshold on the variance across data of a unit's posterior mean
ACTIVE_THRESHOLD = 1e-2


@torch.no_grad()
def active_units(encoder: nn.Module, x: torch.Tensor, threshold: float = ACTIVE_THRESHOLD,
                 batch_size: int = 1000) -> torch.Tensor:  # fmt: skip
    """Boolean mask ``(z_dim,)`` of the units whose posterior mean varies across ``x`` by more than
    ``threshold`` (variance); ``encoder`` maps ``x`` to ``(loc, scale)``."""
    if len(x) < 2:
        raise ValueError("active units need at least two data points")
    means = torch.cat([encoder(chunk)[0] for chunk in x.split(batch_size)])
    return means.var(0) > threshold


class LatentFeatures(nn.Module):
    """``x`` ``(batch, x_dim)`` to VAE codes ``(batch, num_active)``: a sample of q(z|x) in training mode
    (``module.train()``), its mean in evaluation mode. The VAE's nets are frozen (no gradients).

    :param nn.Module encoder: maps ``x`` to ``(loc, scale)``, e.g. ``vae.encoder``.
    :param nn.Module decoder: maps ``z`` to the parameters of p(x|z), e.g. ``vae.decoder`` (for :meth:`decode`).
    :param torch.Tensor active: boolean mask of the units to keep (see :func:`active_units`).
    :param str likelihood: the VAE's likelihood (``vae.likelihood``), which says how :meth:`decode` reads
        the decoder's output.
    """

    def __init__(
        self, encoder: nn.Module, decoder: nn.Module, active: torch.Tensor, likelihood: str = "bernoulli"
    ) -> None:
        super().__init__()
        self.likelihood = check_likelihood(likelihood)
        if active.dtype != torch.bool or active.dim() != 1:
            raise ValueError(f"active must be a 1-D boolean mask, got {active.dtype} of shape {tuple(active.shape)}")
        if not active.any():
            raise ValueError(
                "the boolean mask active has no True entry: no active latent unit (no posterior mean varies across "
                f"the data by more than {ACTIVE_THRESHOLD}: posterior collapse), so the codes say nothing about the "
                "data. Train the VAE longer or with KL warm-up (pyrovae train --kl-warmup-epochs)"
            )
        self.encoder = encoder.requires_grad_(False)
        self.decoder = decoder.requires_grad_(False)
        self.register_buffer("active", active.clone())

    @property
    def dim(self) -> int:
        return int(self.active.sum())

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        loc, scale = self.encoder(x)
        z = loc + scale * torch.randn_like(loc) if self.training else loc
        return z[..., self.active]

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Means of p(x|z) (pixel probabilities for the Bernoulli likelihood) of codes ``z`` ``(..., num_active)``,
        the inactive units set to their prior mean 0."""
        full = z.new_zeros(*z.shape[:-1], len(self.active))
        full[..., self.active] = z
        scale = 1.0 if self.likelihood == "normal" else None  # the mean does not depend on it
        return observation(self.likelihood, self.decoder(full), scale).mean
