r"""Semi-supervised training of :class:`pyrovae.SSVAE` (Kingma et al. 2014) with one SVI objective.

The objective is

.. math:: \mathcal{J} = \sum_{(x, y) \in \text{labelled}} [\mathcal{L}(x, y) + \alpha \log q(y|x)]
    + \sum_{x \in \text{unlabelled}} \mathcal{U}(x),

with :math:`\mathcal{U}` summing the label out by parallel enumeration (``TraceEnum_ELBO``). Labelled minibatches
have no label to sum out and are stepped with ``Trace_ELBO``, which is ``TraceEnum_ELBO``'s estimator there with less
Python per step (with ``jit``, both go through ``JitTraceEnum_ELBO``).
With ``consistency`` (:mod:`pyrovae.train.consistency`) each unlabelled minibatch's term also loses
:math:`\beta \sum_x \lVert q(\cdot|v) - q(\cdot|v') \rVert^2` over two random views of its images.

An epoch is one pass over the unlabelled set in minibatches of ``batch_size``; labelled minibatches of
``labelled_batch_size`` rows cycle through the labelled set (reshuffled after each pass). Two schedules:

* ``"alternate"`` (default): **separate Adam steps**, a labelled one after every ``labelled_every``-th
  unlabelled one, each step's loss the sum over its minibatch (the data plate is not rescaled), as in
  Pyro's SS-VAE example. The labels are *oversampled*: with 100 labels each one is visited hundreds of
  times per epoch, and a labelled step weighs about as much as an unlabelled one. Fast to a good
  classifier (the docs' results page has the figures).
* ``"joint"``: **one Adam step per unlabelled minibatch** on the unbiased minibatch estimate of
  :math:`-\mathcal{J}`, the unlabelled minibatch's sum scaled to the unlabelled set and a labelled
  minibatch's to the labelled set (set size / minibatch size, as the data plate's ``num_data`` would
  scale them), so every point counts once per epoch, as in
  Kingma et al.'s own training, with their :math:`\alpha = 0.1 N / N_l` per label (:func:`kingma_alpha`).
  Slow: the unlabelled term dominates and the labels steer it gently, far more slowly than ``"alternate"``
  (the docs' results page compares them); published runs of this recipe take thousands of epochs.

Labelled and unlabelled minibatches go through separate calls of the model and guide, since each is scaled to
its own set (``num_labelled``, ``num_unlabelled``) and ``"alternate"`` steps on them separately;
:func:`split_batch` turns a mixed batch with a mask into the two and :func:`semisupervised_loss` adds their losses.
(The model and guide also take a partially labelled batch in one call, ``y`` -1 where the label is missing, all its
rows scaled alike: :mod:`pyrovae.models.ssvae`.)

Training runs in the one loop (:mod:`pyrovae.train.loop`): resume, run folder, divergence stop and data-parallel
training under ``torchrun`` are :func:`pyrovae.fit`'s. With :math:`W` ranks each takes its share of every unlabelled
and labelled minibatch and multiplies its minibatch sums by :math:`W` (:mod:`pyrovae.train.distributed`).

**References**

[1] Semi-Supervised Learning with Deep Generative Models, D. P. Kingma, D. J. Rezende, S. Mohamed and
    M. Welling, NeurIPS 2014.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from pyro.infer import ELBO, Trace_ELBO, TraceEnum_ELBO
from torch import nn

from pyrovae.checkpoint import CheckpointError, check_resumable
from pyrovae.data.datasets import Dataset, Split
from pyrovae.data.placement import place
from pyrovae.data.validation import check_labels
from pyrovae.device import resolve_device
from pyrovae.infer.jit import JitTraceEnum_ELBO
from pyrovae.models.ssvae import SSVAE
from pyrovae.train.augment import check_shift, random_shift
from pyrovae.train.consistency import consistency_loss
from pyrovae.train.distributed import data_parallel_loss, rank_and_world
from pyrovae.train.loop import LoopConfig, Task, epoch_generator, minibatches, num_batches, run_training, with_settings
from pyrovae.train.step import AdamStep, check_lr, owned_params, scheduled_lr

#: the training schedules of :func:`fit_semisupervised`
SCHEDULES = ("alternate", "joint")


@dataclass(kw_only=True)
class SemiSupervisedConfig(LoopConfig):
    r"""Settings of :func:`fit_semisupervised`, validated on construction: those of
    :class:`~pyrovae.train.loop.LoopConfig` (``epochs``, ``batch_size``: unlabelled rows per step, ``lr``,
    ``lr_decay``, ``seed``, ``device``, ``eval_batch_size``, ``validate``, ``divergence``: judged on
    ``unlabelled_elbo``, ``device_data_limit``) and

    :ivar int num_labels: labelled training points, the same number from every class.
    :ivar int label_seed: seed of the choice of labelled points (the split is part of the experiment).
    :ivar int labelled_batch_size: rows per labelled step (at most ``num_labels``).
    :ivar int labelled_every: a labelled step after every ``labelled_every`` unlabelled steps (``"alternate"``
        only; ``"joint"`` needs 1).
    :ivar str schedule: ``"alternate"`` (separate labelled and unlabelled steps, minibatch sums) or
        ``"joint"`` (one step on both minibatches, each scaled to its set); see the module's docstring.
    :ivar bool jit: compile the steps with ``JitTraceEnum_ELBO`` (one compiled function for labelled and one for
        unlabelled minibatches; the last, incomplete unlabelled minibatch of each epoch is dropped, since a
        compiled step has fixed shapes).
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
        (:mod:`pyrovae.train.consistency`): the squared distance between q(y|·) on two random views of each
        unlabelled image (the second one translated by up to ``shift`` pixels), subtracted from the ELBO; 0
        (default) is plain M2. The views differ only through the random parts of the input pipeline (dynamic
        binarization, a sampling feature map, ``shift``): on grey levels without them the term is 0.
    """

    RESUMABLE: ClassVar[tuple[str, ...]] = (*LoopConfig.RESUMABLE, "lr_milestones", "lr_gamma")

    num_labels: int = 100
    labelled_batch_size: int = 128
    labelled_every: int = 1
    label_seed: int = 0
    jit: bool = False
    schedule: str = "alternate"
    lr_milestones: tuple[int, ...] = ()
    lr_gamma: float = 0.1
    shift: int = 0
    consistency: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("num_labels", "labelled_batch_size", "labelled_every"):
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

    @property
    def schedules_lr(self) -> bool:
        return self.lr_decay != 1 or bool(self.lr_milestones)

    def lr_at(self, epoch: int) -> float:
        """The learning rate of epoch ``epoch`` (counted from 0): :func:`pyrovae.train.step.scheduled_lr`."""
        return scheduled_lr(self.lr, self.lr_decay, epoch, self.lr_milestones, self.lr_gamma)

    def check_resume(self, path: Path, saved: dict[str, Any], done: int) -> None:
        """As :meth:`LoopConfig.check_resume`; new milestones may only change the epochs still to train.

        :raises CheckpointError: naming the setting that changed, or the first epoch whose rate would change."""
        check_resumable(path, saved, self, self.RESUMABLE)
        old = SemiSupervisedConfig(**{**saved, "device": self.device})
        for epoch in range(done):
            before, after = old.lr_at(epoch), self.lr_at(epoch)
            if before != after:
                raise CheckpointError(
                    f"{path} trained epoch {epoch + 1} with learning rate {before}, and lr_milestones "
                    f"{list(self.lr_milestones)} with lr_gamma {self.lr_gamma} would give it {after}: on resume, "
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


def given_labels(y: torch.Tensor, num_labels: int, num_classes: int, seed: int = 0) -> torch.Tensor:
    """The boolean mask of the training rows whose label semi-supervised training uses: with every label of ``y``
    known, a class-balanced subset of ``num_labels`` (:func:`labelled_subset`); with some missing (``-1``), exactly
    the rows whose label is given, which must then be ``num_labels`` rows.

    :raises ValueError: for labels out of range, or a ``num_labels`` other than the number of labels given."""
    check_labels(y, len(y), num_classes, name="data.train.y", missing=True)
    given = y >= 0
    if bool(given.all()):
        given = torch.zeros_like(given)
        given[labelled_subset(y, num_labels, num_classes, seed)] = True
    elif int(given.sum()) != num_labels:
        raise ValueError(
            f"data.train.y gives {int(given.sum())} labels (the others are -1, missing) and num_labels is {num_labels}:"
            f" the labelled points are those whose label is given; set num_labels={int(given.sum())}"
        )
    return given


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


def step_elbos(jit: bool = False) -> tuple[ELBO, ELBO]:
    """The ELBOs of :func:`fit_semisupervised`'s steps, ``(unlabelled, labelled)``: ``TraceEnum_ELBO``, which sums
    the label out, and ``Trace_ELBO`` for labelled minibatches, which have no discrete latent to enumerate: there it
    is ``TraceEnum_ELBO``'s estimator (the same loss on the same draws) without the enumeration machinery, 2.4 ms of
    Python less per step (``benchmarks/step_time.py``). With ``jit``, ``JitTraceEnum_ELBO`` for both (one compiled
    function each); compiled, the two cost the same."""
    if jit:
        elbo = JitTraceEnum_ELBO(max_plate_nesting=1, ignore_jit_warnings=True)
        return elbo, elbo
    return TraceEnum_ELBO(max_plate_nesting=1), Trace_ELBO(max_plate_nesting=1)


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
        correct += int((scores.argmax(-1) == y.to(scores.device)).sum())
    return correct / len(split)


class SemiSupervisedTask(Task):
    """M2's objective as :func:`fit_semisupervised` trains it (a :class:`~pyrovae.train.loop.Task`): the unlabelled
    minibatches of an epoch, with labelled ones after every ``labelled_every``-th (``"alternate"``: separate steps)
    or in the same step (``"joint"``)."""

    train_key, monitor, best_key = "unlabelled_elbo", "unlabelled_elbo", "valid_accuracy"

    def __init__(self, ssvae: SSVAE, data: Dataset, config: SemiSupervisedConfig, features: nn.Module | None) -> None:
        if data.train.y is None:
            raise ValueError("semi-supervised training needs the labels of the training split (data.train.y)")
        if data.num_classes != ssvae.num_classes:
            raise ValueError(f"the data have {data.num_classes} classes but the SSVAE {ssvae.num_classes}")
        for name in ("valid", "test"):  # a label outside the classes would silently count as a wrong prediction
            split = getattr(data, name)
            if split.y is not None:
                check_labels(split.y, len(split), data.num_classes, name=f"data.{name}.y")
        check_shift(data.image_shape, config.shift)
        self.config, self.device = config, resolve_device(config.device)
        self.ssvae, self.features = ssvae.to(self.device), (features or nn.Identity()).to(self.device)
        self.data = place(data, self.device, config.device_data_limit)
        self.rows_device = self.data.train.x.device  # where minibatch indices index the training rows
        self.rank, self.world = rank_and_world()
        is_labelled = given_labels(self.data.train.y, config.num_labels, data.num_classes, config.label_seed)
        #: indices of the labelled and unlabelled training rows
        self.labelled, self.unlabelled = is_labelled.nonzero()[:, 0], (~is_labelled).nonzero()[:, 0]
        if not len(self.unlabelled):
            raise ValueError(f"num_labels ({config.num_labels}) leaves no unlabelled training data")
        self.drop_last = config.jit or self.world > 1
        self.steps_per_epoch = num_batches(len(self.unlabelled), config.batch_size, drop_last=self.drop_last)
        self.labelled_size = min(config.labelled_batch_size, len(self.labelled))
        if self.world > 1 and (config.jit or config.batch_size % self.world or self.labelled_size < self.world):
            raise ValueError(
                f"distributed training over {self.world} ranks needs a batch_size divisible by {self.world} (got "
                f"{config.batch_size}), labelled minibatches of at least {self.world} rows (got {self.labelled_size})"
                " and no JIT"
            )
        if self.steps_per_epoch == 0:
            raise ValueError(f"batch_size ({config.batch_size}) exceeds the {len(self.unlabelled)} unlabelled points "
                             "and incomplete batches are dropped (JIT or distributed): lower batch_size")  # fmt: skip
        if config.labelled_every > self.steps_per_epoch:
            raise ValueError(
                f"labelled_every ({config.labelled_every}) exceeds the {self.steps_per_epoch} unlabelled steps of an "
                "epoch: no labelled step would be taken"
            )
        self.model, self.guide = ssvae.model, ssvae.guide  # bound once: Pyro's JIT keys its compiled functions by ids
        self.elbo, self.labelled_elbo = step_elbos(config.jit)
        example = self.labelled[:1]
        params = owned_params(self.model, self.guide, [ssvae], self.view(example), self.labels(example))
        loss = data_parallel_loss([ssvae], params, self.loss) if self.world > 1 else self.loss
        self.stepper = AdamStep(params, loss, config.lr)
        self.unlabelled_loss = torch.zeros((), device=self.device)

    def view(self, rows: torch.Tensor, shift: bool = False) -> torch.Tensor:
        """Training rows ``rows`` as the SSVAE sees them: binarized (:meth:`~pyrovae.data.Dataset.train_batch`),
        with ``shift`` translated by up to ``config.shift`` pixels, through the feature map."""
        x = self.data.train_batch(rows)
        if shift and self.config.shift:
            x = random_shift(x, self.data.image_shape, self.config.shift)
        return self.features(x)

    def labels(self, rows: torch.Tensor) -> torch.Tensor:
        """The labels of the training rows ``rows`` on the training device."""
        return self.data.train.y[rows].to(self.device, non_blocking=True)

    def loss(
        self, unlabelled: torch.Tensor | None, labelled: torch.Tensor | None, scale_u: float, scale_l: float
    ) -> torch.Tensor:
        """The differentiable loss of one step on the training rows ``unlabelled`` and ``labelled`` (either may be
        ``None``): each minibatch's sum, the unlabelled one with its consistency term, times its scale. Keeps the
        unlabelled sum, without the consistency term, in ``unlabelled_loss``."""
        terms = []
        if unlabelled is not None:
            view = self.view(unlabelled)
            loss_u = semisupervised_loss(self.model, self.guide, self.elbo, None, view)
            self.unlabelled_loss = loss_u.detach()
            if self.config.consistency:
                loss_u = loss_u + self.config.consistency * consistency_loss(
                    self.ssvae, view, self.view(unlabelled, shift=True)
                )
            terms.append(scale_u * loss_u)
        if labelled is not None:
            batch = (self.view(labelled, shift=True), self.labels(labelled))
            terms.append(scale_l * semisupervised_loss(self.model, self.guide, self.labelled_elbo, batch, None))
        return sum(terms)

    def scales(self, unlabelled: int, labelled: int) -> tuple[float, float]:
        """The factors of this rank's unlabelled and labelled minibatch sums in a step on global minibatches of
        ``unlabelled`` and ``labelled`` rows: the number of ranks :math:`W` (``"alternate"``), times the set's size
        over the minibatch's (``"joint"``: each sum scaled to its whole set, as ``num_data`` would scale it), so that
        the gradient averaged over the ranks is the single-process one."""
        if self.config.schedule == "alternate":
            return float(self.world), float(self.world)
        return (self.world * len(self.unlabelled) / unlabelled,
                self.world * len(self.labelled) / labelled if labelled else 0.0)  # fmt: skip

    def initial_elbo(self) -> float:
        rows = self.unlabelled[: self.config.eval_batch_size]
        return -float(TraceEnum_ELBO(max_plate_nesting=1).loss(self.model, self.guide, self.view(rows))) / len(rows)

    def train_epoch(self, epoch: int, tick: Callable[[torch.Tensor, int], None]) -> tuple[torch.Tensor, int]:
        config, world, rank = self.config, self.world, self.rank
        generator = epoch_generator(config.seed, epoch)  # the same minibatches on every rank
        batches = minibatches(len(self.unlabelled), config.batch_size, self.rows_device, generator, self.drop_last)
        labelled = _cycle(len(self.labelled), self.labelled_size, self.rows_device, generator)
        total, seen = torch.zeros((), device=self.device), 0
        for step, idx in enumerate(batches, 1):
            rows = self.unlabelled[idx.tensor_split(world)[rank]]
            lab = next(labelled) if step % config.labelled_every == 0 else None
            lab_rows = None if lab is None else self.labelled[lab.tensor_split(world)[rank]]
            scale_u, scale_l = self.scales(len(idx), len(lab) if lab is not None else 0)
            if config.schedule == "joint":
                self.stepper(rows, lab_rows, scale_u, scale_l)
            else:
                self.stepper(rows, None, scale_u, 0.0)
                if lab_rows is not None:
                    self.stepper(None, lab_rows, 0.0, scale_l)
            total, seen = total + world * self.unlabelled_loss, seen + len(idx)
            tick(world * self.unlabelled_loss, len(idx))
        return total, seen

    def evaluate(self, row: dict[str, Any]) -> None:
        eval_batch_size = self.config.eval_batch_size
        row["labelled_elbo"], row["labelled_log_q"] = labelled_metrics(
            self.ssvae, self.view(self.labelled), self.labels(self.labelled), eval_batch_size
        )
        self.ssvae.eval()
        self.features.eval()
        for name in ("valid", "test"):
            split = getattr(self.data, name)
            if split.y is not None and len(split):
                row[f"{name}_accuracy"] = accuracy(lambda x: self.ssvae.predict(self.features(x.to(self.device))),
                                                   split, eval_batch_size)  # fmt: skip
        self.ssvae.train()
        self.features.train()

    def restore(self, state: dict[str, Any], path: Path) -> None:
        if "params" not in state and "weights" in state:  # written before the one loop (0.1): weights by module
            state = {**state, **self._from_state_dicts(state["weights"], state["optim"])}
        super().restore(state, path)

    def _from_state_dicts(self, weights: dict[str, torch.Tensor], optim: dict[str, Any]) -> dict[str, Any]:
        """The ``"params"`` and ``"optim"`` of a checkpoint from the SSVAE's ``state_dict`` and the state of a
        ``torch.optim.Adam`` over ``ssvae.parameters()``, as pyrovae 0.1 saved them."""
        by_id = {id(p): name for name, p in self.ssvae.named_parameters()}
        order = {id(p): i for i, p in enumerate(self.stepper.params.values())}
        old_order = [order[id(p)] for p in self.ssvae.parameters()]
        group = {**optim["param_groups"][0], "params": list(range(len(order)))}
        adam = {"state": {old_order[i]: s for i, s in optim["state"].items()}, "param_groups": [group]}
        params = {name: weights[by_id[id(p)]] for name, p in self.stepper.params.items()}
        return {"params": params, "optim": {"adam": adam, "params": list(self.stepper.params)}}


def _cycle(num: int, batch_size: int, device: torch.device, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Endless minibatches of ``range(num)`` (``batch_size`` rows each), reshuffled after every pass."""
    while True:
        yield from minibatches(num, batch_size, device, generator, drop_last=True)


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
    callback: Callable[[dict[str, float]], None] | None = None,
) -> list[dict[str, float]]:
    """Train ``ssvae`` on ``data.train`` with ``config.num_labels`` of its labels (chosen by
    :func:`labelled_subset` with ``config.label_seed``; or, when some labels are ``-1``, missing, those given) and the
    rest unlabelled, in the one training loop (:mod:`pyrovae.train.loop`).

    Each epoch appends to the history (and ``out_dir/metrics.jsonl``): ``epoch``, ``unlabelled_elbo``
    (nats per point over the epoch's steps), ``labelled_elbo`` and ``labelled_log_q`` (per point on the
    whole labelled set at the end of the epoch, the ELBO without the classification term:
    :func:`labelled_metrics`), ``valid_accuracy`` and ``test_accuracy`` of q(y|x) when those splits have labels,
    and ``seconds``; with ``lr_decay`` or ``lr_milestones``, the epoch's ``lr``.

    Training stops with :class:`~pyrovae.errors.TrainingDiverged` when an epoch's losses or weights are not finite
    or its ``unlabelled_elbo`` falls far below the untrained model's (:mod:`pyrovae.train.divergence`); that epoch is
    not saved. Inside a ``torch.distributed`` process group (``torchrun``), it trains data-parallel as
    :func:`pyrovae.fit` does (:mod:`pyrovae.train.distributed`; no JIT).

    :param Dataset data: with labels on the training split (e.g. :func:`pyrovae.load_dataset`), ``-1`` where a label
        is missing (:func:`given_labels`); labels of the validation and test splits, where given, are checked too.
    :param out_dir: the run folder (:mod:`pyrovae.train.rundir`): ``checkpoint.pt`` (atomic, every epoch), ``best.pt``
        (the epoch of the best ``valid_accuracy``) and ``metrics.jsonl``, locked for as long as this run trains.
    :param bool resume: continue from ``out_dir/checkpoint.pt`` (weights, optimizer, RNG, history) with the
        saved settings; ``config`` may differ from them in ``epochs`` (the total), ``device``, ``divergence`` and the
        milestones of the epochs still to train.
    :param bool overwrite: a new run may replace one already in ``out_dir`` (otherwise that is an error).
    :param dict extra: plain values stored in the checkpoint under ``"extra"``; ``ssvae.config`` is added under
        ``"ssvae"`` unless given (see :func:`pyrovae.fit`).
    :param nn.Module features: a fixed map applied to every (binarized) minibatch before ``ssvae`` sees
        it, e.g. :class:`pyrovae.models.features.LatentFeatures` for M1+M2 (its training mode during the steps,
        evaluation mode for the accuracies); not trained, not saved.
    :param bool progress: show a tqdm progress bar (default: only when stderr is a terminal).
    :param bool verbose: print one summary line per epoch.
    :param callback: called with a copy of each epoch's row, as by :func:`pyrovae.fit`.
    :returns: the metrics history.
    """
    config = config or SemiSupervisedConfig()
    task = SemiSupervisedTask(ssvae, data, config, features)
    if out_dir is not None:
        extra = with_settings(extra, [ssvae], "ssvae")
    return run_training(task, config, out_dir, resume=resume, overwrite=overwrite, extra=extra, progress=progress,
                        verbose=verbose, callback=callback)  # fmt: skip


@torch.no_grad()
def analogies(ssvae: SSVAE, x: torch.Tensor, features: nn.Module | None = None) -> torch.Tensor:
    """Each row of ``x`` with its style kept and the label swept over all classes, ``(batch, C, x_dim)``
    means in data space; with M1 ``features``, drawn through the M1 decoder
    (:meth:`pyrovae.models.features.LatentFeatures.decode`)."""
    if features is None:
        return ssvae.analogies(x)
    return features.decode(ssvae.analogies(features.eval()(x)))
