"""Checkpoints: written atomically, loaded with ``torch.load(weights_only=True)``.

A checkpoint is a dict of tensors and plain Python values (no pickled objects), so that loading one
never runs code. It holds the unconstrained values of every parameter in Pyro's param store (by
name), the optimizer state, the RNG states, the metrics so far and the configuration.
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any, BinaryIO

import pyro
import torch

from pyrovae.data.validation import nonfinite
from pyrovae.errors import CheckpointError

#: written into every checkpoint; a file without it is not a pyrovae checkpoint
FORMAT = "pyrovae-checkpoint-1"


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> None:
    """Call ``write(f)`` on a temporary file in ``path``'s folder, flush it to disk, then rename it over
    ``path``, so that a crash never leaves a half-written file: ``path`` holds either its previous content or the
    new one. A full disk or a folder that cannot be written raises an ``OSError`` that says so and names ``path``.
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError):
            kept = "its previous content is kept intact" if path.exists() else "nothing was written"
            reason = WRITE_ERRORS.get(e.errno, e.strerror or str(e))
            raise OSError(e.errno, f"cannot write {path}: {reason} ({kept})") from e
        raise


#: how :func:`atomic_write` explains an ``OSError`` by its ``errno``, with the fix
WRITE_ERRORS = {
    errno.ENOSPC: "the disk is full; free some space and run the command again",
    errno.EACCES: "permission denied; choose a folder you may write to",
    errno.EROFS: "the file system is read-only; choose another folder",
    errno.EEXIST: "a file stands where its folder should be; choose another path",
    errno.ENOTDIR: "a file stands where its folder should be; choose another path",
}
#: the suffix of :func:`atomic_write`'s temporary files (``.NAME.RANDOM.tmp``)
TMP_SUFFIX = ".tmp"


