"""Data-parallel training: 2 processes on the CPU with gloo, against a single-process run."""

import socket
from functools import partial
from pathlib import Path

import pyro
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from pyrovae import SSVAE, SemiSupervisedConfig, TrainConfig, fit, fit_semisupervised, load_dataset
from pyrovae.checkpoint import param_state
from pyrovae.models.autoencoder import Autoencoder
from pyrovae.train.distributed import LossModule, is_distributed, rank_and_world
from pyrovae.train.semisupervised import SemiSupervisedTask
from tests.common import tiny_dataset, tiny_vae

WORLD = 2
#: 48 training points in global batches of 8 (4 per rank): 6 steps per epoch, none dropped
CONFIG = {"batch_size": 8, "device": "cpu", "seed": 5, "lr": 1e-2}


def _data():
    return tiny_dataset(n_train=48, n_test=8, x_dim=6)  # fixed binary data: no random binarization


def _autoencoder_run(epochs: int) -> dict:
    pyro.clear_param_store()
    ae = Autoencoder(6, z_dim=2, hidden=(8,))
    fit(ae.model, ae.guide, _data(), TrainConfig(epochs=epochs, **CONFIG), verbose=False)
    return param_state()


def _vae_run(out, epochs: int, resume: bool = False) -> dict:
    pyro.clear_param_store()
    vae = tiny_vae()
    fit(vae.model, vae.guide, _data(), TrainConfig(epochs=epochs, **CONFIG), out_dir=out, resume=resume,
        verbose=False)  # fmt: skip
    return param_state()


#: M2 on the digits (fixed binarization): 20 labels, global unlabelled batches of 128 and labelled ones of 10
SS_CONFIG = {"num_labels": 20, "batch_size": 128, "labelled_batch_size": 10, "device": "cpu", "seed": 5}


def _ssvae() -> SSVAE:
    pyro.clear_param_store()
    return SSVAE(64, z_dim=2, hidden=(16,), seed=0)


def _ssvae_run(out, epochs: int, resume: bool = False) -> dict:
    data = load_dataset("digits", binarize="static")
    history = fit_semisupervised(_ssvae(), data, SemiSupervisedConfig(epochs=epochs, **SS_CONFIG), out_dir=out,
                                 resume=resume, verbose=False)  # fmt: skip
    return {"params": param_state(), "history": [{k: v for k, v in row.items() if k != "seconds"} for row in history]}


def ss_gradients(schedule: str) -> dict:
    """The gradient of one M2 step on the first 16 unlabelled and 10 labelled training rows, rank r's share (of W)
    with the noise of seed 10 + r, as a data-parallel step averages it over the ranks; in a single process, the sum
    of the W shares' gradients, each with its noise: the same number if the shares are scaled right."""
    task = SemiSupervisedTask(_ssvae(), load_dataset("digits", binarize="static"),
                              SemiSupervisedConfig(schedule=schedule, **SS_CONFIG), None)  # fmt: skip
    rank, world = rank_and_world()
    unlabelled, labelled = task.unlabelled[:16], task.labelled[:10]
    scale_u, scale_l = task.scales(len(unlabelled), len(labelled))
    for r in [rank] if world > 1 else range(WORLD):
        pyro.set_rng_seed(10 + r)
        u, lab = unlabelled.tensor_split(WORLD)[r], labelled.tensor_split(WORLD)[r]
        if schedule == "joint":
            task.stepper.loss(u, lab, scale_u, scale_l).backward()
        else:
            (task.stepper.loss(u, None, scale_u, 0.0) + task.stepper.loss(None, lab, 0.0, scale_l)).backward()
    return {name: p.grad.clone() for name, p in task.stepper.params.items()}


