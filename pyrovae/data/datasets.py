"""Datasets as tensors: the embedded digits (no files needed) and MNIST-like sets through torchvision.

Every dataset comes as a :class:`Dataset` of three :class:`Split` s (train / valid / test) holding
flattened images ``x`` of shape ``(N, D)`` with grey levels in [0, 1] and integer labels ``y``; your own tensors
(:meth:`Dataset.from_tensors`) may also be real-valued, e.g. tabular data for ``likelihood="normal"``.
The whole dataset sits in memory (and on the training device), so minibatches are tensor indexing,
never a per-item Python loop.
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from itertools import takewhile
from pathlib import Path

import torch

from pyrovae.data.binarize import EVAL_SEED, binarize, check_binarization
from pyrovae.data.standardize import CHUNK_ROWS, Standardization

#: torchvision dataset classes by the names pyrovae uses for them
TORCHVISION_DATASETS = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST", "kmnist": "KMNIST"}
#: every dataset name :func:`load_dataset` accepts; ``"digits"`` is embedded (scikit-learn's 8x8 digits)
DATASETS = ("digits", *TORCHVISION_DATASETS)
#: default validation-set sizes, carved out of the official training sets
DEFAULT_VALID_SIZE = {"digits": 200, "mnist": 10000, "fashion-mnist": 10000, "kmnist": 10000}
DIGITS_TEST_SIZE = 300


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

    def standardized(self) -> Dataset:
        """This real-valued dataset with every split standardized by the training split's mean and standard deviation
        per column (:class:`~pyrovae.data.standardize.Standardization`, kept as :attr:`standardization`).

        :raises ValueError: if the dataset is not real-valued (``real=False``: grey levels or binary values, which
            the Bernoulli likelihoods model as they are) or is standardized already."""
        if not self.real or self.standardization is not None:
            why = "is standardized already" if self.real else "is not real-valued (real=False)"
            raise ValueError(f"dataset {self.name!r} {why}: only raw real-valued data are standardized")
        scale = Standardization.fit(self.train.x)
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
        ``"mnist"``, ``"fashion-mnist"`` and ``"kmnist"`` (28x28) come through torchvision from ``data_dir``.
    :param data_dir: the folder holding the files, in torchvision's layout (documented): the root folder with
        ``MNIST/raw/*.gz`` (``FashionMNIST/raw``, ``KMNIST/raw``) in it. Also accepted: the ``MNIST`` folder
        itself (holding ``raw/``), or the ``raw`` folder itself (or any folder) holding the four ``.gz`` files.
        Files already there are used offline: only the ``.gz`` files are needed, checked against torchvision's
        md5 sums and copied to ``~/.cache/pyrovae/torchvision`` (``$XDG_CACHE_HOME``) where they are extracted
        (copied and extracted again whenever a file in ``data_dir`` changes), so ``data_dir`` is never written
        to; already extracted files in torchvision's layout are read in place. Missing files are downloaded
        into ``MNIST/raw`` (under ``data_dir``, or the one given) if ``download``; a failed load leaves no new
        folder behind, there or in the cache.
    :param str binarize: ``"dynamic"`` (default), ``"static"`` or ``"none"``; see :class:`Dataset`.
    :param int valid_size: images held out of the training set for validation
        (default :data:`DEFAULT_VALID_SIZE`; 0 trains on the whole official training set).
    :param int split_seed: seed of the train/validation (and, for digits, test) split.
    :param bool download: allow torchvision to download missing files.
    :raises FileNotFoundError: files missing (and not downloaded), or unreadable; the message names the folder,
        the files to put there and torchvision's layout.
    :raises ValueError: a ``.gz`` file in ``data_dir`` is corrupt or truncated (the message names it).
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
        (full_train, test), image_shape = _torchvision(name, root, download=download), (1, 28, 28)
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


def _cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "pyrovae"


#: a split's images and labels
_Pair = tuple[torch.Tensor, torch.Tensor]
#: what torchvision raises for missing, truncated or corrupt files and failed downloads
_LOAD_ERRORS = (RuntimeError, OSError, EOFError, ValueError, AssertionError)


def _torchvision(name: str, data_dir: Path, *, download: bool) -> tuple[_Pair, _Pair]:
    """The official training and test sets ``(x, y)`` of a torchvision dataset, from the files in ``data_dir``
    (see :func:`load_dataset` for the folders accepted), else downloaded into ``data_dir`` if ``download``."""
    import torchvision

    cls = getattr(torchvision.datasets, TORCHVISION_DATASETS[name])
    for raw in (data_dir / cls.__name__ / "raw", data_dir / "raw", data_dir):
        if raw.name == "raw" and raw.parent.name == cls.__name__ and _all_exist(raw, _extracted_names(cls)):
            fix = "Its extracted files are unreadable: replace them, or delete them to use the .gz files"
            return _read(cls, raw.parent.parent, download=False, fix=fix)  # torchvision's own layout: read in place
        if _all_exist(raw, _gz_names(cls)):
            return _read_via_cache(cls, raw)
    root = _layout_root(cls, data_dir)
    raw = root / cls.__name__ / "raw"
    if not download:
        missing = [f for f in _gz_names(cls) if not (raw / f).is_file()]
        what = f"{raw} lacks {', '.join(missing)}" if len(missing) < len(cls.resources) else f"no files in {raw}"
        raise FileNotFoundError(f"could not load {name}: {what}. {_where(cls, raw)}, or allow downloading")
    with _cleanup_on_error(raw):  # a failed download leaves no new folder behind
        return _read(cls, root, download=True, fix=_where(cls, raw))


def _gz_names(cls: type) -> list[str]:
    return [os.path.basename(url) for url, _ in cls.resources]


def _extracted_names(cls: type) -> list[str]:
    return [os.path.splitext(f)[0] for f in _gz_names(cls)]


def _all_exist(folder: Path, names: list[str]) -> bool:
    return all((folder / f).is_file() for f in names)


def _layout_root(cls: type, data_dir: Path) -> Path:
    """torchvision's root folder for ``data_dir``, also when that is the ``<Class>`` or ``<Class>/raw`` folder."""
    if data_dir.name == "raw" and data_dir.parent.name == cls.__name__:
        return data_dir.parent.parent
    return data_dir.parent if data_dir.name == cls.__name__ else data_dir


