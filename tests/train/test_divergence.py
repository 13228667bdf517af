"""Divergence: stopped at the epoch it happens, never saved, the last good and the best checkpoints kept."""

import math

import pyro
import pytest
import torch

import pyrovae
from pyrovae import SSVAE, SemiSupervisedConfig, TrainConfig, fit, fit_semisupervised, load_dataset
from pyrovae.checkpoint import load_checkpoint
from pyrovae.errors import TrainingDiverged
from pyrovae.train.divergence import elbo_floor, not_finite, too_low
from tests.common import cli_error

FINITE = [("w", torch.ones(3))]


def test_the_floor_is_kappa_times_the_untrained_elbo_below_it():
    assert elbo_floor(-44.0, 10.0) == -44.0 - 440.0
    assert elbo_floor(0.3, 10.0) == 0.3 - 10.0  # at least 1 nat per unit of the factor
    assert elbo_floor(-44.0, math.inf) == -math.inf
    with pytest.raises(ValueError, match="divergence must be a positive factor"):
        TrainConfig(divergence=0.0)


def test_why_an_epoch_diverged():
    assert too_low("valid_elbo", -30.0, -44.0, 10.0) is None  # better than untrained
    assert too_low("valid_elbo", -483.0, -44.0, 10.0) is None  # just above the floor -484
    below = too_low("valid_elbo", -485.0, -44.0, 10.0)
    assert "valid_elbo -485 nats per point against -44 for the untrained model, below the floor -484" in below
    assert too_low("train_elbo", -1e9, -44.0, math.inf) is None  # the ELBO check off
    assert too_low("train_elbo", -1e9, None, 10.0) is None  # no reference in the checkpoint: no check
    assert "below the floor" in too_low("valid_elbo", math.nan, -44.0, 10.0)  # a NaN ELBO too
    assert not_finite(30.0, FINITE) is None
    assert not_finite(math.nan, FINITE) == "the training loss is nan"
    bad = [("a", torch.ones(2)), ("b", torch.tensor([1.0, math.inf])), ("c", torch.tensor([math.nan]))]
    assert not_finite(30.0, bad) == "2 parameters hold NaN or infinity, e.g. ['b', 'c']"


def test_a_learning_rate_of_100_stops_at_its_first_epoch_and_saves_nothing(tmp_path, capsys):
    """The ELBOs of ``--lr 100`` are finite numbers (about -1e10 on the digits, against -44 untrained), which the
    old check of the loss alone let through for every epoch, overwriting the only checkpoint."""
    out = tmp_path / "run"
    message = cli_error(capsys, ["train", "--lr", "100", "--epochs", "3", "--out", str(out), "--quiet"])
    assert message.startswith("training diverged at epoch 1 (valid_elbo ")
    assert "no epoch was good, so no checkpoint was written. Lower the learning rate (lr=100)" in message
    assert not (out / "checkpoint.pt").exists() and not (out / "best.pt").exists()


class Sabotage:
    """A callback that multiplies the decoder's weights by 1000 after epoch ``epoch`` is saved."""

    def __init__(self, vae, epoch):
        self.vae, self.epoch = vae, epoch

    def __call__(self, row):
        if row["epoch"] == self.epoch:
            with torch.no_grad():
                for p in self.vae.decoder.parameters():
                    p.mul_(1000.0)


def test_the_last_good_and_the_best_checkpoints_are_kept_and_load(tmp_path):
    data = load_dataset("digits")
    vae = pyrovae.VAE(data.x_dim, z_dim=4, hidden=(64,), seed=0)
    config = TrainConfig(epochs=5, batch_size=128, device="cpu")
    with pytest.raises(TrainingDiverged) as info:
        fit(vae.model, vae.guide, data, config, out_dir=tmp_path, verbose=False, extra={"vae": vae.config},
            callback=Sabotage(vae, 2))  # fmt: skip
    message = str(info.value)
    assert message.startswith("training diverged at epoch 3 (")
    assert f"the last good checkpoint is kept at {tmp_path / 'checkpoint.pt'} (epoch 2)" in message
    assert f"the best at {tmp_path / 'best.pt'} (epoch 2)" in message
    pyro.clear_param_store()
    kept, state = pyrovae.load_vae(tmp_path / "checkpoint.pt")
    assert state["epoch"] == 2 and all(torch.isfinite(p).all() for p in kept.parameters())
    assert state["best"] == {"epoch": 2, "valid_elbo": state["history"][-1]["valid_elbo"]}
    assert [row["epoch"] for row in state["history"]] == [1, 2]
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 2  # epoch 3 is not recorded
    assert load_checkpoint(tmp_path / "best.pt")["epoch"] == 2
    # the same elbo per point as before the sabotage: the kept weights are the good ones
    pyro.set_rng_seed(0)
    assert pyrovae.elbo_per_datapoint(kept.model, kept.guide, data.valid.x) > state["initial_elbo"] + 5


def test_best_is_the_epoch_of_the_best_validation_score(tmp_path):
    data = load_dataset("digits")
    vae = pyrovae.VAE(data.x_dim, z_dim=4, hidden=(64,), seed=0)
    history = fit(vae.model, vae.guide, data, TrainConfig(epochs=4, lr=3e-2, device="cpu"), out_dir=tmp_path,
                  verbose=False)  # fmt: skip
    best = max(history, key=lambda row: row["valid_elbo"])
    state = load_checkpoint(tmp_path / "best.pt")
    assert state["epoch"] == best["epoch"] and state["best"]["valid_elbo"] == best["valid_elbo"]
    assert load_checkpoint(tmp_path / "checkpoint.pt")["best"] == state["best"]


def test_semi_supervised_training_stops_when_it_diverges_and_keeps_its_best(tmp_path):
    data = load_dataset("digits")
    ssvae = SSVAE(data.x_dim, z_dim=4, hidden=(32,), seed=0)
    config = SemiSupervisedConfig(num_labels=50, epochs=3, batch_size=256, lr=100.0, device="cpu")
    with pytest.raises(TrainingDiverged, match="diverged at epoch 1 .unlabelled_elbo .*no checkpoint was written"):
        fit_semisupervised(ssvae, data, config, out_dir=tmp_path / "bad", verbose=False)
    pyro.clear_param_store()  # a new model with the same site names
    ssvae = SSVAE(data.x_dim, z_dim=4, hidden=(32,), seed=0)
    config = SemiSupervisedConfig(num_labels=50, epochs=3, batch_size=256, device="cpu")
    history = fit_semisupervised(ssvae, data, config, out_dir=tmp_path / "good", verbose=False)
    best = max(history, key=lambda row: row["valid_accuracy"])  # the first of equal ones
    assert load_checkpoint(tmp_path / "good" / "best.pt")["epoch"] == best["epoch"]
