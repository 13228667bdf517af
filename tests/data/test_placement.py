"""Data on the device or streamed from host memory (pyrovae/data/placement.py), through fit, fit_semisupervised and
the command line: the same minibatches, the same training."""

import json

import numpy as np
import pyro
import pytest
import torch

import pyrovae
from pyrovae import TrainConfig, fit
from pyrovae.cli import main
from pyrovae.data import Dataset, load_dataset
from pyrovae.data.memmap import open_npy
from pyrovae.data.placement import DEVICE_DATA_LIMIT, HostDataset, data_nbytes, parse_size, place
from pyrovae.train.semisupervised import SemiSupervisedConfig, fit_semisupervised
from pyrovae.train.svi import SVITask
from tests.common import mapped_file

#: a limit well below the file of :func:`_memmapped` (512 KiB)
SMALL_LIMIT = "100kB"


@pytest.mark.parametrize(
    "text, size",
    [("2GB", 2 * 10**9), ("500MB", 5 * 10**8), ("0", 0), ("1.5GiB", 3 * 2**29), (" 64 kb ", 64_000), ("100", 100),
     (4096, 4096), ("2gib", 2 * 2**30)],
)  # fmt: skip
def test_sizes_are_read_in_decimal_and_binary_units(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["2XB", "-1", "GB", "", "1e9", "2 G B", True, 1.5, None])
def test_a_size_that_cannot_be_read_is_an_error_with_examples(text):
    with pytest.raises(ValueError, match="'2GB', '500MB'"):
        parse_size(text)


def test_the_limit_is_a_setting_read_on_construction():
    assert TrainConfig().device_data_limit == DEVICE_DATA_LIMIT == 2 * 2**30
    assert TrainConfig(device_data_limit="500MB").device_data_limit == 500 * 10**6
    with pytest.raises(ValueError, match="cannot read the size 'lots'"):
        SemiSupervisedConfig(device_data_limit="lots")


def _memmapped(tmp_path, rows=4096, dim=32) -> torch.Tensor:
    """A 512 KiB float32 file of grey levels, memory-mapped."""
    array = np.random.default_rng(0).random((rows, dim), dtype=np.float32)
    np.save(tmp_path / "x.npy", array)
    return open_npy(tmp_path / "x.npy")


def test_data_over_the_limit_stay_where_they_are(tmp_path):
    x = _memmapped(tmp_path)
    data = Dataset.from_tensors(x, x[:100], binarize="dynamic")
    assert data_nbytes(data) == (4096 + 100) * 32 * 4  # train and test (the test split binarized into memory)
    assert place(data, torch.device("cpu"), limit=data_nbytes(data)) is not data  # fits: moved (a no-op on the CPU)
    streamed = place(data, torch.device("cpu"), limit=parse_size(SMALL_LIMIT))
    assert isinstance(streamed, HostDataset) and streamed.train.x is x and mapped_file(streamed.train.x) == str(
        tmp_path / "x.npy"
    )
    idx = torch.randperm(len(x))[:50]
    pyro.set_rng_seed(3)
    rows = streamed.train_batch(idx)
    pyro.set_rng_seed(3)
    assert torch.equal(rows, data.train_batch(idx))  # the rows of the permutation, in its order, drawn alike


def _fit(data, limit, out_dir=None, epochs=2, resume=False, seen=None):
    """Two epochs of a small VAE on ``data`` under the device data limit ``limit``; ``seen`` collects each training
    minibatch the model sees."""
    pyro.clear_param_store()
    vae = pyrovae.VAE(data.x_dim, z_dim=2, hidden=(16,), seed=0)

    def model(x, num_data=None, subsample=None):
        if seen is not None and subsample is not None:  # a training step (not the probe)
            seen.append((x.clone(), subsample.clone()))
        return vae.model(x, num_data, subsample=subsample)

    config = TrainConfig(epochs=epochs, batch_size=1024, device="cpu", device_data_limit=limit)
    history = fit(model, vae.guide, data, config, out_dir=out_dir, resume=resume, verbose=False)
    return [{k: v for k, v in row.items() if k != "seconds"} for row in history], pyrovae.checkpoint.param_state()


def test_a_memory_mapped_split_larger_than_the_limit_trains_unread_and_as_on_the_device(tmp_path):
    x = _memmapped(tmp_path)
    data = Dataset.from_tensors(x, x[:100], binarize="dynamic")
    vae = pyrovae.VAE(32)
    task = SVITask(vae.model, vae.guide, data, TrainConfig(device="cpu", device_data_limit=SMALL_LIMIT))
    assert isinstance(task.data, HostDataset) and task.data.train.x is x  # not copied: still the file's map
    in_device, streamed = [], []
    history, params = _fit(data, DEVICE_DATA_LIMIT, seen=in_device)
    streamed_history, streamed_params = _fit(data, SMALL_LIMIT, seen=streamed)
    # the same rows in the same order (and the same dynamic binarization): on the CPU the same kernels run on the
    # same inputs, so the training is the same to the bit
    assert len(streamed) == len(in_device) == 2 * 4
    for (x_a, idx_a), (x_b, idx_b) in zip(in_device, streamed, strict=True):
        assert torch.equal(idx_a, idx_b) and torch.equal(x_a, x_b)
    assert streamed_history == history
    assert all(torch.equal(params[k], streamed_params[k]) for k in params)
    assert mapped_file(x) == str(tmp_path / "x.npy")


def test_a_streamed_run_resumes_exactly_and_may_change_its_limit(tmp_path):
    data = Dataset.from_tensors(_memmapped(tmp_path), binarize="dynamic")
    history, params = _fit(data, SMALL_LIMIT)
    _fit(data, SMALL_LIMIT, out_dir=tmp_path / "run", epochs=1)
    resumed, resumed_params = _fit(data, DEVICE_DATA_LIMIT, out_dir=tmp_path / "run", resume=True)
    assert resumed == history and all(torch.equal(params[k], resumed_params[k]) for k in params)


@pytest.mark.slow
def test_semisupervised_training_streams_alike(tmp_path):
    data = load_dataset("digits")

    def run(limit):
        pyro.clear_param_store()
        ssvae = pyrovae.SSVAE(data.x_dim, z_dim=4, hidden=(32,), seed=0)
        config = SemiSupervisedConfig(num_labels=50, epochs=1, batch_size=256, device="cpu", device_data_limit=limit)
        history = fit_semisupervised(ssvae, data, config, verbose=False)
        return [{k: v for k, v in row.items() if k != "seconds"} for row in history]

    assert run(0) == run(DEVICE_DATA_LIMIT)


@pytest.mark.slow
def test_the_command_line_streams_with_a_limit_of_zero(tmp_path, capsys):
    def metrics(out, *flags):
        main(["train", "--epochs", "1", "--out", str(out), "--device", "cpu", "--quiet", *flags])
        rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]

    assert metrics(tmp_path / "streamed", "--device-data-limit", "0") == metrics(tmp_path / "in-device")
    saved = pyrovae.checkpoint.load_checkpoint(tmp_path / "streamed" / "checkpoint.pt")["config"]
    assert saved["device_data_limit"] == 0
    with pytest.raises(SystemExit):
        main(["train", "--device-data-limit", "2XB"])
    assert "argument --device-data-limit: cannot read the size '2XB'" in capsys.readouterr().err
