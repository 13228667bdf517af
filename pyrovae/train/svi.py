r"""Training a Pyro model/guide pair by stochastic variational inference.

:func:`fit` maximises the ELBO

.. math:: \mathcal{L}(\theta, \phi) = \sum_{n=1}^N \mathbb{E}_{q_\phi(z|x_n)}
    [\log p_\theta(x_n, z) - \log q_\phi(z|x_n)]

by stochastic gradient steps on Pyro's ELBO estimate with Adam (:mod:`pyrovae.train.step`: what ``pyro.infer.SVI``
does, with one fused Adam for all parameters). Each minibatch of ``B`` rows is passed as ``model(x, num_data=N)``
so that the data plate scales its terms by ``N / B``: every step's loss is an unbiased estimate of
:math:`-\mathcal{L}` over the whole training set (Hoffman et al. 2013).

The training set lives on the training device; each epoch draws a random permutation there and indexes
it, and dynamically binarized data get a fresh Bernoulli draw for every minibatch.

**Validation.** While Pyro's validation is on (its default), every step checks the data (shape, values in the
likelihood's support) and Pyro checks every distribution's arguments and the model against the guide. By
default (``validate="first-epoch"``) these checks run during the first epoch a process trains, which visits
every training row, and are switched off after it: they cost about a quarter of a step on a CPU
(``benchmarks/step_time.py``). Training is checked once per epoch instead (:mod:`pyrovae.train.divergence`): a
non-finite loss or parameter, or an ELBO far below the untrained model's, stops it before the epoch is saved.

**References**

[1] Stochastic Variational Inference, M. D. Hoffman, D. M. Blei, C. Wang and J. Paisley, JMLR 2013.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pyro
import pyro.infer
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
from pyrovae.data.datasets import Dataset
from pyrovae.device import resolve_device
from pyrovae.infer.iwae import TraceIWAE_ELBO
from pyrovae.infer.jit import JitTrace_ELBO, JitTraceMeanField_ELBO
from pyrovae.infer.kl_scale import KLScaleMessenger, warmup_scale
from pyrovae.infer.metrics import elbo_per_datapoint
from pyrovae.seeding import set_seed
from pyrovae.train.distributed import data_parallel_loss, gather_rng_states, mean_over_ranks, rank_and_world
from pyrovae.train.divergence import DIVERGENCE, check_factor, diverged, not_finite, too_low
from pyrovae.train.rundir import CHECKPOINT, RunFolder, load_resumable
from pyrovae.train.step import AdamStep, check_lr, check_owned, scheduled_lr, trained_params

#: the objectives :func:`fit` knows, by name: (plain ELBO class, JIT-compiled class or ``None``)
ELBOS = {
    "trace": (pyro.infer.Trace_ELBO, JitTrace_ELBO),
    "meanfield": (pyro.infer.TraceMeanField_ELBO, JitTraceMeanField_ELBO),
    "iwae": (TraceIWAE_ELBO, None),
}
#: when :func:`fit` runs Pyro's validation
VALIDATE = ("first-epoch", "always")
#: the settings of :class:`TrainConfig` that may change when a run is resumed
RESUMABLE = ("epochs", "device", "divergence")


@dataclass
class TrainConfig:
    """Settings of :func:`fit`, validated on construction.

    :ivar str elbo: the training objective: ``"trace"`` (``Trace_ELBO``, Monte-Carlo KL), ``"meanfield"``
        (``TraceMeanField_ELBO``, analytic KL where available) or ``"iwae"`` (the importance-weighted bound
        of Burda et al. with ``num_particles`` samples per data point, :class:`pyrovae.infer.iwae.TraceIWAE_ELBO`;
        no JIT variant). With ``"iwae"``, :func:`fit`'s ``train_elbo`` is that bound on the training
        minibatches, ``test_elbo`` the standard ELBO and ``test_iwae`` the bound on the test set.
    :ivar bool dreg: with ``elbo="iwae"``, the doubly reparameterized gradient of Tucker et al. (2019) for the
        guide's parameters (same objective, lower-variance guide gradient; see
        :class:`~pyrovae.infer.iwae.TraceIWAE_ELBO`).
    :ivar bool jit: use the JIT-compiled variant of the ELBO; the last, smaller minibatch of each epoch
        is then dropped, since a compiled step has fixed shapes.
    :ivar int num_particles: samples of z per data point and step (vectorized).
    :ivar str device: ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda[:N]"``.
    :ivar float beta: weight :math:`\beta` of the KL term (:mod:`pyrovae.infer.kl_scale`); 1 is the ELBO.
    :ivar int kl_warmup_epochs: raise the KL weight linearly from 0 to ``beta`` over this many epochs
        (per step); 0 for none.
    :ivar float lr_decay: exponential learning-rate decay per epoch: epoch :math:`e` (counted from 0) trains with
        ``lr * lr_decay ** e``; 1 keeps ``lr`` throughout.
    :ivar str validate: ``"first-epoch"`` (Pyro's validation during the first epoch this process trains, off
        after it) or ``"always"``; with Pyro's validation off globally, never.
    :ivar int seed: seed of the training noise: the minibatch order, dynamic binarization and the draws of the
        latents (:mod:`pyrovae.seeding`). The initial weights are the model's (``VAE(..., seed=S)``).
    :ivar float divergence: :math:`\\kappa` of the divergence check (:mod:`pyrovae.train.divergence`): training stops
        when the monitored ELBO falls below the untrained model's by more than :math:`\\kappa` times its magnitude;
        ``math.inf`` turns that part of the check off (non-finite losses and parameters always stop it).
    """

    epochs: int = 50
    batch_size: int = 128
    lr: float = 1e-3
    elbo: str = "trace"
    jit: bool = False
    num_particles: int = 1
    seed: int = 0
    device: str = "auto"
    eval_batch_size: int = 1000
    beta: float = 1.0
    kl_warmup_epochs: int = 0
    validate: str = "first-epoch"
    lr_decay: float = 1.0
    dreg: bool = False
    divergence: float = DIVERGENCE

    def __post_init__(self) -> None:
        check_factor(self.divergence)
        if self.validate not in VALIDATE:
            raise ValueError(f"unknown validate {self.validate!r}: choose one of {VALIDATE}")
        if not self.beta >= 0 or int(self.kl_warmup_epochs) < 0:
            raise ValueError(f"need beta >= 0 and kl_warmup_epochs >= 0, got {self.beta} and {self.kl_warmup_epochs}")
        if self.jit and self.kl_warmup_epochs:
            raise ValueError("KL warm-up changes the KL weight every step, which a JIT-compiled ELBO cannot: drop jit")
        for name in ("epochs", "batch_size", "num_particles", "eval_batch_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        check_lr(self.lr, self.lr_decay)
        if self.elbo not in ELBOS:
            raise ValueError(f"unknown elbo {self.elbo!r}: choose one of {sorted(ELBOS)}")
        if self.dreg and self.elbo != "iwae":
            raise ValueError(f"dreg is a gradient estimator of the IWAE objective: use elbo='iwae', not {self.elbo!r}")
        if self.jit and ELBOS[self.elbo][1] is None:
            raise ValueError(f"elbo={self.elbo!r} has no JIT-compiled variant: drop jit")


def make_elbo(config: TrainConfig) -> pyro.infer.ELBO:
    """The training objective named by ``config`` (``elbo``, ``jit``, ``num_particles``)."""
    plain, jitted = ELBOS[config.elbo]
    if plain is TraceIWAE_ELBO:  # always vectorized over its particles
        return TraceIWAE_ELBO(num_particles=config.num_particles, dreg=config.dreg)
    options = {"num_particles": config.num_particles, "vectorize_particles": config.num_particles > 1}
    return jitted(ignore_jit_warnings=True, **options) if config.jit else plain(**options)


def num_batches(num_data: int, batch_size: int, drop_last: bool = False) -> int:
    """Minibatches per epoch: the last, smaller one counts unless ``drop_last``."""
    return num_data // batch_size if drop_last else -(-num_data // batch_size)


def minibatches(
    num_data: int,
    batch_size: int,
    device: torch.device,
    drop_last: bool = False,
    generator: torch.Generator | None = None,
) -> Iterator[torch.Tensor]:
    """Indices of one epoch's minibatches: a random permutation of ``range(num_data)`` cut into
    :func:`num_batches` pieces of ``batch_size``, drawn on ``device`` with the global RNG, or on the CPU with
    ``generator`` (then moved to ``device``)."""
    if generator is None:
        perm = torch.randperm(num_data, device=device)
    else:
        perm = torch.randperm(num_data, generator=generator).to(device)
    yield from perm[: num_batches(num_data, batch_size, drop_last) * batch_size].split(batch_size)


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The generator of epoch ``epoch``'s permutation: a function of the seed and the epoch only, so that
    every rank of a distributed run draws the same one, and a resumed run the same as an uninterrupted one."""
    return torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch))