def remove_temporary_files(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files that :func:`atomic_write` leaves in ``folder`` when its process is killed
    mid-write (``.checkpoint.pt.*.tmp``); call it only while no other process writes there (e.g. holding the
    folder's :class:`pyrovae.train.rundir.RunLock`). Returns the paths removed."""
    stale = sorted(Path(folder).glob(f".*{TMP_SUFFIX}"))
    for tmp in stale:
        tmp.unlink(missing_ok=True)
    return stale


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically (see :func:`atomic_write`)."""
    atomic_write(path, lambda f: torch.save({"format": FORMAT, **state}, f))


def save_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically (see :func:`atomic_write`)."""
    atomic_write(path, lambda f: f.write((json.dumps(obj, indent=2) + "\n").encode()))


def load_checkpoint(
    path: str | os.PathLike, map_location: str | torch.device = "cpu", require: Sequence[str] = ()
) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` (``weights_only=True``: no code runs).

    :param require: top-level keys the caller needs (e.g. ``("params", "extra")``).
    :raises FileNotFoundError: if there is no file at ``path``.
    :raises PermissionError: if the file may not be read (it is not called corrupt).
    :raises CheckpointError: if ``path`` is a folder, or the file is corrupt, not a pyrovae checkpoint, or lacks a
        required key.
    """
    path = Path(path)
    if path.is_dir():
        inside = path / "checkpoint.pt"
        hint = f": give {inside}" if inside.is_file() else " (it holds no checkpoint.pt)"
        raise CheckpointError(f"{path} is a folder, not a checkpoint file{hint}")
    if not path.is_file():
        raise missing_checkpoint(path)
    try:
        f = open(path, "rb")
    except PermissionError as e:
        raise PermissionError(
            e.errno, f"cannot read the checkpoint {path}: permission denied (the file itself is not inspected); give "
            "yourself read access (chmod u+r) or run as its owner"
        ) from e
    with f:
        try:
            state = torch.load(f, map_location=map_location, weights_only=True)
        except Exception as e:
            raise CheckpointError(
                f"{path} is not a readable checkpoint (truncated or corrupt?): {e}. "
                "Delete it and train again, or resume from another copy."
            ) from e
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a pyrovae checkpoint (expected format {FORMAT!r})")
    missing = [key for key in require if key not in state]
    if missing:
        raise CheckpointError(
            f"{path} is a pyrovae checkpoint without {', '.join(map(repr, missing))}: it was written by another "
            "kind of run or damaged; use the checkpoint.pt of the run you mean"
        )
    return state


def missing_checkpoint(path: Path) -> FileNotFoundError:
    """The error for a checkpoint that is not there."""
    return FileNotFoundError(
        f"no checkpoint at {path}: train first (pyrovae train --out {path.parent}) or give the path of an existing "
        "checkpoint.pt"
    )


def section(state: dict[str, Any], path: str | os.PathLike, *keys: str) -> Any:
    """``state[keys[0]][keys[1]]...``, or a :class:`CheckpointError` that names the missing entry of the checkpoint
    at ``path`` (instead of a ``KeyError`` or ``TypeError``)."""
    value = state
    for depth, key in enumerate(keys):
        if not isinstance(value, dict) or key not in value:
            where = "".join(f"[{k!r}]" for k in keys[: depth + 1])
            raise CheckpointError(
                f"{path} has no entry {where}: it was not written by the command that reads it (pyrovae train "
                "or train-ss), or it was damaged"
            )
        value = value[key]
    return value


@contextmanager
def malformed(path: str | os.PathLike) -> Iterator[None]:
    """Turn the ``KeyError``, ``TypeError``, ``AttributeError`` and ``IndexError`` that reading a damaged checkpoint
    raises inside the block into a :class:`CheckpointError` naming ``path``."""
    try:
        yield
    except (KeyError, TypeError, AttributeError, IndexError) as e:
        raise CheckpointError(
            f"{path} is malformed ({type(e).__name__}: {e}): it was written by another version or damaged; "
            "resume from another copy or start a new run"
        ) from e


def check_finite(tensors: dict[str, torch.Tensor], path: str | os.PathLike) -> None:
    """Check that every floating tensor in ``tensors`` is finite.

    :raises CheckpointError: naming the first non-finite ones, e.g. weights saved after training diverged.
    """
    bad = nonfinite(tensors.items())
    if bad:
        raise CheckpointError(
            f"{path} holds non-finite weights ({len(bad)} tensors, e.g. {bad[:3]}): the run had diverged when it was "
            "saved. Use an earlier checkpoint (best.pt beside it) or train again with a lower learning rate"
        )


def check_resumable(
    path: str | os.PathLike, saved: dict[str, Any], config: Any, may_change: Sequence[str] = ("epochs", "device")
) -> None:
    """Check that a run saved with settings ``saved`` (a plain dict) may continue with ``config`` (a dataclass
    instance such as :class:`pyrovae.TrainConfig`): only the settings named in ``may_change`` may differ.
    Settings added to the dataclass since the checkpoint was written take their defaults.

    :raises CheckpointError: naming both settings.
    """
    current = asdict(config)
    saved = {**asdict(type(config)()), **saved}
    changed = [f"{name}={saved.get(name)!r}, not {value!r}" for name, value in current.items()
               if name not in may_change and saved.get(name) != value]  # fmt: skip
    if changed or set(saved) - set(current):
        unknown = sorted(set(saved) - set(current))
        raise CheckpointError(
            f"{path} was trained with {'; '.join(changed) or f'settings this version lacks: {unknown}'}: only "
            f"{', '.join(may_change)} may change on resume (start a new run to change the others)"
        )


def param_state() -> dict[str, torch.Tensor]:
    """The unconstrained value of every parameter in Pyro's param store, by name (detached copies)."""
    return {name: p.detach().clone() for name, p in pyro.get_param_store().named_parameters()}


def restore_params(params: dict[str, torch.Tensor]) -> None:
    """Copy saved unconstrained values into the existing parameters of the param store, in place.

    :raises CheckpointError: if a parameter is missing on either side or has another shape.
    """
    store = dict(pyro.get_param_store().named_parameters())
    missing, extra = sorted(set(store) - set(params)), sorted(set(params) - set(store))
    if missing or extra:
        raise CheckpointError(
            f"the checkpoint does not fit the model: parameters only in the model {missing[:5]}, "
            f"only in the checkpoint {extra[:5]}. Build the model with the checkpoint's settings."
        )
    with torch.no_grad():
        for name, value in params.items():
            if store[name].shape != value.shape:
                raise CheckpointError(
                    f"parameter {name!r} has shape {tuple(value.shape)} in the checkpoint but "
                    f"{tuple(store[name].shape)} in the model: build the model with the checkpoint's settings"
                )
            store[name].copy_(value)


def rng_state() -> dict[str, Any]:
    """torch's CPU (and, if present, CUDA) RNG states."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the states saved by :func:`rng_state`."""
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
