r"""Your own data from a file: ``.npy``, ``.npz``, ``.csv``, ``.parquet`` or a folder of images.

:func:`load_file` reads the file into a :class:`~pyrovae.data.datasets.Dataset` of three splits:

==================  ==========================================================================================
what                read as
==================  ==========================================================================================
``.npy``            one array, memory-mapped (``numpy.load(path, mmap_mode="r")``): rows ``(N, D)``, or images
                    ``(N, H, W)`` / ``(N, C, H, W)`` flattened to ``(N, C * H * W)`` with ``image_shape``
                    recorded. No labels.
``.npz``            the arrays ``x`` (as ``.npy``), optional ``y`` (integer class indices, ``num_classes`` =
                    the largest index + 1), optional ``x_test`` / ``y_test`` (the test split, else carved).
``.csv``            a table through pandas (an optional dependency), every column numeric; the
``.parquet``        ``label_column``, if named, taken out as labels: its values (strings or numbers), sorted,
                    are the classes ``0 .. C - 1``, their names kept in ``Dataset.class_names``.
a folder            PNG / JPEG images through Pillow, all grey (``"L"``) or, if any image has colour bands, all
                    RGB, resized to ``image_size`` (default: the first image's size); images in sub-folders
                    are labelled by the sub-folder's name (torchvision's ``ImageFolder`` convention).
==================  ==========================================================================================

Values: 8-bit (``uint8``) *images* (arrays of 3 or 4 dimensions, and image files) are grey levels scaled by
1/255 to [0, 1]; every other array is read as float32 numbers as they are (a flattened ``(N, D)`` ``uint8`` array
is numbers 0..255: divide it by 255 yourself, or keep it ``(N, H, W)``). A NaN or infinite value is an error
naming its row and column.

Splits: the test split is the file's own (``x_test``) or ``test_size`` rows carved at random, the validation split
``valid_size`` rows carved from the rest (each 10 % by default), with the generator seeded by ``split_seed``, so
that the same call gives the same splits. Each split keeps its rows in the file's order.

Memory: a split is a copy of its rows, except the training split of an ``.npy`` file of float32 rows ``(N, D)``
of which nothing is carved (``valid_size=0, test_size=0``: give the held-out data as files of their own), which
stays the file's memory map (:func:`pyrovae.data.memmap.open_npy`): checked a chunk of rows at a time and, above
the device data limit (:mod:`pyrovae.data.placement`), streamed a minibatch at a time, never read whole. Binarized
(``"static"``) and standardized (real-valued) splits are computed, and so held in memory.

Likelihood: :func:`pyrovae.models.likelihoods.choose_likelihood` picks the observation model that fits the values
as they are: ``"bernoulli"`` when every value is 0 or 1, ``"continuous-bernoulli"`` in [0, 1], else ``"normal"``.
Data with values outside [0, 1] are real-valued (``Dataset.real``) and standardized by default, per column
with the training split's mean and standard deviation
(:class:`~pyrovae.data.standardize.Standardization`, kept as ``Dataset.standardization``): a log-density of the
stored values plus ``standardization.log_abs_det_jacobian`` is the log-density of the data in their own units.
Nothing is binarized unless asked: the chosen likelihood fits the values as they are.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pyrovae.data.binarize import check_binarization
from pyrovae.data.datasets import Dataset, _finish
from pyrovae.data.memmap import open_npy
from pyrovae.data.standardize import Standardization

#: the file suffixes :func:`load_file` reads (besides a folder of images)
SUFFIXES = (".npy", ".npz", ".csv", ".parquet")
#: the image files of an image folder
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
#: the arrays of an ``.npz`` file
NPZ_ARRAYS = ("x", "y", "x_test", "y_test")
#: the share of the rows carved out for validation, and for testing, when no size is given
DEFAULT_FRACTION = 0.1
#: Pillow's modes without colour: their images are read as grey
GREY_MODES = ("1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "F")
#: Pillow's modes of more than 8 bits per pixel, which an 8-bit conversion would clip
DEEP_MODES = ("I", "I;16", "I;16B", "I;16L", "F")


@dataclass(frozen=True)
class _Table:
    """What a file holds: rows ``x`` ``(N, D)`` (a NumPy array, possibly memory-mapped), labels ``y`` ``(N,)`` or
    ``None``, the file's own test split ``(x_test, y_test)`` or ``None``, and what names the columns and classes."""

    x: Any
    y: np.ndarray | None = None
    test: tuple[Any, np.ndarray | None] | None = None
    image_shape: tuple[int, int, int] | None = None
    num_classes: int = 0
    class_names: tuple[str, ...] | None = None
    columns: tuple[str, ...] | None = None
    scale: float = 1.0


