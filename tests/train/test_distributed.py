"""Data-parallel training: 2 processes on the CPU with gloo, against a single-process run."""

import socket

import pyro
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from pyrovae import TrainConfig, fit
from pyrovae.checkpoint import param_state
from pyrovae.models.autoencoder import Autoencoder
from pyrovae.train.distributed import ELBOLoss, is_distributed, rank_and_world
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


def _worker(rank: int, port: int, folder: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    torch.manual_seed(100 + rank)  # different initial weights on each rank: DDP must start all from rank 0's
    results = {"rank_and_world": rank_and_world(), "autoencoder": _autoencoder_run(2)}
    torch.manual_seed(100 + rank)
    results["vae_straight"] = _vae_run(f"{folder}/straight", 3)
    torch.manual_seed(100 + rank)
    _vae_run(f"{folder}/resumed", 1)
    results["vae_resumed"] = _vae_run(f"{folder}/resumed", 3, resume=True)
    torch.save(results, f"{folder}/rank{rank}.pt")
    dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _close(a: dict, b: dict, **tolerance) -> bool:
    return a.keys() == b.keys() and all(torch.allclose(a[k], b[k], **tolerance) for k in a)


def test_two_ranks_match_each_other_and_a_single_process_run(tmp_path):
    """(a) both ranks end with identical parameters; (b) with a deterministic model (the autoencoder: no
    sampling) they equal a single-process run over the same global batches and seed, to float tolerance;
    (c) a distributed run stopped after 1 epoch and resumed ends exactly where the straight run does."""
    mp.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]
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
    assert (tmp_path / "straight" / "checkpoint.pt").exists()  # written by rank 0


def test_elbo_loss_module_exposes_the_owners_parameters():
    vae = tiny_vae()
    loss = ELBOLoss([vae], vae.model, vae.guide, pyro.infer.Trace_ELBO())
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
