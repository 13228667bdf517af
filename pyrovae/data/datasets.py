"""Datasets as tensors: the embedded digits (no files needed) and MNIST-like sets from their IDX files.

Every dataset comes as a :class:`Dataset` of three :class:`Split` s (train / valid / test) holding
flattened images ``x`` of shape ``(N, D)`` with grey levels in [0, 1] and integer labels ``y``; your own tensors
(:meth:`Dataset.from_tensors`) may also be real-valued, e.g. tabular data for ``likelihood="normal"``.
The whole dataset sits in memory (and on the training device), so minibatches are tensor indexing,
never a per-item Python loop.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from itertools import takewhile
from pathlib import Path

import torch

from pyrovae.data.binarize import EVAL_SEED, binarize, check_binarization
from pyrovae.data.idx import MNIST_FILES, read_mnist_split
from pyrovae.data.standardize import CHUNK_ROWS, Standardization

#: torchvision dataset classes by the names pyrovae uses for them
TORCHVISION_DATASETS = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST", "kmnist": "KMNIST"}
#: every dataset name :func:`load_dataset` accepts; ``"digits"`` is embedded (scikit-learn's 8x8 digits)
DATASETS = ("digits", *TORCHVISION_DATASETS)
#: default validation-set sizes, carved out of the official training sets
DEFAULT_VALID_SIZE = {"digits": 200, "mnist": 10000, "fashion-mnist": 10000, "kmnist": 10000}
DIGITS_TEST_SIZE = 300
#: ``(channels, height, width)`` of the images of each named dataset
IMAGE_SHAPES = {"digits": (1, 8, 8), **{name: (1, 28, 28) for name in TORCHVISION_DATASETS}}


@dataclass(frozen=True)
class Split:
    """One split of a dataset: images ``x`` of shape ``(N, D)`` in [0, 1] (any finite values in a real-valued
    :class:`Dataset`) and labels ``y`` of shape ``(N,)`` (or ``None`` for unlabelled data)."""

    x: torch.Tensor
    y: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.x)

    def to(self, device: torch.device | str) -> Split:
        return Split(self.x.to(device), None if self.y is None else self.y.to(device))


@dataclass(frozen=True)
class Dataset:
    """Train, validation and test splits plus what is needed to use them.

    :ivar str binarize: how training images are made binary: ``"dynamic"`` (a fresh Bernoulli draw for
        every minibatch, done by :func:`pyrovae.fit`), ``"static"`` (drawn once, already applied) or
        ``"none"``. Validation and test images are binarized once with
        :data:`pyrovae.data.binarize.EVAL_SEED` unless ``binarize="none"``.
    :ivar tuple image_shape: ``(channels, height, width)`` of one image, for pictures.
    :ivar bool real: whether the values are any finite real numbers (data for ``likelihood="normal"``, never
        binarized) rather than grey levels or binary values in [0, 1].
    :ivar standardization: the map that made the stored values out of the data's own
        (:class:`~pyrovae.data.standardize.Standardization`, from the training split), or ``None``: log-densities
        of the stored values plus its ``log_abs_det_jacobian`` are log-densities of the data.
    :ivar class_names: the name of each class index ``0 .. num_classes - 1`` where the data name them (a table's
        label column, an image folder's class sub-folders), else ``None``.
    """

    name: str
    train: Split
    valid: Split
    test: Split
    image_shape: tuple[int, int, int]
    num_classes: int
    binarize: str = "none"
    real: bool = False
    standardization: Standardization | None = None
    class_names: tuple[str, ...] | None = None

    @property
    def x_dim(self) -> int:
        return self.train.x.shape[-1]

    def to(self, device: torch.device | str) -> Dataset:
        return replace(self, train=self.train.to(device), valid=self.valid.to(device), test=self.test.to(device))

    def train_batch(self, idx: torch.Tensor) -> torch.Tensor:
        """Training rows ``idx`` as a training step sees them (:meth:`as_trained`)."""
        return self.as_trained(self.train.x[idx])

    def as_trained(self, x: torch.Tensor) -> torch.Tensor:
        """Training rows ``x`` as a training step sees them: with ``binarize="dynamic"`` a fresh Bernoulli draw
        (from torch's global RNG, or the RNG of their device), otherwise the rows as stored."""
        return torch.bernoulli(x) if self.binarize == "dynamic" else x

    def standardized(self, standardization: Standardization | None = None) -> Dataset:
        """This real-valued dataset with every split standardized by the training split's mean and standard deviation
        per column (:class:`~pyrovae.data.standardize.Standardization`, kept as ``standardization``).

        :param standardization: the map to apply instead (e.g. the one a checkpoint stored); default: fitted to the
            training split.

        :raises ValueError: if the dataset is not real-valued (``real=False``: grey levels or binary values, which
            the Bernoulli likelihoods model as they are) or is standardized already."""
        if not self.real or self.standardization is not None:
            why = "is standardized already" if self.real else "is not real-valued (real=False)"
            raise ValueError(f"dataset {self.name!r} {why}: only raw real-valued data are standardized")
        scale = Standardization.fit(self.train.x) if standardization is None else standardization
        splits = {k: replace(s, x=scale(s.x)) for k, s in (("train", self.train), ("valid", self.valid),
                                                             ("test", self.test))}  # fmt: skip
        return replace(self, **splits, standardization=scale)

    def fixed_x(self, split: str) -> torch.Tensor:
        """The images of ``split`` (``"train"``, ``"valid"`` or ``"test"``) as evaluation sees them: the same on
        every call. Validation and test images are stored so; dynamically binarized training images are drawn once
        with :data:`~pyrovae.data.binarize.EVAL_SEED`, as the other splits were."""
        x = getattr(self, split).x
        return binarize(x, seed=EVAL_SEED) if split == "train" and self.binarize == "dynamic" else x

    @classmethod
    def from_tensors(
        cls,
        train: torch.Tensor,
        test: torch.Tensor | None = None,
        valid: torch.Tensor | None = None,
        *,
        binarize: str = "none",
        real: bool = False,
        image_shape: tuple[int, int, int] | None = None,
        name: str = "tensors",
    ) -> Dataset:
        """Wrap user tensors of shape ``(N, D)`` as a :class:`Dataset` (no labels; missing splits are empty).

        :param str binarize: ``"none"`` (default), ``"dynamic"`` or ``"static"``; see :class:`Dataset`.
        :param bool real: ``False`` (default): values in [0, 1], grey levels or binary, for the Bernoulli
            likelihoods (and ``"normal"``); ``True``: any finite real values, e.g. standardised tabular data for
            ``VAE(D, likelihood="normal")``, which cannot be binarized (``binarize="none"`` only).
        :param image_shape: ``(C, H, W)`` with ``C * H * W = D`` for pictures; default ``(1, 1, D)``.
        :raises ValueError: for an empty or non-2-D ``train``, splits of other widths, NaN or infinite values,
            values outside [0, 1] unless ``real``, or a binarization of real data.
        """
        x_dim = train.shape[-1] if train.dim() == 2 else None
        if train.dim() != 2 or len(train) == 0:
            raise ValueError(f"train must be a non-empty (N, D) tensor, got shape {tuple(train.shape)}")
        if real and binarize != "none":
            raise ValueError(
                f"binarize={binarize!r} draws binary data from grey levels in [0, 1], and real=True data are any "
                "real values: use binarize='none' with real-valued data (likelihood='normal')"
            )
        empty = train.new_zeros(0, x_dim)
        splits = {"train": train, "valid": empty if valid is None else valid, "test": empty if test is None else test}
        for key, x in splits.items():
            if x.dim() != 2 or x.shape[-1] != x_dim:
                raise ValueError(f"{key} must be an (N, {x_dim}) tensor like train, got shape {tuple(x.shape)}")
        return _finish(name, splits, {}, image_shape or (1, 1, x_dim), 0, binarize, real=real)


def load_dataset(
    name: str = "digits",
    data_dir: str | os.PathLike | None = None,
    *,
    binarize: str = "dynamic",
    valid_size: int | None = None,
    split_seed: int = 0,
    download: bool = True,
) -> Dataset:
    """Load a dataset as in-memory tensors.

    :param str name: one of :data:`DATASETS`. ``"digits"`` is scikit-learn's 1,797 8x8 handwritten digits
        (grey levels 0..16 scaled to [0, 1]), shipped with scikit-learn: no files, no network.
        ``"mnist"``, ``"fashion-mnist"`` and ``"kmnist"`` (28x28) are read from their four IDX files in
        ``data_dir`` (:mod:`pyrovae.data.idx`).
    :param data_dir: where the files are (default ``"data"``): the folder holding them, or its parent, or its
        grandparent as in torchvision's layout (``data_dir/MNIST/raw/``; ``FashionMNIST``, ``KMNIST``). The files
        keep torchvision's names (``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
        ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``), each gzipped (``.gz``) or not; they are read in
        place, offline, and checked by their content (IDX header, shapes, labels in 0..9), not by checksums, so
        copies compressed again (e.g. Debian's ``dataset-fashion-mnist``) load too; nothing is written.
        Only if a file is missing and ``download``, torchvision downloads the missing ``.gz`` files into
        ``<root>/MNIST/raw`` (``root`` being ``data_dir``, or its torchvision root when it is the ``MNIST`` or
        ``raw`` folder); a failed download leaves no new file or folder behind.
    :param str binarize: ``"dynamic"`` (default), ``"static"`` or ``"none"``; see :class:`Dataset`.
    :param int valid_size: images held out of the training set for validation
        (default :data:`DEFAULT_VALID_SIZE`; 0 trains on the whole official training set).
    :param int split_seed: seed of the train/validation (and, for digits, test) split.
    :param bool download: allow torchvision to download missing files.
    :raises FileNotFoundError: files missing (and not downloaded); the message names the folders looked in, the
        files missing and where to put them.
    :raises ValueError: a file is damaged, truncated or not of the dataset (the message names it and what is
        wrong; see :func:`pyrovae.data.idx.read_mnist_split`).
    """
    check_binarization(binarize)
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}: choose one of {DATASETS}")
    if name == "digits":
        x, y = _digits()
        perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(split_seed))
        test_idx, rest = perm[:DIGITS_TEST_SIZE], perm[DIGITS_TEST_SIZE:]
        full_train, test, image_shape = (x[rest], y[rest]), (x[test_idx], y[test_idx]), (1, 8, 8)
    else:
        root = Path(data_dir if data_dir is not None else "data").expanduser()
        (full_train, test), image_shape = _mnist_family(name, root, download=download), (1, 28, 28)
    valid_size = DEFAULT_VALID_SIZE[name] if valid_size is None else valid_size
    if not 0 <= valid_size < len(full_train[0]):
        raise ValueError(f"valid_size must be in [0, {len(full_train[0])}), got {valid_size}")
    perm = torch.randperm(len(full_train[0]), generator=torch.Generator().manual_seed(split_seed))
    valid_idx, train_idx = perm[:valid_size], perm[valid_size:]
    xs = {"train": full_train[0][train_idx], "valid": full_train[0][valid_idx], "test": test[0]}
    ys = {"train": full_train[1][train_idx], "valid": full_train[1][valid_idx], "test": test[1]}
    return _finish(name, xs, ys, image_shape, 10, binarize)


