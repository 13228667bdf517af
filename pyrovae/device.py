"""Devices: choosing the one to train on, and finding the one a model lives on."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` is CUDA when a GPU is available and the CPU otherwise; anything else is passed to
    :class:`torch.device` after checking that it exists here.

    :raises ValueError: for a CUDA device when CUDA is not available, or an unknown device string.
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except RuntimeError as e:
        raise ValueError(f"unknown device {device!r}: use 'auto', 'cpu' or 'cuda[:N]'") from e
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device} was asked for but CUDA is not available here: use --device auto or cpu")
    return device


def owners(*fns: Callable) -> list[nn.Module]:
    """The distinct ``nn.Module`` s among ``fns`` or owning the bound methods among them (``vae.model`` belongs to
    ``vae``), in order."""
    found: list[nn.Module] = []
    for fn in fns:
        owner = fn if isinstance(fn, nn.Module) else getattr(fn, "__self__", None)
        if isinstance(owner, nn.Module) and all(owner is not o for o in found):
            found.append(owner)
    return found


def device_of(*fns: Callable, default: torch.device | None = None) -> torch.device:
    """Where a model lives: the device of the first parameter of the modules among ``fns`` or owning them
    (:func:`owners`), else ``default``.

    :raises ValueError: if they have no parameter and no ``default`` is given."""
    for owner in owners(*fns):
        for param in owner.parameters():
            return param.device
    if default is None:
        raise ValueError("cannot tell the device: no module with parameters owns the model or guide")
    return torch.device(default)