def load_file(
    path: str | os.PathLike,
    *,
    label_column: str | None = None,
    image_size: int | tuple[int, int] | None = None,
    valid_size: int | float | None = None,
    test_size: int | float | None = None,
    split_seed: int = 0,
    binarize: str = "none",
    standardize: bool | Standardization = True,
) -> Dataset:
    """Load your own data from a file or a folder of images as a :class:`~pyrovae.data.datasets.Dataset` (the
    formats, values, splits and likelihood are described in :mod:`pyrovae.data.files`).

    :param path: an ``.npy``, ``.npz``, ``.csv`` or ``.parquet`` file, or a folder of PNG / JPEG images.
    :param label_column: the column of a table holding the labels (``.csv`` / ``.parquet`` only).
    :param image_size: ``S`` or ``(H, W)``: the size every image of a folder is resized to (folders only;
        default: the first image's size, and all must have it).
    :param valid_size: validation rows carved out of the training rows: a count, or a fraction in [0, 1)
        (default :data:`DEFAULT_FRACTION`).
    :param test_size: test rows carved out likewise, for files without their own ``x_test`` (0: none; files with
        it take only 0).
    :param int split_seed: seed of the carving.
    :param str binarize: ``"none"`` (default), ``"dynamic"`` or ``"static"`` (values in [0, 1] only); see
        :class:`~pyrovae.data.datasets.Dataset`.
    :param standardize: standardize real-valued data by the training split (default ``True``), or apply the
        :class:`~pyrovae.data.standardize.Standardization` given (e.g. the one a checkpoint stored).
    :returns: the dataset, named after the file, with ``image_shape``, labels and ``class_names`` where the file
        has them.
    :raises FileNotFoundError: if ``path`` does not exist.
    :raises ImportError: a table without pandas (``pip install pandas``), or a ``.parquet`` file without pyarrow.
    :raises ValueError: for a file of another kind, a bad array, column, value or image (the message names the
        file, the row and the column, and the fix), sizes that leave no training rows, or a binarization of
        real-valued data.
    """
    check_binarization(binarize)
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: give an .npy, .npz, .csv or .parquet file or a folder of "
                                "images")  # fmt: skip
    suffix = "folder" if path.is_dir() else path.suffix.lower()
    if suffix not in (*SUFFIXES, "folder"):
        raise ValueError(f"{path}: unknown kind of file {path.suffix!r}: give an .npy, .npz, .csv or .parquet file, "
                         "or a folder of PNG / JPEG images")  # fmt: skip
    if label_column is not None and suffix not in (".csv", ".parquet"):
        raise ValueError(f"{path}: a label column names a column of a .csv or .parquet table, and this is "
                         f"{'a folder' if suffix == 'folder' else 'an ' + suffix + ' file'}: leave it out")  # fmt: skip
    if image_size is not None and suffix != "folder":
        raise ValueError(f"{path}: the image size resizes the images of a folder, and this is a file: leave it out")
    if suffix == ".npy":
        table = _rows(path, "x", np.load(path, mmap_mode="r"))
    elif suffix == ".npz":
        table = _npz(path)
    elif suffix == "folder":
        table = _image_folder(path, image_size)
    else:
        table = _table(path, label_column)
    if table.test is not None and test_size:
        raise ValueError(f"{path} holds its own test split (x_test): a test size carves one out of files without it; "
                         "leave it out (or give 0)")  # fmt: skip
    xs, ys = _splits(path, table, valid_size, test_size, split_seed)
    low, high = min(x.min().item() for x in xs.values() if len(x)), max(x.max().item() for x in xs.values() if len(x))
    real = low < 0 or high > 1
    if real and binarize != "none":
        raise ValueError(f"{path}: the values lie outside [0, 1] ({low:g} .. {high:g}) and cannot be binarized: use "
                         "binarize 'none' (a normal likelihood)")  # fmt: skip
    image_shape = table.image_shape or (1, 1, xs["train"].shape[-1])
    data = _finish(path.name, xs, ys, image_shape, table.num_classes, binarize, real=real)
    data = replace(data, class_names=table.class_names)
    if real and standardize is not False:
        data = data.standardized(standardize if isinstance(standardize, Standardization) else None)
    return data


