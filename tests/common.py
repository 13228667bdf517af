"""Helpers shared by the tests."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from PIL import Image

import pyrovae
from pyrovae.data import Dataset

REPO = Path(__file__).resolve().parents[1]
#: the project's shared data folder (MNIST raw files, binarized MNIST), present beside the checkout
SHARED_DATA = Path(os.environ.get("PYROVAE_SHARED_DATA", REPO.parent / "shared" / "data"))


def tiny_dataset(n_train: int = 40, n_test: int = 12, x_dim: int = 6, seed: int = 0) -> Dataset:
    """A small binary dataset from random Bernoulli rows, statically binarized."""
    g = torch.Generator().manual_seed(seed)
    probs = torch.rand(x_dim, generator=g)
    train = torch.bernoulli(probs.expand(n_train, x_dim), generator=g)
    test = torch.bernoulli(probs.expand(n_test, x_dim), generator=g)
    return Dataset.from_tensors(train, test, image_shape=(1, 2, x_dim // 2))


def tiny_vae(x_dim: int = 6, z_dim: int = 2, **kwargs) -> pyrovae.VAE:
    return pyrovae.VAE(x_dim, z_dim=z_dim, hidden=(8,), **kwargs)


def png_size(path: str | os.PathLike) -> tuple[int, int]:
    """(width, height) of a PNG, after decoding all of its pixels."""
    with Image.open(path) as image:
        assert image.format == "PNG", f"{path} is not a PNG"
        image.load()
        return image.size
