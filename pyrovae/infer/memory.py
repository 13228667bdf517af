"""Measuring the memory a computation's tensors take, on any device, so that chunk sizes follow the model.

:class:`PeakMemory` is a ``TorchDispatchMode``: it sees every tensor an operator returns while it is active,
counts each storage once (views share it) from its creation until its last tensor is freed, and keeps the
peak of that sum. It runs on CPU and GPU alike (PyTorch's own allocator statistics exist only for CUDA) and
counts only tensors created inside it, not parameters or data made before.
"""

from __future__ import annotations

import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves


class PeakMemory(TorchDispatchMode):
    """``with PeakMemory() as m: ...`` then ``m.peak``: the most bytes that tensors created inside the block
    held at one time (storages counted once; tensors still alive at the end count in ``m.live``)."""

    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0
        self._tensors: dict[int, int] = {}  # storage address -> tensors alive on it

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor) and t.device.type != "meta":
                self._track(t)
        return out

    def _track(self, t: torch.Tensor) -> None:
        storage = t.untyped_storage()
        key, nbytes = storage.data_ptr(), storage.nbytes()
        if key not in self._tensors:
            self._tensors[key] = 0
            self.live += nbytes
            self.peak = max(self.peak, self.live)
        self._tensors[key] += 1
        weakref.finalize(t, self._release, key, nbytes)

    def _release(self, key: int, nbytes: int) -> None:
        self._tensors[key] -= 1
        if not self._tensors[key]:
            del self._tensors[key]
            self.live -= nbytes
