"""Helpers shared by the tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch.utils._python_dispatch import TorchDispatchMode

import pyrovae
from pyrovae.cli import main
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


class HostReads(TorchDispatchMode):
    """Counts the reads of a tensor's value by the host (``.item()``, ``bool()``, ``float()``: the operator
    ``aten._local_scalar_dense``) made inside the block. On a GPU each is a device synchronisation; on the CPU
    they are counted just the same, so a test here can show that a GPU step would make none."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += func is torch.ops.aten._local_scalar_dense.default
        return func(*args, **(kwargs or {}))


def translations(image: torch.Tensor, s: int) -> dict[tuple[int, int], torch.Tensor]:
    """Every translation of ``image`` ``(C, H, W)`` by up to ``s`` pixels per axis, zero-filled, by offset."""
    c, h, w = image.shape
    out = {}
    for dh in range(-s, s + 1):
        for dw in range(-s, s + 1):
            moved = torch.zeros_like(image)
            moved[:, max(dh, 0):h + min(dh, 0), max(dw, 0):w + min(dw, 0)] = \
                image[:, max(-dh, 0):h + min(-dh, 0), max(-dw, 0):w + min(-dw, 0)]  # fmt: skip
            out[dh, dw] = moved
    return out


def cli_error(capsys: pytest.CaptureFixture, argv: list[str]) -> str:
    """Run ``pyrovae ARGV``, which must fail as a user's mistake does: exit status 1, no traceback, and a last line
    ``pyrovae: error: MESSAGE`` on stderr. Returns MESSAGE."""
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("pyrovae: error: "), err
    return last[len("pyrovae: error: "):]
