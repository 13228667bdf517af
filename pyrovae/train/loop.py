r"""The one training loop: epochs, resume, history, the run folder, progress, the divergence stop, callbacks, and
data-parallel training.

:func:`pyrovae.fit` (SVI on an ELBO, :mod:`pyrovae.train.svi`) and :func:`pyrovae.fit_semisupervised` (Kingma et
al.'s M2, :mod:`pyrovae.train.semisupervised`) both run :func:`train`. What differs between them is a
:class:`Task`: how one epoch's steps are taken, what the untrained model's ELBO is, and what is evaluated after
each epoch. Everything else is here, once:

* **Steps**: one ``torch.optim.Adam`` over every parameter the model and guide declare
  (:class:`pyrovae.train.step.AdamStep`), its learning rate set each epoch from the schedule
  (:meth:`LoopConfig.lr_at`); an epoch's minibatches (:func:`minibatches`) never end with one of a single row,
  which a BatchNorm layer cannot train on.
* **Modes**: the task's modules (``Task.modules``) are in training mode during the steps and in evaluation
  mode (BatchNorm's running statistics, no dropout) for the untrained model's ELBO, the evaluation after each epoch
  and the callback; each module gets its own mode back after each.
* **Validation**: Pyro's checks of data, distribution arguments and model against guide run during the first
  epoch a process trains (``validate="first-epoch"``) or always (``"always"``).
* **Divergence** (:mod:`pyrovae.train.divergence`): after each epoch a non-finite training loss or parameter, or a
  monitored ELBO far below the untrained model's, stops training with
  :class:`~pyrovae.errors.TrainingDiverged` before the epoch is saved.
* **Run folder** (:mod:`pyrovae.train.rundir`): each epoch's row goes to ``metrics.jsonl``, the state to
  ``checkpoint.pt`` (atomically), the best epoch's to ``best.pt``; the folder is locked while the run trains.
* **Resume**: parameters, Adam's state, every rank's RNG state and the history come back from ``checkpoint.pt``,
  so that a resumed run ends exactly where an uninterrupted one would (on the same device).
* **Data-parallel** (:mod:`pyrovae.train.distributed`): inside a ``torch.distributed`` process group, every rank
  draws the same minibatches (a generator seeded by the seed and the epoch: :func:`epoch_generator`) and takes its
  share; the task's step loss is written so that the averaged gradient is the single-process one. Rank 0 alone
  evaluates, prints, writes the folder and calls the callback.
"""

from __future__ import annotations

import math
import os
import sys
import time
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import pyro
import torch
from pyro.infer.util import is_validation_enabled
from torch import nn
from tqdm.auto import tqdm

from pyrovae.checkpoint import (
    check_finite,
    check_resumable,
    malformed,
    param_state,
    restore_params,
    rng_state,
    set_rng_state,
)
from pyrovae.data.placement import DEVICE_DATA_LIMIT, parse_size
from pyrovae.device import training_mode
from pyrovae.seeding import set_seed
from pyrovae.train.distributed import gather_rng_states, mean_over_ranks, rank_and_world
from pyrovae.train.divergence import DIVERGENCE, check_factor, diverged, not_finite, too_low
from pyrovae.train.rundir import CHECKPOINT, RunFolder, load_resumable
from pyrovae.train.step import AdamStep, check_lr, scheduled_lr

#: when the loop runs Pyro's validation
VALIDATE = ("first-epoch", "always")


