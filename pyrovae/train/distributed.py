r"""Training on several processes with ``torch.distributed`` and ``DistributedDataParallel``.

:func:`pyrovae.fit` and :func:`pyrovae.fit_semisupervised` run data-parallel when a process group is initialised
(e.g. under ``torchrun``, by :func:`init_distributed`). Every rank draws the same permutation of the training set
each epoch (a generator seeded by the run's seed and the epoch) and takes its contiguous share of each global
minibatch of ``batch_size`` rows (which must divide by the number of ranks; the last, incomplete minibatch is
dropped). Rank :math:`r` computes the differentiable loss of its ``B / W`` rows with ``num_data=N``, so the data
plate scales it by :math:`N / (B/W)`, and ``DistributedDataParallel`` averages the gradients over the :math:`W`
ranks:

.. math:: \frac{1}{W} \sum_{r=1}^W \nabla \Big[\frac{N}{B/W} \sum_{n \in \text{shard}_r} \ell_n\Big]
    = \nabla \Big[\frac{N}{B} \sum_{n \in \text{batch}} \ell_n\Big],

the gradient a single process computes on the whole global batch. Losses that are minibatch sums, not scaled by a
data plate (M2's ``"alternate"`` schedule), are multiplied by :math:`W` on each rank for the same reason; the
labelled minibatches of M2 are shared out the same way (:mod:`pyrovae.train.semisupervised`). The loss goes through
a small module, :class:`LossModule`, whose parameters are those of the modules owning the model and guide (the same
tensors that ``pyro.module`` puts in the param store), wrapped by :func:`data_parallel_loss`, and the step is
:class:`pyrovae.train.step.AdamStep`'s, the same as in a single process. DDP broadcasts rank 0's parameters when it
wraps the module, so every rank starts, and stays, identical. Each rank draws its own noise (seed + rank). Rank 0
alone evaluates, prints, writes metrics and checkpoints (with every rank's RNG state, so that a resumed run
continues exactly).

Backends: NCCL on GPUs (one device per rank, ``LOCAL_RANK``), gloo on CPUs.

**References**

[1] PyTorch Distributed: Experiences on Accelerating Data Parallel Training, S. Li et al., VLDB 2020.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from pyrovae.device import device_of


def is_distributed() -> bool:
    """Whether a ``torch.distributed`` process group is initialised (then :func:`pyrovae.fit` is data-parallel)."""
    return dist.is_available() and dist.is_initialized()


def rank_and_world() -> tuple[int, int]:
    """``(rank, world size)`` of this process; ``(0, 1)`` without a process group."""
    return (dist.get_rank(), dist.get_world_size()) if is_distributed() else (0, 1)


def init_distributed(device: str = "auto") -> str:
    """Join the process group described by ``torchrun``'s environment (``RANK``, ``WORLD_SIZE``,
    ``MASTER_ADDR``, ``MASTER_PORT``, ``LOCAL_RANK``): NCCL when the run uses CUDA, gloo otherwise. On CUDA the
    process takes GPU ``LOCAL_RANK``.

    :returns: the device string this rank should train on.
    :raises RuntimeError: when the environment does not come from ``torchrun`` (or an equivalent launcher).
    """
    missing = [name for name in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if name not in os.environ]
    if missing:
        raise RuntimeError(
            f"--distributed needs the environment torchrun sets ({', '.join(missing)} missing): launch with "
            "torchrun --nproc_per_node=N -m pyrovae train --distributed ..."
        )
    use_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if use_cuda:
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
        torch.cuda.set_device(local_rank)
        device = f"cuda:{local_rank}"
    if not is_distributed():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return device


class LossModule(nn.Module):
    """``loss(*args, **kwargs)`` as a module whose parameters are those of ``owners`` (e.g. the VAE that
    ``vae.model`` and ``vae.guide`` belong to), so that ``DistributedDataParallel`` can wrap it; ``loss`` is e.g.
    ``functools.partial(elbo.differentiable_loss, vae.model, vae.guide)``. Like Pyro's ``ELBOModule``, for any loss
    of bound methods."""

    def __init__(self, owners: Sequence[nn.Module], loss: Callable[..., torch.Tensor]) -> None:
        super().__init__()
        self.owners = nn.ModuleList(owners)
        self.loss = loss

    def forward(self, *args, **kwargs) -> torch.Tensor:
        return self.loss(*args, **kwargs)


def data_parallel_loss(
    owners: Sequence[nn.Module], params: dict[str, torch.Tensor], loss: Callable[..., torch.Tensor]
) -> DistributedDataParallel:
    """The :class:`LossModule` of ``loss`` wrapped in ``DistributedDataParallel``, for
    :class:`pyrovae.train.step.AdamStep`: its backward averages the gradients over the ranks.

    :param owners: the modules owning the model and guide.
    :param dict params: every trained parameter (:func:`pyrovae.train.step.trained_params`); each must belong to
        ``owners``, or its gradient would not be averaged and the ranks would drift apart.
    :raises ValueError: naming the parameters outside ``owners``.
    """
    module = LossModule(owners, loss)
    owned = {id(p) for p in module.parameters()}
    outside = [name for name, p in params.items() if id(p) not in owned]
    if outside:
        raise ValueError(
            f"distributed training needs every parameter inside the nn.Modules whose methods are the model and "
            f"guide (as vae.model and vae.guide are), so that DistributedDataParallel averages its gradient; "
            f"{outside[:5]} are not"
        )
    device = device_of(module)
    return DistributedDataParallel(module, device_ids=[device] if device.type == "cuda" else None)


def mean_over_ranks(value: torch.Tensor) -> torch.Tensor:
    """The average of ``value`` over all ranks (a new tensor; an all-reduce)."""
    total = value.detach().clone()
    dist.all_reduce(total)
    return total / dist.get_world_size()


def gather_rng_states(state: dict) -> list[dict]:
    """Every rank's RNG ``state`` (``pyrovae.checkpoint.rng_state()``), in rank order, on every rank."""
    states: list = [None] * dist.get_world_size()
    dist.all_gather_object(states, state)
    return states