def _splits(path: Path, table: _Table, valid_size, test_size, split_seed: int) -> tuple[dict, dict]:
    """The train / valid / test rows of ``table`` as float32 tensors, and their labels: the test split carved out
    first (unless the file has one), then the validation split, each keeping the file's order of rows."""
    n = len(table.x)
    perm = np.random.default_rng(split_seed).permutation(n)
    num_test = 0 if table.test is not None else _count(test_size, n, "test")
    num_valid = _count(valid_size, n, "validation")
    if num_test + num_valid >= n:
        raise ValueError(f"{path} has {n} rows: {num_test} test and {num_valid} validation rows leave none to train "
                         "on; give smaller sizes")  # fmt: skip
    rows = {"test": np.sort(perm[:num_test]), "valid": np.sort(perm[num_test : num_test + num_valid]),
            "train": np.sort(perm[num_test + num_valid :])}  # fmt: skip
    xs = {key: _tensor(path, table, table.x, idx, "x") for key, idx in rows.items()}
    ys = {key: None if table.y is None else torch.as_tensor(table.y[idx]) for key, idx in rows.items()}
    if table.test is not None:
        x_test, y_test = table.test
        xs["test"] = _tensor(path, table, x_test, np.arange(len(x_test)), "x_test")
        ys["test"] = None if y_test is None else torch.as_tensor(y_test)
    return xs, ys


def _count(size: int | float | None, n: int, what: str) -> int:
    """The number of rows that ``size`` (a count, or a fraction in [0, 1); ``None``: :data:`DEFAULT_FRACTION`)
    means out of ``n``."""
    size = DEFAULT_FRACTION if size is None else size
    if isinstance(size, bool) or not isinstance(size, (int, float)):
        raise TypeError(f"the {what} size must be a number of rows or a fraction, got {size!r}")
    if isinstance(size, float):
        if not 0 <= size < 1:
            raise ValueError(f"a {what} fraction must lie in [0, 1), got {size}: give a fraction, or a whole number "
                             "of rows")  # fmt: skip
        return round(size * n)
    if size < 0:
        raise ValueError(f"the {what} size must be a number of rows >= 0, got {size}")
    return size


def _tensor(path: Path, table: _Table, x, idx: np.ndarray, array: str) -> torch.Tensor:
    """Rows ``idx`` of ``x`` as a float32 tensor (scaled by ``table.scale``), checked to be finite.

    :raises ValueError: naming the file's row and column of the first NaN or infinite value."""
    if isinstance(x, np.memmap) and len(idx) == len(x) and x.dtype == np.float32 and table.scale == 1.0:
        return open_npy(x.filename)  # every row, in order: the file's memory map (its values checked by chunks later)
    values = torch.from_numpy(np.asarray(x[idx], dtype=np.float32))
    if table.scale != 1.0:
        values = values * table.scale
    bad = ~torch.isfinite(values)
    if bad.any():
        r, c = (int(i) for i in bad.nonzero()[0])
        column = repr(table.columns[c]) if table.columns else str(c)
        where = ("" if array == "x" else f"{array!r}, ") + f"row {int(idx[r])}, column {column}"
        raise ValueError(f"{path}: {where} holds {values[r, c].item()} ({int(bad.any(-1).sum())} row(s) of this "
                         "split hold NaN or infinite values): remove or impute them")  # fmt: skip
    return values


def _rows(path: Path, name: str, x: np.ndarray) -> _Table:
    """The rows of the array ``x`` (``name`` in ``path``): ``(N, D)``, or images ``(N, H, W)`` / ``(N, C, H, W)``
    flattened, 8-bit images scaled to [0, 1]."""
    if x.dtype.kind not in "biuf":
        raise ValueError(f"{path}: array {name!r} holds {x.dtype} values, not numbers: save a numeric array")
    if x.ndim not in (2, 3, 4) or len(x) == 0:
        raise ValueError(f"{path}: array {name!r} has shape {x.shape}: give rows (N, D) or images (N, H, W) or "
                         "(N, C, H, W), N >= 1")  # fmt: skip
    image_shape = None if x.ndim == 2 else ((1, *x.shape[1:]) if x.ndim == 3 else tuple(x.shape[1:]))
    scale = 1 / 255 if x.ndim > 2 and x.dtype == np.uint8 else 1.0
    return _Table(x.reshape(len(x), -1), image_shape=image_shape, scale=scale)


