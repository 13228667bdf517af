import json
import math
import re
from dataclasses import replace

import pytest

from pyrovae import CheckpointError, load_dataset, load_ssvae
from pyrovae.checkpoint import load_checkpoint, save_checkpoint
from pyrovae.cli import SS_Z_DIM, build_parser, m1_features, main
from pyrovae.train.semisupervised import accuracy
from tests.common import cli_error, png_size


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
                 "--jit", "--compile", "--particles", "--dreg", "--lr-decay", "--seed", "--device", "--out", "--resume",
                 "--binarize", "--valid-size"):
        assert flag in text


def test_bad_arguments_exit_with_a_message(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["train", "--dataset", "cifar"])
    assert "invalid choice: 'cifar'" in capsys.readouterr().err
    assert re.search("no checkpoint", cli_error(capsys, ["evaluate", str(tmp_path / "none.pt")]))
    assert re.search("no checkpoint", cli_error(capsys, ["train", "--out", str(tmp_path / "none"), "--resume"]))
    assert not (tmp_path / "none").exists()  # nothing made for a run that does not exist
    assert "choose one of them" in cli_error(capsys, ["train", "--jit", "--compile", "--out", str(tmp_path / "c")])


def test_errors_print_one_line_and_debug_shows_the_traceback(tmp_path, capsys, monkeypatch):
    (tmp_path / "run").mkdir()
    message = cli_error(capsys, ["evaluate", str(tmp_path / "run")])
    assert message == f"{tmp_path / 'run'} is a folder, not a checkpoint file (it holds no checkpoint.pt)"
    with pytest.raises(CheckpointError, match="is a folder"):
        main(["evaluate", str(tmp_path / "run"), "--debug"])
    monkeypatch.setenv("PYROVAE_DEBUG", "1")
    with pytest.raises(CheckpointError, match="is a folder"):
        main(["evaluate", str(tmp_path / "run")])
    monkeypatch.delenv("PYROVAE_DEBUG")
    for limit in ("-5", "0"):  # evaluate --limit -5 once evaluated all but the last 5 points
        with pytest.raises(SystemExit) as exit_:
            main(["evaluate", str(tmp_path / "run"), "--limit", limit])
        assert exit_.value.code == 2 and "--limit: must be a positive integer" in capsys.readouterr().err


def test_evaluate_prints_its_figures_when_its_file_cannot_be_written(tmp_path, capsys):
    main(["train", "--epochs", "1", "--out", str(tmp_path / "run"), "--quiet"])
    (tmp_path / "file").write_text("not a folder")
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        main(["evaluate", str(tmp_path / "run" / "checkpoint.pt"), "--num-samples", "10", "--limit", "5", "--quiet",
              "--out", str(tmp_path / "file" / "nll.json")])  # fmt: skip
    out, err = capsys.readouterr()
    assert exit_.value.code == 1 and json.loads(out)["num_points"] == 5  # the figures are on the screen
    assert err.startswith(f"pyrovae: error: cannot write {tmp_path / 'file' / 'nll.json'}: a file stands where its "
                          "folder should be; choose another path (nothing was written); the figures printed above were "
                          "not saved: pass --out FILE")  # fmt: skip
    assert "Traceback" not in err


