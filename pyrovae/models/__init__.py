"""The models: Pyro model/guide pairs (the VAE family, the semi-supervised M2 and ADGM, the conditional VAE), nets and
likelihoods."""

from pyrovae.models.adgm import ADGM
from pyrovae.models.autoencoder import Autoencoder
from pyrovae.models.base import ObservedModel
from pyrovae.models.baseline import Baseline
from pyrovae.models.cvae import CVAE
from pyrovae.models.iaf import IAFVAE
from pyrovae.models.nets import Decoder, Encoder
from pyrovae.models.registry import MODELS, load_model, model_from_config
from pyrovae.models.ssvae import SSVAE
from pyrovae.models.two_layer import TwoLayerVAE
from pyrovae.models.vae import VAE
from pyrovae.models.vamp import VampVAE

__all__ = [
    "ADGM",
    "CVAE",
    "IAFVAE",
    "MODELS",
    "SSVAE",
    "VAE",
    "VampVAE",
    "Autoencoder",
    "Baseline",
    "Decoder",
    "Encoder",
    "ObservedModel",
    "TwoLayerVAE",
    "load_model",
    "model_from_config",
]
