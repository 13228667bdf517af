r"""Training a Pyro model/guide pair by stochastic variational inference.

:func:`fit` maximises the ELBO

.. math:: \mathcal{L}(\theta, \phi) = \sum_{n=1}^N \mathbb{E}_{q_\phi(z|x_n)}
    [\log p_\theta(x_n, z) - \log q_\phi(z|x_n)]

by stochastic gradient steps on Pyro's ELBO estimate with Adam (:mod:`pyrovae.train.step`: what ``pyro.infer.SVI``
does, with one fused Adam for all parameters). Each minibatch of ``B`` rows is passed as ``model(x, num_data=N)``
so that the data plate scales its terms by ``N / B``: every step's loss is an unbiased estimate of
:math:`-\mathcal{L}` over the whole training set (Hoffman et al. 2013).

The training set lives on the training device when it fits under ``device_data_limit`` (else it stays in host
memory and each minibatch is copied to the device: :mod:`pyrovae.data.placement`); each epoch draws a random
permutation and indexes it, and dynamically binarized data get a fresh Bernoulli draw for every minibatch.

**Validation.** While Pyro's validation is on (its default), every step checks the data (shape, values in the
likelihood's support) and Pyro checks every distribution's arguments and the model against the guide. By
default (``validate="first-epoch"``) these checks run during the first epoch a process trains, which visits
every training row, and are switched off after it, since they slow every step (``benchmarks/step_time.py``).
Training is checked once per epoch instead (:mod:`pyrovae.train.divergence`): a non-finite loss or parameter, or an
ELBO far below the untrained model's, stops it before the epoch is saved. The epochs, resume, run folder and
data-parallel training are the one loop's (:mod:`pyrovae.train.loop`).

**References**

[1] Stochastic Variational Inference, M. D. Hoffman, D. M. Blei, C. Wang and J. Paisley, JMLR 2013.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar

import pyro
import pyro.infer
import torch

from pyrovae.data.datasets import Dataset
from pyrovae.data.placement import place
from pyrovae.device import owners, resolve_device, training_mode
from pyrovae.infer.compiled import BACKEND, CompiledTrace_ELBO
from pyrovae.infer.iwae import TraceIWAE_ELBO
from pyrovae.infer.jit import JitTrace_ELBO, JitTraceMeanField_ELBO
from pyrovae.infer.kl_scale import KLScaleMessenger, warmup_scale
from pyrovae.infer.metrics import elbo_per_datapoint
from pyrovae.train.distributed import data_parallel_loss, rank_and_world
from pyrovae.train.loop import (
    LoopConfig,
    Task,
    epoch_generator,
    minibatches,
    num_batches,
    run_training,
    with_settings,
)
from pyrovae.train.step import AdamStep, owned_params

#: the objectives :func:`fit` knows, by name: (plain ELBO class, JIT-compiled class or ``None``, class compiled
#: with ``torch.compile`` or ``None``)
ELBOS = {
    "trace": (pyro.infer.Trace_ELBO, JitTrace_ELBO, CompiledTrace_ELBO),
    "meanfield": (pyro.infer.TraceMeanField_ELBO, JitTraceMeanField_ELBO, None),
    "iwae": (TraceIWAE_ELBO, None, None),
}


@dataclass(kw_only=True)
class TrainConfig(LoopConfig):
    """Settings of :func:`fit`, validated on construction: those of :class:`~pyrovae.train.loop.LoopConfig`
    (``epochs``, ``batch_size``, ``lr``, ``lr_decay``, ``seed``, ``device``, ``eval_batch_size``, ``validate``,
    ``divergence``, ``device_data_limit``) and

    :ivar str elbo: the training objective: ``"trace"`` (``Trace_ELBO``, Monte-Carlo KL), ``"meanfield"``
        (``TraceMeanField_ELBO``, analytic KL where available) or ``"iwae"`` (the importance-weighted bound
        of Burda et al. with ``num_particles`` samples per data point, :class:`pyrovae.infer.iwae.TraceIWAE_ELBO`;
        no JIT variant). With ``"iwae"``, :func:`fit`'s ``train_elbo`` is that bound on the training
        minibatches, ``test_elbo`` the standard ELBO and ``test_iwae`` the bound on the test set.
    :ivar bool dreg: with ``elbo="iwae"``, the doubly reparameterized gradient of Tucker et al. (2019) for the
        guide's parameters (same objective, lower-variance guide gradient; see
        :class:`~pyrovae.infer.iwae.TraceIWAE_ELBO`).
    :ivar bool jit: use the JIT-compiled variant of the ELBO (``torch.jit.trace``, deprecated in torch but often
        the fastest step on a CPU); the last, smaller minibatch of each epoch is then dropped, since a traced step has
        fixed shapes.
    :ivar compile: compile the ELBO's tensor computation with ``torch.compile``
        (:class:`~pyrovae.infer.compiled.CompiledTrace_ELBO`; ``elbo="trace"`` only): ``True`` for the inductor
        backend, or the name of another ``torch.compile`` backend (``"aot_eager"`` records and runs the graph
        without generating code). The first step of each minibatch shape compiles (seconds to a minute); the last,
        smaller minibatch of an epoch is kept and compiled once more. A compiled step draws the same noise as an
        eager one and computes the same loss and gradient up to rounding, so a resumed run may switch it on or
        off. Not with ``jit``, KL warm-up, BatchNorm's running statistics, several ranks, or parameters per data
        point (a guide that needs the rows as ``subsample``: an error, as with ``jit``).
    :ivar int num_particles: samples of z per data point and step (vectorized).
    :ivar float beta: weight :math:`\beta` of the KL term (:mod:`pyrovae.infer.kl_scale`); 1 is the ELBO.
    :ivar int kl_warmup_epochs: raise the KL weight linearly from 0 to ``beta`` over this many epochs
        (per step); 0 for none.
    """

    #: the settings that may change when a run is resumed: :class:`LoopConfig`'s and ``compile``
    RESUMABLE: ClassVar[tuple[str, ...]] = (*LoopConfig.RESUMABLE, "compile")

    elbo: str = "trace"
    jit: bool = False
    compile: bool | str = False
    num_particles: int = 1
    beta: float = 1.0
    kl_warmup_epochs: int = 0
    dreg: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.beta >= 0 or int(self.kl_warmup_epochs) < 0:
            raise ValueError(f"need beta >= 0 and kl_warmup_epochs >= 0, got {self.beta} and {self.kl_warmup_epochs}")
        if self.jit and self.kl_warmup_epochs:
            raise ValueError("KL warm-up changes the KL weight every step, which a JIT-compiled ELBO cannot: drop jit")
        if int(self.num_particles) < 1:
            raise ValueError(f"num_particles must be a positive integer, got {self.num_particles}")
        if self.elbo not in ELBOS:
            raise ValueError(f"unknown elbo {self.elbo!r}: choose one of {sorted(ELBOS)}")
        if self.dreg and self.elbo != "iwae":
            raise ValueError(f"dreg is a gradient estimator of the IWAE objective: use elbo='iwae', not {self.elbo!r}")
        if self.jit and ELBOS[self.elbo][1] is None:
            raise ValueError(f"elbo={self.elbo!r} has no JIT-compiled variant: drop jit")
        if self.compile:
            self._check_compile()

    def _check_compile(self) -> None:
        if self.jit:
            raise ValueError("jit and compile are two ways of compiling the same ELBO: choose one of them")
        if ELBOS[self.elbo][2] is None:
            raise ValueError(f"elbo={self.elbo!r} has no torch.compile variant (elbo='trace' has): drop compile")
        if self.kl_warmup_epochs:
            raise ValueError("KL warm-up changes the KL weight every step, which a compiled ELBO cannot: drop compile")
        backends = torch.compiler.list_backends(exclude_tags=())
        if not isinstance(self.compile, bool) and self.compile not in backends:
            raise ValueError(f"unknown torch.compile backend {self.compile!r}: use True (inductor) or one of "
                             f"{backends}")

    @property
    def compile_backend(self) -> str | None:
        """The ``torch.compile`` backend of the training ELBO, or ``None`` when it is not compiled."""
        if not self.compile:
            return None
        return BACKEND if self.compile is True else self.compile


def make_elbo(config: TrainConfig) -> pyro.infer.ELBO:
    """The training objective named by ``config`` (``elbo``, ``jit``, ``compile``, ``num_particles``)."""
    plain, jitted, compiled = ELBOS[config.elbo]
    if plain is TraceIWAE_ELBO:  # always vectorized over its particles
        return TraceIWAE_ELBO(num_particles=config.num_particles, dreg=config.dreg)
    options = {"num_particles": config.num_particles, "vectorize_particles": config.num_particles > 1}
    if config.compile:
        return compiled(backend=config.compile_backend, **options)
    return jitted(ignore_jit_warnings=True, **options) if config.jit else plain(**options)


def takes_keyword(fn: Callable, name: str) -> bool:
    """Whether ``fn`` accepts the keyword argument ``name`` (by name, or through ``**kwargs``)."""
    try:
        parameters = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # no signature to read: pass nothing it may not take
        return False
    return any(p.name == name and p.kind != p.POSITIONAL_ONLY or p.kind == p.VAR_KEYWORD for p in parameters)


class SVITask(Task):
    """SVI on the ELBO named by a :class:`TrainConfig`, as :func:`fit` trains it (a
    :class:`~pyrovae.train.loop.Task`).

    Rank :math:`r` of :math:`W` takes its share of each global minibatch, passed as ``model(x, num_data=N)``; the data
    plate scales it to the training set, so the loss, times the global batch's share of the set, is :math:`W` times
    the share's sum.
    """

    train_key, best_key = "train_elbo", "valid_elbo"

    def __init__(self, model: Callable, guide: Callable, data: Dataset, config: TrainConfig) -> None:
        self.config = config
        self.device = resolve_device(config.device)
        self.modules = modules = tuple(owners(model, guide))
        for owner in modules:
            owner.to(self.device)
        self.model, self.guide = model, guide
        self.data = place(data, self.device, config.device_data_limit)
        self.rows_device = self.data.train.x.device  # where minibatch indices index the training rows
        self.num_data = num_data = len(self.data.train)
        self.rank, self.world = rank_and_world()
        self.drop_last = config.jit or self.world > 1  # compiled steps have fixed shapes; ranks need equal shares
        if self.world > 1 and (config.jit or config.compile or config.batch_size % self.world):
            raise ValueError(
                f"distributed training over {self.world} ranks needs a batch_size divisible by {self.world} (got "
                f"{config.batch_size}), no JIT and no compile"
            )
        tracked = [m for owner in modules for m in owner.modules() if getattr(m, "track_running_stats", False)]
        if config.compile and tracked:
            raise ValueError(
                "compile records the ELBO by running the model and guide, which would also update their modules' "
                "buffers that track running statistics (BatchNorm) outside the training steps: train a model with "
                "BatchNorm without compile"
            )
        if config.batch_size > num_data and self.drop_last:
            raise ValueError(
                f"batch_size ({config.batch_size}) is larger than the training set ({num_data} points) and "
                "incomplete batches are dropped (JIT or distributed): lower batch_size"
            )
        self.kl = KLScaleMessenger(config.beta)  # the KL weight; it changes every step during warm-up
        self.scaled = config.beta != 1 or config.kl_warmup_epochs > 0
        train_model, train_guide = (self.kl(model), self.kl(guide)) if self.scaled else (model, guide)
        self.elbo = make_elbo(config)
        # the minibatch's row indices go to model and guide that take them (the data plate's subsample, for guides
        # with per-point parameters); a compiled step takes no new tensors by keyword
        self.pass_subsample = not (config.jit or config.compile) and all(
            takes_keyword(fn, "subsample") for fn in (model, guide)
        )
        with training_mode(modules, False):  # a probe: BatchNorm's running statistics are left alone
            example = self.data.train_batch(torch.arange(1, device=self.rows_device))
            params = owned_params(model, guide, modules, example, num_data=num_data, rows_given=self.pass_subsample)
        loss = partial(self.elbo.differentiable_loss, train_model, train_guide)
        if self.world > 1:
            loss = data_parallel_loss(modules, params, loss)
        self.stepper = AdamStep(params, loss, config.lr)
        # the test ELBO is the standard one for every objective; an IWAE run also reports its bound on the test set
        self.eval_elbo = pyro.infer.Trace_ELBO() if config.elbo == "iwae" else ELBOS[config.elbo][0]()
        # divergence is judged on the validation ELBO, or on the training objective without a validation split
        self.monitor = "valid_elbo" if len(self.data.valid) else "train_elbo"
        self.steps_per_epoch = num_batches(num_data, config.batch_size, drop_last=self.drop_last)

    def _evaluate(self, x: torch.Tensor, objective: pyro.infer.ELBO | None = None) -> float:
        return elbo_per_datapoint(self.model, self.guide, x, batch_size=self.config.eval_batch_size,
                                  elbo=objective or self.eval_elbo)  # fmt: skip

    def initial_elbo(self) -> float:
        if len(self.data.valid):
            return self._evaluate(self.data.valid.x)
        rows = torch.arange(min(self.num_data, self.config.eval_batch_size), device=self.rows_device)
        return self._evaluate(self.data.train_batch(rows))

    def train_epoch(self, epoch: int, tick: Callable[[torch.Tensor, int], None]) -> tuple[torch.Tensor, int]:
        config, total, seen = self.config, torch.zeros((), device=self.device), 0
        warmup_steps = config.kl_warmup_epochs * self.steps_per_epoch
        batches = minibatches(self.num_data, config.batch_size, self.rows_device,
                              epoch_generator(config.seed, epoch), self.drop_last)  # fmt: skip
        for step, idx in enumerate(batches):
            self.kl.scale = warmup_scale(epoch * self.steps_per_epoch + step, warmup_steps, config.beta)
            share = idx.tensor_split(self.world)[self.rank]
            rows = {"subsample": share.to(self.device, non_blocking=True)} if self.pass_subsample else {}
            loss = self.stepper(self.data.train_batch(share), num_data=self.num_data, **rows)
            total, seen = total + loss * (len(idx) / self.num_data), seen + len(idx)
            tick(loss, self.num_data)
        return total, seen

    def describe(self) -> dict[str, Any]:
        return {"kl_scale": self.kl.scale} if self.scaled else {}

    def evaluate(self, row: dict[str, Any]) -> None:
        for name in ("valid", "test"):
            if len(getattr(self.data, name)):
                row[f"{name}_elbo"] = self._evaluate(getattr(self.data, name).x)
        if self.config.elbo == "iwae" and len(self.data.test):
            row["test_iwae"] = self._evaluate(self.data.test.x, self.elbo)


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

    ``model`` and ``guide`` take ``(x, num_data=N)``, like :meth:`pyrovae.VAE.model`, and, when both accept a
    ``subsample`` keyword (pyrovae's models do, and Pyro's autoguides pass keywords on), ``subsample=`` the
    minibatch's row indices in ``data.train``, so that a guide with per-point parameters
    (``AutoNormal(vae.model, create_plates=vae.data_plate)``) sees the right rows; such a guide is an error with
    ``jit`` or ``compile``, whose recorded steps take no new tensors by keyword, or when model or guide takes no
    ``subsample``. If they are
    methods of an ``nn.Module`` (as ``vae.model`` is), that module is moved to the device; so are the data when
    they hold at most ``config.device_data_limit`` bytes, else they stay in host memory (a memory-mapped split
    stays memory-mapped) and each minibatch is copied to the device (:mod:`pyrovae.data.placement`), with the same
    rows in the same order. Such a module is in training mode during the steps and in evaluation mode while it is
    evaluated and during ``callback`` (BatchNorm layers use and keep their running statistics, dropout is off);
    ``fit`` leaves it in the mode it had before. Parameters live in Pyro's global param store: clear it
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
    :param dict extra: plain values stored in the checkpoint under ``"extra"``; the settings of a pyrovae model
        (its ``config``) are added under ``"vae"`` unless given, so that :func:`pyrovae.load_model` rebuilds it (a
        model with custom networks has none: load its checkpoint with ``load_model(path, model=...)``).
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
    (:func:`~pyrovae.train.loop.epoch_generator`), the model's noise from the global RNG seeded with ``seed`` (+ rank).
    """
    config = config or TrainConfig()
    task = SVITask(model, guide, data, config)
    if out_dir is not None:
        extra = with_settings(extra, owners(model, guide), "vae")
    return run_training(task, config, out_dir, resume=resume, overwrite=overwrite, extra=extra, progress=progress,
                        verbose=verbose, callback=callback)  # fmt: skip
