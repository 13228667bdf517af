"""load_dataset and the data folder: the folders accepted, nothing written there or left behind, no stale cache.

The torchvision files are faked: tiny KMNIST files whose md5 sums replace torchvision's, and a mirror that does not
exist, so that downloads fail at once offline (and online)."""

from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

import pytest
import torch
from torchvision.datasets import KMNIST, utils

from pyrovae.data import load_dataset
from tests.common import N_TEST, N_TRAIN

IMAGES = "train-images-idx3-ubyte.gz"


def images(files: dict[str, bytes]) -> torch.Tensor:
    """The test images of ``files`` as load_dataset returns them (``binarize="none"``)."""
    data = gzip.decompress(files["t10k-images-idx3-ubyte.gz"])[16:]
    return torch.frombuffer(bytearray(data), dtype=torch.uint8).reshape(N_TEST, -1).float() / 255.0


def tree(folder: Path) -> dict[str, tuple[int, int] | None]:
    """Every path under ``folder``, with the size and modification time of the files."""
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) if p.is_file() else None
        for p in sorted(folder.rglob("*"))
    }


def load(data_dir: Path):
    return load_dataset("kmnist", data_dir, binarize="none", valid_size=1)


def cached(tmp_path: Path) -> Path:
    return tmp_path / "cache" / "pyrovae" / "torchvision" / "KMNIST"


@pytest.mark.parametrize("given", ["", "KMNIST", "KMNIST/raw", "KMNIST/raw/"])
def test_files_load_from_the_root_class_or_raw_folder_without_writing_there(tmp_path, fake_kmnist, given):
    files = fake_kmnist(tmp_path / "data" / "KMNIST" / "raw")
    before = tree(tmp_path / "data")
    data = load(Path(str(tmp_path / "data" / given)))
    assert (len(data.train), len(data.valid), len(data.test)) == (N_TRAIN - 1, 1, N_TEST)
    assert torch.equal(data.test.x, images(files))
    assert tree(tmp_path / "data") == before  # nothing created, changed or extracted in the data folder
    assert (cached(tmp_path) / "raw" / "t10k-images-idx3-ubyte").is_file()


def test_any_folder_holding_the_files_is_accepted(tmp_path, fake_kmnist):
    files = fake_kmnist(tmp_path / "downloads")
    before = tree(tmp_path / "downloads")
    assert torch.equal(load(tmp_path / "downloads").test.x, images(files))
    assert tree(tmp_path / "downloads") == before


@pytest.mark.parametrize("given", ["empty", "x/KMNIST/raw", "x/KMNIST", "missing/folder"])
def test_a_wrong_data_dir_leaves_every_folder_as_it_was(tmp_path, fake_kmnist, given):
    fake_kmnist(tmp_path / "elsewhere")  # the md5 sums; not in any folder searched
    (tmp_path / "empty").mkdir()
    (tmp_path / "x" / "KMNIST" / "raw").mkdir(parents=True)
    before = tree(tmp_path)
    with pytest.raises(FileNotFoundError) as info:
        load(tmp_path / given)  # download allowed: the download fails
    assert tree(tmp_path) == before
    message = str(info.value)
    raw = tmp_path / given.removesuffix("/raw").removesuffix("/KMNIST") / "KMNIST" / "raw"
    assert f"Put these files in {raw}/: {IMAGES}" in message and "t10k-labels-idx1-ubyte.gz" in message
    assert "torchvision's layout" in message and "Error downloading" in message


@pytest.mark.parametrize("left_by_an_earlier_load", [False, True])
def test_a_truncated_file_is_named_and_its_cache_copy_does_not_stick(tmp_path, fake_kmnist, left_by_an_earlier_load):
    raw = tmp_path / "data" / "KMNIST" / "raw"
    files = fake_kmnist(raw)
    (raw / IMAGES).write_bytes(files[IMAGES][:-100])
    if left_by_an_earlier_load:  # the truncated file copied into the cache, as the code before this fix did
        (cached(tmp_path) / "raw").mkdir(parents=True)
        for name in files:
            shutil.copy2(raw / name, cached(tmp_path) / "raw" / name)
    with pytest.raises(ValueError, match="corrupt or truncated") as info:
        load(tmp_path / "data")
    assert str(raw / IMAGES) in str(info.value) and "replace it" in str(info.value)
    assert not cached(tmp_path).exists()  # no stale copy kept
    (raw / IMAGES).write_bytes(files[IMAGES])  # the data folder repaired
    assert torch.equal(load(tmp_path / "data").test.x, images(files))


def test_a_changed_file_in_the_data_folder_is_copied_and_extracted_again(tmp_path, fake_kmnist):
    raw = tmp_path / "data" / "KMNIST" / "raw"
    old = fake_kmnist(raw, seed=0)
    assert torch.equal(load(tmp_path / "data").test.x, images(old))
    new = fake_kmnist(raw, seed=1)
    for name in new:  # a new modification time even on a file system with coarse timestamps
        os.utime(raw / name, ns=(0, (raw / name).stat().st_mtime_ns + 10**9))
    assert torch.equal(load(tmp_path / "data").test.x, images(new))


def test_a_download_into_the_data_folder_stays(tmp_path, fake_kmnist, monkeypatch):
    fake_kmnist(tmp_path / "mirror")
    monkeypatch.setattr(KMNIST, "mirrors", [(tmp_path / "mirror").as_uri() + "/"])
    # the "download": a copy from the mirror folder (urllib's file:// responses lack what torchvision needs)
    monkeypatch.setattr(
        utils, "_urlretrieve", lambda url, path: shutil.copyfile(url2pathname(urlparse(url).path), path)
    )
    load(tmp_path / "data")
    assert (tmp_path / "data" / "KMNIST" / "raw" / IMAGES).is_file()
    assert (tmp_path / "data" / "KMNIST" / "raw" / "train-images-idx3-ubyte").is_file()