def test_without_out_a_new_run_takes_the_next_free_folder_and_resume_the_first(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for _ in range(2):  # the README's set-up line, run twice
        main(["train", "--epochs", "1", "--quiet"])
    assert "runs/digits holds an earlier run (--resume continues it): this one writes runs/digits-2" in (
        capsys.readouterr().err)
    assert [load_checkpoint(tmp_path / "runs" / name / "checkpoint.pt")["epoch"] for name in ("digits", "digits-2")] \
        == [1, 1]  # fmt: skip
    main(["train", "--epochs", "2", "--resume", "--quiet"])
    assert load_checkpoint(tmp_path / "runs" / "digits" / "checkpoint.pt")["epoch"] == 2
    assert not (tmp_path / "runs" / "digits-3").exists()


def test_resume_says_when_there_is_nothing_to_train_and_epochs_is_the_total(tmp_path, capsys):
    main(["train", "--epochs", "2", "--out", str(tmp_path), "--quiet"])
    capsys.readouterr()
    main(["train", "--epochs", "2", "--out", str(tmp_path), "--resume"])
    assert "has trained all 2 epochs: nothing to train; give more than 2 epochs (the total)" in capsys.readouterr().err
    message = cli_error(capsys, ["train", "--epochs", "1", "--out", str(tmp_path), "--resume", "--quiet"])
    assert "has trained 2 epochs already, and epochs=1 is the total to reach" in message
    assert "(e.g. --epochs 3 to train 1 more)" in message
    assert load_checkpoint(tmp_path / "checkpoint.pt")["epoch"] == 2


def test_the_data_folder_is_remembered_for_resume_evaluate_and_plot(tmp_path, capsys, fake_kmnist, monkeypatch):
    fake_kmnist(tmp_path / "data" / "KMNIST" / "raw")
    run = tmp_path / "run"
    common = ["--dataset", "kmnist", "--valid-size", "1", "--batch-size", "2", "--hidden", "8", "--z-dim", "2"]
    main(["train", *common, "--epochs", "1", "--data-dir", str(tmp_path / "data"), "--out", str(run), "--quiet"])
    settings = load_checkpoint(run / "checkpoint.pt")["extra"]["data"]
    assert settings["data_dir"] == str((tmp_path / "data").resolve())
    monkeypatch.chdir(tmp_path / "run")  # elsewhere: a relative --data-dir would not be found from here
    main(["train", "--epochs", "2", "--out", str(run), "--resume", "--quiet"])
    main(["evaluate", str(run / "checkpoint.pt"), "--num-samples", "5", "--quiet"])
    main(["plot", "samples", str(run / "checkpoint.pt"), "--out", str(tmp_path / "s.png")])
    assert load_checkpoint(run / "checkpoint.pt")["epoch"] == 2 and (tmp_path / "s.png").exists()
    capsys.readouterr()
    message = cli_error(capsys, ["evaluate", str(run / "checkpoint.pt"), "--data-dir", str(tmp_path / "none")])
    assert "could not load kmnist" in message.lower() or "KMNIST" in message


def test_checkpoints_without_their_settings_or_with_inf_weights_give_clear_errors(tmp_path, capsys):
    main(["train", "--epochs", "1", "--out", str(tmp_path / "run"), "--quiet"])
    state = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    del state["format"]
    save_checkpoint(tmp_path / "nodata.pt", {**state, "extra": {"vae": state["extra"]["vae"]}})
    message = cli_error(capsys, ["evaluate", str(tmp_path / "nodata.pt")])
    assert message.startswith(f"{tmp_path / 'nodata.pt'} has no entry ['extra']['data']")
    save_checkpoint(tmp_path / "run" / "checkpoint.pt", {**state, "extra": {"data": state["extra"]["data"]}})
    message = cli_error(capsys, ["train", "--out", str(tmp_path / "run"), "--resume", "--epochs", "2"])
    assert message.startswith(f"{tmp_path / 'run' / 'checkpoint.pt'} has no entry ['extra']['vae']")
    state["params"] = {name: p * math.inf for name, p in state["params"].items()}
    save_checkpoint(tmp_path / "inf.pt", state)  # e.g. saved by an older version after training diverged
    assert "holds non-finite weights" in cli_error(capsys, ["plot", "samples", str(tmp_path / "inf.pt")])
    assert "holds non-finite weights" in cli_error(capsys, ["evaluate", str(tmp_path / "inf.pt")])


def test_train_ss_writes_checkpoint_metrics_and_pictures_and_loads(tmp_path, capsys):
    out = tmp_path / "ss"
    main(["train-ss", "--labels", "50", "--epochs", "2", "--z-dim", "4", "--hidden", "32", "--out", str(out),
          "--device", "cpu", "--quiet", "--shift", "1", "--consistency", "2"])  # fmt: skip
    summary = json.loads(capsys.readouterr().out)
    assert summary["epoch"] == 2 and 0 <= summary["test_accuracy"] <= 1 and summary["best_valid_epoch"] in (1, 2)
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2
    # 20 test images in rows of 1 + 10 pictures (8x8 enlarged to 32x32, 2 px padding)
    assert png_size(out / "analogies.png") == (11 * 34 + 2, 20 * 34 + 2)
    assert png_size(out / "accuracy.png") == (600, 420)
    ssvae, features, state = load_ssvae(out / "checkpoint.pt")
    assert features is None and state["extra"]["train"]["num_labels"] == 50
    data = load_dataset("digits")
    assert accuracy(ssvae.predict, data.test) == pytest.approx(summary["test_accuracy"])
    main(["evaluate", str(out / "checkpoint.pt"), "--num-samples", "100", "--limit", "10", "--quiet"])
    nll = json.loads(capsys.readouterr().out)  # log p(x) with the label summed out
    assert nll["num_points"] == 10 and nll["elbo"] < nll["iwae"] < -nll["nll"] < 0
    main(["train-ss", "--epochs", "3", "--labels", "999", "--out", str(out), "--resume", "--quiet",
          "--lr-milestones", "2", "--lr-gamma", "0.5"])  # fmt: skip
    saved = load_checkpoint(out / "checkpoint.pt")["config"]
    assert (saved["num_labels"], saved["shift"], saved["consistency"]) == (50, 1, 2)
    assert (saved["lr_milestones"], saved["lr_gamma"]) == ((2,), 0.5)
    assert json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])["lr"] == 5e-4
    main(["train", "--epochs", "1", "--out", str(tmp_path / "vae"), "--device", "cpu", "--quiet"])
    with pytest.raises(CheckpointError, match="no SSVAE"):
        load_ssvae(tmp_path / "vae" / "checkpoint.pt")
    message = cli_error(capsys, ["plot", "samples", str(out / "checkpoint.pt")])
    assert re.search("not a VAE or autoencoder checkpoint", message)


