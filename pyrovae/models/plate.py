"""The data plate every pyrovae model puts its per-datapoint sites in."""

from __future__ import annotations

import pyro
import torch


def data_plate(name: str, batch_size: int, num_data: int | None, device: torch.device) -> pyro.plate:
    """A plate over a minibatch of ``batch_size`` rows out of ``num_data`` points, so that every
    per-datapoint log-density is scaled by ``num_data / batch_size``; with ``num_data=None`` the minibatch
    is the whole data (no scaling).

    :raises ValueError: if ``num_data`` is smaller than the minibatch.
    """
    if num_data is None:
        return pyro.plate(name, batch_size, device=device)
    if num_data < batch_size:
        raise ValueError(f"num_data ({num_data}) is smaller than the batch ({batch_size} data points)")
    return pyro.plate(name, num_data, subsample=torch.arange(batch_size, device=device), device=device)


def num_generated(num_data: int | None) -> int:
    """How many data points a model run without data generates: ``num_data``, or one when it is ``None``.

    :raises ValueError: unless ``num_data`` is ``None`` or a positive integer.
    """
    if num_data is None:
        return 1
    if isinstance(num_data, bool) or int(num_data) != num_data or num_data < 1:
        raise ValueError(f"num_data must be a positive number of data points to generate, got {num_data!r}")
    return int(num_data)
