"""Memory-mapped .npy files (pyrovae/data/memmap.py) and the chunked checks of Dataset.from_tensors on them."""

import warnings

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import pyrovae.data.datasets
from pyrovae.data import Dataset
from pyrovae.data.memmap import open_npy
from tests.common import mapped_file


def _save(path, array):
    np.save(path, array)
    return path


class LargestOutput(TorchDispatchMode):
    """Records the most elements any operator made inside the block returned."""

    def __init__(self) -> None:
        super().__init__()
        self.numel = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, tuple | list) else (out,):
            if isinstance(t, torch.Tensor):
                self.numel = max(self.numel, t.numel())
        return out


def test_open_npy_maps_the_file_without_copying_it(tmp_path):
    array = np.random.default_rng(0).random((50, 4), dtype=np.float32)
    path = _save(tmp_path / "x.npy", array)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "non-writable array" warning
        x = open_npy(path)
    assert x.dtype == torch.float32 and x.shape == (50, 4) and torch.equal(x, torch.from_numpy(array))
    assert mapped_file(x) == str(path)
    x[0, 0] = 7.0  # copy-on-write: the file is never written
    assert np.load(path)[0, 0] == array[0, 0]


@pytest.mark.parametrize(
    "array, message",
    [
        (np.zeros((3, 4)), "float64 array of shape \\(3, 4\\).*float32 \\(N, D\\).*numpy.save"),
        (np.zeros((3, 2, 2), dtype=np.float32), "shape \\(3, 2, 2\\)"),
        (np.asfortranarray(np.zeros((3, 4), dtype=np.float32)), "in Fortran order"),
    ],
)
def test_open_npy_names_what_is_wrong_and_the_fix(tmp_path, array, message):
    with pytest.raises(ValueError, match=message):
        open_npy(_save(tmp_path / "x.npy", array))


def test_open_npy_refuses_archives_and_missing_files(tmp_path):
    np.savez(tmp_path / "x.npz", x=np.zeros((3, 4), dtype=np.float32))
    with pytest.raises(ValueError, match="no array that can be memory-mapped.*numpy.save"):
        open_npy(tmp_path / "x.npz")
    with pytest.raises(FileNotFoundError):
        open_npy(tmp_path / "none.npy")


def test_the_checks_of_a_memory_mapped_split_read_it_a_chunk_at_a_time(tmp_path, monkeypatch):
    monkeypatch.setattr(pyrovae.data.datasets, "CHUNK_ROWS", 64)
    array = np.random.default_rng(0).random((1000, 3), dtype=np.float32)
    x = open_npy(_save(tmp_path / "x.npy", array))
    with LargestOutput() as largest:
        data = Dataset.from_tensors(x, binarize="dynamic")
    assert largest.numel <= 64 * 3 and data.train.x.data_ptr() == x.data_ptr()  # checked in chunks, left mapped
    array[700, 1], array[900, 0] = np.nan, 2.0  # in later chunks: the rows are counted in the whole split
    with pytest.raises(ValueError, match=r"NaN or infinite values in 1 row\(s\) \(e.g. row 700\)"):
        Dataset.from_tensors(open_npy(_save(tmp_path / "nan.npy", array)))
    array[700, 1] = -0.5
    with pytest.raises(ValueError, match=r"values in \[-0.5, 2\], not in \[0, 1\]"):
        Dataset.from_tensors(open_npy(_save(tmp_path / "range.npy", array)))