def _where(cls: type, raw: Path) -> str:
    """How to fix a missing file: what to put where, in torchvision's layout."""
    return (
        f"Put these files in {raw}/: {', '.join(_gz_names(cls))} (torchvision's layout; pass the parent of "
        f"'{cls.__name__}/' as data_dir / --data-dir)"
    )


@contextmanager
def _cleanup_on_error(folder: Path, *, tree: Path | None = None) -> Iterator[None]:
    """On an error in the block, delete the folder ``tree`` (with its files), then ``folder`` and its parents if
    the block created them (they did not exist before) and they are empty: a failed load leaves nothing new."""
    new = list(takewhile(lambda p: not p.exists(), (folder, *folder.parents)))
    try:
        yield
    except BaseException:
        if tree is not None:
            shutil.rmtree(tree, ignore_errors=True)
        for p in new:
            with suppress(OSError):
                p.rmdir()
        raise


def _read(cls: type, root: Path, *, download: bool, fix: str) -> tuple[_Pair, _Pair]:
    """Both splits through torchvision from ``root``; its errors become a FileNotFoundError ending with ``fix``."""
    try:
        train, test = (cls(str(root), train=train, download=download) for train in (True, False))
    except _LOAD_ERRORS as e:
        raise FileNotFoundError(
            f"could not load {cls.__name__} from {root / cls.__name__ / 'raw'} ({str(e).strip()}). {fix}"
        ) from e
    return _x_y(train), _x_y(test)


def _x_y(ds) -> _Pair:
    """A torchvision dataset's images flattened to ``(N, 784)`` in [0, 1], and its labels."""
    return ds.data.reshape(len(ds.data), -1).float() / 255.0, torch.as_tensor(ds.targets, dtype=torch.long)


def _read_via_cache(cls: type, raw: Path) -> tuple[_Pair, _Pair]:
    """Read the ``.gz`` files of ``raw`` from up-to-date copies in the cache, extracted there (``raw`` is left
    untouched: it may be read-only or shared). If that fails, the cache copies are deleted and the error names
    the bad file of ``raw``."""
    root = _cache_dir() / "torchvision"
    cached = root / cls.__name__ / "raw"
    with _cleanup_on_error(cached, tree=root / cls.__name__):
        _update_copies(cls, raw, cached)
        fix = f"The copies were deleted: load again, or replace the files of {raw} with good copies"
        try:
            return _read(cls, root, download=True, fix=fix)  # extracts the verified copies; nothing is fetched
        except FileNotFoundError:
            _check_md5(cls, raw, _gz_names(cls))  # names the bad file of the data folder, when that is the cause
            raise


def _update_copies(cls: type, raw: Path, cached: Path) -> None:
    """Copy the ``.gz`` files of ``raw`` that are missing from ``cached`` or differ from their copy there (in size
    or modification time; copies keep it), after checking their md5, and delete the stale extracted files."""
    changed = [f for f in _gz_names(cls) if not _same_stat(raw / f, cached / f)]
    _check_md5(cls, raw, changed)
    cached.mkdir(parents=True, exist_ok=True)
    for f in changed:
        (cached / os.path.splitext(f)[0]).unlink(missing_ok=True)
        partial = cached / f".{f}.{os.getpid()}.partial"  # readers never see a half-copied file
        shutil.copy2(raw / f, partial)
        os.replace(partial, cached / f)


def _same_stat(source: Path, copy: Path) -> bool:
    if not copy.is_file():
        return False
    a, b = source.stat(), copy.stat()
    return (a.st_size, a.st_mtime_ns) == (b.st_size, b.st_mtime_ns)


def _check_md5(cls: type, folder: Path, names: list[str]) -> None:
    """Raise a ValueError naming the files of ``folder`` (among ``names``) whose md5 is not torchvision's."""
    from torchvision.datasets.utils import check_integrity

    md5 = {os.path.basename(url): digest for url, digest in cls.resources}
    bad = [folder / f for f in names if not check_integrity(str(folder / f), md5[f])]
    if bad:
        is_, it = ("is", "it") if len(bad) == 1 else ("are", "them")
        raise ValueError(
            f"{', '.join(map(str, bad))} {is_} corrupt or truncated (md5 mismatch with torchvision's {cls.__name__} "
            f"files, or from another dataset): replace {it} with a good copy from {cls.mirrors[0]}, or delete {it} "
            "and load with download allowed"
        )
