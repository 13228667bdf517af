"""The semi-supervised VAE (Kingma et al.'s M2) as one object: data and labels in, a :class:`pyrovae.SSVAE` built
for them, trained by :func:`pyrovae.fit_semisupervised` on ``num_labels`` of the labels, a classifier and a
generative model evaluated in the data's own units, saved and loaded back (:mod:`pyrovae.objects.base`).

.. code-block:: python

    m = pyrovae.SSVAEModel(x, labels=y, num_labels=100)   # or a labelled Dataset
    m.train(epochs=20)
    m.predict(x_new)                                      # class indices
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch

from pyrovae.data.datasets import Dataset, Split
from pyrovae.data.validation import check_labels
from pyrovae.models.ssvae import SSVAE
from pyrovae.objects.base import BATCH_SIZE, DataLike, ModelObject, intake
from pyrovae.train.semisupervised import SemiSupervisedConfig, fit_semisupervised


class SSVAEModel(ModelObject):
    """A :class:`pyrovae.SSVAE` with its data, training and evaluation in one object.

    :param data: the training data, as for :class:`~pyrovae.objects.vae.VAEModel`; a Dataset (or a file) brings
        its labels (``data.train.y``).
    :param labels: with a tensor or array ``data``: the class index of every row, ``(N,)`` integers from 0, or -1
        where the label is missing.
    :param int num_labels: with every label known, how many of them training uses, the same number from every class
        (:func:`pyrovae.labelled_subset`), the other rows counting as unlabelled (a setting of
        :meth:`~pyrovae.objects.base.ModelObject.train`, which may give another); with labels missing (-1), ignored:
        training uses the labels given.
    :param int num_classes: the number of classes (default: the Dataset's, or the largest label plus one).
    :param int z_dim: dimension of the style latent.
    :param str likelihood: as for :class:`~pyrovae.objects.vae.VAEModel`.
    :param str binarize: as for :class:`~pyrovae.objects.vae.VAEModel`.
    :param bool standardize: as for :class:`~pyrovae.objects.vae.VAEModel`.
    :param image_shape: as for :class:`~pyrovae.objects.vae.VAEModel`.
    :param int seed: seed of the initial weights and (by default) of the training noise.
    :param dict data_options: options of ``load_file`` when ``data`` is a path.
    :param model_options: further arguments of :class:`pyrovae.SSVAE` (``hidden``, ``activation``, ``alpha``, ...).
    :raises ValueError: without labels, or for labels that are not class indices of every row.
    """

    section, config_class, module_class = "ssvae", SemiSupervisedConfig, SSVAE

    def __init__(
        self,
        data: DataLike,
        labels: Any = None,
        *,
        num_labels: int = 100,
        num_classes: int | None = None,
        z_dim: int = 50,
        likelihood: str = "auto",
        binarize: str = "none",
        standardize: bool = True,
        image_shape: tuple[int, int, int] | None = None,
        seed: int = 0,
        data_options: dict[str, Any] | None = None,
        **model_options: Any,
    ) -> None:
        if labels is not None and isinstance(data, Dataset):
            raise TypeError("a Dataset brings its own labels (data.train.y): give labels with a tensor or array only")
        dataset, likelihood, reason = intake(data, likelihood, binarize=binarize, standardize=standardize,
                                             image_shape=image_shape, data_options=data_options)  # fmt: skip
        if labels is not None:
            y = torch.as_tensor(labels)
            check_labels(y, len(dataset.train), int(y.max()) + 1 if len(y) else 1, name="labels", missing=True)
            dataset = replace(dataset, train=Split(dataset.train.x, y.to(dataset.train.x.device)),
                              num_classes=int(y.max()) + 1)  # fmt: skip
        if dataset.train.y is None:
            raise ValueError("the SSVAE learns from labels: give labels=(N,) class indices, or a labelled Dataset")
        if num_classes is not None:
            check_labels(dataset.train.y, len(dataset.train), num_classes, name="labels", missing=True)
            dataset = replace(dataset, num_classes=int(num_classes))
        missing = dataset.train.y < 0
        if bool(missing.all()):
            raise ValueError("every label is -1 (missing): give the labels of some rows")
        num_labels = int((~missing).sum()) if bool(missing.any()) else num_labels  # the labels given
        ssvae = SSVAE(dataset.x_dim, dataset.num_classes, z_dim=z_dim, likelihood=likelihood, seed=seed,
                      **model_options)  # fmt: skip
        super().__init__(ssvae, dataset, reason, seed)
        self.train_defaults["num_labels"] = num_labels

    def _fit(self, data: Dataset, config: SemiSupervisedConfig, **options: Any) -> list[dict[str, Any]]:
        return fit_semisupervised(self.module, data, config, **options)

    def predict_proba(self, x: Any, *, batch_size: int = BATCH_SIZE) -> torch.Tensor:
        """The classifier's class probabilities q(y|x) of the rows ``x`` (data units), ``(N, num_classes)``
        (:meth:`pyrovae.SSVAE.predict`).

        :raises ValueError: for rows of another width."""
        return torch.cat([self.module.predict(chunk) for chunk in self.inputs(x).split(batch_size)])

    def predict(self, x: Any, *, batch_size: int = BATCH_SIZE) -> torch.Tensor:
        """The most probable class of each row of ``x`` under q(y|x), ``(N,)`` class indices."""
        return self.predict_proba(x, batch_size=batch_size).argmax(-1)

    def latent(self, x: Any, y: Any = None, *, batch_size: int = BATCH_SIZE) -> torch.Tensor:
        """The posterior mean of the style ``z`` of each row of ``x`` given its label ``y`` (class indices, -1 where
        unknown) or, where none is given, the classifier's guess, ``(N, z_dim)`` (:meth:`pyrovae.SSVAE.style`).

        :raises ValueError: for rows of another width, or labels that do not fit them."""
        x = self.inputs(x)
        if y is None:
            return torch.cat([self.module.style(chunk) for chunk in x.split(batch_size)])
        y = as_labels(y, len(x), self.module.num_classes).to(x.device)
        return torch.cat([self.module.style(*pair) for pair in zip(x.split(batch_size), y.split(batch_size),
                                                                    strict=True)])  # fmt: skip


def as_labels(y: Any, num: int, num_classes: int) -> torch.Tensor:
    """``y`` (tensor or array) as ``(num,)`` class indices, -1 allowed for a missing one.

    :raises ValueError: or TypeError, as :func:`pyrovae.data.validation.check_labels`."""
    y = torch.as_tensor(y)
    check_labels(y, num, num_classes, name="y", missing=True)
    return y