def _finish(name, xs, ys, image_shape, num_classes, mode, real=False) -> Dataset:
    """Check the values, binarize the evaluation splits (and a static training split) once, and build the Dataset."""
    check_binarization(mode)
    for key, x in xs.items():
        _check_values(key, x, real)
    if mode != "none":
        xs = {k: x if (k == "train" and mode == "dynamic") else binarize(x, seed=EVAL_SEED) for k, x in xs.items()}
    splits = {k: Split(x.float(), ys.get(k)) for k, x in xs.items()}
    return Dataset(name, splits["train"], splits["valid"], splits["test"], image_shape, num_classes, mode, real)


def _check_values(key: str, x: torch.Tensor, real: bool) -> None:
    """Check that the split ``key`` holds finite values, in [0, 1] unless ``real``.

    :raises ValueError: naming the split, its rows with NaN or infinite values or the range of its values, and the
        fix."""
    bad, low, high = [], math.inf, -math.inf
    for start in range(0, len(x), CHUNK_ROWS):  # a chunk at a time: a memory-mapped split is never read in full
        chunk = x[start : start + CHUNK_ROWS]
        bad.append((~torch.isfinite(chunk)).reshape(len(chunk), -1).any(-1).nonzero().squeeze(-1) + start)
        if chunk.numel() and not real:
            low, high = min(low, chunk.min().item()), max(high, chunk.max().item())
    rows = torch.cat(bad) if bad else torch.zeros(0, dtype=torch.long)
    if len(rows):
        raise ValueError(
            f"{key} holds NaN or infinite values in {len(rows)} row(s) (e.g. row {int(rows[0])}): remove or impute them"
        )
    if real or (low >= 0 and high <= 1):
        return
    raise ValueError(
        f"{key} has values in [{low:g}, {high:g}], not in [0, 1]: rescale grey levels to [0, 1] "
        "(e.g. divide 8-bit images by 255), or for real-valued data (likelihood='normal') pass real=True"
    )


