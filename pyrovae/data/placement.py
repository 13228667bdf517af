"""Where a dataset lives while a model trains: on the training device when it fits under a limit, else in host
memory, each minibatch gathered there and copied to the device.

A dataset of at most ``limit`` bytes (all splits, :func:`data_nbytes`; default :data:`DEVICE_DATA_LIMIT`, 2 GiB) is
moved to the training device once, and a minibatch is tensor indexing there. A larger one stays where it is, in host
memory (a memory-mapped split, :func:`pyrovae.data.memmap.open_npy`, stays memory-mapped: only the rows a minibatch
needs are read): :func:`place` wraps it as a :class:`HostDataset`, whose :meth:`~HostDataset.train_batch` gathers
the minibatch's rows on the host, in the permutation's order, and copies them to the device. On a CUDA device the
rows are gathered into page-locked (pinned) memory and copied with ``non_blocking=True``, so that the copy overlaps
the work already queued on the GPU; the split itself is never pinned (pinning a memory-mapped file would read all of
it). PyTorch's caching host allocator keeps each pinned buffer until its copy is done, so no buffer is overwritten
while the GPU reads it. On the CPU, streaming only means that the split is not copied.

The rows of every minibatch, and their order, are those of the in-device path with the same seed (the permutation is
drawn on the CPU either way: :func:`pyrovae.train.loop.minibatches`), and a dynamic binarization is drawn on the
device after the copy, as it is in the in-device path: the training does not depend on the placement.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields

import torch

from pyrovae.data.datasets import Dataset

#: the default limit, in bytes, of the data moved to the training device (2 GiB)
DEVICE_DATA_LIMIT = 2 * 2**30
#: the units :func:`parse_size` reads: powers of 1000 (kB, MB, ...) and of 1024 (KiB, MiB, ...), case-insensitive
SIZE_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
              "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}  # fmt: skip


def parse_size(size: int | str) -> int:
    """A size in bytes from an integer or a string such as ``"2GB"``, ``"500MB"``, ``"1.5GiB"``, ``"64kB"`` or
    ``"0"``: a non-negative number, optionally followed by a unit of :data:`SIZE_UNITS` (kB, MB, GB, TB: powers of
    1000; KiB, MiB, GiB, TiB: of 1024; case-insensitive; a bare number is bytes).

    :raises ValueError: for a negative size, a size that is not a number of bytes, or an unknown unit."""
    text = str(size) if isinstance(size, int | str) and not isinstance(size, bool) else ""
    match = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-zA-Z]*)\s*", text)
    unit = match and (match[2].lower() or "b")
    if match is None or unit not in SIZE_UNITS:
        raise ValueError(
            f"cannot read the size {size!r}: give a non-negative number of bytes with an optional unit, e.g. '2GB', "
            f"'500MB', '1.5GiB' or '0' (units: {', '.join(('kB', 'MB', 'GB', 'TB', 'KiB', 'MiB', 'GiB', 'TiB'))})"
        )
    return round(float(match[1]) * SIZE_UNITS[unit])


def data_nbytes(data: Dataset) -> int:
    """The bytes the splits of ``data`` hold: their images and labels, as stored (a memory-mapped split counts
    with its file's rows)."""
    splits = (data.train, data.valid, data.test)
    return sum(t.nbytes for s in splits for t in (s.x, s.y) if t is not None)


@dataclass(frozen=True)
class HostDataset(Dataset):
    """A :class:`~pyrovae.data.Dataset` whose splits stay in host memory while a model trains on ``device``
    (made by :func:`place`): a training minibatch is gathered on the host and copied to ``device``
    (:func:`gather`); evaluation moves each chunk of a split to the model's device
    (:func:`pyrovae.infer.metrics.elbo_per_datapoint`).

    :ivar torch.device device: the training device the minibatches are copied to.
    """

    device: torch.device = torch.device("cpu")

    def train_batch(self, idx: torch.Tensor) -> torch.Tensor:
        """Training rows ``idx`` (indices on the CPU, in the order wanted) on ``device``, as a training step sees
        them (:meth:`~pyrovae.data.Dataset.as_trained`: a dynamic binarization is drawn on the device)."""
        return self.as_trained(gather(self.train.x, idx, self.device))


def gather(x: torch.Tensor, idx: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Rows ``idx`` of the host tensor ``x``, in that order, on ``device``: on a CUDA device gathered into pinned
    memory and copied with ``non_blocking=True``; on the CPU the gathered rows themselves.

    :param torch.Tensor x: ``(N, ...)`` in host memory (e.g. memory-mapped: only the rows read are touched).
    :param torch.Tensor idx: row indices on the CPU.
    :param torch.device device: where the rows go."""
    if device.type == "cpu":
        return x[idx]
    rows = torch.empty((len(idx), *x.shape[1:]), dtype=x.dtype, pin_memory=device.type == "cuda")
    return torch.index_select(x, 0, idx, out=rows).to(device, non_blocking=True)


def place(data: Dataset, device: torch.device, limit: int = DEVICE_DATA_LIMIT) -> Dataset:
    """``data`` as training on ``device`` uses it: moved to ``device`` when its splits hold at most ``limit`` bytes
    (:func:`data_nbytes`), else left in host memory as a :class:`HostDataset` that streams minibatches to
    ``device``. The rows a minibatch is indexed with live on ``result.train.x.device``.

    :param Dataset data: the dataset (on the CPU when it may be streamed).
    :param torch.device device: the training device.
    :param int limit: bytes; 0 always streams.
    :raises ValueError: if the data are too large for ``device`` but are not in host memory."""
    if data_nbytes(data) <= limit:
        return data.to(device)
    splits = (data.train.x, data.valid.x, data.test.x)
    if any(x.device.type != "cpu" for x in splits):
        raise ValueError(
            f"the data hold {data_nbytes(data)} bytes, more than the device data limit ({limit} bytes), so they are "
            "streamed from host memory, but they are not on the CPU: pass them on the CPU, or raise the limit"
        )
    return HostDataset(**{f.name: getattr(data, f.name) for f in fields(Dataset)}, device=torch.device(device))
