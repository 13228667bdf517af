"""load_dataset and the data folder: the folders accepted, files gzipped or not read in place and checked by content,
nothing written there, downloads only of missing files, and nothing left behind by a failed load.

The files are faked: tiny KMNIST files whose md5 sums replace torchvision's (for the downloads), and a mirror that
does not exist, so that a download fails at once offline (and online) unless a test makes one."""

from __future__ import annotations

import gzip
import shutil
import struct
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

import pytest
import torch
from torchvision.datasets import KMNIST, utils

from pyrovae.data import load_dataset
from pyrovae.data.idx import read_mnist_split
from tests.common import N_TEST, N_TRAIN, SHARED_DATA

IMAGES, LABELS = "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"


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


def load(data_dir: Path, **kwargs):
    return load_dataset("kmnist", data_dir, binarize="none", valid_size=1, **kwargs)


@pytest.fixture
def no_download(monkeypatch):
    """Any download attempt fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"a download was attempted: {args}")

    monkeypatch.setattr(utils, "download_url", refuse)


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    """A mirror folder for KMNIST; the "download" is a copy from it (urllib's file:// responses lack what
    torchvision needs)."""
    monkeypatch.setattr(KMNIST, "mirrors", [(tmp_path / "mirror").as_uri() + "/"])
    monkeypatch.setattr(
        utils, "_urlretrieve", lambda url, path: shutil.copyfile(url2pathname(urlparse(url).path), path)
    )
    return tmp_path / "mirror"


@pytest.mark.parametrize(
    "files_in, given",
    [
        ("data/KMNIST/raw", "data"),  # torchvision's layout, its root given
        ("data/KMNIST/raw", "data/KMNIST"),
        ("data/KMNIST/raw", "data/KMNIST/raw"),
        ("data/KMNIST/raw", "data/KMNIST/raw/"),
        ("data/raw", "data"),
        ("datasets/kmnist", "datasets/kmnist"),  # any folder holding the files themselves (as Debian's)
    ],
)
def test_every_folder_form_loads_in_place_without_writing_there(tmp_path, fake_kmnist, no_download, files_in, given):
    files = fake_kmnist(tmp_path / files_in)
    before = tree(tmp_path)
    data = load(Path(str(tmp_path / given)))
    assert (len(data.train), len(data.valid), len(data.test)) == (N_TRAIN - 1, 1, N_TEST)
    assert torch.equal(data.test.x, images(files))
    assert tree(tmp_path) == before  # nothing created, changed or extracted anywhere


@pytest.mark.parametrize("form", ["compressed again", "extracted", "both"])
def test_files_compressed_again_or_extracted_load_offline_to_the_same_tensors(tmp_path, fake_kmnist, no_download,
                                                                              form):  # fmt: skip
    files = fake_kmnist(tmp_path / "orig")
    reference = load(tmp_path / "orig")
    raw = tmp_path / "data" / "KMNIST" / "raw"
    raw.mkdir(parents=True)
    for name, content in files.items():
        if form != "extracted":  # another compression level and time stamp: other bytes, another md5
            again = gzip.compress(gzip.decompress(content), compresslevel=1, mtime=1)
            assert again != content
            (raw / name).write_bytes(again)
        if form != "compressed again":
            (raw / name.removesuffix(".gz")).write_bytes(gzip.decompress(content))
    data = load(tmp_path / "data")
    for split in ("train", "valid", "test"):
        assert torch.equal(getattr(data, split).x, getattr(reference, split).x)
        assert torch.equal(getattr(data, split).y, getattr(reference, split).y)


def corrupt_magic(content: bytes) -> bytes:
    return gzip.compress(b"\0\0\x0d\x03" + gzip.decompress(content)[4:])


def label_out_of_range(content: bytes) -> bytes:
    return gzip.compress(gzip.decompress(content)[:-1] + b"\x0a")


def one_image_less(content: bytes) -> bytes:
    data = gzip.decompress(content)
    return gzip.compress(data[:4] + struct.pack(">I", N_TRAIN - 1) + data[8:16 + (N_TRAIN - 1) * 784])


@pytest.mark.parametrize(
    "name, change, match",
    [
        (IMAGES, corrupt_magic, "not an IDX file of unsigned bytes: it starts with 0x00000D03"),
        (IMAGES, lambda c: c[:-100], "damaged or truncated gzip file"),
        (IMAGES, lambda c: gzip.compress(gzip.decompress(c)[:-100]), "is truncated: its header gives shape"),
        (LABELS, label_out_of_range, r"holds 1 label\(s\) outside 0..9 \(e.g. 10 at index 2\)"),
        (IMAGES, one_image_less, f"holds {N_TRAIN - 1} images but .*{LABELS} holds {N_TRAIN} labels"),
    ],
)
def test_a_bad_file_is_named_with_what_is_wrong_and_nothing_is_downloaded(tmp_path, fake_kmnist, no_download, name,
                                                                          change, match):  # fmt: skip
    raw = tmp_path / "data" / "KMNIST" / "raw"
    files = fake_kmnist(raw)
    (raw / name).write_bytes(change(files[name]))
    before = tree(tmp_path)
    with pytest.raises(ValueError, match=match) as info:
        load(tmp_path / "data")
    assert str(info.value).startswith(str(raw / name))
    assert tree(tmp_path) == before


def test_missing_files_without_download_name_the_folders_the_files_and_the_fix(tmp_path, fake_kmnist, no_download):
    fake_kmnist(tmp_path / "data")
    (tmp_path / "data" / LABELS).unlink()
    (tmp_path / "data" / "KMNIST" / "raw").mkdir(parents=True)
    before = tree(tmp_path)
    with pytest.raises(FileNotFoundError) as info:
        load(tmp_path / "data", download=False)
    message = str(info.value)
    looked = [tmp_path / "data" / "KMNIST" / "raw", tmp_path / "data" / "raw", tmp_path / "data"]
    assert message.startswith(f"could not load kmnist from the folders {', '.join(map(str, looked))}: ")
    assert f"{tmp_path / 'data'} lacks train-labels-idx1-ubyte[.gz]. " in message  # the folder holding the most
    assert f"Put the four files (gzipped or not) in {looked[0]}/ (torchvision's layout)" in message
    assert message.endswith("or allow downloading") and IMAGES not in message
    assert tree(tmp_path) == before


@pytest.mark.parametrize("given", ["empty", "x/KMNIST/raw", "x/KMNIST", "missing/folder"])
def test_a_failed_download_leaves_every_folder_as_it_was(tmp_path, fake_kmnist, given):
    fake_kmnist(tmp_path / "elsewhere")  # not in any folder searched
    (tmp_path / "empty").mkdir()
    (tmp_path / "x" / "KMNIST" / "raw").mkdir(parents=True)
    before = tree(tmp_path)
    with pytest.raises(FileNotFoundError) as info:
        load(tmp_path / given)  # download allowed: the mirror does not exist
    assert tree(tmp_path) == before
    raw = tmp_path / given.removesuffix("/raw").removesuffix("/KMNIST") / "KMNIST" / "raw"
    message = str(info.value)
    assert f"and downloading failed ({KMNIST.mirrors[0]}{IMAGES}: " in message
    assert f"Put the four files (gzipped or not) in {raw}/ (torchvision's layout)" in message


def test_only_missing_files_are_downloaded_into_torchvisions_layout_and_they_stay(tmp_path, fake_kmnist, mirror):
    files = fake_kmnist(mirror)
    raw = tmp_path / "data" / "KMNIST" / "raw"
    raw.mkdir(parents=True)
    ours = gzip.compress(gzip.decompress(files[IMAGES]), compresslevel=1)  # present, with another md5: kept
    (raw / IMAGES).write_bytes(ours)
    assert torch.equal(load(tmp_path / "data").test.x, images(files))
    assert sorted(p.name for p in raw.iterdir()) == sorted(files)  # gzipped, nothing extracted
    assert (raw / IMAGES).read_bytes() == ours
    before = tree(tmp_path)
    load(tmp_path / "data")  # offline from now on
    assert tree(tmp_path) == before


def test_a_download_failing_half_way_deletes_what_it_downloaded(tmp_path, fake_kmnist, mirror):
    fake_kmnist(mirror)
    (mirror / "t10k-images-idx3-ubyte.gz").unlink()
    (tmp_path / "data").mkdir()
    before = tree(tmp_path)
    with pytest.raises(FileNotFoundError, match="t10k-images-idx3-ubyte.gz: "):
        load(tmp_path / "data")
    assert tree(tmp_path) == before


@pytest.mark.skipif(not (SHARED_DATA / "MNIST" / "raw").is_dir(), reason="shared MNIST files not present")
@pytest.mark.parametrize("split", ["t10k", pytest.param("train", marks=pytest.mark.slow)])
def test_real_mnist_compressed_again_reads_as_torchvision_reads_the_originals(tmp_path, split):
    """The shared MNIST files, compressed again (other bytes: torchvision's md5 check would fail), read to exactly
    the uint8 tensors of torchvision's own reader on the originals (so to the same floats in load_dataset)."""
    from torchvision.datasets.mnist import read_image_file, read_label_file

    ours, theirs = {}, {}
    for kind, read in (("images-idx3", read_image_file), ("labels-idx1", read_label_file)):
        name = f"{split}-{kind}-ubyte"
        original = (SHARED_DATA / "MNIST" / "raw" / f"{name}.gz").read_bytes()
        (tmp_path / name).write_bytes(gzip.decompress(original))  # torchvision reads the extracted file
        theirs[kind] = read(str(tmp_path / name))
        ours[kind] = tmp_path / "again" / f"{name}.gz"
        ours[kind].parent.mkdir(exist_ok=True)
        ours[kind].write_bytes(gzip.compress(gzip.decompress(original), compresslevel=1))
        assert ours[kind].read_bytes() != original
    x, y = read_mnist_split(ours["images-idx3"], ours["labels-idx1"])
    assert x.dtype == theirs["images-idx3"].dtype == torch.uint8 and torch.equal(x, theirs["images-idx3"])
    assert torch.equal(y, theirs["labels-idx1"])
