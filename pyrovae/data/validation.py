"""Input checks that turn bad data into errors that say what is wrong and how to fix it.

Pyro's own validation (``pyro.enable_validation``) would also reject most of these, but with a
message about distribution supports; these checks name the data problem and the fix.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch


def check_shape(x: torch.Tensor, x_dim: int, name: str = "x", dtype: torch.dtype | None = None) -> None:
    """Check that ``x`` is a non-empty floating ``(batch, x_dim)`` tensor, of ``dtype`` if given (e.g. the dtype of
    the model's parameters); cheap: no data is read.

    :raises TypeError: if ``x`` is not a floating point tensor, or not of ``dtype``.
    :raises ValueError: on a wrong shape or an empty batch.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (batch, {x_dim}), got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating point tensor, got dtype {x.dtype}: use {name}.float()")
    if dtype is not None and x.dtype != dtype:
        convert = {torch.float32: "float", torch.float64: "double", torch.float16: "half"}.get(dtype, "to(dtype)")
        raise TypeError(
            f"{name} has dtype {x.dtype} but the model's parameters are {dtype}: convert the data with "
            f"{name}.{convert}() (or the model, e.g. model.double() for float64 data)"
        )
    if x.dim() != 2 or x.shape[-1] != x_dim:
        hint = " (flatten images with x.reshape(len(x), -1))" if x.dim() > 2 else ""
        raise ValueError(f"{name} must have shape (batch, {x_dim}), got {tuple(x.shape)}{hint}")
    if x.shape[0] == 0:
        raise ValueError(f"{name} is empty: it has shape {tuple(x.shape)}, give at least one data point")


def check_labels(y: torch.Tensor, batch_size: int, num_classes: int, name: str = "y", missing: bool = False) -> None:
    """Check that ``y`` is a ``(batch_size,)`` integer tensor of class indices in ``0 .. num_classes - 1``, or -1
    (a missing label) where ``missing`` allows it.

    :raises TypeError: if ``y`` is not an integer tensor (e.g. one-hot floats).
    :raises ValueError: on a wrong shape or a label out of range.
    """
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of integer class indices, got {type(y).__name__}")
    if y.dtype.is_floating_point or y.dtype.is_complex or y.dtype == torch.bool:
        hint = " (one-hot labels? use y.argmax(-1))" if y.dim() == 2 else " (use y.long())"
        raise TypeError(f"{name} must hold integer class indices, got dtype {y.dtype}{hint}")
    if y.shape != (batch_size,):
        hint = " (one-hot labels? use y.argmax(-1))" if y.dim() == 2 and y.shape[-1] == num_classes else ""
        raise ValueError(f"{name} must have shape ({batch_size},), one label per row of x, got {tuple(y.shape)}{hint}")
    lowest = -1 if missing else 0
    bad = (y < lowest) | (y >= num_classes)
    if bad.any():
        hint = ", or -1 where the label is missing" if missing else ""
        raise ValueError(
            f"{name} has {int(bad.sum())} label(s) outside {lowest}..{num_classes - 1} (e.g. {int(y[bad][0])}): "
            f"labels must be class indices below num_classes={num_classes}{hint}"
        )


def parameter_dtype(module: torch.nn.Module) -> torch.dtype | None:
    """The dtype of ``module``'s first floating parameter (the dtype its inputs must have), or ``None``."""
    return next((p.dtype for p in module.parameters() if p.is_floating_point()), None)


def check_not_nan(what: str, value: float, x: torch.Tensor) -> float:
    """Return ``value``, a result computed from the data ``x``, unless it is NaN; then raise a ``ValueError`` that
    says whether the data hold NaN or infinite values (which Pyro's validation, when off, did not catch) or the
    model produced it."""
    if value == value:
        return value
    bad = ~torch.isfinite(x.reshape(len(x), -1)).all(-1)
    if bad.any():
        rows = bad.nonzero().squeeze(-1)[:5].tolist()
        raise ValueError(
            f"{what} is NaN because {int(bad.sum())} data rows hold NaN or infinite values (e.g. rows {rows}): remove "
            "or impute them (with Pyro's validation on, pyro.enable_validation(True), the model names such data)"
        )
    raise ValueError(f"{what} is NaN on finite data: the model or guide gives NaN log-densities (check the weights)")


def nonfinite(tensors: Iterable[tuple[str, torch.Tensor]]) -> list[str]:
    """The names of the ``(name, tensor)`` pairs whose tensor holds a NaN or an infinity (integer tensors never do)."""
    return [name for name, t in tensors if not bool(torch.isfinite(t).all())]
