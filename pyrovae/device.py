"""Devices and modules: choosing the device to train on, finding the modules that own a model and guide and the
device they live on, and switching those modules between training and evaluation mode."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager

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


def chunks(x: torch.Tensor, size: int, device: torch.device) -> Iterator[torch.Tensor]:
    """The rows of ``x``, ``size`` at a time, on ``device``: data in host memory (e.g. memory-mapped) are copied
    there a chunk at a time, without blocking; data already there are not copied."""
    for chunk in x.split(size):
        yield chunk.to(device, non_blocking=True)


@contextmanager
def training_mode(modules: Sequence[nn.Module], training: bool) -> Iterator[None]:
    """Put ``modules`` and all their submodules in training mode (``training=True``) or evaluation mode for the
    block (``nn.Module.train``: batch statistics and running-statistic updates in BatchNorm, dropout on), and give
    every submodule back the mode it had before, also on an error."""
    before = [(sub, sub.training) for module in modules for sub in module.modules()]
    try:
        for module in modules:
            module.train(training)
        yield
    finally:
        for sub, was_training in before:
            sub.training = was_training


def evaluating(*fns: Callable) -> AbstractContextManager[None]:
    """The modules owning ``fns`` (:func:`owners`, e.g. ``vae.model`` and ``vae.guide``) in evaluation mode for the
    block (BatchNorm's running statistics used and left unchanged, no dropout), their modes given back after it
    (:func:`training_mode`); callables no module owns are left as they are."""
    return training_mode(owners(*fns), False)


def evaluation_method(method: Callable) -> Callable:
    """Decorate a method of an ``nn.Module`` so that it runs without gradients (``torch.no_grad``) and with the module
    in evaluation mode, its modes given back after (:func:`training_mode`): a computation on a trained model that
    is the same whatever mode the module is in."""

    @functools.wraps(method)
    def in_evaluation_mode(self: nn.Module, *args, **kwargs):
        with torch.no_grad(), training_mode((self,), False):
            return method(self, *args, **kwargs)

    return in_evaluation_mode
