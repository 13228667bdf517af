"""IDX files, the format of MNIST and its kin (Fashion-MNIST, KMNIST), read directly and checked by their content.

An IDX file of unsigned bytes is a big-endian header, the magic number ``0x000008NN`` (two zero bytes, the type code
``0x08``, then ``NN`` the number of dimensions) followed by ``NN`` 32-bit sizes, then the values in C order.
The files may be gzipped or not (told apart by their first bytes, not their names), and are checked by what they hold,
never by checksums of their bytes: a copy compressed again (as Debian's ``dataset-fashion-mnist`` ships them)
holds the same data.

References: Y. LeCun, C. Cortes, C. J. C. Burges, *The MNIST database of handwritten digits* (the IDX format).
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

#: the first two bytes of a gzip file
GZIP_MAGIC = b"\x1f\x8b"
#: the IDX type code of unsigned bytes, the only type of the MNIST-family files
UBYTE = 0x08
#: the files of an MNIST-family dataset (extracted names; each may also be gzipped, with ``.gz``): (images, labels)
#: of the training and the test set
MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
#: the height and width of an MNIST-family image, and the number of classes
MNIST_SIZE, MNIST_CLASSES = 28, 10

_FIX = "replace it with an intact copy (or delete it and let load_dataset download it)"


def read_idx(path: str | os.PathLike) -> torch.Tensor:
    """The array of unsigned bytes in the IDX file ``path``, gzipped or not, as a ``uint8`` tensor of the shape its
    header gives.

    :param path: the file; gzipped when it starts with the gzip magic bytes ``1f 8b``, whatever its name.
    :returns: a tensor of ``torch.uint8`` and the header's shape.
    :raises ValueError: naming the file: a damaged or truncated gzip stream, a magic number other than
        ``0x000008NN``, or a length other than the header's shape calls for (truncated, or extra bytes).
    """
    path = Path(path)
    data = path.read_bytes()
    gzipped = data[:2] == GZIP_MAGIC
    if gzipped:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as e:
            raise ValueError(f"{path} is a damaged or truncated gzip file ({e}): {_FIX}") from e
    what = f"{path} (gunzipped)" if gzipped else str(path)
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] != UBYTE:
        magic = f"0x{data[:4].hex().upper()}" if len(data) >= 4 else f"only {len(data)} byte(s)"
        raise ValueError(
            f"{what} is not an IDX file of unsigned bytes: it starts with {magic}, where an IDX file starts with "
            f"the magic number 0x000008NN (type code 08, NN dimensions): {_FIX}"
        )
    ndim = data[3]
    start = 4 + 4 * ndim
    if len(data) < start:
        raise ValueError(f"{what} is truncated: {len(data)} bytes, fewer than its {ndim}-D header's {start}: {_FIX}")
    shape = struct.unpack(f">{ndim}I", data[4:start])
    expected = start + int(np.prod(shape, dtype=np.int64))
    if len(data) != expected:
        problem = "is truncated" if len(data) < expected else "has extra bytes"
        raise ValueError(
            f"{what} {problem}: its header gives shape {shape}, i.e. {expected} bytes, but it holds {len(data)}: "
            f"{_FIX}"
        )
    return torch.from_numpy(np.frombuffer(data, np.uint8, offset=start).reshape(shape).copy())


def read_mnist_split(images: str | os.PathLike, labels: str | os.PathLike) -> tuple[torch.Tensor, torch.Tensor]:
    """One split of an MNIST-family dataset from its two IDX files (:func:`read_idx`), with its content checked.

    :param images: the images' file: ``(N, 28, 28)`` unsigned bytes.
    :param labels: the labels' file: ``(N,)`` unsigned bytes in ``0..9``, as many as images.
    :returns: the images ``(N, 28, 28)`` as ``uint8`` and the labels ``(N,)`` as ``int64``.
    :raises ValueError: naming the file and what is wrong: an unreadable IDX file (see :func:`read_idx`), a shape
        other than the above, a label outside ``0..9``, or other numbers of images and labels.
    """
    x, y = read_idx(images), read_idx(labels)
    if x.dim() != 3 or x.shape[1:] != (MNIST_SIZE, MNIST_SIZE):
        raise ValueError(
            f"{images} holds an array of shape {tuple(x.shape)}, not (N, {MNIST_SIZE}, {MNIST_SIZE}) images: "
            f"it is not an MNIST-family images file; {_FIX}"
        )
    if y.dim() != 1:
        raise ValueError(
            f"{labels} holds an array of shape {tuple(y.shape)}, not (N,) labels: it is not an MNIST-family labels "
            f"file; {_FIX}"
        )
    bad = (y >= MNIST_CLASSES).nonzero().squeeze(-1)
    if len(bad):
        raise ValueError(
            f"{labels} holds {len(bad)} label(s) outside 0..{MNIST_CLASSES - 1} (e.g. {int(y[bad[0]])} at index "
            f"{int(bad[0])}): it is not an MNIST-family labels file; {_FIX}"
        )
    if len(x) != len(y):
        raise ValueError(
            f"{images} holds {len(x)} images but {labels} holds {len(y)} labels: the two files come from different "
            f"datasets or splits; put the matching pair side by side"
        )
    return x, y.long()
