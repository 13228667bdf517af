import json

import pytest
import torch

from pyrovae import load_model
from pyrovae.checkpoint import load_checkpoint
from pyrovae.cli import CVAE_SMALL_Z_DIM, CVAE_Z_DIM, main
from pyrovae.models.cvae import CVAE
from tests.common import cli_error, png_size

#: a small, quick CVAE on the embedded digits
SMALL = ["--hidden", "32", "--z-dim", "4", "--device", "cpu", "--quiet"]


def test_train_cvae_writes_both_runs_the_nlls_and_the_figure(tmp_path, capsys):
    main(["train-cvae", "--quadrants", "1", "--epochs", "2", "--baseline-epochs", "1", "--num-samples", "20",
          "--out", str(tmp_path), *SMALL])  # fmt: skip
    summary = json.loads(capsys.readouterr().out)
    assert summary["epoch"] == 2 and summary["test_nll"] > 0 and summary["baseline_test_nll"] > 0
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    baseline_rows = (tmp_path / "baseline" / "metrics.jsonl").read_text().splitlines()
    assert len(baseline_rows) == 1
    # the baseline's exact log-likelihood is its ELBO: the test NLL is minus its last test ELBO
    baseline_state = load_checkpoint(tmp_path / "baseline" / "checkpoint.pt")
    assert summary["baseline_test_nll"] == pytest.approx(-baseline_state["history"][-1]["test_elbo"], rel=1e-4)
    assert json.loads((tmp_path / "nll_test.json").read_text())["nll"] == summary["test_nll"]
    cvae, state, _ = load_model(tmp_path / "checkpoint.pt")
    assert isinstance(cvae, CVAE) and cvae.quadrants == 1 and cvae.z_dim == 4
    # the CVAE's checkpoint holds the baseline that was trained first
    trained, _, _ = load_model(tmp_path / "baseline" / "checkpoint.pt")
    assert all(torch.equal(a, b) for a, b in zip(trained.parameters(), cvae.baseline.parameters(), strict=True))
    # rows: inputs, images, baseline, 4 completions; 10 digits enlarged 4x to 32x32, 2 px of padding
    assert png_size(tmp_path / "cvae.png") == (10 * 34 + 2, 7 * 34 + 2)
    # no prior over whole images: sample, encode and plot refuse both models with the way out
    for path in (tmp_path / "checkpoint.pt", tmp_path / "baseline" / "checkpoint.pt"):
        for command in (["sample", str(path), "-n", "2", "--out", str(tmp_path / "s.npy")],
                        ["encode", str(path), "--out", str(tmp_path / "e.npy")], ["plot", "samples", str(path)]):
            assert "of pyrovae train-cvae: it models an image's hidden quadrants" in cli_error(capsys, command)


def test_resume_continues_the_cvae_with_its_saved_settings(tmp_path, capsys):
    main(["train-cvae", "--quadrants", "3", "--epochs", "1", "--num-samples", "10", "--out", str(tmp_path), *SMALL])
    main(["train-cvae", "--quadrants", "2", "--epochs", "2", "--num-samples", "10", "--out", str(tmp_path), "--resume",
          "--quiet"])  # fmt: skip
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    assert state["epoch"] == 2 and state["extra"]["vae"]["quadrants"] == 3
    assert len((tmp_path / "baseline" / "metrics.jsonl").read_text().splitlines()) == 1  # trained once
    capsys.readouterr()
    main(["evaluate", str(tmp_path / "checkpoint.pt"), "--num-samples", "20", "--limit", "10", "--quiet"])
    summary = json.loads(capsys.readouterr().out)
    assert summary["nll"] > 0 and summary["latent_dim"] == 4 and summary["epoch"] == 2


def test_user_errors_are_reported_without_a_traceback(tmp_path, capsys):
    message = cli_error(capsys, ["train-cvae", "--binarize", "none", "--out", str(tmp_path), *SMALL])
    assert "--likelihood bernoulli needs binary data" in message
    message = cli_error(capsys, ["train-cvae", "--resume", "--out", str(tmp_path / "nothing"), *SMALL])
    assert "checkpoint" in message


def test_the_default_code_is_small_for_small_images(tmp_path, capsys):
    """The tutorial's z = 200 does not train on the 8x8 digits (the CVAE fell behind its baseline there): without
    --z-dim, images under 28x28 get a code of CVAE_SMALL_Z_DIM."""
    main(["train-cvae", "--epochs", "1", "--num-samples", "5", "--hidden", "16", "--out", str(tmp_path), "--quiet"])
    assert load_checkpoint(tmp_path / "checkpoint.pt")["extra"]["vae"]["z_dim"] == CVAE_SMALL_Z_DIM < CVAE_Z_DIM