def test_train_ss_on_grey_levels(tmp_path, capsys):
    """--likelihood continuous-bernoulli keeps grey levels (--binarize auto -> none); a Bernoulli likelihood on
    grey levels, or a pixel likelihood with --m1, is refused."""
    main(["train-ss", "--labels", "50", "--epochs", "1", "--z-dim", "4", "--hidden", "32", "--likelihood",
          "continuous-bernoulli", "--out", str(tmp_path / "cb"), "--device", "cpu", "--quiet"])  # fmt: skip
    capsys.readouterr()
    state = load_checkpoint(tmp_path / "cb" / "checkpoint.pt")
    assert state["extra"]["data"]["binarize"] == "none"
    assert state["extra"]["ssvae"]["likelihood"] == "continuous-bernoulli"
    ssvae, _, _ = load_ssvae(tmp_path / "cb" / "checkpoint.pt")
    assert ssvae.likelihood == "continuous-bernoulli"
    message = cli_error(capsys, ["train-ss", "--binarize", "none", "--out", str(tmp_path / "b"), "--quiet"])
    assert re.search("needs binary data", message)
    message = cli_error(
        capsys, ["train-ss", "--likelihood", "normal", "--m1", "m1.pt", "--out", str(tmp_path / "m"), "--quiet"]
    )
    assert re.search("with --m1, M2 models the VAE's codes", message)


def test_train_ss_with_an_auxiliary_variable(tmp_path, capsys):
    """--a-dim trains the ADGM; its checkpoint loads as one, log p(x) is estimated with a summed out too."""
    out = tmp_path / "adgm"
    main(["train-ss", "--labels", "50", "--epochs", "1", "--z-dim", "4", "--hidden", "32", "--a-dim", "3",
          "--out", str(out), "--device", "cpu", "--quiet"])  # fmt: skip
    assert json.loads(capsys.readouterr().out)["epoch"] == 1
    ssvae, _, state = load_ssvae(out / "checkpoint.pt")
    assert ssvae.a_dim == state["extra"]["ssvae"]["a_dim"] == 3 and ssvae.aux_encoder.z_dim == 3
    main(["evaluate", str(out / "checkpoint.pt"), "--num-samples", "100", "--limit", "10", "--quiet"])
    nll = json.loads(capsys.readouterr().out)
    assert nll["num_points"] == 10 and nll["elbo"] < nll["iwae"] < -nll["nll"] < 0


def test_train_ss_joint_schedule_defaults_to_kingmas_alpha(tmp_path, capsys):
    """--schedule joint without --alpha weighs each label 0.1 * N / labels (Kingma et al.); --alpha overrides."""
    for name, alpha in (("kingma", []), ("given", ["--alpha", "7"])):
        main(["train-ss", "--labels", "50", "--epochs", "1", "--z-dim", "4", "--hidden", "32", "--schedule", "joint",
              "--out", str(tmp_path / name), "--device", "cpu", "--quiet", *alpha])  # fmt: skip
    capsys.readouterr()
    num_train = len(load_dataset("digits").train)
    state = load_checkpoint(tmp_path / "kingma" / "checkpoint.pt")
    assert state["config"]["schedule"] == "joint"
    assert state["extra"]["ssvae"]["alpha"] == pytest.approx(0.1 * num_train / 50)
    assert load_checkpoint(tmp_path / "given" / "checkpoint.pt")["extra"]["ssvae"]["alpha"] == 7.0