def _worker(rank: int, port: int, folder: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    torch.manual_seed(100 + rank)  # different initial weights on each rank: DDP must start all from rank 0's
    results = {"rank_and_world": rank_and_world(), "autoencoder": _autoencoder_run(2)}
    torch.manual_seed(100 + rank)
    results["vae_straight"] = _vae_run(f"{folder}/straight", 3)
    torch.manual_seed(100 + rank)
    _vae_run(f"{folder}/resumed", 1)
    results["vae_resumed"] = _vae_run(f"{folder}/resumed", 3, resume=True)
    results["ssvae_straight"] = _ssvae_run(f"{folder}/ss-straight", 2)
    _ssvae_run(f"{folder}/ss-resumed", 1)
    results["ssvae_resumed"] = _ssvae_run(f"{folder}/ss-resumed", 2, resume=True)
    results["gradients"] = {schedule: ss_gradients(schedule) for schedule in ("alternate", "joint")}
    torch.save(results, f"{folder}/rank{rank}.pt")
    dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _close(a: dict, b: dict, **tolerance) -> bool:
    return a.keys() == b.keys() and all(torch.allclose(a[k], b[k], **tolerance) for k in a)


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory) -> tuple[Path, list[dict]]:
    """The folder of the runs of :func:`_worker` on 2 ranks, and what each rank saved."""
    folder = tmp_path_factory.mktemp("ranks")
    mp.spawn(_worker, args=(_free_port(), str(folder)), nprocs=WORLD, join=True)
    return folder, [torch.load(folder / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]


def test_two_ranks_match_each_other_and_a_single_process_run(two_ranks):
    """(a) both ranks end with identical parameters; (b) with a deterministic model (the autoencoder: no
    sampling) they equal a single-process run over the same global batches and seed, to float tolerance;
    (c) a distributed run stopped after 1 epoch and resumed ends exactly where the straight run does."""
    folder, ranks = two_ranks
    assert [tuple(r["rank_and_world"]) for r in ranks] == [(0, 2), (1, 2)]
    for key in ("autoencoder", "vae_straight", "vae_resumed"):
        assert _close(ranks[0][key], ranks[1][key], rtol=0, atol=0), key  # (a), bit for bit
    torch.manual_seed(100)  # rank 0's initial weights
    initial = Autoencoder(6, z_dim=2, hidden=(8,)).encoder.net[0].weight.detach()
    torch.manual_seed(100)
    single = _autoencoder_run(2)
    assert not torch.allclose(single["encoder$$$net.0.weight"], initial, atol=1e-3)  # it trained
    assert _close(ranks[0]["autoencoder"], single, rtol=1e-4, atol=1e-5)  # (b)
    assert _close(ranks[0]["vae_straight"], ranks[0]["vae_resumed"], rtol=0, atol=0)  # (c)
    assert (folder / "straight" / "checkpoint.pt").exists()  # written by rank 0


def test_semi_supervised_training_is_data_parallel_too(two_ranks):
    """M2 under two ranks: (a) both end with identical weights, (b) each step's averaged gradient is the
    single-process gradient of the whole minibatches (alternate and joint schedules), (c) a run stopped after 1 epoch
    and resumed ends exactly where the straight run does, and rank 0 reports the accuracies."""
    _, ranks = two_ranks
    for key in ("ssvae_straight", "ssvae_resumed"):
        assert _close(ranks[0][key]["params"], ranks[1][key]["params"], rtol=0, atol=0), key  # (a)
    for schedule in ("alternate", "joint"):
        single = ss_gradients(schedule)
        assert _close(ranks[0]["gradients"][schedule], single, rtol=1e-4, atol=1e-6), schedule  # (b)
        assert _close(ranks[1]["gradients"][schedule], single, rtol=1e-4, atol=1e-6), schedule
    straight, resumed = ranks[0]["ssvae_straight"], ranks[0]["ssvae_resumed"]
    assert _close(straight["params"], resumed["params"], rtol=0, atol=0) and straight["history"] == resumed["history"]
    assert [sorted(row) for row in straight["history"]] == [
        ["epoch", "labelled_elbo", "labelled_log_q", "test_accuracy", "unlabelled_elbo", "valid_accuracy"]] * 2
    assert all("valid_accuracy" not in row for row in ranks[1]["ssvae_straight"]["history"])  # rank 0 evaluates


def test_loss_module_exposes_the_owners_parameters():
    vae = tiny_vae()
    loss = LossModule([vae], partial(pyro.infer.Trace_ELBO().differentiable_loss, vae.model, vae.guide))
    assert {id(p) for p in loss.parameters()} == {id(p) for p in vae.parameters()}
    x = torch.ones(3, 6)
    pyro.set_rng_seed(0)
    value = loss(x)
    pyro.set_rng_seed(0)
    assert value.item() == pyro.infer.Trace_ELBO().loss(vae.model, vae.guide, x)
    assert not is_distributed() and rank_and_world() == (0, 1)


def test_init_distributed_takes_nccl_and_the_local_gpu_under_cuda_and_gloo_on_cpus(monkeypatch):
    """The GPU branch, run on the CPU: with CUDA (faked) the rank takes GPU LOCAL_RANK and NCCL; on CPUs gloo;
    without torchrun's environment a clear error names the launcher."""
    import pyrovae.train.distributed as distributed

    monkeypatch.delenv("MASTER_ADDR", raising=False)
    with pytest.raises(RuntimeError, match="torchrun --nproc_per_node"):
        distributed.init_distributed("auto")
    for name, value in {"RANK": "1", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "1",
                        "LOCAL_RANK": "1"}.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    calls = []
    monkeypatch.setattr(distributed.dist, "init_process_group", lambda backend: calls.append(backend))
    monkeypatch.setattr(torch.cuda, "set_device", lambda index: calls.append(index))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert distributed.init_distributed("auto") == "cuda:1" and calls == [1, "nccl"]
    calls.clear()
    assert distributed.init_distributed("cpu") == "cpu" and calls == ["gloo"]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    calls.clear()
    assert distributed.init_distributed("auto") == "auto" and calls == ["gloo"]