def _train_batch(data: Dataset, idx: torch.Tensor) -> torch.Tensor:
    """Training rows ``idx``, with a fresh Bernoulli draw if the data are dynamically binarized."""
    x = data.train.x[idx]
    return torch.bernoulli(x) if data.binarize == "dynamic" else x


def _owners(*fns: Callable) -> list[nn.Module]:
    """The distinct ``nn.Module`` s that own the bound methods ``fns`` (``vae.model`` belongs to ``vae``)."""
    owners: list[nn.Module] = []
    for fn in fns:
        owner = getattr(fn, "__self__", None)
        if isinstance(owner, nn.Module) and all(owner is not o for o in owners):
            owners.append(owner)
    return owners


def fit(
    model: Callable,
    guide: Callable,
    data: Dataset,
    config: TrainConfig | None = None,
    *,
    out_dir: str | os.PathLike | None = None,
    resume: bool = False,
    overwrite: bool = False,
    extra: dict[str, Any] | None = None,
    progress: bool | None = None,
    verbose: bool = True,
    callback: Callable[[dict[str, float]], None] | None = None,
) -> list[dict[str, float]]:
    """Train ``model``/``guide`` on ``data.train`` by SVI with Adam (:mod:`pyrovae.train.step`), evaluating on
    ``data.valid`` and ``data.test``.

    ``model`` and ``guide`` take ``(x, num_data=N)``, like :meth:`pyrovae.VAE.model`. If they are
    methods of an ``nn.Module`` (as ``vae.model`` is), that module is moved to the device; the data
    always are. Parameters live in Pyro's global param store: clear it
    (``pyro.clear_param_store()``) before training a new model with the same site names.

    Each epoch appends a row to the returned history (and to ``out_dir/metrics.jsonl``):
    ``epoch``, ``train_elbo`` (average over the epoch's minibatches, nats per data point),
    ``valid_elbo`` and ``test_elbo`` (nats per point, when those splits are not empty) and ``seconds``; with
    ``lr_decay``, the epoch's ``lr``. With ``beta != 1`` or a KL warm-up, ``train_elbo`` is the objective optimised
    (the KL term weighted), ``valid_elbo``/``test_elbo`` the unweighted ELBO, and ``kl_scale`` the weight at the
    epoch's last step.

    **Divergence** (:mod:`pyrovae.train.divergence`): an epoch whose loss or parameters are not finite, or whose
    ``valid_elbo`` (``train_elbo`` without a validation split) falls below the untrained model's by more than
    ``config.divergence`` times its magnitude, is not saved: training stops with
    :class:`~pyrovae.errors.TrainingDiverged`, which names the last good checkpoint.

    :param Dataset data: from :func:`pyrovae.data.load_dataset` or :meth:`Dataset.from_tensors`.
    :param TrainConfig config: settings (defaults if omitted). Its ``seed`` seeds the training noise; the initial
        weights come from the model's own ``seed`` (e.g. ``VAE(..., seed=0)``).
    :param out_dir: the run folder (:mod:`pyrovae.train.rundir`): ``checkpoint.pt`` (written atomically every epoch),
        ``best.pt`` (the epoch of the best ``valid_elbo``, when there is a validation split) and
        ``metrics.jsonl``, locked against a second run for as long as this one trains.
    :param bool resume: continue from ``out_dir/checkpoint.pt``: parameters, optimizer, RNG and history
        are restored, so that the run ends exactly where an uninterrupted one would (same device). ``config.epochs``
        is the total number of epochs, those already trained included.
    :param bool overwrite: a new run may replace one already in ``out_dir`` (otherwise that is an error).
    :param dict extra: plain values stored in the checkpoint under ``"extra"`` (e.g. the model's settings).
    :param bool progress: show a tqdm progress bar (default: only when stderr is a terminal).
    :param bool verbose: print one summary line per epoch.
    :param callback: called with a copy of the epoch's row at the end of each epoch trained (not for
        restored ones), after the row has been appended to the history and, with ``out_dir``, written to
        ``metrics.jsonl`` and the checkpoint; e.g. a :class:`pyrovae.viz.tensorboard.TensorBoardLogger`. It should
        leave the random state alone (or restore it), or the run will no longer match one without the callback.
    :returns: the metrics history, one dict per epoch (including restored ones).
    :raises TrainingDiverged: see above.
    :raises RunFolderError: if ``out_dir`` is in use by another run, or holds a run and neither ``resume`` nor
        ``overwrite`` is given.

    **Distributed**: inside an initialised ``torch.distributed`` process group (``torchrun``, then
    :func:`pyrovae.train.distributed.init_distributed`), each rank trains on its share of every global minibatch of
    ``batch_size`` rows with ``DistributedDataParallel`` (see :mod:`pyrovae.train.distributed`); rank 0 alone
    evaluates, writes ``out_dir`` and calls ``callback``, and only its rows have ``valid_elbo`` and ``test_elbo``.

    Each epoch's permutation comes from a generator seeded by ``seed`` and the epoch
    (:func:`epoch_generator`), the model's noise from the global RNG seeded with ``seed`` (+ rank).
    """
    config = config or TrainConfig()
    if resume and out_dir is None:
        raise ValueError("resume=True needs the out_dir that holds the checkpoint")
    resume_from = Path(out_dir) if resume else None  # every rank resumes; rank 0 alone writes
    if out_dir is None or rank_and_world()[0] != 0:
        return _fit(model, guide, data, config, None, resume_from, extra, progress, verbose, callback)
    with RunFolder(out_dir, resume=resume, overwrite=overwrite) as run:
        return _fit(model, guide, data, config, run, resume_from, extra, progress, verbose, callback)


