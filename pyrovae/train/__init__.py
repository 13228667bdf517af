"""Training: SVI on the ELBO (:func:`fit`) and semi-supervised M2 (:func:`fit_semisupervised`), with run folders,
checkpoints that resume, a divergence stop and data-parallel training."""

from pyrovae.train.semisupervised import SemiSupervisedConfig, fit_semisupervised, labelled_subset
from pyrovae.train.svi import TrainConfig, fit

__all__ = ["SemiSupervisedConfig", "TrainConfig", "fit", "fit_semisupervised", "labelled_subset"]
