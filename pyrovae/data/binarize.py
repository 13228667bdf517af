r"""Binarization of grey-level images in [0, 1] for Bernoulli likelihoods.

* **dynamic** (the default for training): a fresh draw :math:`x_b \sim \mathrm{Bernoulli}(x)` each time an
  image is used, as in Salakhutdinov & Murray (2008) and Burda et al. (2015); it acts as a regulariser.
* **static**: one draw with a fixed seed, kept for the whole run.

Evaluation sets are always binarized once, with :data:`EVAL_SEED`, so that every epoch and every
model is scored on the same binary images.
"""

from __future__ import annotations

import torch

#: the binarization modes: ``"dynamic"``, ``"static"`` and ``"none"`` (grey levels kept)
BINARIZATIONS = ("dynamic", "static", "none")
#: seed of the single Bernoulli draw that binarizes validation and test sets (and static training sets)
EVAL_SEED = 0


def check_binarization(mode: str) -> str:
    """Return ``mode`` if it is one of :data:`BINARIZATIONS`, else raise a ``ValueError``."""
    if mode not in BINARIZATIONS:
        raise ValueError(f"unknown binarization {mode!r}: choose one of {BINARIZATIONS}")
    return mode


def binarize(x: torch.Tensor, seed: int | None = None) -> torch.Tensor:
    r"""Draw binary images :math:`x_b \sim \mathrm{Bernoulli}(x)` elementwise.

    :param torch.Tensor x: grey levels in [0, 1].
    :param int seed: if given, the draw uses its own generator seeded with it (reproducible, and the
        global RNG is untouched); otherwise the global torch RNG.
    :returns: a float tensor of zeros and ones with the shape of ``x``.
    """
    if x.numel() and (x.min() < 0 or x.max() > 1):
        raise ValueError(
            f"binarize needs grey levels in [0, 1], got values in [{x.min().item():g}, {x.max().item():g}]: "
            "rescale the data first (e.g. divide 8-bit images by 255)"
        )
    if seed is None:
        return torch.bernoulli(x)
    generator = torch.Generator(device=x.device).manual_seed(seed)
    return torch.bernoulli(x, generator=generator)
