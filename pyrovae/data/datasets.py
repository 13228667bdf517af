"""Datasets as tensors: the embedded digits (no files needed) and MNIST-like sets through torchvision.

Every dataset comes as a :class:`Dataset` of three :class:`Split` s (train / valid / test) holding
flattened images ``x`` of shape ``(N, D)`` with grey levels in [0, 1] and integer labels ``y``.
The whole dataset sits in memory (and on the training device), so minibatches are tensor indexing,
never a per-item Python loop.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from .binarize import EVAL_SEED, binarize, check_binarization

#: torchvision dataset classes by the names pyrovae uses for them
TORCHVISION_DATASETS = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST", "kmnist": "KMNIST"}
#: every dataset name :func:`load_dataset` accepts; ``"digits"`` is embedded (scikit-learn's 8x8 digits)
DATASETS = ("digits", *TORCHVISION_DATASETS)
#: default validation-set sizes, carved out of the official training sets
DEFAULT_VALID_SIZE = {"digits": 200, "mnist": 10000, "fashion-mnist": 10000, "kmnist": 10000}
DIGITS_TEST_SIZE = 300


@dataclass(frozen=True)
class Split:
    """One split of a dataset: images ``x`` of shape ``(N, D)`` in [0, 1] and labels ``y`` of shape
    ``(N,)`` (or ``None`` for unlabelled data)."""

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
    """

    name: str
    train: Split
    valid: Split
    test: Split
    image_shape: tuple[int, int, int]
    num_classes: int
    binarize: str = "none"

    @property
    def x_dim(self) -> int:
        return self.train.x.shape[-1]

    def to(self, device: torch.device | str) -> Dataset:
        return replace(self, train=self.train.to(device), valid=self.valid.to(device), test=self.test.to(device))

    @classmethod
    def from_tensors(
        cls,
        train: torch.Tensor,
        test: torch.Tensor | None = None,
        valid: torch.Tensor | None = None,
        *,
        binarize: str = "none",
        image_shape: tuple[int, int, int] | None = None,
        name: str = "tensors",
    ) -> Dataset:
        """Wrap user tensors of shape ``(N, D)`` (values in [0, 1]) as a :class:`Dataset`."""
        x_dim = train.shape[-1] if train.dim() == 2 else None
        if train.dim() != 2 or len(train) == 0:
            raise ValueError(f"train must be a non-empty (N, D) tensor, got shape {tuple(train.shape)}")
        empty = train.new_zeros(0, x_dim)
        splits = {"train": train, "valid": empty if valid is None else valid, "test": empty if test is None else test}
        return _finish(name, splits, {}, image_shape or (1, 1, x_dim), 0, binarize)


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
    :param data_dir: torchvision root folder (holding e.g. ``MNIST/raw/*.gz``); files already there are used
        offline, missing ones are downloaded if ``download``. A read-only folder is fine: the compressed
        files are then copied to ``~/.cache/pyrovae`` and extracted there, so ``data_dir`` is never written
        to unless files are downloaded into it.
    :param str binarize: ``"dynamic"`` (default), ``"static"`` or ``"none"``; see :class:`Dataset`.
    :param int valid_size: images held out of the training set for validation
        (default :data:`DEFAULT_VALID_SIZE`; 0 trains on the whole official training set).
    :param int split_seed: seed of the train/validation (and, for digits, test) split.
    :param bool download: allow torchvision to download missing files.
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
        full_train = _torchvision(name, root, train=True, download=download)
        test, image_shape = _torchvision(name, root, train=False, download=download), (1, 28, 28)
    valid_size = DEFAULT_VALID_SIZE[name] if valid_size is None else valid_size
    if not 0 <= valid_size < len(full_train[0]):
        raise ValueError(f"valid_size must be in [0, {len(full_train[0])}), got {valid_size}")
    perm = torch.randperm(len(full_train[0]), generator=torch.Generator().manual_seed(split_seed))
    valid_idx, train_idx = perm[:valid_size], perm[valid_size:]
    xs = {"train": full_train[0][train_idx], "valid": full_train[0][valid_idx], "test": test[0]}
    ys = {"train": full_train[1][train_idx], "valid": full_train[1][valid_idx], "test": test[1]}
    return _finish(name, xs, ys, image_shape, 10, binarize)


def _finish(name, xs, ys, image_shape, num_classes, mode) -> Dataset:
    """Binarize the evaluation splits (and a static training split) once, and build the Dataset."""
    check_binarization(mode)
    for key, x in xs.items():
        if x.dim() != 2 or not torch.isfinite(x).all() or (x.numel() and (x.min() < 0 or x.max() > 1)):
            raise ValueError(f"{key} images must be a finite (N, D) tensor with values in [0, 1]")
    if mode != "none":
        xs = {k: x if (k == "train" and mode == "dynamic") else binarize(x, seed=EVAL_SEED) for k, x in xs.items()}
    splits = {k: Split(x.float(), ys.get(k)) for k, x in xs.items()}
    return Dataset(name, splits["train"], splits["valid"], splits["test"], image_shape, num_classes, mode)


def _digits() -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.as_tensor(digits.data, dtype=torch.float32) / 16.0
    return x, torch.as_tensor(digits.target, dtype=torch.long)


def _cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "pyrovae"


def _torchvision(name: str, root: Path, *, train: bool, download: bool) -> tuple[torch.Tensor, torch.Tensor]:
    import torchvision

    cls = getattr(torchvision.datasets, TORCHVISION_DATASETS[name])
    files = [os.path.basename(url) for url, _ in cls.resources]
    raw = root / cls.__name__ / "raw"
    if not all((raw / os.path.splitext(f)[0]).exists() for f in files) and all((raw / f).exists() for f in files):
        # only the .gz files are there: torchvision extracts them next to themselves, so do that in a
        # copy under the cache folder and leave data_dir untouched (it may be read-only or shared)
        root = _cache_dir() / "torchvision"
        cached = root / cls.__name__ / "raw"
        cached.mkdir(parents=True, exist_ok=True)
        for f in files:
            if not (cached / f).exists():
                shutil.copy2(raw / f, cached / f)
        download = True  # extracts the verified local files; nothing is fetched
    try:
        ds = cls(str(root), train=train, download=download)
    except (RuntimeError, OSError) as e:
        raise FileNotFoundError(
            f"could not load {name} from {raw} ({e}). Put these files in {raw}/: {', '.join(files)} "
            f"(torchvision's layout; pass the parent of '{cls.__name__}/' as data_dir / --data-dir)"
            + ("" if download else ", or allow downloading")
        ) from e
    x = ds.data.reshape(len(ds.data), -1).float() / 255.0
    return x, torch.as_tensor(ds.targets, dtype=torch.long)
