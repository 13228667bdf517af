"""Datasets as in-memory tensors, and their binarization."""

from pyrovae.data.binarize import BINARIZATIONS, EVAL_SEED, binarize
from pyrovae.data.datasets import DATASETS, Dataset, Split, load_dataset

__all__ = ["BINARIZATIONS", "DATASETS", "EVAL_SEED", "Dataset", "Split", "binarize", "load_dataset"]
