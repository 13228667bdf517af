"""The models: Pyro model/guide pairs (the VAE family and the semi-supervised M2), their networks and likelihoods."""

from pyrovae.models.autoencoder import Autoencoder
from pyrovae.models.iaf import IAFVAE
from pyrovae.models.nets import Decoder, Encoder
from pyrovae.models.ssvae import SSVAE
from pyrovae.models.two_layer import TwoLayerVAE
from pyrovae.models.vae import VAE

__all__ = ["IAFVAE", "SSVAE", "VAE", "Autoencoder", "Decoder", "Encoder", "TwoLayerVAE"]
