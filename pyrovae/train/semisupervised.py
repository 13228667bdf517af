r"""Semi-supervised training of :class:`pyrovae.SSVAE` (Kingma et al. 2014) with one SVI objective.

The objective is

.. math:: \mathcal{J} = \sum_{(x, y) \in \text{labelled}} [\mathcal{L}(x, y) + \alpha \log q(y|x)]
    + \sum_{x \in \text{unlabelled}} \mathcal{U}(x),

with :math:`\mathcal{U}` summing the label out by parallel enumeration (``TraceEnum_ELBO``).
With ``consistency`` (:mod:`pyrovae.train.consistency`) each unlabelled minibatch's term also loses
:math:`\beta \sum_x \lVert q(\cdot|v) - q(\cdot|v') \rVert^2` over two random views of its images.

An epoch is one pass over the unlabelled set in minibatches of ``batch_size``; labelled minibatches of
``labelled_batch_size`` rows cycle through the labelled set (reshuffled after each pass). Two schedules:

* ``"alternate"`` (default): **separate Adam steps**, a labelled one after every ``labelled_every``-th
  unlabelled one, each step's loss the sum over its minibatch (the data plate is not rescaled), as in
  Pyro's SS-VAE example. The labels are *oversampled*: with 100 labels each one is visited hundreds of
  times per epoch, and a labelled step weighs about as much as an unlabelled one. Fast to a good
  classifier (M1+M2, 100 labels: about 91 % after 20 epochs).
* ``"joint"``: **one Adam step per unlabelled minibatch** on the unbiased minibatch estimate of
  :math:`-\mathcal{J}`, the unlabelled minibatch's sum scaled to the unlabelled set and a labelled
  minibatch's to the labelled set (set size / minibatch size, as the data plate's ``num_data`` would
  scale them), so every point counts once per epoch, as in
  Kingma et al.'s own training, with their :math:`\alpha = 0.1 N / N_l` per label (:func:`kingma_alpha`).
  Slow: the unlabelled term dominates and the labels steer it gently; on four Gaussian clusters with two
  labels each it classified 43 % of the test points after 10 epochs where ``"alternate"`` reached 99.9 %,
  and on MNIST (M1+M2, 100 labels) 79.8 % after 59 epochs where ``"alternate"`` had 91.5 % after 60;
  published runs of this recipe take thousands of epochs (``benchmarks/README.md``).

Labelled and unlabelled rows go through separate calls of the model and guide (the ``"y"`` site is either
observed or enumerated, never both); :func:`split_batch` turns a mixed batch with a mask into the two and
:func:`semisupervised_loss` adds their losses.

**References**

[1] Semi-Supervised Learning with Deep Generative Models, D. P. Kingma, D. J. Rezende, S. Mohamed and
    M. Welling, NeurIPS 2014.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import torch
from pyro.infer import ELBO, JitTraceEnum_ELBO, TraceEnum_ELBO
from torch import nn
from tqdm.auto import tqdm

from pyrovae.checkpoint import (
    CheckpointError,
    check_finite,
    check_resumable,
    malformed,
    rng_state,
    set_rng_state,
)
from pyrovae.data.datasets import Dataset, Split
from pyrovae.data.validation import check_labels
from pyrovae.device import resolve_device
from pyrovae.models.ssvae import SSVAE
from pyrovae.seeding import set_seed
from pyrovae.train.augment import check_shift, random_shift
from pyrovae.train.consistency import consistency_loss
from pyrovae.train.divergence import DIVERGENCE, check_factor, diverged, divergence
from pyrovae.train.rundir import RunFolder, load_resumable
from pyrovae.train.step import adam, check_lr, check_owned, scheduled_lr, set_lr, trained_params
from pyrovae.train.svi import check_epochs, minibatches, num_batches

#: the training schedules of :func:`fit_semisupervised`
SCHEDULES = ("alternate", "joint")


@dataclass
class SemiSupervisedConfig:
    r"""Settings of :func:`fit_semisupervised`, validated on construction.

    :ivar int num_labels: labelled training points, the same number from every class.
    :ivar int label_seed: seed of the choice of labelled points (the split is part of the experiment).
    :ivar int batch_size: unlabelled rows per step.
    :ivar int labelled_batch_size: rows per labelled step (at most ``num_labels``).
    :ivar int labelled_every: a labelled step after every ``labelled_every`` unlabelled steps (``"alternate"``
        only; ``"joint"`` needs 1).
    :ivar str schedule: ``"alternate"`` (separate labelled and unlabelled steps, minibatch sums) or
        ``"joint"`` (one step on both minibatches, each scaled to its set); see the module's docstring.
    :ivar bool jit: compile the steps with ``JitTraceEnum_ELBO`` (one compiled function for labelled and one for
        unlabelled minibatches; the last, incomplete unlabelled minibatch of each epoch is dropped, since a
        compiled step has fixed shapes).
    :ivar float lr_decay: exponential learning-rate decay per epoch: epoch :math:`e` (counted from 0) trains with
        ``lr * lr_decay ** e``; 1 keeps ``lr`` throughout.
    :ivar tuple lr_milestones: numbers of epochs after each of which the learning rate is multiplied by a
        further ``lr_gamma``, as ``torch.optim.lr_scheduler.MultiStepLR`` (:func:`pyrovae.train.step.scheduled_lr`):
        e.g. ``(140,)`` trains 140 epochs at ``lr`` and the following ones at ``lr * lr_gamma``. Unlike the
        other settings, milestones and ``lr_gamma`` may change when a run is resumed, as long as the epochs
        already trained keep their rates.
    :ivar float lr_gamma: factor of the learning rate at each milestone.
    :ivar int shift: translate every labelled image by up to ``shift`` pixels along each axis, anew at each
        labelled step (:func:`pyrovae.train.augment.random_shift`; data augmentation, which Kingma et al. did not
        use); 0 (default) leaves the images as they are. The accuracies, and unlabelled images but for the
        consistency term's second view, are not shifted.
    :ivar float consistency: weight :math:`\beta` per unlabelled point of the consistency term
        (:mod:`pyrovae.train.consistency`): the squared distance between q(y|·) on two random views of each unlabelled
        image (the second one translated by up to ``shift`` pixels), subtracted from the ELBO; 0 (default) is
        plain M2. The views differ only through the random parts of the input pipeline (dynamic binarization,
        a sampling feature map, ``shift``): on grey levels without them the term is 0.
    :ivar int seed: seed of the training noise (:mod:`pyrovae.seeding`); the initial weights are the model's
        (``SSVAE(..., seed=S)``).
    :ivar float divergence: :math:`\kappa` of the divergence check on ``unlabelled_elbo``
        (:mod:`pyrovae.train.divergence`).
    """

    num_labels: int = 100
    epochs: int = 50
    batch_size: int = 128
    labelled_batch_size: int = 128
    labelled_every: int = 1
    lr: float = 1e-3
    seed: int = 0
    label_seed: int = 0
    device: str = "auto"
    eval_batch_size: int = 1000
    jit: bool = False
    schedule: str = "alternate"
    lr_decay: float = 1.0
    lr_milestones: tuple[int, ...] = ()
    lr_gamma: float = 0.1
    shift: int = 0
    consistency: float = 0.0
    divergence: float = DIVERGENCE

    def __post_init__(self) -> None:
        check_factor(self.divergence)
        for name in ("num_labels", "epochs", "batch_size", "labelled_batch_size", "labelled_every", "eval_batch_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        check_lr(self.lr, self.lr_decay, self.lr_milestones, self.lr_gamma)
        self.lr_milestones = tuple(self.lr_milestones)
        if int(self.shift) < 0:
            raise ValueError(f"shift must be a number of pixels >= 0, got {self.shift}")
        if not 0 <= self.consistency < float("inf"):
            raise ValueError(f"consistency must be a finite weight >= 0, got {self.consistency}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}: choose one of {SCHEDULES}")
        if self.schedule == "joint" and self.labelled_every != 1:
            raise ValueError(f"the joint schedule adds a labelled minibatch to every step: labelled_every must be 1, "
                             f"got {self.labelled_every}")  # fmt: skip

    def lr_at(self, epoch: int) -> float:
        """The learning rate of epoch ``epoch`` (counted from 0): :func:`pyrovae.train.step.scheduled_lr`."""
        return scheduled_lr(self.lr, self.lr_decay, epoch, self.lr_milestones, self.lr_gamma)


#: the settings of :class:`SemiSupervisedConfig` that may change when a run is resumed
RESUMABLE = ("epochs", "device", "lr_milestones", "lr_gamma", "divergence")


def check_trained_lrs(path: str | os.PathLike, saved: dict[str, Any], config: SemiSupervisedConfig, done: int) -> None:
    """Check that the ``done`` epochs already trained with the settings ``saved`` had the learning rates that
    ``config`` gives them, so that new milestones only change the epochs still to come.

    :raises CheckpointError: naming the first epoch whose rate would change.
    """
    old = SemiSupervisedConfig(**{**saved, "device": config.device})
    for epoch in range(done):
        before, after = old.lr_at(epoch), config.lr_at(epoch)
        if before != after:
            raise CheckpointError(
                f"{path} trained epoch {epoch + 1} with learning rate {before}, and lr_milestones "
                f"{list(config.lr_milestones)} with lr_gamma {config.lr_gamma} would give it {after}: on resume, "
                f"milestones may only be added from {done} on, the epochs trained so far"
            )


def kingma_alpha(num_data: int, num_labels: int, weight: float = 0.1) -> float:
    r"""Kingma et al.'s classification weight per labelled point, :math:`0.1\,N / N_l`: their
    :math:`\alpha = 0.1 N` multiplies the *mean* of :math:`\log q(y|x)` over the :math:`N_l` labelled
    points, in an objective summed over all :math:`N` training points."""
    if int(num_labels) < 1 or int(num_data) < int(num_labels):
        raise ValueError(f"need 1 <= num_labels <= num_data, got {num_labels} labels of {num_data} points")
    return weight * num_data / num_labels


def labelled_subset(y: torch.Tensor, num_labels: int, num_classes: int, seed: int = 0) -> torch.Tensor:
    """Indices of a class-balanced labelled subset: ``num_labels / num_classes`` random points of each class.

    :raises ValueError: if ``num_labels`` is not a multiple of ``num_classes`` or a class has too few points.
    """
    check_labels(y, len(y), num_classes)
    if num_labels % num_classes:
        raise ValueError(f"num_labels ({num_labels}) must be a multiple of the {num_classes} classes (class-balanced)")
    per_class = num_labels // num_classes
    g = torch.Generator().manual_seed(seed)
    chosen = []
    for c in range(num_classes):
        members = (y.cpu() == c).nonzero().squeeze(-1)
        if len(members) < per_class:
            raise ValueError(f"class {c} has {len(members)} points, fewer than the {per_class} labels asked for")
        chosen.append(members[torch.randperm(len(members), generator=g)[:per_class]])
    return torch.cat(chosen).sort().values.to(y.device)


def split_batch(
    x: torch.Tensor, y: torch.Tensor, observed: torch.Tensor
) -> tuple[tuple[torch.Tensor, torch.Tensor] | None, torch.Tensor | None]:
    """Split a mixed batch into its labelled part ``(x_l, y_l)`` and its unlabelled part ``x_u``.

    :param torch.Tensor observed: boolean ``(batch,)``, True where ``y`` is known (``y`` is ignored elsewhere).
    :returns: ``((x_l, y_l) or None, x_u or None)``.
    """
    if observed.dtype != torch.bool or observed.shape != x.shape[:1]:
        raise ValueError(
            f"observed must be a boolean mask of shape ({len(x)},), got {observed.dtype} {tuple(observed.shape)}"
        )
    if y.shape != x.shape[:1]:
        raise ValueError(f"y must have shape ({len(x)},), one label per row of x, got {tuple(y.shape)}")
    labelled = (x[observed], y[observed]) if observed.any() else None
    return labelled, (x[~observed] if not observed.all() else None)


@contextmanager
def _nothing_to_enumerate() -> Iterator[None]:
    """Silences ``TraceEnum_ELBO``'s warning on a labelled batch: nothing to enumerate there, and that is fine."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="TraceEnum_ELBO found no sample sites")
        yield