def _npz(path: Path) -> _Table:
    """The arrays ``x``, ``y``, ``x_test``, ``y_test`` of an ``.npz`` file (see :data:`NPZ_ARRAYS`)."""
    with np.load(path) as arrays:
        unknown = sorted(set(arrays.files) - set(NPZ_ARRAYS))
        if unknown or "x" not in arrays.files:
            what = f"holds the unknown array(s) {', '.join(unknown)}" if unknown else "has no array 'x'"
            raise ValueError(f"{path} {what}: an .npz file holds 'x' and optionally 'y', 'x_test', 'y_test' (save it "
                             "with numpy.savez(path, x=..., y=...))")  # fmt: skip
        found = {key: arrays[key] for key in arrays.files}
    if "y_test" in found and "x_test" not in found:
        raise ValueError(f"{path} holds 'y_test' but no 'x_test': save the test rows as 'x_test' with their labels")
    table = _rows(path, "x", found["x"])
    test = None
    if "x_test" in found:
        x_test = _rows(path, "x_test", found["x_test"]).x
        if x_test.shape[1:] != table.x.shape[1:] or found["x_test"].shape[1:] != found["x"].shape[1:]:
            raise ValueError(f"{path}: 'x_test' has rows of shape {found['x_test'].shape[1:]} and 'x' of "
                             f"{found['x'].shape[1:]}: save test rows like the training rows")  # fmt: skip
        test = (x_test, _labels(path, "y_test", found.get("y_test"), len(x_test)))
    y = _labels(path, "y", found.get("y"), len(table.x))
    labelled = [labels for labels in (y, test and test[1]) if labels is not None]
    num_classes = max(int(labels.max()) + 1 for labels in labelled) if labelled else 0
    return replace(table, y=y, test=test, num_classes=num_classes)


def _labels(path: Path, name: str, y: np.ndarray | None, n: int) -> np.ndarray | None:
    """The class indices ``y`` (``name`` in ``path``), checked: ``(n,)`` integers >= 0."""
    if y is None:
        return None
    if y.shape != (n,) or y.dtype.kind not in "biu":
        raise ValueError(f"{path}: {name!r} has shape {y.shape} and dtype {y.dtype}: labels are ({n},) integer class "
                         "indices 0 .. C - 1, one per row")  # fmt: skip
    if n and y.min() < 0:
        raise ValueError(f"{path}: {name!r} holds the negative label {y.min()} (row {int(y.argmin())}): labels are "
                         "class indices 0 .. C - 1")  # fmt: skip
    return y.astype(np.int64)


def _pandas():
    try:
        import pandas
    except ImportError as err:
        raise ImportError("reading a .csv or .parquet table needs pandas: pip install pandas") from err
    return pandas


def _table(path: Path, label_column: str | None) -> _Table:
    """A ``.csv`` or ``.parquet`` table: numeric columns, and the labels of ``label_column``."""
    pd = _pandas()
    if path.suffix.lower() == ".csv":
        frame, line = pd.read_csv(path), 2  # data row r is line r + 2 of the file, below the header
    else:
        try:
            frame, line = pd.read_parquet(path), None
        except ImportError as err:
            raise ImportError(f"reading {path} needs pyarrow: pip install pyarrow") from err

    def row(r: int) -> str:
        return f"row {r}" + (f" (line {r + line})" if line else "")

    columns = [str(c) for c in frame.columns]
    if label_column is not None and label_column not in columns:
        raise ValueError(f"{path} has no column {label_column!r} for the labels: its columns are {', '.join(columns)}")
    if not len(frame):
        raise ValueError(f"{path} holds no data rows: give a table with a header line and rows")
    frame.columns = columns
    y = class_names = None
    if label_column is not None:
        labels = frame.pop(label_column)
        missing = labels.isna().to_numpy()
        if missing.any():
            raise ValueError(f"{path}: {row(int(missing.argmax()))} has no label in column {label_column!r}: give "
                             "every row its class")  # fmt: skip
        values = labels.tolist()
        try:
            classes = sorted(set(values))
        except TypeError:  # mixed kinds of values: as text
            values = [str(v) for v in values]
            classes = sorted(set(values))
        index = {c: i for i, c in enumerate(classes)}
        y, class_names = np.array([index[v] for v in values], dtype=np.int64), tuple(str(c) for c in classes)
        if not len(frame.columns):
            raise ValueError(f"{path} holds only the label column {label_column!r}: give feature columns too")
    for column in frame.columns:
        if not pd.api.types.is_numeric_dtype(frame[column]):
            numbers = pd.to_numeric(frame[column], errors="coerce")
            r = int((numbers.isna() & frame[column].notna()).to_numpy().argmax())
            raise ValueError(
                f"{path}: column {column!r} is not numeric ({row(r)} holds {frame[column].iloc[r]!r}): drop the "
                f"column, or name it with --label-column {column} (label_column={column!r}) if it holds the classes"
            )
    missing = frame.isna().to_numpy()
    if missing.any():
        r, c = (int(i) for i in np.argwhere(missing)[0])
        raise ValueError(f"{path}: {row(r)}, column {frame.columns[c]!r} is empty (NaN) ({int(missing.any(1).sum())} "
                         "row(s) have empty cells): remove or impute them")  # fmt: skip
    x = frame.to_numpy(dtype=np.float32)
    return _Table(x, y, num_classes=len(class_names or ()), class_names=class_names, columns=tuple(frame.columns))


