"""Your own data end to end, one test per format: a file trains 2 epochs through the command line and through the
model object, and both reload. The command-line run, reloaded as a model object, encodes the file's rows as
``pyrovae encode --data`` does (one checkpoint format, one standardization); the model object's own save and load
give identical codes, log-likelihoods and samples."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from pyrovae import VAEModel
from pyrovae.cli import main
from pyrovae.data.binarize import EVAL_SEED, binarize
from pyrovae.data.files import load_file
from tests.common import cli_error, mapped_file

QUICK = ["--device", "cpu", "--quiet", "--z-dim", "2", "--hidden", "16", "--batch-size", "16"]


def npy(folder):
    np.save(folder / "rows.npy", np.random.default_rng(0).normal(3.0, 2.0, (60, 5)))  # real: normal, standardized
    return folder / "rows.npy", {}


def npz(folder):
    rng = np.random.default_rng(1)
    x, x_test = rng.uniform(size=(60, 6)).astype(np.float32), rng.uniform(size=(10, 6)).astype(np.float32)
    np.savez(folder / "grey.npz", x=x, y=rng.integers(0, 3, 60), x_test=x_test, y_test=rng.integers(0, 3, 10))
    return folder / "grey.npz", {}  # grey levels in [0, 1]: continuous Bernoulli


def csv(folder):
    import pandas as pd

    rng = np.random.default_rng(2)
    frame = pd.DataFrame(rng.normal(size=(60, 4)) * [1, 10, 100, 0.1], columns=["a", "b", "c", "d"])
    frame["kind"] = rng.choice(["red", "white"], 60)
    frame.to_csv(folder / "table.csv", index=False)
    return folder / "table.csv", {"label_column": "kind"}


def images(folder):
    rng = np.random.default_rng(3)
    for label in ("cats", "dogs"):
        (folder / "pictures" / label).mkdir(parents=True)
        for i in range(12):
            Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(folder / "pictures" / label / f"{i}.png")
    return folder / "pictures", {}


FORMATS = {"npy": npy, "npz": npz, "csv": csv, "images": images}


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_file_trains_through_the_cli_and_the_model_object_and_reloads(tmp_path, capsys, fmt):
    if fmt == "csv":
        pytest.importorskip("pandas")
    path, options = FORMATS[fmt](tmp_path)
    rows = load_file(path, valid_size=0, test_size=0, standardize=False, **options).train  # the data's own units
    # the command line: train, then reload the run and re-read the file
    run = tmp_path / "run"
    flags = ["--label-column", options["label_column"]] if options else []
    main(["train", "--data", str(path), "--epochs", "2", "--out", str(run), *flags, *QUICK])
    assert (run / "samples.png").exists() == (fmt == "images")  # pictures of images only; of every run its curve
    assert (run / "elbo.png").exists()
    if fmt != "images":
        assert "not images" in cli_error(capsys, ["plot", "samples", str(run / "checkpoint.pt")])
    main(["encode", str(run / "checkpoint.pt"), "--data", str(path), "--out", str(tmp_path / "codes.npz"), *flags])
    codes = np.load(tmp_path / "codes.npz")
    reloaded = VAEModel.load(run)  # the same checkpoint as a model object: the run's standardization with it
    assert reloaded.standardization is not None if fmt in ("npy", "csv") else reloaded.standardization is None
    torch.testing.assert_close(torch.from_numpy(codes["z"]), reloaded.latent(rows.x), rtol=1e-5, atol=1e-6)
    if rows.y is not None:
        assert torch.equal(torch.from_numpy(codes["y"]), rows.y)
    # the model object: train, save, load
    m = VAEModel(path, z_dim=2, hidden=[16], data_options=options)
    assert m.likelihood == reloaded.likelihood  # the same choice from the same values
    m.train(epochs=2, batch_size=16, verbose=False)
    m.save(tmp_path / "object")
    again = VAEModel.load(tmp_path / "object")
    assert torch.equal(again.latent(rows.x), m.latent(rows.x))
    assert torch.equal(again.log_px(rows.x[:5], num_samples=20), m.log_px(rows.x[:5], num_samples=20))
    main(["sample", str(tmp_path / "object" / "checkpoint.pt"), "-n", "7", "--seed", "2", "--out",
          str(tmp_path / "samples.npy")])  # fmt: skip
    assert torch.equal(torch.from_numpy(np.load(tmp_path / "samples.npy")), m.sample(7, seed=2))


def test_a_memory_mapped_file_above_the_device_limit_trains_through_the_cli_and_the_model_object(tmp_path, capsys):
    """A 1 MiB float32 ``.npy`` file of which nothing is carved stays the file's memory map, and with a device data
    limit of 100 kB it is streamed a minibatch at a time, through ``pyrovae train`` and through the model object."""
    path = tmp_path / "big.npy"
    np.save(path, np.random.default_rng(4).uniform(size=(4096, 64)).astype(np.float32))  # 1 MiB > 100 kB
    held_out = ["--valid-size", "0", "--test-size", "0"]
    run = tmp_path / "run"
    main(["train", "--data", str(path), "--epochs", "2", "--device-data-limit", "100kB", "--out", str(run), *held_out,
          *QUICK])  # fmt: skip
    main(["encode", str(run / "checkpoint.pt"), "--split", "train", "--out", str(tmp_path / "codes.npy")])
    cli = VAEModel.load(run)
    rows = load_file(path, valid_size=0, test_size=0)
    assert mapped_file(rows.train.x) == str(path)  # the file's memory map, not a copy
    torch.testing.assert_close(torch.from_numpy(np.load(tmp_path / "codes.npy")), cli.latent(rows.train.x))
    m = VAEModel(path, z_dim=2, hidden=[16], data_options={"valid_size": 0, "test_size": 0})
    assert mapped_file(m.data.train.x) == str(path)
    m.train(epochs=2, batch_size=256, device_data_limit="100kB", verbose=False)
    assert mapped_file(m.data.train.x) == str(path)  # trained on, never copied
    m.save(tmp_path / "object")
    assert torch.equal(VAEModel.load(tmp_path / "object").latent(rows.train.x[:100]), m.latent(rows.train.x[:100]))


def test_encode_sees_new_rows_as_the_model_object_saw_its_data(tmp_path):
    """A model object trained on dynamically binarized grey levels records it; ``pyrovae encode --data`` binarizes
    new rows once with the evaluation seed, as every evaluation split is (the grey levels as they are would be an
    error: not binary)."""
    grey = np.random.default_rng(5).uniform(size=(80, 6)).astype(np.float32)
    np.save(tmp_path / "grey.npy", grey)
    m = VAEModel(grey, z_dim=2, hidden=[16], binarize="dynamic")
    assert m.likelihood == "bernoulli"
    m.train(epochs=1, batch_size=16, verbose=False)
    m.save(tmp_path / "object")
    main(["encode", str(tmp_path / "object" / "checkpoint.pt"), "--data", str(tmp_path / "grey.npy"), "--out",
          str(tmp_path / "codes.npy")])  # fmt: skip
    seen = binarize(torch.from_numpy(grey), seed=EVAL_SEED)
    torch.testing.assert_close(torch.from_numpy(np.load(tmp_path / "codes.npy")), m.latent(seen))
    with pytest.raises(ValueError, match=r"outside \{0, 1\}"):  # the grey rows as they are: refused, not encoded
        m.latent(grey)
