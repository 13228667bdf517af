r"""A deterministic autoencoder written as a Pyro model and guide, to compare with the VAE.

The autoencoder uses the same networks and sites as :class:`pyrovae.VAE`; only two distributions change:

.. math::

    q(z_n | x_n) = \delta(z_n - \mu_\phi(x_n)), \qquad
    p(z_n) = \mathcal{N}(0, I) \text{ masked out of the objective}.

With a point-mass guide, :math:`\log q = 0` at its own sample, and with the prior masked,
:math:`\log p(z) = 0` in every trace, so the ELBO of any Pyro ELBO becomes the reconstruction
log-likelihood :math:`\sum_n \log p(x_n | z_n = \mu_\phi(x_n))`: training by SVI with ``Trace_ELBO``
is maximum-likelihood training of a plain autoencoder, and the reported "ELBO" is that
log-likelihood, not a bound on :math:`\log p(x)`. The encoder's scale output is ignored.

Nothing ties the codes to :math:`\mathcal{N}(0, I)`, yet the masked prior still *samples* when the model
runs without data (``model(None, num_data=n)``): it decodes :math:`\mathcal{N}(0, I)` draws, which is
the naive way to "generate" with an autoencoder and the comparison :mod:`pyrovae.viz.compare` measures.

**References**

[1] Reducing the Dimensionality of Data with Neural Networks, G. E. Hinton and R. R. Salakhutdinov,
    Science 2006.

[2] Auto-Encoding Variational Bayes, D. P. Kingma and M. Welling, ICLR 2014 (the VAE it is compared with).
"""

from __future__ import annotations

import pyro.distributions as dist
import torch

from pyrovae.models.vae import VAE


class Autoencoder(VAE):
    """A :class:`pyrovae.VAE` whose guide is a point mass at the encoder's mean and whose prior is masked
    out of the objective (see the module docstring). Same constructor, sites (``"data"``, ``"z"``,
    ``"x"``), module names and checkpoints as the VAE; train it with :func:`pyrovae.fit`."""

    kind = "autoencoder"

    def prior(self, batch_size: int, device: torch.device) -> dist.TorchDistribution:
        """:math:`\\mathcal{N}(0, I)` with ``log_prob`` masked to zero: it samples codes to decode when the
        model runs without data, and adds nothing to the objective."""
        return super().prior(batch_size, device).mask(False)

    def posterior(self, x: torch.Tensor) -> dist.TorchDistribution:
        """The point mass :math:`\\delta(z - \\mu(x))` at the encoder's mean (``log_prob`` 0 there)."""
        loc, _ = self.encoder(x)
        return dist.Delta(loc, event_dim=1)
