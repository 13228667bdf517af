"""A seed reproduces a run: the initial weights (model constructors), the training noise (fit), the command line."""

import os
import subprocess
import sys

import pytest
import torch

import pyrovae
from pyrovae.checkpoint import load_checkpoint
from pyrovae.models.iaf import IAFVAE
from pyrovae.seeding import seeded
from tests.common import REPO

MODELS = [
    (pyrovae.VAE, {}),
    (pyrovae.VAE, {"net": "conv", "image_shape": (1, 4, 4), "hidden": (8,)}),
    (pyrovae.Autoencoder, {}),
    (IAFVAE, {"flow_depth": 2}),
    (pyrovae.TwoLayerVAE, {}),
    (pyrovae.SSVAE, {}),
    (pyrovae.ADGM, {"a_dim": 3}),
]


def weights(module: torch.nn.Module) -> list[torch.Tensor]:
    return [t.detach().clone() for t in module.state_dict().values()]


@pytest.mark.parametrize("cls, kwargs", MODELS)
def test_a_seed_fixes_the_initial_weights_and_leaves_the_global_generator_alone(cls, kwargs):
    torch.manual_seed(123)
    state = torch.get_rng_state()
    first, again = weights(cls(16, seed=3, **kwargs)), weights(cls(16, seed=3, **kwargs))
    assert torch.equal(torch.get_rng_state(), state)  # the caller's random stream is untouched
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    other = weights(cls(16, seed=4, **kwargs))
    assert any(not torch.equal(a, b) for a, b in zip(first, other, strict=True))
    unseeded = [weights(cls(16, **kwargs)) for _ in range(2)]  # seed=None: the global generator, as before
    assert any(not torch.equal(a, b) for a, b in zip(*unseeded, strict=True))


def test_seeded_blocks():
    with seeded(5):
        a = torch.rand(3)
    with seeded(5):
        assert torch.equal(torch.rand(3), a)
    torch.manual_seed(0)
    with seeded(None):  # the caller's stream
        b = torch.rand(3)
    torch.manual_seed(0)
    assert torch.equal(torch.rand(3), b)
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="seed must be a non-negative integer"):
            with seeded(bad):
                pass


def _cli(*argv: str, cwd) -> None:
    env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "pyrovae", *argv], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr


def _identical(a, b, where: str = "") -> None:
    """``a == b`` for nested dicts and lists holding tensors (bit for bit) and plain values; metrics rows are
    compared without their timing."""
    assert type(a) is type(b), where
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        keys = set(a) - {"seconds"}
        assert keys == set(b) - {"seconds"}, where
        for k in keys:
            _identical(a[k], b[k], f"{where}/{k}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _identical(x, y, f"{where}/{i}")
    else:
        assert a == b, where


def _same_run(a, b) -> None:
    """Two checkpoints hold the same run, bit for bit: weights, optimizer, random state, metrics (but timings)."""
    _identical(load_checkpoint(a), load_checkpoint(b))


@pytest.mark.parametrize(
    "command", [["train", "--epochs", "2"], ["train-ss", "--epochs", "1", "--labels", "50", "--hidden", "64"]]
)
def test_two_command_line_runs_with_one_seed_are_identical(tmp_path, command):
    """Each run in its own process (as a user runs them): the network initialisation is seeded too."""
    for name in ("a", "b"):
        _cli(*command, "--seed", "7", "--quiet", "--out", str(tmp_path / name), cwd=tmp_path)
    _same_run(tmp_path / "a" / "checkpoint.pt", tmp_path / "b" / "checkpoint.pt")
    _cli(*command, "--seed", "8", "--quiet", "--out", str(tmp_path / "c"), cwd=tmp_path)
    with pytest.raises(AssertionError):
        _same_run(tmp_path / "a" / "checkpoint.pt", tmp_path / "c" / "checkpoint.pt")
