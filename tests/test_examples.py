"""Every example runs with tiny settings."""

import importlib.util
import json

import pytest

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


def test_global_latent_example(tmp_path):
    """The VAE in the caller's plate has its plain ELBO; trained with a global temperature, its param store
    reloaded in a new process gives the same temperature and log p(x | T)."""
    example = load("global_latent")
    args = ["--epochs", "2", "--num-samples", "50", "--test-points", "20", "--hidden", "32", "--out", str(tmp_path)]
    result = example.main(example.parser().parse_args(args))
    plain, mine = result["elbos"]
    assert mine == pytest.approx(plain, rel=1e-5)
    assert result["history"][-1]["test_elbo"] > result["history"][0]["test_elbo"]
    assert result["there"]["temperature"] == pytest.approx(result["here"]["temperature"], rel=1e-6)
    assert result["there"]["log_px"] == pytest.approx(result["here"]["log_px"], rel=1e-6)
    assert len(result["here"]["log_px"]) == 20 and all(v < 0 for v in result["here"]["log_px"])


@pytest.mark.parametrize("extra", [["--a-dim", "0"],
                                   ["--a-dim", "3", "--shift", "1", "--consistency", "2", "--lr-milestones", "1"]])
def test_semi_supervised_example(tmp_path, extra):
    example = load("semi_supervised")
    args = ["--labels", "50", "100", "--epochs", "2", "--z-dim", "4", "--hidden", "32", "--num-samples", "50",
            "--out", str(tmp_path), "--device", "cpu", *extra]  # fmt: skip
    rows = example.main(example.parser().parse_args(args))
    assert [row["labels"] for row in rows] == [50, 100]
    assert all(0 <= row["test_accuracy"] <= 1 and row["log_px"] < 0 for row in rows)
    assert png_size(tmp_path / "labels-100" / "analogies.png")[0] > 0
    last = json.loads((tmp_path / "labels-100" / "metrics.jsonl").read_text().splitlines()[-1])
    assert last.get("lr") == (pytest.approx(1e-4) if "--lr-milestones" in extra else None)


def test_vae_vs_ae_example(tmp_path):
    import torch

    from pyrovae.viz.latent import decode

    example = load("vae_vs_ae")
    args = ["--epochs", "2", "--z-dim", "4", "--hidden", "32", "--num-samples", "100", "--classifier-iters", "5",
            "--out", str(tmp_path), "--device", "cpu"]  # fmt: skip
    results = example.main(example.parser().parse_args(args))
    names = ("real", "VAE", "autoencoder")
    for name in names:
        row = results[name]
        assert 0 <= row["confident_share"] <= 1
        assert 0 <= row["class_entropy"] <= torch.log(torch.tensor(10.0)) + 1e-6
        assert row["nearest_distance"] >= 0 and row["frechet_distance"] >= 0
    assert all(results[name]["train_elbo"] < 0 and results[name]["test_elbo"] < 0 for name in names[1:])
    assert results["VAE"] != results["autoencoder"]
    assert png_size(tmp_path / "vae_vs_ae.png")[0] > 0
    saved = json.loads((tmp_path / "vae_vs_ae.json").read_text())
    assert set(names) <= set(saved) and saved["settings"]["epochs"] == 2
    for folder in ("vae", "autoencoder"):
        assert (tmp_path / folder / "checkpoint.pt").is_file()
    # after both trainings, each model decodes with its own decoder's weights, not the param store's latest
    vae, ae = results["models"]["VAE"], results["models"]["autoencoder"]
    z = torch.randn(5, 4)
    for model in (vae, ae):
        assert torch.allclose(decode(model.model, z), torch.sigmoid(model.decoder(z)).detach())
    assert not torch.allclose(decode(vae.model, z), decode(ae.model, z))


def test_latent_space_example(tmp_path):
    example = load("latent_space")
    tiny = ["--epochs", "1", "--hidden", "32", "--grid", "5", "--steps", "4", "--pairs", "2", "--units", "2",
            "--device", "cpu"]  # fmt: skip
    result = example.main(example.parser().parse_args([*tiny, "--out", str(tmp_path / "train")]))
    names = ("latent_map", "manifold", "interpolation", "interpolation_spherical", "traversal", "attribute")
    assert set(result["paths"]) == set(names)
    for name in names:
        assert png_size(result["paths"][name])[0] > 0
    width, height = png_size(result["paths"]["manifold"])
    assert width == height  # a square grid of 5 x 5 images
    assert len(result["attribute_ink"]) == len(result["attribute_weights"]) == 5
    assert all(0 <= v <= 1 for v in result["attribute_ink"])
    # the same pictures from the checkpoint the run wrote, without training
    checkpoint = str(tmp_path / "train" / "checkpoint.pt")
    reloaded = example.main(example.parser().parse_args([*tiny, "--checkpoint", checkpoint, "--out", str(tmp_path)]))
    assert reloaded["attribute_ink"] == result["attribute_ink"]


def test_latent_space_example_tsne(tmp_path):
    example = load("latent_space")
    args = ["--epochs", "1", "--z-dim", "3", "--hidden", "32", "--num-points", "40", "--steps", "3", "--pairs", "1",
            "--units", "2", "--out", str(tmp_path), "--device", "cpu"]  # fmt: skip
    result = example.main(example.parser().parse_args(args))
    assert result["paths"]["manifold"] is None and not (tmp_path / "manifold.png").exists()
    assert png_size(tmp_path / "latent_map.png") == (600, 600)
    assert png_size(tmp_path / "attribute.png")[0] > 0


def test_your_data_example(tmp_path):
    """The CSV it writes trains through the model object, which reports log p(x) of the held-out rows in the data's
    units: the importance-sampled estimate above the ELBO, and a diagonal Gaussian below a full one (the measurements
    are strongly correlated)."""
    pytest.importorskip("pandas")
    example = load("your_data")
    args = ["--dataset", "wine", "--epochs", "3", "--num-samples", "50", "--out", str(tmp_path)]
    result = example.main(example.parser().parse_args(args))
    assert (tmp_path / "wine.csv").is_file()
    assert result["vae"] > result["test_elbo"]
    assert result["gaussian_full"] > result["gaussian_diagonal"]
