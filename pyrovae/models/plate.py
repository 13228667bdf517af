r"""The data plate every pyrovae model puts its per-datapoint sites in: its own, or the caller's.

A model run opens a plate named ``site("data")`` over the rows of ``x``, subsampled out of ``num_data`` points
(so that every per-datapoint log-density is scaled by :math:`N / |B|`) at the indices ``subsample`` of the rows in
the data set (default :math:`0, \dots, |B| - 1`). A caller who owns the plate instead (a user's outer model with
more per-datapoint sites, :class:`pyro.infer.autoguide.AutoGuideList`'s plates, two models over the same rows)
opens it around the call: the model then uses the **enclosing plate** named ``plate`` (by default its own data
plate's name, which Pyro would refuse to open twice) and opens none, so that its sites are not broadcast against a
second plate over the same rows (which would count every point :math:`|B|` times).
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import pyro
import torch
from pyro.infer.util import is_validation_enabled
from pyro.poutine.runtime import get_plates


def data_plate(
    name: str,
    batch_size: int,
    num_data: int | None,
    device: torch.device,
    *,
    subsample: torch.Tensor | None = None,
    plate: str | None = None,
) -> AbstractContextManager:
    """The data plate of a model run over ``batch_size`` rows: the enclosing plate named ``plate`` (or ``name``)
    when the caller opened one, then a context that does nothing; otherwise a new plate named ``name`` over
    ``num_data`` points subsampled at ``subsample`` (default the first ``batch_size`` indices), or over the
    ``batch_size`` rows alone when ``num_data`` is ``None`` (no scaling).

    :param str plate: the name of an enclosing plate over the rows to use; ``None`` uses an enclosing plate named
        ``name`` if there is one.
    :raises ValueError: if the plate ``plate`` does not enclose the call; if the enclosing plate is not vectorized
        at dim -1 or does not have ``batch_size`` entries, or ``num_data`` disagrees with it, or ``subsample`` is
        given with it; if ``num_data`` is smaller than the batch, or ``subsample`` is not ``batch_size`` indices
        below ``num_data``.
    """
    frame = next((f for f in get_plates() if f.name == (plate or name)), None)
    if frame is not None:
        _check_enclosing(frame, batch_size, num_data, subsample)
        return nullcontext()
    if plate is not None:
        raise ValueError(
            f"plate={plate!r}: no plate of that name encloses the call; open it around the call "
            f"(with pyro.plate({plate!r}, ...): ...) or leave plate=None for the model's own"
        )
    if num_data is None:
        if subsample is not None:
            raise ValueError("subsample indices need num_data, the size of the data set they index")
        return pyro.plate(name, batch_size, device=device)
    if num_data < batch_size:
        raise ValueError(f"num_data ({num_data}) is smaller than the batch ({batch_size} data points)")
    if subsample is None:
        subsample = torch.arange(batch_size, device=device)
    elif subsample.shape != (batch_size,) or subsample.dtype != torch.long:
        raise ValueError(
            f"subsample must be the {batch_size} row indices (torch.long, shape ({batch_size},)) of the batch in "
            f"the data set, got {subsample.dtype} of shape {tuple(subsample.shape)}"
        )
    elif is_validation_enabled() and len(subsample) and not 0 <= subsample.min() <= subsample.max() < num_data:
        raise ValueError(
            f"subsample indices must lie in [0, num_data={num_data}), got {int(subsample.min())} to "
            f"{int(subsample.max())}"
        )
    return pyro.plate(name, num_data, subsample=subsample.to(device), device=device)


def _check_enclosing(frame, batch_size: int, num_data: int | None, subsample: torch.Tensor | None) -> None:
    """Check that the caller's plate ``frame`` can be a model's data plate over ``batch_size`` rows."""
    if frame.dim != -1:
        raise ValueError(
            f"the enclosing plate {frame.name!r} is at dim {frame.dim}: a model's data plate must be vectorized at "
            "dim -1 (the rows of x are its batch dim -1); open it with dim=-1 and move inner plates to the left"
        )
    if frame.size != batch_size:
        raise ValueError(
            f"the enclosing plate {frame.name!r} has {frame.size} entries but the model runs on {batch_size} rows: "
            "it must be the plate over the same rows (Pyro's autoguides open plates of the size of their first call "
            "unless given create_plates=, e.g. AutoGuideList(model, create_plates=vae.data_plate))"
        )
    if num_data is not None and num_data != (frame.full_size or frame.size):
        raise ValueError(
            f"num_data={num_data} but the enclosing plate {frame.name!r} is over {frame.full_size or frame.size} "
            "points: the plate sets the data size; pass num_data=None"
        )
    if subsample is not None:
        raise ValueError(
            f"subsample indices are the enclosing plate {frame.name!r}'s (pyro.plate(..., subsample=...)): "
            "pass subsample=None"
        )


def num_generated(num_data: int | None) -> int:
    """How many data points a model run without data generates: ``num_data``, or one when it is ``None``.

    :raises ValueError: unless ``num_data`` is ``None`` or a positive integer.
    """
    if num_data is None:
        return 1
    if isinstance(num_data, bool) or int(num_data) != num_data or num_data < 1:
        raise ValueError(f"num_data must be a positive number of data points to generate, got {num_data!r}")
    return int(num_data)
