"""Seeds: how a seed becomes random state, in one place.

A run is a function of its seed through two doors: the **initial weights**, drawn when a model is built
(``VAE(..., seed=S)``: :func:`seeded`), and the **training noise** (minibatch order, dynamic binarization, the
draws of the latents), which :func:`pyrovae.fit` seeds with the ``seed`` of :class:`pyrovae.TrainConfig`
(:func:`set_seed`). The command line passes its ``--seed`` to both, so two runs with one seed on one machine are
identical bit for bit (tested in subprocesses).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pyro
import torch


def set_seed(seed: int) -> None:
    """Seed every global generator a run draws from: Python's ``random``, NumPy's and torch's (CPU and CUDA),
    as :func:`pyro.set_rng_seed` does."""
    pyro.set_rng_seed(int(seed))


@contextmanager
def seeded(seed: int | None) -> Iterator[None]:
    """Run the block with torch's CPU generator seeded with ``seed`` and give the caller's generator state back
    afterwards, so that what the block draws (e.g. a model's initial weights) depends on ``seed`` alone and the
    caller's random stream is left as it was. ``seed=None`` runs the block on the caller's stream, unseeded.

    :raises ValueError: for a negative or non-integer seed.
    """
    if seed is None:
        yield
        return
    if isinstance(seed, bool) or int(seed) != seed or seed < 0:
        raise ValueError(f"seed must be a non-negative integer or None, got {seed!r}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        yield