def _digits() -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.as_tensor(digits.data, dtype=torch.float32) / 16.0
    return x, torch.as_tensor(digits.target, dtype=torch.long)


#: a split's images and labels
_Pair = tuple[torch.Tensor, torch.Tensor]


def _mnist_family(name: str, data_dir: Path, *, download: bool) -> tuple[_Pair, _Pair]:
    """The official training and test sets ``(x, y)`` of an MNIST-family dataset, read in place from the first
    folder of :func:`_folders` that holds its four IDX files, else (if ``download``) downloaded by torchvision into
    ``<root>/<Class>/raw`` and read from there; see :func:`load_dataset`."""
    folders = _folders(data_dir, TORCHVISION_DATASETS[name])
    for folder in folders:
        if (files := _files(folder)) is not None:
            return _read(files)
    raw = _layout_root(data_dir, TORCHVISION_DATASETS[name]) / TORCHVISION_DATASETS[name] / "raw"
    best = max(reversed(folders), key=lambda f: sum(_file(f, n) is not None for n in _names()))  # data_dir on ties
    missing = [n for n in _names() if _file(best, n) is None]
    lacks = f"{best} lacks {', '.join(f'{n}[.gz]' for n in missing)}" if best.is_dir() else f"{best} does not exist"
    what = f"could not load {name} from the folders {', '.join(map(str, folders))}: {lacks}"
    put = f"Put the four files (gzipped or not) in {raw}/ (torchvision's layout) or in the folder you pass"
    if not download:
        raise FileNotFoundError(f"{what}. {put}, or allow downloading")
    new = [raw / f"{n}.gz" for n in _names() if _file(raw, n) is None]
    with _cleanup_on_error(raw, new):  # a failed download leaves no new file or folder behind
        _download(TORCHVISION_DATASETS[name], new, f"{what}, and downloading failed", put)
        return _read(_files(raw))