def _image_folder(path: Path, image_size: int | tuple[int, int] | None) -> _Table:
    """The PNG / JPEG images of a folder (labelled by their class sub-folders, if any), all grey or all RGB, resized
    to ``image_size`` (default: the first image's, which all must then have)."""
    from PIL import Image, UnidentifiedImageError

    def images(folder: Path) -> list[Path]:
        return sorted(f for f in folder.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)

    classes = sorted(d for d in path.iterdir() if d.is_dir() and not d.name.startswith(".") and images(d))
    loose = images(path)
    if classes and loose:
        raise ValueError(f"{path} holds images both in the folder ({loose[0].name}, ...) and in class sub-folders "
                         f"({classes[0].name}/, ...): put every image in its class's sub-folder, or none")  # fmt: skip
    files = [(f, i) for i, d in enumerate(classes) for f in images(d)] if classes else [(f, -1) for f in loose]
    if not files:
        raise ValueError(f"{path} holds no .png, .jpg or .jpeg images (nor class sub-folders of them)")
    headers = []
    for f, _ in files:
        try:
            with Image.open(f) as im:
                headers.append((im.mode, im.size))
        except (OSError, UnidentifiedImageError) as err:
            raise ValueError(f"{f} is not a readable image ({err}): replace or remove it") from err
    deep = next((k for k, (mode, _) in enumerate(headers) if mode in DEEP_MODES), None)
    if deep is not None:  # Pillow's conversion to 8 bits would clip every level above 255 to white, silently
        raise ValueError(f"{files[deep][0]} has more than 8 bits per pixel (mode {headers[deep][0]}): save the images "
                         "with 8 bits (e.g. Pillow: Image.fromarray((numpy.asarray(im) >> 8).astype('uint8')) for "
                         "16 bits)")  # fmt: skip
    colour = any(mode not in GREY_MODES for mode, _ in headers)
    if image_size is None:
        size = headers[0][1]
        other = next((i for i, (_, s) in enumerate(headers) if s != size), None)
        if other is not None:
            raise ValueError(f"{files[other][0]} is {headers[other][1][0]}x{headers[other][1][1]} (width x height) "
                             f"and {files[0][0]} {size[0]}x{size[1]}: give an image size to resize them all to "
                             "(--image-size)")  # fmt: skip
    else:
        height, width = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        if height < 1 or width < 1:
            raise ValueError(f"an image size must be positive, got {image_size}")
        size = (width, height)
    mode = "RGB" if colour else "L"
    x = np.empty((len(files), size[1], size[0], 3 if colour else 1), dtype=np.uint8)
    for k, (f, _) in enumerate(files):
        try:
            with Image.open(f) as im:
                im = im.convert(mode)
                im = im if im.size == size else im.resize(size, Image.Resampling.BILINEAR)
                x[k] = np.asarray(im).reshape(size[1], size[0], -1)
        except OSError as err:
            raise ValueError(f"{f} is not a readable image ({err}): replace or remove it") from err
    x = x.transpose(0, 3, 1, 2)  # (N, C, H, W)
    y = np.array([i for _, i in files], dtype=np.int64) if classes else None
    table = _rows(path, "images", np.ascontiguousarray(x))
    names = tuple(d.name for d in classes) if classes else None
    return replace(table, y=y, num_classes=len(classes), class_names=names)
