"""Helpers shared by the tests."""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import pytest
import torch
from PIL import Image
from pyro.poutine.messenger import Messenger
from torch.utils._python_dispatch import TorchDispatchMode

import pyrovae
from pyrovae.cli import main
from pyrovae.data import Dataset

REPO = Path(__file__).resolve().parents[1]
#: the project's shared data folder (MNIST raw files, binarized MNIST), present beside the checkout
SHARED_DATA = Path(os.environ.get("PYROVAE_SHARED_DATA", REPO.parent / "shared" / "data"))


def run_python_blocks(blocks: list[str], filename: str) -> dict:
    """Run documentation code blocks in order in one namespace, as a reader pasting them would; returns it."""
    namespace = {"__name__": "docs"}
    for block in blocks:
        exec(compile(block, filename, "exec"), namespace)
    return namespace


def tiny_dataset(n_train: int = 40, n_test: int = 12, x_dim: int = 6, seed: int = 0) -> Dataset:
    """A small binary dataset from random Bernoulli rows, statically binarized."""
    g = torch.Generator().manual_seed(seed)
    probs = torch.rand(x_dim, generator=g)
    train = torch.bernoulli(probs.expand(n_train, x_dim), generator=g)
    test = torch.bernoulli(probs.expand(n_test, x_dim), generator=g)
    return Dataset.from_tensors(train, test, image_shape=(1, 2, x_dim // 2))


def tiny_vae(x_dim: int = 6, z_dim: int = 2, **kwargs) -> pyrovae.VAE:
    return pyrovae.VAE(x_dim, z_dim=z_dim, hidden=(8,), **kwargs)


class BatchNormEncoder(torch.nn.Module):
    """An encoder ``(batch, x_dim) -> (loc, scale)`` with a BatchNorm layer: Linear, BatchNorm1d, ReLU, then the
    two heads; it cannot run on one row in training mode."""

    def __init__(self, x_dim: int, z_dim: int, hidden: int = 8) -> None:
        super().__init__()
        self.hidden = torch.nn.Sequential(torch.nn.Linear(x_dim, hidden), torch.nn.BatchNorm1d(hidden), torch.nn.ReLU())
        self.loc, self.raw_scale = torch.nn.Linear(hidden, z_dim), torch.nn.Linear(hidden, z_dim)

    @property
    def norm(self) -> torch.nn.BatchNorm1d:
        return self.hidden[1]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.hidden(x)
        return self.loc(h), torch.nn.functional.softplus(self.raw_scale(h)) + 1e-4


def tiny_ssvae(x_dim: int = 5, num_classes: int = 3, a_dim: int = 0, **kwargs) -> pyrovae.SSVAE:
    """A small M2, or with ``a_dim > 0`` a small ADGM."""
    if a_dim:
        return pyrovae.ADGM(x_dim, num_classes, z_dim=2, hidden=(7,), a_dim=a_dim, **kwargs)
    return pyrovae.SSVAE(x_dim, num_classes, z_dim=2, hidden=(7,), **kwargs)


class FixedNoise(Messenger):
    """Draws the guide's z (and a) as loc + scale * eps with a fixed eps: one per data point ``(batch, dim)``,
    whatever the label, so that enumerated and labelled runs see the same noise; or ``(C, batch, dim)``, one per
    enumerated label."""

    def __init__(self, eps: torch.Tensor, eps_a: torch.Tensor | None = None) -> None:
        super().__init__()
        self.eps = {"z": eps, "a": eps_a}

    def _pyro_sample(self, msg) -> None:
        if self.eps.get(msg["name"]) is not None and not msg["is_observed"]:
            normal = msg["fn"].base_dist
            msg["value"], msg["done"] = normal.loc + normal.scale * self.eps[msg["name"]], True


def binary(n: int = 4, x_dim: int = 5, seed: int = 0) -> torch.Tensor:
    """``n`` random binary rows."""
    return torch.bernoulli(torch.full((n, x_dim), 0.4), generator=torch.Generator().manual_seed(seed))


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
    """Run ``pyrovae ARGV``, which must fail as a user's mistake does: exit status 1, no traceback, and
    ``pyrovae: error: MESSAGE`` at the end of stderr. Returns MESSAGE."""
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "pyrovae: error: " in err, err
    return err[err.rindex("pyrovae: error: ") + len("pyrovae: error: ") :].strip()


N_TRAIN, N_TEST = 3, 2


def idx_gz(array: torch.Tensor) -> bytes:
    """``array`` (uint8) as a gzipped IDX file, the format of the MNIST files."""
    header = struct.pack(">HBB", 0, 0x08, array.dim()) + struct.pack(f">{array.dim()}I", *array.shape)
    return gzip.compress(header + array.numpy().tobytes(), mtime=0)


def fake_files(seed: int) -> dict[str, bytes]:
    """The four .gz files of a tiny MNIST-like dataset (3 training and 2 test images)."""
    g = torch.Generator().manual_seed(seed)
    files = {}
    for split, n in (("train", N_TRAIN), ("t10k", N_TEST)):
        files[f"{split}-images-idx3-ubyte.gz"] = idx_gz(torch.randint(256, (n, 28, 28), generator=g, dtype=torch.uint8))
        files[f"{split}-labels-idx1-ubyte.gz"] = idx_gz(torch.randint(10, (n,), generator=g, dtype=torch.uint8))
    return files


def mapped_file(tensor: torch.Tensor) -> str | None:
    """The file whose memory map holds ``tensor``'s data (from ``/proc/self/maps``), or ``None``; the test is skipped
    where there is no ``/proc`` (not Linux)."""
    maps = Path("/proc/self/maps")
    if not maps.exists():
        pytest.skip("needs /proc/self/maps (Linux) to see memory maps")
    ptr = tensor.data_ptr()
    for line in maps.read_text().splitlines():
        fields = line.split(maxsplit=5)
        start, end = (int(a, 16) for a in fields[0].split("-"))
        if start <= ptr < end:
            return fields[5] if len(fields) == 6 else None
    return None