def test_train_ss_on_m1_features(tmp_path, capsys):
    """M1+M2: a VAE from pyrovae train, then M2 on its active codes; images are classified through both."""
    main(["train", "--epochs", "3", "--z-dim", "8", "--out", str(tmp_path / "m1"), "--device", "cpu", "--quiet"])
    main(["train-ss", "--labels", "50", "--epochs", "2", "--hidden", "32", "--out", str(tmp_path / "m2"), "--m1",
          str(tmp_path / "m1" / "checkpoint.pt"), "--device", "cpu", "--quiet"])  # fmt: skip
    capsys.readouterr()
    ssvae, features, _ = load_ssvae(tmp_path / "m2" / "checkpoint.pt")
    assert ssvae.likelihood == "normal" and ssvae.x_dim == features.dim <= 8
    assert ssvae.z_dim == SS_Z_DIM["m1"] == 10  # the default style dimension on M1 codes
    data = load_dataset("digits")
    summary = json.loads((tmp_path / "m2" / "metrics.jsonl").read_text().splitlines()[-1])
    assert accuracy(lambda x: ssvae.predict(features(x)), data.test) == pytest.approx(summary["test_accuracy"])
    assert png_size(tmp_path / "m2" / "analogies.png") == (11 * 34 + 2, 20 * 34 + 2)
    message = cli_error(capsys, ["evaluate", str(tmp_path / "m2" / "checkpoint.pt"), "--num-samples", "10", "--quiet"])
    assert re.search(r"M1\+M2 model", message)
    with pytest.raises(ValueError, match="not of 'mnist'"):
        m1_features(str(tmp_path / "m1" / "checkpoint.pt"), replace(data, name="mnist"))


def test_train_ss_refuses_an_m1_without_active_units(tmp_path, capsys):
    """A collapsed M1 (a beta-VAE whose KL weight pushed every q(z|x) onto the prior) is refused with the reason."""
    main(["train", "--epochs", "10", "--lr", "1e-2", "--beta", "100", "--z-dim", "8", "--out", str(tmp_path / "m1"),
          "--device", "cpu", "--quiet"])  # fmt: skip
    message = cli_error(
        capsys, ["train-ss", "--m1", str(tmp_path / "m1" / "checkpoint.pt"), "--out", str(tmp_path / "ss"), "--quiet"]
    )
    assert re.search("no active latent unit .* posterior collapse", message)


def test_plot_draws_every_kind_of_picture(tmp_path, capsys):
    run = tmp_path / "vae"
    main(["train", "--epochs", "2", "--z-dim", "2", "--out", str(run), "--device", "cpu", "--quiet"])
    checkpoint = str(run / "checkpoint.pt")
    sizes = {  # 8x8 digits are enlarged to 32x32, 2 px of padding
        "latent-map": (600, 600),
        "manifold": (5 * 34 + 2, 5 * 34 + 2),
        "interpolation": (6 * 34 + 2, 3 * 34 + 2),
        "traversal": (6 * 34 + 2, 2 * 34 + 2),
        "attribute": (6 * 34 + 2, 8 * 34 + 2),  # input image + weights 0, 0.5, 1, 1.5, 2; 8 images
        "samples": (8 * 34 + 2, 8 * 34 + 2),
        "reconstructions": (16 * 34 + 2, 2 * 34 + 2),
    }
    for kind, size in sizes.items():
        main(["plot", kind, checkpoint, "--num-points", "100", "--grid", "5", "--steps", "6", "--pairs", "3",
              "--units", "2", "--device", "cpu"])  # fmt: skip
        trained = kind in ("samples", "reconstructions")  # training drew these: plot writes beside them
        assert png_size(run / f"{kind}{'-2' if trained else ''}.png") == size, kind
    main(["plot", "attribute", checkpoint, "--attribute", "class:3", "--out", str(tmp_path / "three.png")])
    assert png_size(tmp_path / "three.png") == sizes["attribute"]
    message = cli_error(capsys, ["plot", "attribute", checkpoint, "--attribute", "bold"])
    assert re.search("unknown attribute 'bold'", message)
    state = load_checkpoint(checkpoint)
    save_checkpoint(tmp_path / "bare.pt", {**state, "extra": {"vae": state["extra"]["vae"]}})
    assert re.search("does not record its dataset", cli_error(capsys, ["plot", "samples", str(tmp_path / "bare.pt")]))


def test_autoencoder_with_tensorboard_then_plots_and_refuses_evaluate(tmp_path, capsys):
    main(["train", "--model", "autoencoder", "--epochs", "2", "--z-dim", "3", "--out", str(tmp_path), "--device",
          "cpu", "--quiet", "--tensorboard"])  # fmt: skip
    assert load_checkpoint(tmp_path / "checkpoint.pt")["extra"]["vae"]["model"] == "autoencoder"
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    main(["plot", "latent-map", str(tmp_path / "checkpoint.pt"), "--num-points", "50"])
    assert png_size(tmp_path / "latent-map.png") == (600, 600)
    assert re.search("z_dim = 2", cli_error(capsys, ["plot", "manifold", str(tmp_path / "checkpoint.pt")]))
    assert re.search("no density", cli_error(capsys, ["evaluate", str(tmp_path / "checkpoint.pt")]))
    message = cli_error(capsys, ["train-ss", "--m1", str(tmp_path / "checkpoint.pt"), "--out", str(tmp_path / "ss")])
    assert re.search("M1 features come from a VAE", message)
