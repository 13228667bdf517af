"""pyrovae: variational autoencoders written the Pyro way."""

from .checkpoint import CheckpointError, load_checkpoint, load_vae, save_checkpoint
from .data import Dataset, load_dataset
from .importance import ImportanceEstimate, log_marginal_likelihood
from .metrics import elbo_per_datapoint
from .nets import Decoder, Encoder
from .train import TrainConfig, fit
from .vae import VAE

__version__ = "0.1.0"

__all__ = [
    "VAE",
    "CheckpointError",
    "Dataset",
    "Decoder",
    "Encoder",
    "ImportanceEstimate",
    "TrainConfig",
    "elbo_per_datapoint",
    "fit",
    "load_checkpoint",
    "load_dataset",
    "load_vae",
    "log_marginal_likelihood",
    "save_checkpoint",
]
