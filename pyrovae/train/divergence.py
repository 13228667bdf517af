r"""When training has diverged, and what to tell the user.

A run has diverged at the end of an epoch when

* its training loss or any parameter is not finite (NaN or infinite), or
* the ELBO per data point it monitors (on the validation split, or the training minibatches when there is none)
  has fallen far below the **untrained** model's, :math:`\mathcal{L}_0`:

  .. math:: \mathcal{L}_e < \mathcal{L}_0 - \kappa \max(1, |\mathcal{L}_0|),

  with :math:`\kappa` = ``TrainConfig.divergence`` (default 10). Training by stochastic gradient ascent on the ELBO
  should never do much worse than where it started; a run whose learning rate is too high does (on the 8x8 digits,
  ``--lr 100`` gives ELBOs of :math:`-10^{10}` and worse from the first epoch, against -44 untrained and -28 after
  training), while its parameters stay finite and its loss stays a number.

The loop then stops without saving that epoch, so the last checkpoint on disk is the last good epoch, and raises
the :class:`~pyrovae.errors.TrainingDiverged` of :func:`diverged`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING

import torch

from pyrovae.data.validation import nonfinite
from pyrovae.errors import TrainingDiverged

if TYPE_CHECKING:
    from pyrovae.train.rundir import RunFolder

#: the default :math:`\kappa` (``TrainConfig.divergence``)
DIVERGENCE = 10.0


def elbo_floor(initial: float, factor: float) -> float:
    r"""The lowest ELBO per data point a healthy run may report: :math:`\mathcal{L}_0 - \kappa \max(1,
    |\mathcal{L}_0|)`; ``-inf`` for an infinite ``factor`` (the check off)."""
    return initial - factor * max(1.0, abs(initial))


def check_factor(factor: float) -> None:
    """Raise a ``ValueError`` unless ``factor`` is a positive number (``math.inf`` turns the ELBO check off)."""
    if not factor > 0:
        raise ValueError(f"divergence must be a positive factor (math.inf to turn the check off), got {factor}")


def not_finite(loss: float, params: Iterable[tuple[str, torch.Tensor]]) -> str | None:
    """The first part of the check, cheap enough to run before evaluating: why the training loss or the
    parameters ``(name, tensor)`` are not finite, or ``None``."""
    bad = nonfinite(params)
    if bad:
        return f"{len(bad)} parameters hold NaN or infinity, e.g. {bad[:3]}"
    if not math.isfinite(loss):
        return f"the training loss is {loss}"
    return None


def too_low(metric: str, value: float, initial: float | None, factor: float) -> str | None:
    """The second part of the check: why the monitored ELBO ``value`` (named ``metric``) is below the floor
    (:func:`elbo_floor`) of the untrained model's ``initial`` (``None``, as in checkpoints of older versions: no
    check), or ``None``."""
    floor = -math.inf if initial is None else elbo_floor(initial, factor)
    if not value >= floor:
        return (f"{metric} {value:.4g} nats per point against {initial:.4g} for the untrained model, below the "
                f"floor {floor:.4g} of divergence factor {factor:g}")  # fmt: skip
    return None


def diverged(epoch: int, reason: str, lr: float, run: RunFolder | None, best_epoch: int) -> TrainingDiverged:
    """The error to raise when epoch ``epoch`` (counted from 1) diverged for ``reason``: what was kept in the run
    folder ``run`` (the checkpoint of the previous epoch, and ``best.pt`` of epoch ``best_epoch``), and what to do."""
    if run is None:
        kept = "nothing was saved (no out_dir)"
    elif epoch == 1:
        kept = "no epoch was good, so no checkpoint was written"
    else:
        kept = f"the last good checkpoint is kept at {run.checkpoint} (epoch {epoch - 1})"
        if best_epoch:
            kept += f", the best at {run.best} (epoch {best_epoch})"
    return TrainingDiverged(
        f"training diverged at epoch {epoch} ({reason}); {kept}. Lower the learning rate (lr={lr:g}), or check the "
        "model and the data"
    )