def semisupervised_loss(
    model: Callable,
    guide: Callable,
    elbo: ELBO,
    labelled: tuple[torch.Tensor, torch.Tensor] | None,
    unlabelled: torch.Tensor | None,
    num_labelled: int | None = None,
    num_unlabelled: int | None = None,
) -> torch.Tensor:
    r"""Differentiable :math:`-\mathcal{J}` estimate from a labelled minibatch ``(x_l, y_l)`` (scaled to
    ``num_labelled`` points) and an unlabelled one ``x_u`` (scaled to ``num_unlabelled``); either may be
    ``None``. ``model``/``guide`` take ``(x, y=None, num_data=None)`` as :class:`pyrovae.SSVAE`'s do."""
    if labelled is None and unlabelled is None:
        raise ValueError("give a labelled batch, an unlabelled batch or both")
    loss = 0.0
    if labelled is not None:
        with _nothing_to_enumerate():
            loss = loss + elbo.differentiable_loss(model, guide, *labelled, num_data=num_labelled)
    if unlabelled is not None:
        loss = loss + elbo.differentiable_loss(model, guide, unlabelled, num_data=num_unlabelled)
    return loss


@torch.no_grad()
def labelled_metrics(ssvae: SSVAE, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> tuple[float, float]:
    r"""Per point, on a labelled set: the ELBO of :math:`\log p(x, y)` (one draw of the guide's latents,
    without the classification term) and :math:`\log q(y|x)` (:meth:`pyrovae.SSVAE.log_predict`)."""
    elbo, total_elbo, total_log_q = TraceEnum_ELBO(max_plate_nesting=1), 0.0, 0.0
    for xb, yb in zip(x.split(batch_size), y.split(batch_size), strict=True):
        with _nothing_to_enumerate():
            total_elbo -= elbo.loss(ssvae.generative_model, ssvae.guide, xb, yb)
        total_log_q += float(ssvae.log_predict(xb).gather(-1, yb[:, None]).sum())
    return total_elbo / len(x), total_log_q / len(x)


@torch.no_grad()
def accuracy(classify: Callable[[torch.Tensor], torch.Tensor], split: Split, batch_size: int = 1000) -> float:
    """Share of ``split`` whose most probable class under ``classify(x)`` (class scores) is the label.

    :raises ValueError: if a label is not a class index of the scores."""
    if split.y is None or len(split) == 0:
        raise ValueError("accuracy needs a non-empty labelled split")
    correct = 0
    for x, y in zip(split.x.split(batch_size), split.y.split(batch_size), strict=True):
        scores = classify(x)
        check_labels(y, len(x), scores.shape[-1])  # a label no class has would count as wrong, silently
        correct += int((scores.argmax(-1) == y).sum())
    return correct / len(split)


def _cycle(num: int, batch_size: int, device: torch.device) -> Iterator[torch.Tensor]:
    """Endless minibatches of ``range(num)`` (``min(batch_size, num)`` rows each), reshuffled after every pass."""
    while True:
        yield from minibatches(num, min(batch_size, num), device, drop_last=True)


def _adam_step(optim: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    optim.zero_grad()
    loss.backward()
    optim.step()


def fit_semisupervised(
    ssvae: SSVAE,
    data: Dataset,
    config: SemiSupervisedConfig | None = None,
    *,
    out_dir: str | os.PathLike | None = None,
    resume: bool = False,
    overwrite: bool = False,
    extra: dict[str, Any] | None = None,
    features: nn.Module | None = None,
    progress: bool | None = None,
    verbose: bool = True,
) -> list[dict[str, float]]:
    """Train ``ssvae`` on ``data.train`` with ``config.num_labels`` of its labels (chosen by
    :func:`labelled_subset` with ``config.label_seed``) and the rest unlabelled.

    Each epoch appends to the history (and ``out_dir/metrics.jsonl``): ``epoch``, ``unlabelled_elbo``
    (nats per point over the epoch's steps), ``labelled_elbo`` and ``labelled_log_q`` (per point on the
    whole labelled set at the end of the epoch, the ELBO without the classification term:
    :func:`labelled_metrics`),
    ``valid_accuracy`` and ``test_accuracy`` of q(y|x) when those splits have labels, and ``seconds``; with
    ``lr_decay`` or ``lr_milestones``, the epoch's ``lr``.

    Training stops with :class:`~pyrovae.errors.TrainingDiverged` when an epoch's losses or weights are not finite
    or its ``unlabelled_elbo`` falls far below the untrained model's (:mod:`pyrovae.train.divergence`); that epoch is
    not saved.

    :param Dataset data: with labels on the training split (e.g. :func:`pyrovae.load_dataset`); labels of the
        validation and test splits, where given, are checked too.
    :param out_dir: the run folder (:mod:`pyrovae.train.rundir`): ``checkpoint.pt`` (atomic, every epoch), ``best.pt``
        (the epoch of the best ``valid_accuracy``) and ``metrics.jsonl``, locked for as long as this run trains.
    :param bool resume: continue from ``out_dir/checkpoint.pt`` (weights, optimizer, RNG, history) with the
        saved settings; ``config`` may differ from them in ``epochs`` (the total), ``device`` and the milestones of
        the epochs still to train.
    :param bool overwrite: a new run may replace one already in ``out_dir`` (otherwise that is an error).
    :param dict extra: plain values stored in the checkpoint under ``"extra"``.
    :param nn.Module features: a fixed map applied to every (binarized) minibatch before ``ssvae`` sees
        it, e.g. :class:`pyrovae.models.features.LatentFeatures` for M1+M2 (its training mode during the steps,
        evaluation mode for the accuracies); not trained, not saved.
    :returns: the metrics history.
    """
    config = config or SemiSupervisedConfig()
    if resume and out_dir is None:
        raise ValueError("resume=True needs the out_dir that holds the checkpoint")
    if out_dir is None:
        return _fit_semisupervised(ssvae, data, config, None, extra, features, progress, verbose)
    with RunFolder(out_dir, resume=resume, overwrite=overwrite) as run:
        return _fit_semisupervised(ssvae, data, config, run, extra, features, progress, verbose)


def _fit_semisupervised(
    ssvae: SSVAE,
    data: Dataset,
    config: SemiSupervisedConfig,
    run: RunFolder | None,
    extra: dict[str, Any] | None,
    features: nn.Module | None,
    progress: bool | None,
    verbose: bool,
) -> list[dict[str, float]]:
    """:func:`fit_semisupervised` in its run folder ``run`` (``None``: nothing written)."""
    if data.train.y is None:
        raise ValueError("semi-supervised training needs the labels of the training split (data.train.y)")
    if data.num_classes != ssvae.num_classes:
        raise ValueError(f"the data have {data.num_classes} classes but the SSVAE {ssvae.num_classes}")
    for name in ("valid", "test"):  # a label outside the classes would silently count as a wrong prediction
        split = getattr(data, name)
        if split.y is not None:
            check_labels(split.y, len(split), data.num_classes, name=f"data.{name}.y")
    device = resolve_device(config.device)
    ssvae.to(device)
    features = (features or nn.Identity()).to(device)
    dynamic = data.binarize == "dynamic"
    check_shift(data.image_shape, config.shift)

    def draw(x: torch.Tensor) -> torch.Tensor:
        return features(torch.bernoulli(x) if dynamic else x)

    def draw_shifted(x: torch.Tensor) -> torch.Tensor:
        return draw(random_shift(x, data.image_shape, config.shift) if config.shift else x)

    data = data.to(device)
    is_labelled = torch.zeros(len(data.train), dtype=torch.bool, device=device)
    is_labelled[labelled_subset(data.train.y, config.num_labels, data.num_classes, config.label_seed)] = True
    (x_l, y_l), x_u = split_batch(data.train.x, data.train.y, is_labelled)
    if x_u is None:
        raise ValueError(f"num_labels ({config.num_labels}) leaves no unlabelled training data")

    model, guide = ssvae.model, ssvae.guide  # bound once: Pyro's JIT keys its compiled functions by their ids
    if config.jit:  # the compiled step takes the parameters from Pyro's param store: they must be the SSVAE's
        check_owned(trained_params(model, guide, draw(x_l[:1]), y_l[:1]), [ssvae])
        elbo = JitTraceEnum_ELBO(max_plate_nesting=1, ignore_jit_warnings=True)
    else:
        elbo = TraceEnum_ELBO(max_plate_nesting=1)
    optim = adam(ssvae.parameters(), config.lr)
    joint = config.schedule == "joint"
    history: list[dict[str, float]] = []
    if run is not None and run.resume:
        state = load_resumable(run.path, map_location=device)
        with malformed(run.checkpoint):
            check_resumable(run.checkpoint, state["config"], config, RESUMABLE)
            check_trained_lrs(run.checkpoint, state["config"], config, state["epoch"])
            check_finite(state["weights"], run.checkpoint)
            try:
                ssvae.load_state_dict(state["weights"])
                optim.load_state_dict(state["optim"])
            except (RuntimeError, ValueError) as e:
                raise CheckpointError(f"{run.checkpoint} does not fit this SSVAE: {e}") from e
            set_rng_state(state["rng"])
            history = list(state["history"])
        initial, best = state.get("initial_elbo"), state.get("best", {})
        check_epochs(run.checkpoint, config.epochs, len(history), verbose)
    else:
        set_seed(config.seed)
        with torch.no_grad():  # the untrained model's ELBO, the reference of the divergence check
            rows = x_u[: config.eval_batch_size]
            initial = -float(TraceEnum_ELBO(max_plate_nesting=1).loss(model, guide, draw(rows))) / len(rows)
        best = {}
    if run is not None:
        run.start(history)

    unlabelled_steps = num_batches(len(x_u), config.batch_size, drop_last=config.jit)
    if unlabelled_steps == 0:
        raise ValueError(f"batch_size ({config.batch_size}) exceeds the {len(x_u)} unlabelled points and jit drops "
                         "incomplete batches: lower batch_size")  # fmt: skip
    if config.labelled_every > unlabelled_steps:
        raise ValueError(
            f"labelled_every ({config.labelled_every}) exceeds the {unlabelled_steps} unlabelled steps of an epoch: "
            "no labelled step would be taken"
        )
    bar = tqdm(total=config.epochs * unlabelled_steps, initial=len(history) * unlabelled_steps, unit="step",
               desc="training", disable=None if progress is None else not progress)  # fmt: skip
    for epoch in range(len(history), config.epochs):
        start, labelled = time.perf_counter(), _cycle(len(x_l), config.labelled_batch_size, device)
        lr = set_lr(optim, config.lr_at(epoch))
        unlabelled_elbo, unlabelled_rows = torch.zeros((), device=device), 0
        for step, idx in enumerate(minibatches(len(x_u), config.batch_size, device, drop_last=config.jit), 1):
            view = draw(x_u[idx])
            loss_u = semisupervised_loss(model, guide, elbo, None, view)  # sums over the minibatch
            unlabelled_elbo -= loss_u.detach()
            if config.consistency:
                loss_u = loss_u + config.consistency * consistency_loss(ssvae, view, draw_shifted(x_u[idx]))
            if not joint:
                _adam_step(optim, loss_u)
            unlabelled_rows += len(idx)
            if step % config.labelled_every == 0:
                lab = next(labelled)
                loss_l = semisupervised_loss(model, guide, elbo, (draw_shifted(x_l[lab]), y_l[lab]), None)
                if joint:  # one step on both minibatch sums, each scaled to its whole set as num_data would scale it
                    _adam_step(optim, loss_u * (len(x_u) / len(idx)) + loss_l * (len(x_l) / len(lab)))
                else:
                    _adam_step(optim, loss_l)
            bar.update()
        row: dict[str, float] = {"epoch": epoch + 1, "unlabelled_elbo": float(unlabelled_elbo) / unlabelled_rows}
        reason = divergence(-row["unlabelled_elbo"], ssvae.named_parameters(), "unlabelled_elbo",
                            row["unlabelled_elbo"], initial, config.divergence)
        if reason is not None:
            bar.close()
            raise diverged(epoch + 1, reason, lr, run, best.get("epoch", 0))
        row["labelled_elbo"], row["labelled_log_q"] = labelled_metrics(ssvae, draw(x_l), y_l, config.eval_batch_size)
        if config.lr_decay != 1 or config.lr_milestones:
            row["lr"] = lr
        ssvae.eval()
        features.eval()
        for name in ("valid", "test"):
            split = getattr(data, name)
            if split.y is not None and len(split):
                row[f"{name}_accuracy"] = accuracy(lambda x: ssvae.predict(features(x)), split, config.eval_batch_size)
        ssvae.train()
        features.train()
        row["seconds"] = time.perf_counter() - start
        history.append(row)
        if verbose:
            bar.write(", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()))
        improved = "valid_accuracy" in row and row["valid_accuracy"] > best.get("valid_accuracy", -math.inf)
        if improved:
            best = {"epoch": epoch + 1, "valid_accuracy": row["valid_accuracy"]}
        if run is not None:
            run.save(row, {
                "epoch": epoch + 1, "weights": ssvae.state_dict(), "optim": optim.state_dict(), "rng": rng_state(),
                "history": history, "config": asdict(config), "extra": extra or {}, "initial_elbo": initial,
                "best": best,
            }, best=improved)  # fmt: skip
    bar.close()
    return history


@torch.no_grad()
def analogies(ssvae: SSVAE, x: torch.Tensor, features: nn.Module | None = None) -> torch.Tensor:
    """Each row of ``x`` with its style kept and the label swept over all classes, ``(batch, C, x_dim)``
    means in data space; with M1 ``features``, drawn through the M1 decoder
    (:meth:`pyrovae.models.features.LatentFeatures.decode`)."""
    if features is None:
        return ssvae.analogies(x)
    return features.decode(ssvae.analogies(features.eval()(x)))
