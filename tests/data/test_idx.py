"""The IDX reader: gzipped or not whatever the name, checked by content, each flaw named with its file."""

from __future__ import annotations

import gzip
import hashlib
import struct

import pytest
import torch

from pyrovae.data.idx import read_idx, read_mnist_split
from tests.common import idx_gz

IMAGES = torch.randint(256, (3, 28, 28), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
LABELS = torch.tensor([7, 0, 9], dtype=torch.uint8)


def idx(array: torch.Tensor) -> bytes:
    """``array`` (uint8) as an uncompressed IDX file."""
    return gzip.decompress(idx_gz(array))


@pytest.mark.parametrize("name, gzipped", [("a.gz", True), ("a", False), ("gz-without-suffix", True), ("b.gz", False)])
def test_gzip_is_told_by_the_content_not_the_name(tmp_path, name, gzipped):
    (tmp_path / name).write_bytes(idx_gz(IMAGES) if gzipped else idx(IMAGES))
    x = read_idx(tmp_path / name)
    assert x.dtype == torch.uint8 and torch.equal(x, IMAGES)


def test_a_copy_compressed_again_reads_the_same_though_its_bytes_differ(tmp_path):
    (tmp_path / "a.gz").write_bytes(idx_gz(IMAGES))
    (tmp_path / "b.gz").write_bytes(gzip.compress(idx(IMAGES), compresslevel=1, mtime=12345))
    md5 = [hashlib.md5((tmp_path / f).read_bytes()).hexdigest() for f in ("a.gz", "b.gz")]
    assert md5[0] != md5[1]
    assert torch.equal(read_idx(tmp_path / "a.gz"), read_idx(tmp_path / "b.gz"))


def test_the_shape_comes_from_the_header(tmp_path):
    array = torch.arange(24, dtype=torch.uint8).reshape(2, 3, 4)
    (tmp_path / "a").write_bytes(idx(array))
    assert torch.equal(read_idx(tmp_path / "a"), array)
    (tmp_path / "b").write_bytes(idx(LABELS))
    assert read_idx(tmp_path / "b").shape == (3,)


@pytest.mark.parametrize(
    "content, match",
    [
        (struct.pack(">HBBI", 0, 0x0D, 1, 1) + b"\0" * 4, r"IDX file of unsigned bytes: it starts with 0x00000D01"),
        (b"<html>Not found</html>", r"not an IDX file of unsigned bytes: it starts with 0x3C68746D"),
        (b"\0\0", r"it starts with only 2 byte\(s\)"),
        (idx(IMAGES)[:-5], r"is truncated: its header gives shape \(3, 28, 28\), i.e. 2368 bytes, but it holds 2363"),
        (idx(IMAGES)[:10], r"is truncated: 10 bytes, fewer than its 3-D header's 16"),
        (idx(IMAGES) + b"\0", r"extra bytes: its header gives shape \(3, 28, 28\), i.e. 2368 bytes, but it holds 2369"),
        (idx_gz(IMAGES)[:-30], r"is a damaged or truncated gzip file"),
    ],
)
def test_a_bad_file_is_named_with_what_is_wrong_and_the_fix(tmp_path, content, match):
    (tmp_path / "bad.gz").write_bytes(content)
    with pytest.raises(ValueError, match=match) as info:
        read_idx(tmp_path / "bad.gz")
    message = str(info.value)
    assert message.startswith(str(tmp_path / "bad.gz")) and "replace it with an intact copy" in message


def test_a_gzipped_file_is_named_as_gunzipped(tmp_path):
    (tmp_path / "bad.gz").write_bytes(gzip.compress(idx(IMAGES)[:-1]))
    with pytest.raises(ValueError, match=r"bad.gz \(gunzipped\) is truncated"):
        read_idx(tmp_path / "bad.gz")


def write_split(folder, images: torch.Tensor, labels: torch.Tensor):
    (folder / "images.gz").write_bytes(idx_gz(images))
    (folder / "labels.gz").write_bytes(idx_gz(labels))
    return folder / "images.gz", folder / "labels.gz"


def test_a_split_is_uint8_images_and_long_labels(tmp_path):
    x, y = read_mnist_split(*write_split(tmp_path, IMAGES, LABELS))
    assert torch.equal(x, IMAGES) and x.dtype == torch.uint8
    assert y.tolist() == [7, 0, 9] and y.dtype == torch.long


@pytest.mark.parametrize(
    "images, labels, bad, match",
    [
        (IMAGES, torch.tensor([7, 12, 10], dtype=torch.uint8), "labels",
         r"holds 2 label\(s\) outside 0..9 \(e.g. 12 at index 1\): it is not an MNIST-family labels file"),
        (IMAGES[:, :8, :8], LABELS, "images", r"holds an array of shape \(3, 8, 8\), not \(N, 28, 28\) images"),
        (IMAGES, LABELS.reshape(3, 1), "labels", r"holds an array of shape \(3, 1\), not \(N,\) labels"),
        (IMAGES, LABELS[:2], "images", r"holds 3 images but .*labels.gz holds 2 labels: the two files come from"),
    ],
)  # fmt: skip
def test_a_split_that_is_not_mnist_like_is_refused_naming_the_file(tmp_path, images, labels, bad, match):
    with pytest.raises(ValueError, match=match) as info:
        read_mnist_split(*write_split(tmp_path, images, labels))
    assert str(info.value).startswith(str(tmp_path / f"{bad}.gz"))
