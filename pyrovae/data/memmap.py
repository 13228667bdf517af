"""Memory-mapped ``.npy`` files: data larger than memory, read a few rows at a time.

:func:`open_npy` opens a float32 ``(N, D)`` array saved with ``numpy.save`` as a CPU tensor backed by the file:
nothing is read until rows are indexed, and then only their pages. Wrapped by
:meth:`pyrovae.data.Dataset.from_tensors` (whose checks read it a chunk of rows at a time) and trained with a
device data limit below its size (:mod:`pyrovae.data.placement`), it is streamed to the device one minibatch at a
time and never held in memory whole.
"""

from __future__ import annotations

import os

import numpy as np
import torch


def open_npy(path: str | os.PathLike) -> torch.Tensor:
    """The float32 ``(N, D)`` array of the ``.npy`` file ``path`` as a CPU tensor that shares the file's memory map
    (``numpy.load(path, mmap_mode="c")``): rows are read from the file when indexed. The map is copy-on-write, so
    the tensor is writable (as ``torch.from_numpy`` wants) while the file never is: a value written to the tensor
    stays in this process's memory.

    :param path: a ``.npy`` file written by ``numpy.save`` (not ``.npz``, which cannot be memory-mapped).
    :returns: a tensor of shape ``(N, D)`` and dtype ``torch.float32``.
    :raises FileNotFoundError: if there is no such file.
    :raises ValueError: if the file is not a ``.npy`` array, or its array is not float32, not 2-D or not in C order
        (each says how to convert it)."""
    try:
        array = np.load(path, mmap_mode="c", allow_pickle=False)
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as e:
        raise ValueError(f"{path} is not a .npy array that can be memory-mapped ({e}): save it with numpy.save") from e
    if not isinstance(array, np.memmap):
        getattr(array, "close", lambda: None)()  # an .npz archive holds its file open
        raise ValueError(f"{path} holds no array that can be memory-mapped (an .npz archive, or an empty array?): "
                         "save one non-empty array with numpy.save")  # fmt: skip
    fix = "convert it once, e.g. numpy.save(path, numpy.ascontiguousarray(a.reshape(len(a), -1), dtype=numpy.float32))"
    if array.dtype != np.float32 or array.ndim != 2 or not array.flags.c_contiguous:
        raise ValueError(f"{path} holds a {array.dtype} array of shape {array.shape}"
                         f"{'' if array.flags.c_contiguous else ' in Fortran order'}, not a C-ordered float32 (N, D) "
                         f"one: {fix}")  # fmt: skip
    return torch.from_numpy(array)