@dataclass(kw_only=True)
class LoopConfig:
    r"""The settings every training shares, validated on construction.

    :ivar int epochs: the total number of epochs (on resume, those already trained included).
    :ivar int batch_size: rows per step.
    :ivar float lr: Adam's learning rate.
    :ivar float lr_decay: exponential learning-rate decay per epoch: epoch :math:`e` (counted from 0) trains with
        ``lr * lr_decay ** e``; 1 keeps ``lr`` throughout.
    :ivar int seed: seed of the training noise (:mod:`pyrovae.seeding`): minibatch order, dynamic binarization, the
        draws of the latents. The initial weights are the model's (e.g. ``VAE(..., seed=S)``).
    :ivar str device: ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda[:N]"``.
    :ivar int device_data_limit: the most bytes of data moved to the device (:mod:`pyrovae.data.placement`); larger
        data stay in host memory and each minibatch is copied to the device; 0 always streams. Given as bytes or
        a string such as ``"2GB"`` or ``"500MB"`` (:func:`~pyrovae.data.placement.parse_size`); default 2 GiB. It
        may change on resume: the placement does not change the minibatches.
    :ivar int eval_batch_size: rows per evaluation batch.
    :ivar str validate: ``"first-epoch"`` (Pyro's validation during the first epoch this process trains, off
        after it) or ``"always"``; with Pyro's validation off globally, never.
    :ivar float divergence: :math:`\kappa` of the divergence check (:mod:`pyrovae.train.divergence`): training stops
        when the monitored ELBO falls below the untrained model's by more than :math:`\kappa` times its magnitude;
        ``math.inf`` turns that part of the check off (non-finite losses and parameters always stop it).
    """

    #: the settings that may change when a run is resumed
    RESUMABLE: ClassVar[tuple[str, ...]] = ("epochs", "device", "divergence", "device_data_limit")

    epochs: int = 50
    batch_size: int = 128
    lr: float = 1e-3
    lr_decay: float = 1.0
    seed: int = 0
    device: str = "auto"
    eval_batch_size: int = 1000
    validate: str = "first-epoch"
    divergence: float = DIVERGENCE
    device_data_limit: int = DEVICE_DATA_LIMIT

    def __post_init__(self) -> None:
        check_factor(self.divergence)
        self.device_data_limit = parse_size(self.device_data_limit)
        if self.validate not in VALIDATE:
            raise ValueError(f"unknown validate {self.validate!r}: choose one of {VALIDATE}")
        for name in ("epochs", "batch_size", "eval_batch_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        check_lr(self.lr, self.lr_decay)

    @property
    def schedules_lr(self) -> bool:
        """Whether the learning rate changes from epoch to epoch (then each epoch's row records it)."""
        return self.lr_decay != 1

    def lr_at(self, epoch: int) -> float:
        """The learning rate of epoch ``epoch`` (counted from 0): :func:`pyrovae.train.step.scheduled_lr`."""
        return scheduled_lr(self.lr, self.lr_decay, epoch)

    def check_resume(self, path: Path, saved: dict[str, Any], done: int) -> None:
        """Check that a run saved with the settings ``saved``, ``done`` epochs trained, may go on with these.

        :raises CheckpointError: naming what changed that may not."""
        check_resumable(path, saved, self, self.RESUMABLE)


class Task(ABC):
    """One kind of training, as :func:`train` drives it.

    :ivar torch.device device: the device it trains on (the model's and the data's).
    :ivar AdamStep stepper: the optimizer step over the trained parameters.
    :ivar str train_key: the name, in an epoch's row, of the epoch's training ELBO (nats per point).
    :ivar str monitor: the row entry that the divergence check judges.
    :ivar str best_key: the row entry whose highest value marks the epoch saved as ``best.pt``.
    :ivar int steps_per_epoch: progress-bar units per epoch.
    :ivar modules: the modules that own the model and guide (:func:`pyrovae.device.owners`), switched between
        training mode (the steps) and evaluation mode (everything else) by the loop; none by default.
    """

    modules: tuple[nn.Module, ...] = ()
    device: torch.device
    stepper: AdamStep
    train_key: str
    monitor: str
    best_key: str
    steps_per_epoch: int

    @abstractmethod
    def initial_elbo(self) -> float:
        """The untrained model's ELBO per point, the reference of the divergence check (under ``no_grad``)."""

    @abstractmethod
    def train_epoch(self, epoch: int, tick: Callable[[torch.Tensor, int], None]) -> tuple[torch.Tensor, int]:
        """Take epoch ``epoch``'s steps, calling ``tick(loss, rows)`` after each (a loss summed over ``rows``
        points, for the progress bar). Returns ``(loss, rows)``: this rank's training loss summed over the epoch,
        times the number of ranks, and the number of rows of the global minibatches, so that the average over the
        ranks divided by ``rows`` is the negative training ELBO per point."""

    def describe(self) -> dict[str, Any]:
        """Settings the epoch ended with, for its row (on every rank; e.g. a KL weight); none by default."""
        return {}

    @abstractmethod
    def evaluate(self, row: dict[str, Any]) -> None:
        """Add the epoch's held-out metrics to ``row`` (rank 0 only)."""

    def restore(self, state: dict[str, Any], path: Path) -> None:
        """Restore the parameters and Adam's state of the checkpoint ``state`` read from ``path``.

        :raises CheckpointError: if they are not finite or do not fit."""
        check_finite(state["params"], path)
        restore_params(state["params"])
        self.stepper.set_state(state["optim"])


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The generator of epoch ``epoch``'s minibatches: a function of the seed and the epoch only, so that every rank
    of a distributed run draws the same ones, and a resumed run the same as an uninterrupted one."""
    return torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch))


def num_batches(num_data: int, batch_size: int, drop_last: bool = False) -> int:
    """Minibatches per epoch: the last, smaller one counts unless ``drop_last``, except that a single row left over
    joins the minibatch before it (a BatchNorm layer cannot train on one row)."""
    if drop_last:
        return num_data // batch_size
    return max(num_data // batch_size, 1) if num_data % batch_size == 1 else -(-num_data // batch_size)


def minibatches(
    num_data: int, batch_size: int, device: torch.device, generator: torch.Generator, drop_last: bool = False
) -> Iterator[torch.Tensor]:
    """Indices of one epoch's minibatches: a random permutation of ``range(num_data)`` drawn on the CPU with
    ``generator`` (e.g. :func:`epoch_generator`), moved to ``device`` and cut into :func:`num_batches` pieces of
    ``batch_size`` rows; without ``drop_last`` the last piece takes the rest: fewer rows, or ``batch_size + 1`` when
    a single row is left over (so that no minibatch but that of a one-row set has one row)."""
    perm = torch.randperm(num_data, generator=generator).to(device)
    count = num_batches(num_data, batch_size, drop_last)
    end = count * batch_size if drop_last else num_data
    yield from perm[:end].tensor_split(list(range(batch_size, count * batch_size, batch_size)))


def with_settings(extra: dict[str, Any] | None, models: list, section: str) -> dict[str, Any]:
    """``extra`` with the settings of the model to train (its ``config``) under ``section`` (``"vae"``, ``"ssvae"``),
    from which :func:`pyrovae.load_model` rebuilds it, unless ``extra`` has that section already. A pyrovae model
    with custom networks has no settings: a warning says how to load its checkpoint."""
    extra = dict(extra or {})
    configs = [getattr(m, "config", None) for m in models if hasattr(m, "config")]
    if section in extra or len(configs) != 1:
        return extra
    if configs[0] is None:
        warnings.warn(
            "the model has custom networks, so its checkpoint holds no settings to rebuild it from: load it with "
            "pyrovae.load_model(path, model=...) into a model built the same way",
            stacklevel=3,
        )
    else:
        extra[section] = configs[0]
    return extra


def run_training(
    task: Task,
    config: LoopConfig,
    out_dir: str | os.PathLike | None,
    *,
    resume: bool,
    overwrite: bool,
    extra: dict[str, Any] | None,
    progress: bool | None,
    verbose: bool,
    callback: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """:func:`train` in the run folder ``out_dir`` (locked, see :class:`~pyrovae.train.rundir.RunFolder`; rank 0
    alone writes it, every rank resumes from it), or writing nothing without one."""
    if resume and out_dir is None:
        raise ValueError("resume=True needs the out_dir that holds the checkpoint")
    resume_from = Path(out_dir) if resume else None
    options = {"extra": extra, "progress": progress, "verbose": verbose, "callback": callback}
    if out_dir is None or rank_and_world()[0] != 0:
        return train(task, config, None, resume_from, **options)
    with RunFolder(out_dir, resume=resume, overwrite=overwrite) as run:
        return train(task, config, run, resume_from, **options)


def train(
    task: Task,
    config: LoopConfig,
    run: RunFolder | None,
    resume_from: Path | None,
    *,
    extra: dict[str, Any] | None,
    progress: bool | None,
    verbose: bool,
    callback: Callable[[dict[str, Any]], None] | None,
) -> list[dict[str, Any]]:
    """Train ``task`` for ``config.epochs`` epochs (see the module's docstring), writing into ``run`` (``None``:
    nothing written), resuming the run saved in the folder ``resume_from`` if given.

    :returns: the metrics history, one row per epoch (restored ones included).
    :raises TrainingDiverged: when an epoch diverged (:mod:`pyrovae.train.divergence`).
    """
    rank, world = rank_and_world()
    if resume_from is not None:
        history, initial, best = _resume(task, config, resume_from / CHECKPOINT, rank, verbose)
    else:
        set_seed(config.seed + rank)  # each rank its own noise
        with torch.no_grad(), training_mode(task.modules, False):
            history, initial, best = [], task.initial_elbo(), {}
    if run is not None:
        run.start(history)
    bar = tqdm(
        total=config.epochs * task.steps_per_epoch,
        initial=len(history) * task.steps_per_epoch,
        disable=True if rank else None if progress is None else not progress,
        unit="step",
        desc="training",
    )
    first_epoch, validating = len(history), is_validation_enabled()
    for epoch in range(first_epoch, config.epochs):
        start = time.perf_counter()
        with pyro.validation_enabled(validating and (config.validate == "always" or epoch == first_epoch)):
            row = _train_epoch(task, config, epoch, bar)
        reason = _divergence(task, config, row, initial)
        if reason is not None:
            bar.close()
            raise diverged(epoch + 1, reason, config.lr_at(epoch), run, best.get("epoch", 0))
        row["seconds"] = time.perf_counter() - start
        history.append(row)
        rng = gather_rng_states(rng_state()) if world > 1 else [rng_state()]
        if verbose and rank == 0:
            bar.write(", ".join(f"{k} {v:.5g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()))
        improved = task.best_key in row and row[task.best_key] > best.get(task.best_key, -math.inf)
        if improved:
            best = {"epoch": epoch + 1, task.best_key: row[task.best_key]}
        if run is not None:
            run.save(row, {
                "epoch": epoch + 1,
                "params": param_state(),
                "optim": task.stepper.get_state(),
                "rng": rng[0],
                **({"rng_ranks": rng} if world > 1 else {}),
                "history": history,
                "config": asdict(config),
                "extra": extra or {},
                "initial_elbo": initial,
                "best": best,
            }, best=improved)  # fmt: skip
        if callback is not None and rank == 0:
            with training_mode(task.modules, False):
                callback(dict(row))
    bar.close()
    return history


def _train_epoch(task: Task, config: LoopConfig, epoch: int, bar: tqdm) -> dict[str, Any]:
    """Take epoch ``epoch``'s steps at its learning rate, updating ``bar``; returns the epoch's row so far."""

    def tick(loss: torch.Tensor, rows: int) -> None:
        bar.update()
        if not bar.disable:  # no device sync and no string formatting when nobody sees the bar
            bar.set_postfix(elbo=f"{-loss.item() / rows:.2f}", epoch=epoch + 1, refresh=False)

    lr = task.stepper.set_lr(config.lr_at(epoch))
    with training_mode(task.modules, True):
        loss, rows = task.train_epoch(epoch, tick)
    loss = mean_over_ranks(loss) if rank_and_world()[1] > 1 else loss
    row = {"epoch": epoch + 1, task.train_key: -loss.item() / rows}
    return {**row, "lr": lr, **task.describe()} if config.schedules_lr else {**row, **task.describe()}


def _divergence(task: Task, config: LoopConfig, row: dict[str, Any], initial: float | None) -> str | None:
    """Why the epoch of ``row`` diverged (:mod:`pyrovae.train.divergence`), or ``None``; on rank 0 the held-out
    metrics are added to ``row`` first. Every rank gets the same answer."""
    reason = not_finite(-row[task.train_key], task.stepper.params.items())  # the same on every rank
    rank, world = rank_and_world()
    if rank == 0 and reason is None:
        with training_mode(task.modules, False):
            task.evaluate(row)
        reason = too_low(task.monitor, row.get(task.monitor, row[task.train_key]), initial, config.divergence)
    if world > 1 and mean_over_ranks(torch.tensor(float(reason is not None), device=task.device)).item() > 0:
        reason = reason or "rank 0 found it diverged"
    return reason


def _resume(
    task: Task, config: LoopConfig, path: Path, rank: int, verbose: bool
) -> tuple[list[dict[str, Any]], float | None, dict[str, Any]]:
    """Restore the run saved at ``path`` into ``task`` and the RNG: ``(history, initial ELBO, best epoch)``."""
    state = load_resumable(path.parent, map_location=task.device)
    with malformed(path):
        config.check_resume(path, state["config"], len(state["history"]))
        task.restore(state, path)
        set_rng_state(state["rng_ranks"][rank] if "rng_ranks" in state else state["rng"])
        history = list(state["history"])
    check_epochs(path, config.epochs, len(history), verbose and rank == 0)
    return history, state.get("initial_elbo"), state.get("best", {})


def check_epochs(path: Path, epochs: int, done: int, verbose: bool) -> None:
    """On resume from the checkpoint at ``path``: ``epochs`` is the total, so fewer than ``done`` is a mistake and as
    many is nothing to do."""
    if epochs < done:
        raise ValueError(
            f"{path} has trained {done} epochs already, and epochs={epochs} is the total to reach, not a "
            f"number to add: give more than {done} (e.g. --epochs {done + epochs} to train {epochs} more)"
        )
    if epochs == done and verbose:
        print(f"pyrovae: {path} has trained all {done} epochs: nothing to train; give more than {done} "
              "epochs (the total) to continue", file=sys.stderr)  # fmt: skip
