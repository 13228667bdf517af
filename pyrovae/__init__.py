"""pyrovae: variational autoencoders written the Pyro way."""

from pyrovae.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from pyrovae.data import Dataset, load_dataset
from pyrovae.errors import PyrovaeError, RunFolderError, TrainingDiverged
from pyrovae.infer.importance import ImportanceEstimate, log_marginal_likelihood
from pyrovae.infer.iwae import TraceIWAE_ELBO
from pyrovae.infer.metrics import elbo_per_datapoint, elbo_terms
from pyrovae.models.adgm import ADGM
from pyrovae.models.autoencoder import Autoencoder
from pyrovae.models.features import LatentFeatures, active_units
from pyrovae.models.nets import Decoder, Encoder
from pyrovae.models.registry import load_model, load_ssvae, load_vae
from pyrovae.models.ssvae import SSVAE
from pyrovae.models.two_layer import TwoLayerVAE
from pyrovae.models.vae import VAE
from pyrovae.objects import SSVAEModel, VAEModel
from pyrovae.train.semisupervised import SemiSupervisedConfig, fit_semisupervised, labelled_subset
from pyrovae.train.svi import TrainConfig, fit
from pyrovae.viz import compare, latent

__version__ = "0.1.0"

__all__ = [
    "ADGM",
    "SSVAE",
    "SSVAEModel",
    "Autoencoder",
    "VAE",
    "VAEModel",
    "CheckpointError",
    "Dataset",
    "Decoder",
    "Encoder",
    "ImportanceEstimate",
    "PyrovaeError",
    "RunFolderError",
    "TrainingDiverged",
    "LatentFeatures",
    "SemiSupervisedConfig",
    "TraceIWAE_ELBO",
    "TwoLayerVAE",
    "active_units",
    "TrainConfig",
    "compare",
    "elbo_per_datapoint",
    "elbo_terms",
    "fit",
    "fit_semisupervised",
    "labelled_subset",
    "latent",
    "load_checkpoint",
    "load_dataset",
    "load_model",
    "load_ssvae",
    "load_vae",
    "log_marginal_likelihood",
    "save_checkpoint",
]
