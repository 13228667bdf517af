"""pyrovae: variational autoencoders written the Pyro way."""

from . import compare, latent
from .autoencoder import Autoencoder
from .checkpoint import CheckpointError, load_checkpoint, load_vae, save_checkpoint
from .data import Dataset, load_dataset
from .errors import PyrovaeError, RunFolderError, TrainingDiverged
from .features import LatentFeatures, active_units
from .importance import ImportanceEstimate, log_marginal_likelihood
from .iwae import TraceIWAE_ELBO
from .metrics import elbo_per_datapoint, elbo_terms
from .nets import Decoder, Encoder
from .semisupervised import SemiSupervisedConfig, fit_semisupervised, labelled_subset, load_ssvae
from .ssvae import SSVAE
from .train import TrainConfig, fit
from .two_layer import TwoLayerVAE
from .vae import VAE

__version__ = "0.1.0"

__all__ = [
    "SSVAE",
    "Autoencoder",
    "VAE",
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
    "load_ssvae",
    "load_vae",
    "log_marginal_likelihood",
    "save_checkpoint",
]
