"""What a checkpoint records of the data its model saw (``extra["data"]``), written and read in one place.

Whoever saves a model (``pyrovae train``, the model objects) records, beside what it needs to read the data again,
how the model sees them: the image shape of a row, the binarization, and the standardization between the data's
own units and the model's (:mod:`pyrovae.data.standardize`). Whoever uses a saved model on data (``pyrovae
sample`` and ``encode``, :meth:`pyrovae.objects.base.ModelObject.load`) reads them back with
:meth:`DataRecord.read`, so that new rows are standardized and binarized as the training rows were and outputs are
mapped back to the data's units. Checkpoints written before the record held these entries read as images of the
named dataset's shape, seen as they are.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from pyrovae.checkpoint import malformed
from pyrovae.data.datasets import IMAGE_SHAPES, Dataset
from pyrovae.data.standardize import Standardization


@dataclass(frozen=True)
class DataRecord:
    """How a model sees its data.

    :ivar image_shape: ``(C, H, W)`` of a row, or ``None`` when unknown.
    :ivar str binarize: the training data's binarization (:class:`~pyrovae.data.Dataset`'s ``binarize``).
    :ivar standardization: the :class:`~pyrovae.data.standardize.Standardization` applied to the data, or ``None``.
    """

    image_shape: tuple[int, ...] | None = None
    binarize: str = "none"
    standardization: Standardization | None = None

    @classmethod
    def of(cls, data: Dataset) -> DataRecord:
        """The record of the dataset ``data``."""
        return cls(tuple(data.image_shape), data.binarize, data.standardization)

    def state(self) -> dict[str, Any]:
        """The entries of ``extra["data"]`` (plain values and tensors: loads with ``weights_only=True``)."""
        return {
            "image_shape": None if self.image_shape is None else [int(s) for s in self.image_shape],
            "binarize": self.binarize,
            "standardization": None if self.standardization is None else self.standardization.state(),
        }

    @classmethod
    def read(cls, checkpoint: dict[str, Any], path: str | os.PathLike) -> DataRecord:
        """The record in the checkpoint ``checkpoint`` read from ``path`` (see the module docstring).

        :raises CheckpointError: if the entries are damaged."""
        record = checkpoint.get("extra", {}).get("data") or {}
        with malformed(path):
            shape = record.get("image_shape") or IMAGE_SHAPES.get(record.get("name"))
            scale = record.get("standardization")
            return cls(None if shape is None else tuple(shape), record.get("binarize", "none"),
                       None if scale is None else Standardization.from_state(scale))  # fmt: skip
