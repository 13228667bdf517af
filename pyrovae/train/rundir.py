"""A training run's folder: one writer at a time, and nothing of an earlier run lost.

A run folder (``out_dir`` of :func:`pyrovae.fit`, ``--out`` of ``pyrovae train``) holds

* ``checkpoint.pt``: the last epoch trained (written atomically every epoch; what ``--resume`` continues);
* ``best.pt``: the epoch with the best validation score so far (the ELBO, or the accuracy of a semi-supervised
  run), when the data have a validation split;
* ``metrics.jsonl``: one JSON row per epoch;
* ``.pyrovae.lock`` while a run writes there.

**The lock.** :class:`RunLock` holds an exclusive ``flock`` on the lock file for the life of the run, so a second
run on the same folder is refused at once with a :class:`~pyrovae.errors.RunFolderError` that names the first
run's process, host and command, instead of both overwriting one checkpoint and interleaving their metrics. The
operating system releases the lock when its process ends, however it ends, so a lock left by a killed run is
stale by construction and the next run takes it over (the file's contents only serve the message). The lock is
re-entrant within a process (the command line holds it around training and drawing, :func:`pyrovae.fit` takes it
again inside). Where ``fcntl`` is missing (Windows), the lock file is created exclusively instead and a stale one
must be deleted by hand; the error says so.

**Earlier runs.** A new run (not ``resume``) refuses a folder that already holds a run's checkpoint or metrics,
unless told to ``overwrite`` it; then the earlier run's files are removed first.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from pyrovae.checkpoint import load_checkpoint, missing_checkpoint, remove_temporary_files, save_checkpoint
from pyrovae.errors import RunFolderError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

CHECKPOINT = "checkpoint.pt"
BEST = "best.pt"
METRICS = "metrics.jsonl"
LOCK = ".pyrovae.lock"

#: locks this process holds: lock file (resolved) -> [file descriptor, depth]
_HELD: dict[str, list[int]] = {}


def load_resumable(folder: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The checkpoint of the run in ``folder`` that a resumed run continues
    (:func:`pyrovae.checkpoint.load_checkpoint`; a ``FileNotFoundError`` says to train first)."""
    return load_checkpoint(Path(folder) / CHECKPOINT, map_location, require=("epoch", "history", "config"))


