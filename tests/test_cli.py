import json

import pytest

from pyrovae.checkpoint import load_checkpoint
from pyrovae.cli import build_parser, main
from tests.common import png_size


def test_train_writes_checkpoint_metrics_and_pictures(tmp_path, capsys):
    main(["train", "--epochs", "3", "--out", str(tmp_path), "--device", "cpu", "--quiet"])
    summary = json.loads(capsys.readouterr().out)
    assert summary["epoch"] == 3 and summary["test_elbo"] < 0
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert load_checkpoint(tmp_path / "checkpoint.pt")["extra"]["vae"]["z_dim"] == 16
    # 8x8 digits are enlarged 4x to 32x32; save_image pads 2 px around each image
    assert png_size(tmp_path / "samples.png") == (8 * 34 + 2, 8 * 34 + 2)
    assert png_size(tmp_path / "reconstructions.png") == (16 * 34 + 2, 2 * 34 + 2)
    assert png_size(tmp_path / "elbo.png") == (600, 420)


def test_resume_continues_with_saved_settings(tmp_path, capsys):
    main(["train", "--epochs", "2", "--z-dim", "3", "--out", str(tmp_path), "--device", "cpu", "--quiet"])
    main(["train", "--epochs", "3", "--z-dim", "99", "--out", str(tmp_path), "--resume", "--quiet"])
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    assert state["epoch"] == 3 and state["extra"]["vae"]["z_dim"] == 3


def test_evaluate_reports_nll_of_a_trained_checkpoint(tmp_path, capsys):
    main(["train", "--epochs", "2", "--out", str(tmp_path), "--device", "cpu", "--quiet"])
    capsys.readouterr()
    main(["evaluate", str(tmp_path / "checkpoint.pt"), "--num-samples", "200", "--limit", "40", "--quiet"])
    summary = json.loads(capsys.readouterr().out)
    assert summary == json.loads((tmp_path / "nll_test.json").read_text())
    assert summary["num_points"] == 40 and summary["num_samples"] == 200 and summary["epoch"] == 2
    assert summary["binarize"] == "dynamic" and summary["eval_binarization_seed"] == 0
    # the estimate sits between the ELBO and zero, and the IWAE-50 bound between the ELBO and the estimate
    assert summary["elbo"] < summary["iwae"] < -summary["nll"] < 0 and summary["gap"] > 0
    main(["evaluate", str(tmp_path / "checkpoint.pt"), "--num-samples", "20", "--split", "train", "--limit", "5",
          "--out", str(tmp_path / "train.json"), "--quiet"])
    assert json.loads((tmp_path / "train.json").read_text())["split"] == "train"


def test_help_documents_every_flag(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--help"])
    text = capsys.readouterr().out
    for flag in ("--dataset", "--data-dir", "--z-dim", "--hidden", "--epochs", "--batch-size", "--lr", "--elbo",
                 "--jit", "--particles", "--seed", "--device", "--out", "--resume", "--binarize", "--valid-size"):
        assert flag in text


def test_bad_arguments_exit_with_a_message(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["train", "--dataset", "cifar"])
    assert "invalid choice: 'cifar'" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        main(["evaluate", str(tmp_path / "none.pt")])
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        main(["train", "--out", str(tmp_path / "none"), "--resume"])
