import math
import sys

import pyro
import pytest
import torch

import pyrovae
from pyrovae import TrainConfig, fit, load_dataset
from pyrovae.checkpoint import param_state
from pyrovae.data.binarize import EVAL_SEED, binarize
from pyrovae.viz.plots import MIN_PIXELS
from pyrovae.viz.tensorboard import TensorBoardLogger, scalar_tag
from tests.common import tiny_dataset, tiny_vae


def _grid_size(num_images: int, nrow: int, height: int, width: int, padding: int = 2) -> tuple[int, int]:
    """(width, height) in pixels of ``torchvision.utils.make_grid``'s grid: ``min(nrow, n)`` columns,
    as many rows as needed, ``padding`` pixels between the images and around them."""
    cols = min(nrow, num_images)
    rows = math.ceil(num_images / cols)
    return cols * (width + padding) + padding, rows * (height + padding) + padding


def _events(log_dir):
    event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    acc = event_accumulator.EventAccumulator(
        str(log_dir), size_guidance={event_accumulator.SCALARS: 0, event_accumulator.IMAGES: 0}
    )
    acc.Reload()
    return acc


def test_fit_callback_logs_scalars_and_image_grids_each_epoch(tmp_path):
    pytest.importorskip("tensorboard")
    data = load_dataset("digits")
    vae = pyrovae.VAE(data.x_dim, z_dim=2, hidden=(16,))
    config = TrainConfig(epochs=2, batch_size=256, device="cpu")
    with TensorBoardLogger(tmp_path, vae.model, vae.guide, data, num_images=10) as logger:
        history = fit(vae.model, vae.guide, data, config, verbose=False, callback=logger)

    acc = _events(tmp_path)
    scalars = {tag: acc.Scalars(tag) for tag in acc.Tags()["scalars"]}
    for tag in ("elbo/train", "elbo/test", "time/seconds", "test/kl", "test/reconstruction", "test/elbo"):
        assert [event.step for event in scalars[tag]] == [1, 2], tag
    assert "epoch" not in scalars
    for key, tag in [("train_elbo", "elbo/train"), ("test_elbo", "elbo/test")]:
        assert [e.value for e in scalars[tag]] == pytest.approx([row[key] for row in history], rel=1e-6)
    for elbo, rec, kl in zip(*(scalars[f"test/{name}"] for name in ("elbo", "reconstruction", "kl")), strict=True):
        assert elbo.value == pytest.approx(rec.value - kl.value, abs=1e-3)
        assert rec.value < 0 < kl.value
        assert elbo.value == pytest.approx(history[elbo.step - 1]["test_elbo"], abs=3.0)  # one sample vs full set

    side = 8 * math.ceil(MIN_PIXELS / 8)  # 8x8 digits enlarged to 32x32
    expected = {"samples": _grid_size(10, 3, side, side), "reconstructions": _grid_size(32, 16, side, side)}
    assert expected == {"samples": (104, 138), "reconstructions": (546, 70)}  # the padding=2 rule, worked out
    for tag, (width, height) in expected.items():
        images = acc.Images(tag)
        assert [image.step for image in images] == [1, 2]
        assert all((image.width, image.height) == (width, height) for image in images), tag


def _train_tiny(logger_dir=None):
    pyro.clear_param_store()
    torch.manual_seed(0)
    vae, data = tiny_vae(), tiny_dataset()
    config = TrainConfig(epochs=2, batch_size=16, device="cpu", seed=7)
    logger = None if logger_dir is None else TensorBoardLogger(logger_dir, vae.model, vae.guide, data, num_images=4)
    history = fit(vae.model, vae.guide, data, config, verbose=False, callback=logger)
    if logger is not None:
        logger.close()
    return history, param_state()


def test_logging_does_not_change_training(tmp_path):
    """The logger draws with its own seed and restores the RNG: the same parameters bit for bit."""
    pytest.importorskip("tensorboard")
    history, params = _train_tiny()
    logged_history, logged_params = _train_tiny(tmp_path)
    assert [r["train_elbo"] for r in history] == [r["train_elbo"] for r in logged_history]
    assert all(torch.equal(params[name], logged_params[name]) for name in params)
    assert len(_events(tmp_path).Images("samples")) == 2


def test_without_a_test_split_training_points_are_binarized_once_and_tagged_train(tmp_path):
    pytest.importorskip("tensorboard")
    grey = torch.rand(30, 6, generator=torch.Generator().manual_seed(0))
    data = pyrovae.Dataset.from_tensors(grey, binarize="dynamic", image_shape=(1, 2, 3))
    vae = tiny_vae()
    with TensorBoardLogger(tmp_path, vae.model, vae.guide, data, eval_points=20) as logger:
        assert torch.equal(logger.eval_x, binarize(grey[:20], seed=EVAL_SEED))
        logger({"epoch": 3, "train_elbo": -4.0, "seconds": 0.5})
    acc = _events(tmp_path)
    assert {"elbo/train", "time/seconds", "train/kl", "train/reconstruction", "train/elbo"} == set(
        acc.Tags()["scalars"]
    )
    assert acc.Scalars("elbo/train")[0].step == 3 and acc.Scalars("elbo/train")[0].value == -4.0


@pytest.mark.parametrize(
    "key, tag",
    [
        ("train_elbo", "elbo/train"),
        ("test_elbo", "elbo/test"),
        ("valid_accuracy", "accuracy/valid"),
        ("seconds", "time/seconds"),
        ("lr", "lr"),
        ("test", "test"),
    ],
)
def test_scalar_tags(key, tag):
    assert scalar_tag(key) == tag


def test_missing_tensorboard_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    vae = tiny_vae()
    with pytest.raises(ImportError, match=r'pip install "pyrovae\[tensorboard\]"'):
        TensorBoardLogger(tmp_path / "tb", vae.model, vae.guide, tiny_dataset())
    assert not (tmp_path / "tb").exists()