class RunLock:
    """The exclusive, re-entrant lock of a run folder (see the module docstring); a context manager.

    :raises RunFolderError: on entry, when another process holds the folder.
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK

    def __enter__(self) -> RunLock:
        key = os.path.realpath(self.path)
        if key in _HELD:
            _HELD[key][1] += 1
            return self
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = self._lock() if fcntl is not None else self._create()
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(_owner()).encode())
        _HELD[key] = [fd, 1]
        remove_temporary_files(self.folder)  # left by a run killed mid-write; nobody else writes here now
        return self

    def __exit__(self, *exc) -> None:
        key = os.path.realpath(self.path)
        held = _HELD[key]
        held[1] -= 1
        if held[1] == 0:
            del _HELD[key]
            self.path.unlink(missing_ok=True)  # while still holding it: a waiting run then makes a new file
            os.close(held[0])

    def _lock(self) -> int:
        """Open the lock file and ``flock`` it; retry if another process replaced the file meanwhile."""
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                owner = _read(fd)
                os.close(fd)
                raise RunFolderError(self._in_use(owner)) from None
            try:
                if os.stat(self.path).st_ino == os.fstat(fd).st_ino:
                    return fd
            except FileNotFoundError:
                pass
            os.close(fd)  # the holder removed the file on release and another run may have made a new one

    def _create(self) -> int:
        """Without ``fcntl``: create the lock file exclusively."""
        try:
            return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            fd = os.open(self.path, os.O_RDONLY)
            owner = _read(fd)
            os.close(fd)
            raise RunFolderError(
                self._in_use(owner) + f". If that run is no longer alive, delete {self.path}"
            ) from None

    def _in_use(self, owner: dict[str, Any]) -> str:
        who = ", ".join(f"{k} {owner[k]}" for k in ("pid", "host", "started") if k in owner) or "unknown"
        command = f": {owner['command']}" if owner.get("command") else ""
        return (
            f"{self.folder} is in use by another run ({who}{command}): two runs in one folder would overwrite each "
            "other's checkpoint and mix their metrics. Wait for it to end, or choose another folder (--out / out_dir)"
        )


def _owner() -> dict[str, Any]:
    return {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "command": " ".join(sys.argv)}  # fmt: skip


def _read(fd: int) -> dict[str, Any]:
    """The owner recorded in a lock file, or ``{}`` if it is empty or unreadable."""
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        return json.loads(os.read(fd, 65536).decode())
    except (OSError, ValueError):
        return {}


class RunFolder:
    """The files of one training run in ``path``, written under its :class:`RunLock`; a context manager.

    :param bool resume: the run continues the one whose ``checkpoint.pt`` is there (:func:`load_resumable`).
    :param bool overwrite: a new run may replace an earlier one there (its checkpoints and metrics are deleted).
    :raises RunFolderError: on entry, when the folder is in use, or holds a run and neither ``resume`` nor
        ``overwrite`` is given.
    """

    def __init__(self, path: str | os.PathLike, *, resume: bool = False, overwrite: bool = False) -> None:
        self.path = Path(path)
        self.resume, self.overwrite = resume, overwrite
        self.checkpoint, self.best, self.metrics = self.path / CHECKPOINT, self.path / BEST, self.path / METRICS
        self._lock = RunLock(self.path)

    def __enter__(self) -> RunFolder:
        if self.resume and not self.checkpoint.is_file():  # before the lock, which would create the folder
            raise missing_checkpoint(self.checkpoint)
        self._lock.__enter__()
        try:
            if not self.resume:
                self._clear()
        except BaseException:
            self._lock.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        self._lock.__exit__(*exc)

    def earlier(self) -> list[Path]:
        """The files of an earlier run in the folder: its checkpoints and non-empty metrics."""
        earlier = [p for p in (self.checkpoint, self.best) if p.exists()]
        if self.metrics.exists() and self.metrics.stat().st_size:
            earlier.append(self.metrics)
        return earlier

    def _clear(self) -> None:
        earlier = self.earlier()
        if earlier and not self.overwrite:
            raise RunFolderError(
                f"{self.path} already holds a run ({', '.join(p.name for p in earlier)}): continue it with --resume "
                "(resume=True), replace it with --overwrite (overwrite=True), or choose another folder (--out / "
                "out_dir)"
            )
        for p in (*earlier, self.metrics):
            p.unlink(missing_ok=True)

    def start(self, history: list[dict[str, Any]]) -> None:
        """Write ``history`` (the epochs restored on resume, or none) as the metrics file."""
        self.metrics.write_text("".join(json.dumps(row) + "\n" for row in history))

    def save(self, row: dict[str, Any], state: dict[str, Any], best: bool = False) -> None:
        """Append the epoch's ``row`` to the metrics and write ``state`` as ``checkpoint.pt`` and, if ``best``, as
        ``best.pt`` (atomically)."""
        with open(self.metrics, "a") as f:
            f.write(json.dumps(row) + "\n")
        save_checkpoint(self.checkpoint, state)
        if best:
            save_checkpoint(self.best, state)


def free_folder(base: str | os.PathLike) -> Path:
    """``base``, or the first of ``base-2``, ``base-3``, ... that holds no run: the folder of a new run whose user
    named none (``pyrovae train`` without ``--out``), so that running the same command twice keeps both runs."""
    return numbered(Path(base), lambda folder: RunFolder(folder).earlier(), suffix="")


def numbered(base: Path, taken: Callable[[Path], bool], suffix: str | None = None) -> Path:
    """``base``, or the first of ``base-2``, ``base-3``, ... that is not ``taken``; the number goes before
    ``suffix`` (default: the file's, ``samples-2.png``; ``""`` for a folder, whose name may hold dots)."""
    suffix = base.suffix if suffix is None else suffix
    stem = base.name[: len(base.name) - len(suffix)]
    path, number = base, 1
    while taken(path):
        number += 1
        path = base.with_name(f"{stem}-{number}{suffix}")
    return path
