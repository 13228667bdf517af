"""The one training loop (pyrovae/train/loop.py), driven by a toy task: a least-squares fit of one parameter, whose
"ELBO" is minus the squared distance to a target, with what the loop owes every task (history, run folder, resume,
best epoch, divergence stop, callback, progress)."""

import json
import math

import pyro
import pytest
import torch

from pyrovae import TrainingDiverged
from pyrovae.checkpoint import load_checkpoint
from pyrovae.train.loop import LoopConfig, Task, epoch_generator, minibatches, num_batches, run_training
from pyrovae.train.step import AdamStep

TARGET = torch.tensor([3.0, -1.0])


class Quadratic(Task):
    """Steps on ``sum((w - TARGET)**2)`` per row of a fake 10-row set in batches of 5; ``valid_elbo`` is minus the
    distance after the epoch; from epoch ``explode`` on the loss is ``inf``."""

    train_key, monitor, best_key, steps_per_epoch = "train_elbo", "valid_elbo", "valid_elbo", 2

    def __init__(self, explode: int | None = None, noise: bool = False) -> None:
        self.device, self.explode, self.noise = torch.device("cpu"), explode, noise
        w = pyro.param("w", torch.zeros(2))
        self.stepper = AdamStep({"w": w.unconstrained()}, self.loss, lr=1.0)  # the loop sets config.lr

    def loss(self, rows: torch.Tensor, epoch: int) -> torch.Tensor:
        w = pyro.param("w")
        jitter = torch.randn(2) if self.noise else 0.0  # training noise, from the global RNG the loop seeds
        loss = len(rows) * ((w - TARGET - jitter) ** 2).sum()
        return loss * math.inf if self.explode is not None and epoch + 1 >= self.explode else loss

    def initial_elbo(self) -> float:
        return -float(((pyro.param("w") - TARGET) ** 2).sum())

    def train_epoch(self, epoch, tick):
        total = torch.zeros(())
        for rows in minibatches(10, 5, self.device, epoch_generator(0, epoch)):
            loss = self.stepper(rows, epoch)
            total = total + loss
            tick(loss, len(rows))
        return total, 10

    def evaluate(self, row):
        row["valid_elbo"] = self.initial_elbo()


def _train(out_dir=None, epochs=3, resume=False, task=None, **options):
    config = LoopConfig(epochs=epochs, device="cpu", lr=0.5)
    task = task or Quadratic()
    return run_training(task, config, out_dir, resume=resume, overwrite=False, extra={"note": 1}, progress=False,
                        verbose=False, **options)  # fmt: skip


def test_the_loop_trains_records_and_writes_its_run_folder(tmp_path):
    rows = []
    history = _train(tmp_path / "run", epochs=4, callback=rows.append)
    assert [row["epoch"] for row in history] == [1, 2, 3, 4] and rows == history
    assert set(history[0]) == {"epoch", "train_elbo", "valid_elbo", "seconds"}  # no lr: it does not change
    elbos = [row["valid_elbo"] for row in history]
    assert elbos == sorted(elbos) and elbos[-1] > -(TARGET**2).sum().item() / 2  # it learns: -10 untrained
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3, 4]
    state = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert state["epoch"] == 4 and state["extra"] == {"note": 1} and state["config"]["epochs"] == 4
    assert torch.equal(state["params"]["w"], pyro.param("w").detach())  # the trained parameter, copied
    assert load_checkpoint(tmp_path / "run" / "best.pt")["best"] == {"epoch": 4, "valid_elbo": elbos[-1]}
    assert state["initial_elbo"] == -(TARGET**2).sum().item()  # the untrained model's, the divergence reference


def test_resume_continues_exactly_with_the_seeded_noise(tmp_path):
    straight = _train(tmp_path / "straight", epochs=4, task=Quadratic(noise=True))
    w_straight = pyro.param("w").detach().clone()
    pyro.clear_param_store()
    _train(tmp_path / "resumed", epochs=2, task=Quadratic(noise=True))
    pyro.clear_param_store()
    resumed = _train(tmp_path / "resumed", epochs=4, resume=True, task=Quadratic(noise=True))
    untimed = [[{k: v for k, v in row.items() if k != "seconds"} for row in h] for h in (straight, resumed)]
    assert untimed[0] == untimed[1] and torch.equal(pyro.param("w").detach(), w_straight)


def test_an_exploding_epoch_is_not_saved_and_the_error_names_the_last_good_one(tmp_path):
    with pytest.raises(TrainingDiverged, match=r"diverged at epoch 3 .*NaN or infinity.*checkpoint.pt \(epoch 2\)"):
        _train(tmp_path / "run", epochs=4, task=Quadratic(explode=3))
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["epoch"] == 2
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == 2


def test_an_epoch_far_below_the_untrained_elbo_stops_training():
    """A learning rate so high that the parameter overshoots: no NaN, but the ELBO falls far below the start."""
    with pytest.raises(TrainingDiverged, match=r"diverged at epoch 1 \(valid_elbo .* below the floor"):
        run_training(Quadratic(), LoopConfig(epochs=2, device="cpu", lr=1e4, divergence=1.0), None, resume=False,
                     overwrite=False, extra=None, progress=False, verbose=False)  # fmt: skip


def test_minibatches_cover_the_set_once_per_epoch_and_depend_on_seed_and_epoch_only():
    batches = list(minibatches(10, 4, torch.device("cpu"), epoch_generator(7, 2)))
    assert [len(b) for b in batches] == [4, 4, 2] and sorted(torch.cat(batches).tolist()) == list(range(10))
    again = list(minibatches(10, 4, torch.device("cpu"), epoch_generator(7, 2)))
    assert all(torch.equal(a, b) for a, b in zip(batches, again, strict=True))
    other = torch.cat(list(minibatches(10, 4, torch.device("cpu"), epoch_generator(7, 3))))
    assert not torch.equal(other, torch.cat(batches))
    assert num_batches(10, 4) == 3 and num_batches(10, 4, drop_last=True) == 2
    assert len(list(minibatches(10, 4, torch.device("cpu"), epoch_generator(7, 2), drop_last=True))) == 2


@pytest.mark.parametrize(("num_data", "sizes"), [(9, [4, 5]), (5, [5]), (1, [1]), (8, [4, 4]), (7, [4, 3])])
def test_no_minibatch_but_that_of_a_one_row_set_has_one_row(num_data, sizes):
    """A single row left over joins the minibatch before it (a BatchNorm layer cannot train on one row)."""
    batches = list(minibatches(num_data, 4, torch.device("cpu"), epoch_generator(0, 0)))
    assert [len(b) for b in batches] == sizes and num_batches(num_data, 4) == len(sizes)
    assert sorted(torch.cat(batches).tolist()) == list(range(num_data))
    assert [len(b) for b in minibatches(9, 4, torch.device("cpu"), epoch_generator(0, 0), drop_last=True)] == [4, 4]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"epochs": 0}, "epochs must be a positive integer"), ({"validate": "never"}, "unknown validate"),
     ({"lr": 0}, "lr must be positive"), ({"divergence": 0}, "divergence")],
)  # fmt: skip
def test_loop_config_is_validated(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LoopConfig(**kwargs)