def _names() -> list[str]:
    """The four files' names, extracted (each may also be gzipped, with ``.gz``)."""
    return [f for pair in MNIST_FILES.values() for f in pair]


def _folders(data_dir: Path, cls_name: str) -> list[Path]:
    """Where to look for the files: ``data_dir/<Class>/raw`` (torchvision's layout), ``data_dir/raw`` and
    ``data_dir`` itself, so that ``data_dir`` may also be the ``<Class>`` or the ``raw`` folder."""
    return list(dict.fromkeys((data_dir / cls_name / "raw", data_dir / "raw", data_dir)))


def _file(folder: Path, name: str) -> Path | None:
    """The file ``name`` in ``folder``, extracted (read faster) or else gzipped, or ``None``."""
    return next((p for p in (folder / name, folder / f"{name}.gz") if p.is_file()), None)


def _files(folder: Path) -> dict[str, Path] | None:
    """The four files in ``folder`` by their names, or ``None`` if one is missing."""
    files = {n: _file(folder, n) for n in _names()}
    return None if None in files.values() else files


def _read(files: dict[str, Path]) -> tuple[_Pair, _Pair]:
    """The training and test sets: images flattened to ``(N, 784)`` in [0, 1], and labels."""
    pairs = (read_mnist_split(files[images], files[labels]) for images, labels in MNIST_FILES.values())
    return tuple((x.reshape(len(x), -1).float() / 255.0, y) for x, y in pairs)


def _layout_root(data_dir: Path, cls_name: str) -> Path:
    """torchvision's root folder for ``data_dir``, also when that is the ``<Class>`` or ``<Class>/raw`` folder."""
    if data_dir.name == "raw" and data_dir.parent.name == cls_name:
        return data_dir.parent.parent
    return data_dir.parent if data_dir.name == cls_name else data_dir


def _download(cls_name: str, paths: list[Path], what: str, put: str) -> None:
    """Download the gzipped files ``paths`` with torchvision (from its mirrors, checked against its md5 sums).

    :raises FileNotFoundError: ``what``, the errors of every mirror for the first file that failed, and ``put``."""
    import torchvision
    from torchvision.datasets.utils import download_url

    cls = getattr(torchvision.datasets, cls_name)
    md5 = {os.path.basename(url): digest for url, digest in cls.resources}
    for path in paths:
        errors = []
        for mirror in cls.mirrors:
            try:
                download_url(f"{mirror}{path.name}", path.parent, path.name, md5[path.name])
                break
            except (RuntimeError, OSError) as e:  # urllib's URLError is an OSError
                errors.append(f"{mirror}{path.name}: {str(e).strip()}")
        else:
            raise FileNotFoundError(f"{what} ({'; '.join(errors)}). {put}")


@contextmanager
def _cleanup_on_error(folder: Path, files: list[Path]) -> Iterator[None]:
    """On an error in the block, delete ``files``, then ``folder`` and its parents if the block created them (they
    did not exist before) and they are empty: a failed load leaves nothing new."""
    new = list(takewhile(lambda p: not p.exists(), (folder, *folder.parents)))
    try:
        yield
    except BaseException:
        for f in files:
            f.unlink(missing_ok=True)
        for p in new:
            with suppress(OSError):
                p.rmdir()
        raise
