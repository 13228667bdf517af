"""Every example runs with tiny settings."""

import importlib.util

from tests.common import REPO, png_size


def load(name):
    spec = importlib.util.spec_from_file_location(name, REPO / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_train_vae_example(tmp_path):
    example = load("train_vae")
    history = example.main(example.parser().parse_args(["--epochs", "2", "--out", str(tmp_path), "--device", "cpu"]))
    assert len(history) == 2
    for name in ("samples", "reconstructions", "elbo"):
        assert png_size(tmp_path / f"{name}.png")[0] > 0


def test_compose_example():
    example = load("compose")
    result = example.main(example.parser().parse_args(["--epochs", "3", "--steps", "5"]))
    assert result["line"].shape == (1, 5, 32)
    assert result["reconstructions"].shape == (16, 8, 32)
    assert -40 < result["test_elbo"] < 0  # 3 epochs: well above the untrained -44 nats


def test_semi_supervised_example(tmp_path):
    example = load("semi_supervised")
    args = ["--labels", "50", "100", "--epochs", "2", "--z-dim", "4", "--hidden", "32", "--num-samples", "50",
            "--out", str(tmp_path), "--device", "cpu"]  # fmt: skip
    rows = example.main(example.parser().parse_args(args))
    assert [row["labels"] for row in rows] == [50, 100]
    assert all(0 <= row["test_accuracy"] <= 1 and row["log_px"] < 0 for row in rows)
    assert png_size(tmp_path / "labels-100" / "analogies.png")[0] > 0