def _fit(
    model: Callable,
    guide: Callable,
    data: Dataset,
    config: TrainConfig,
    run: RunFolder | None,
    resume_from: Path | None,
    extra: dict[str, Any] | None,
    progress: bool | None,
    verbose: bool,
    callback: Callable[[dict[str, float]], None] | None,
) -> list[dict[str, float]]:
    """:func:`fit` writing into the run folder ``run`` (``None``: nothing written, or not rank 0), resuming the run in
    the folder ``resume_from`` if given."""
    device = resolve_device(config.device)
    owners = _owners(model, guide)
    for owner in owners:
        owner.to(device)
    data = data.to(device)
    num_data = len(data.train)
    rank, world = rank_and_world()
    drop_last = config.jit or world > 1  # compiled steps have fixed shapes; ranks need equal shares
    if world > 1 and (config.jit or config.batch_size % world):
        raise ValueError(
            f"distributed training over {world} ranks needs a batch_size divisible by {world} (got "
            f"{config.batch_size}) and no JIT"
        )
    if config.batch_size > num_data and drop_last:
        raise ValueError(
            f"batch_size ({config.batch_size}) is larger than the training set ({num_data} points) and incomplete "
            "batches are dropped (JIT or distributed): lower batch_size"
        )

    kl = KLScaleMessenger(config.beta)  # the KL weight; it changes every step during warm-up
    scaled = config.beta != 1 or config.kl_warmup_epochs > 0
    train_model, train_guide = (kl(model), kl(guide)) if scaled else (model, guide)
    elbo = make_elbo(config)
    params = trained_params(model, guide, _train_batch(data, torch.arange(min(2, num_data), device=device)),
                            num_data=num_data)  # fmt: skip
    check_owned(params, owners)
    if world > 1:
        loss = data_parallel_loss(owners, params, train_model, train_guide, elbo)
    else:
        loss = partial(elbo.differentiable_loss, train_model, train_guide)
    stepper = AdamStep(params, loss, config.lr)
    # the test ELBO is the standard one for every objective; an IWAE run also reports its bound on the test set
    eval_elbo = pyro.infer.Trace_ELBO() if config.elbo == "iwae" else ELBOS[config.elbo][0]()

    def evaluate(x: torch.Tensor, objective: pyro.infer.ELBO = eval_elbo) -> float:
        return elbo_per_datapoint(model, guide, x, batch_size=config.eval_batch_size, elbo=objective)

    # divergence is judged on the validation ELBO, or on the training objective without a validation split
    monitor = "valid_elbo" if len(data.valid) else "train_elbo"
    history: list[dict[str, float]] = []
    if resume_from is not None:
        state, path = load_resumable(resume_from, map_location=device), resume_from / CHECKPOINT
        with malformed(path):
            check_resumable(path, state["config"], config, RESUMABLE)
            check_finite(state["params"], path)
            restore_params(state["params"])
            stepper.set_state(state["optim"])
            set_rng_state(state["rng_ranks"][rank] if "rng_ranks" in state else state["rng"])
            history = list(state["history"])
        initial, best = state.get("initial_elbo"), state.get("best", {})
        check_epochs(path, config.epochs, len(history), verbose and rank == 0)
    else:
        set_seed(config.seed + rank)  # each rank its own noise
        with torch.no_grad():  # the untrained model's ELBO, the reference of the divergence check
            initial = evaluate(data.valid.x if len(data.valid) else _train_batch(
                data, torch.arange(min(num_data, config.eval_batch_size), device=device)))  # fmt: skip
        best = {}
    if run is not None:
        run.start(history)

    steps_per_epoch = num_batches(num_data, config.batch_size, drop_last=drop_last)
    warmup_steps = config.kl_warmup_epochs * steps_per_epoch
    first_epoch, validating = len(history), is_validation_enabled()
    bar = tqdm(
        total=config.epochs * steps_per_epoch,
        initial=len(history) * steps_per_epoch,
        disable=True if rank else None if progress is None else not progress,
        unit="step",
        desc="training",
    )
    for epoch in range(first_epoch, config.epochs):
        start, loss_sum, seen = time.perf_counter(), torch.zeros((), device=device), 0
        batches = minibatches(num_data, config.batch_size, device, drop_last, epoch_generator(config.seed, epoch))
        check = validating and (config.validate == "always" or epoch == first_epoch)
        lr = stepper.set_lr(scheduled_lr(config.lr, config.lr_decay, epoch))
        with pyro.validation_enabled(check):
            for step, idx in enumerate(batches):
                kl.scale = warmup_scale(epoch * steps_per_epoch + step, warmup_steps, config.beta)
                loss = stepper(_train_batch(data, idx.tensor_split(world)[rank]), num_data)
                loss_sum, seen = loss_sum + loss * (len(idx) / num_data), seen + len(idx)
                bar.update()
                if not bar.disable:  # no device sync and no string formatting when nobody sees the bar
                    bar.set_postfix(elbo=f"{-loss.item() / num_data:.2f}", epoch=epoch + 1, refresh=False)
        train_loss = (mean_over_ranks(loss_sum) if world > 1 else loss_sum).item() / seen
        row = {"epoch": epoch + 1, "train_elbo": -train_loss}
        if scaled:
            row["kl_scale"] = kl.scale
        if config.lr_decay != 1:
            row["lr"] = lr
        reason = not_finite(train_loss, params.items())  # the same on every rank; the evaluation would be NaN
        if rank == 0 and reason is None:
            for name in ("valid", "test"):
                if len(getattr(data, name)):
                    row[f"{name}_elbo"] = evaluate(getattr(data, name).x)
            if config.elbo == "iwae" and len(data.test):
                row["test_iwae"] = evaluate(data.test.x, elbo)
            reason = too_low(monitor, row.get(monitor, row["train_elbo"]), initial, config.divergence)
        if world > 1 and mean_over_ranks(torch.tensor(float(reason is not None), device=device)).item() > 0:
            reason = reason or "rank 0 found it diverged"
        if reason is not None:
            bar.close()
            raise diverged(epoch + 1, reason, lr, run, best.get("epoch", 0))
        row["seconds"] = time.perf_counter() - start
        history.append(row)
        rng = gather_rng_states(rng_state()) if world > 1 else [rng_state()]
        if verbose and rank == 0:
            bar.write(", ".join(f"{k} {v:.5g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()))
        improved = "valid_elbo" in row and row["valid_elbo"] > best.get("valid_elbo", -math.inf)
        if improved:
            best = {"epoch": epoch + 1, "valid_elbo": row["valid_elbo"]}
        if run is not None:
            run.save(row, {
                "epoch": epoch + 1,
                "params": param_state(),
                "optim": stepper.get_state(),
                "rng": rng[0],
                **({"rng_ranks": rng} if world > 1 else {}),
                "history": history,
                "config": asdict(config),
                "extra": extra or {},
                "initial_elbo": initial,
                "best": best,
            }, best=improved)  # fmt: skip
        if callback is not None and rank == 0:
            callback(dict(row))
    bar.close()
    return history


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
