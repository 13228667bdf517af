"""Model objects: a pyrovae model with its data, training, evaluation and checkpoint in one object."""

from pyrovae.objects.ssvae import SSVAEModel
from pyrovae.objects.vae import VAEModel

__all__ = ["SSVAEModel", "VAEModel"]
