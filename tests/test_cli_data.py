"""``pyrovae train --data FILE``: your own data through the command line (pyrovae.data.files)."""

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from pyrovae.checkpoint import load_checkpoint, save_checkpoint
from pyrovae.cli import main
from pyrovae.data.files import load_file
from tests.common import cli_error

QUICK = ["--device", "cpu", "--quiet", "--z-dim", "2", "--hidden", "16", "--batch-size", "16"]


def rows_file(folder, scale: float = 1.0) -> str:
    x = np.random.default_rng(0).normal(3.0, 2.0, (60, 5)) * scale
    np.save(folder / f"rows{scale:g}.npy", x)
    return str(folder / f"rows{scale:g}.npy")


def test_train_on_an_npy_file_records_the_data_and_resumes_on_them(tmp_path, capsys):
    path, out = rows_file(tmp_path), tmp_path / "run"
    main(["train", "--data", path, "--epochs", "2", "--out", str(out), *QUICK])
    err = capsys.readouterr().err
    assert "pyrovae: likelihood normal (the values are real numbers outside [0, 1]" in err
    assert "override with --likelihood" in err
    state = load_checkpoint(out / "checkpoint.pt")  # weights_only: the record is tensors and plain values
    data = state["extra"]["data"]
    assert data["file"] == str((tmp_path / "rows1.npy").resolve()) and data["name"] == "rows1.npy"
    assert data["image_shape"] == [1, 1, 5] and data["class_names"] is None and data["split_seed"] == 0
    assert state["extra"]["vae"]["likelihood"] == "normal" and data["binarize"] == "none"
    expected = load_file(path).standardization  # the library's standardization of the same training split
    assert torch.equal(data["standardization"]["mean"], expected.mean)
    assert torch.equal(data["standardization"]["std"], expected.std)
    main(["train", "--out", str(out), "--resume", "--epochs", "3", "--quiet"])
    resumed = load_checkpoint(out / "checkpoint.pt")
    assert resumed["epoch"] == 3
    assert torch.equal(resumed["extra"]["data"]["standardization"]["mean"], data["standardization"]["mean"])


def test_evaluate_reports_log_px_in_the_data_units(tmp_path, capsys):
    """The same model of the same rows scaled by 2: the standardized values are the same, and the density of the
    scaled rows is lower by D log 2 per point (the Jacobian of x -> 2x)."""
    out = tmp_path / "run"
    main(["train", "--data", rows_file(tmp_path), "--epochs", "1", "--out", str(out), *QUICK])
    state = load_checkpoint(out / "checkpoint.pt")
    scaled = state["extra"]["data"]
    scaled["file"] = rows_file(tmp_path, scale=2.0)
    scaled["standardization"] = {key: 2 * value for key, value in scaled["standardization"].items()}
    save_checkpoint(tmp_path / "scaled.pt", state)
    capsys.readouterr()
    args = ["--num-samples", "20", "--quiet", "--seed", "3"]
    main(["evaluate", str(out / "checkpoint.pt"), *args, "--out", str(tmp_path / "a.json")])
    assert "log p(x) in the data's own units" in capsys.readouterr().err
    main(["evaluate", str(tmp_path / "scaled.pt"), *args, "--out", str(tmp_path / "b.json")])
    a, b = (json.loads((tmp_path / f"{k}.json").read_text()) for k in "ab")
    assert b["nll"] - a["nll"] == pytest.approx(5 * math.log(2), abs=1e-4)
    assert b["elbo"] - a["elbo"] == pytest.approx(-5 * math.log(2), abs=1e-4) and b["gap"] == pytest.approx(a["gap"])
    std = load_checkpoint(out / "checkpoint.pt")["extra"]["data"]["standardization"]["std"]
    assert a["log_abs_det_jacobian"] == pytest.approx(-std.double().log().sum().item())


def test_train_on_an_image_folder_with_classes(tmp_path, capsys):
    rng = np.random.default_rng(0)
    for name in ("cat", "dog"):
        (tmp_path / "imgs" / name).mkdir(parents=True)
        for i in range(10):
            Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)).save(tmp_path / "imgs" / name / f"{i}.png")
    out = tmp_path / "run"
    main(["train", "--data", str(tmp_path / "imgs"), "--image-size", "8", "--epochs", "1", "--out", str(out), *QUICK])
    assert "likelihood continuous-bernoulli" in capsys.readouterr().err
    data = load_checkpoint(out / "checkpoint.pt")["extra"]["data"]
    assert data["image_shape"] == [3, 8, 8] and data["class_names"] == ["cat", "dog"] and data["image_size"] == (8, 8)
    assert data["standardization"] is None
    main(["plot", "latent-map", str(out / "checkpoint.pt"), "--num-points", "20"])
    assert (out / "latent-map.png").is_file()


def test_an_explicit_likelihood_overrides_the_choice(tmp_path, capsys):
    np.save(tmp_path / "grey.npy", np.random.default_rng(0).random((40, 4)))
    out = tmp_path / "run"
    main(["train", "--data", str(tmp_path / "grey.npy"), "--likelihood", "bernoulli", "--epochs", "1",
          "--out", str(out), *QUICK])  # fmt: skip
    assert "pyrovae: likelihood" not in capsys.readouterr().err
    state = load_checkpoint(out / "checkpoint.pt")
    assert state["extra"]["vae"]["likelihood"] == "bernoulli" and state["extra"]["data"]["binarize"] == "dynamic"


def test_bad_data_files_and_flags_end_with_a_message(tmp_path, capsys):
    (tmp_path / "t.csv").write_text("a,b,kind\n1,2,cat\n3,4,dog\n")
    message = cli_error(capsys, ["train", "--data", str(tmp_path / "t.csv"), "--out", str(tmp_path / "r")])
    assert "t.csv: column 'kind' is not numeric (row 0 (line 2) holds 'cat')" in message
    assert "--label-column kind" in message
    assert "is an option of --data" in cli_error(capsys, ["train", "--label-column", "kind", "--out",
                                                          str(tmp_path / "r")])  # fmt: skip
    with pytest.raises(SystemExit):
        main(["train", "--data", str(tmp_path / "t.csv"), "--dataset", "mnist"])
    assert "not allowed with argument" in capsys.readouterr().err
    out = tmp_path / "run"
    path = rows_file(tmp_path)
    main(["train", "--data", path, "--epochs", "1", "--out", str(out), *QUICK])
    np.save(path, np.random.default_rng(0).random((60, 5)))  # the file changed: values in [0, 1] now
    assert "is not the data this run was trained on" in cli_error(capsys, ["evaluate", str(out / "checkpoint.pt")])
