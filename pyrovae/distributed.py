r"""Training on several processes with ``torch.distributed`` and ``DistributedDataParallel``.

:func:`pyrovae.fit` runs data-parallel when a process group is initialised (e.g. under ``torchrun``, by
:func:`init_distributed`). Every rank draws the same permutation of the training set each epoch (a generator
seeded by the run's seed and the epoch) and takes its contiguous share of each global minibatch of
``batch_size`` rows (which must divide by the number of ranks; the last, incomplete minibatch is dropped).
Rank :math:`r` computes the differentiable loss of its ``B / W`` rows with ``num_data=N``, so the data plate
scales it by :math:`N / (B/W)`, and ``DistributedDataParallel`` averages the gradients over the :math:`W`
ranks:

.. math:: \frac{1}{W} \sum_{r=1}^W \nabla \Big[\frac{N}{B/W} \sum_{n \in \text{shard}_r} \ell_n\Big]
    = \nabla \Big[\frac{N}{B} \sum_{n \in \text{batch}} \ell_n\Big],

the gradient a single process computes on the whole global batch. The loss goes through a small module,
:class:`ELBOLoss`, whose parameters are those of the modules owning the model and guide (the same tensors that
``pyro.module`` puts in the param store), and Adam is ``torch.optim.Adam`` on them (Pyro's ``SVI`` steps its
own optimizer outside the module's forward, where DDP could not average the gradients). DDP broadcasts rank 0's
parameters when it wraps the module, so every rank starts, and stays, identical. Each rank draws its own noise
(seed + rank). Rank 0 alone evaluates, prints, writes metrics and checkpoints (with every rank's RNG state, so
that a resumed run continues exactly).

Backends: NCCL on GPUs (one device per rank, ``LOCAL_RANK``), gloo on CPUs.

**References**

[1] PyTorch Distributed: Experiences on Accelerating Data Parallel Training, S. Li et al., VLDB 2020.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import pyro
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel


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


class ELBOLoss(nn.Module):
    """``elbo.differentiable_loss(model, guide, *args, **kwargs)`` as a module whose parameters are those of
    ``owners`` (e.g. the VAE that ``vae.model`` and ``vae.guide`` belong to), so that
    ``DistributedDataParallel`` can wrap it. Like Pyro's ``ELBOModule``, for bound methods."""

    def __init__(self, owners: Sequence[nn.Module], model: Callable, guide: Callable, elbo: pyro.infer.ELBO) -> None:
        super().__init__()
        self.owners = nn.ModuleList(owners)
        self.model, self.guide, self.elbo = model, guide, elbo

    def forward(self, *args, **kwargs) -> torch.Tensor:
        return self.elbo.differentiable_loss(self.model, self.guide, *args, **kwargs)


class DistributedStep:
    """One data-parallel Adam step per call: the DDP-wrapped :class:`ELBOLoss` on this rank's rows, backward
    (gradients averaged over ranks), ``torch.optim.Adam``; returns the loss averaged over ranks (an estimate
    of the full-data loss, like ``SVI.step``'s).

    :param owners: the modules owning the model and guide, holding every trained parameter.
    :param float lr: Adam's learning rate.
    """

    def __init__(
        self, owners: Sequence[nn.Module], model: Callable, guide: Callable, elbo: pyro.infer.ELBO, lr: float
    ) -> None:
        if not owners:
            raise ValueError(
                "distributed training needs model and guide that are methods of an nn.Module (as vae.model is), "
                "so that DistributedDataParallel can find the parameters"
            )
        self.world = dist.get_world_size()
        loss = ELBOLoss(owners, model, guide, elbo)
        device = next(loss.parameters()).device
        self.module = DistributedDataParallel(loss, device_ids=[device] if device.type == "cuda" else None)
        self.optim = torch.optim.Adam(self.module.parameters(), lr=lr)

    def __call__(self, x: torch.Tensor, num_data: int) -> float:
        loss = self.module(x, num_data=num_data)
        self.optim.zero_grad(set_to_none=True)
        loss.backward()
        self.optim.step()
        total = loss.detach().clone()
        dist.all_reduce(total)
        return total.item() / self.world

    def get_state(self) -> dict:
        return {"torch_adam": self.optim.state_dict()}

    def set_state(self, state: dict) -> None:
        if "torch_adam" not in state:
            raise ValueError("this checkpoint was written by a single-process run: resume it without --distributed")
        self.optim.load_state_dict(state["torch_adam"])


def gather_rng_states(state: dict) -> list[dict]:
    """Every rank's RNG ``state`` (``pyrovae.checkpoint.rng_state()``), in rank order, on every rank."""
    states: list = [None] * dist.get_world_size()
    dist.all_gather_object(states, state)
    return states
