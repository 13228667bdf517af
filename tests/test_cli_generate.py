"""``pyrovae sample`` and ``pyrovae encode``: what they write is what the library computes from the checkpoint; and
``pyrovae plot`` never replaces a picture that no ``--out`` named."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from pyrovae import load_dataset, load_vae
from pyrovae.cli import main
from pyrovae.seeding import set_seed
from pyrovae.viz.latent import posterior_means
from pyrovae.viz.plots import prior_samples
from tests.common import cli_error, png_size


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A VAE trained 2 epochs on the digits by ``pyrovae train``: its folder."""
    out = tmp_path_factory.mktemp("run")
    main(["train", "--epochs", "2", "--z-dim", "3", "--out", str(out), "--device", "cpu", "--quiet"])
    return out


def test_sample_writes_the_models_prior_samples(run, tmp_path, capsys):
    checkpoint = str(run / "checkpoint.pt")
    main(["sample", checkpoint, "-n", "10", "--seed", "3", "--out", str(tmp_path / "a.npy"),
          "--out", str(tmp_path / "a.png"), "--device", "cpu"])  # fmt: skip
    assert capsys.readouterr().out.split() == [str(tmp_path / "a.npy"), str(tmp_path / "a.png")]
    written = np.load(tmp_path / "a.npy")
    assert written.shape == (10, 64) and written.dtype == np.float32
    vae, _ = load_vae(checkpoint)
    set_seed(3)
    expected = prior_samples(vae.model, 10)  # the same weights, seed and kernels
    assert torch.equal(torch.from_numpy(written), expected)
    assert 0 < written.min() and written.max() < 1  # means of a Bernoulli likelihood: grey levels
    assert png_size(tmp_path / "a.png") == (3 * 34 + 2, 4 * 34 + 2)  # 8x8 digits shown 32x32, 3 per row, 2 px pad
    main(["sample", checkpoint, "-n", "10", "--seed", "4", "--out", str(tmp_path / "b.npy")])
    assert not np.array_equal(np.load(tmp_path / "b.npy"), written)  # another seed, other codes
    main(["sample", checkpoint, "-n", "200", "--draw", "--out", str(tmp_path / "draws.npy")])
    draws = np.load(tmp_path / "draws.npy")
    assert set(np.unique(draws)) == {0.0, 1.0}  # draws of a Bernoulli likelihood are binary
    assert abs(draws.mean() - expected.mean().item()) < 0.05  # around the means


def test_encode_writes_the_posterior_means_of_a_split(run, tmp_path, capsys):
    checkpoint = str(run / "checkpoint.pt")
    main(["encode", checkpoint, "--out", str(tmp_path / "codes.npz"), "--device", "cpu"])
    codes = np.load(tmp_path / "codes.npz")
    vae, _ = load_vae(checkpoint)
    data = load_dataset("digits")  # the run's data: the digits, dynamically binarized, test split binarized once
    assert torch.equal(torch.from_numpy(codes["z"]), posterior_means(vae.guide, data.fixed_x("test")))
    assert torch.equal(torch.from_numpy(codes["y"]), data.test.y)
    main(["encode", checkpoint, "--split", "valid", "--out", str(tmp_path / "valid.npy")])
    assert np.load(tmp_path / "valid.npy").shape == (len(data.valid), 3)
    assert re.search("latent sites are z$", cli_error(capsys, ["encode", checkpoint, "--site", "z2", "--out", "c.npy"]))


def test_encode_picks_a_layer_of_a_two_layer_vae(tmp_path):
    main(["train", "--model", "two-layer", "--z-dim", "2", "--hidden", "8", "--epochs", "1", "--out",
          str(tmp_path / "run"), "--quiet"])  # fmt: skip
    checkpoint = str(tmp_path / "run" / "checkpoint.pt")
    for site, width in ((None, 4), ("z1", 4), ("z2", 2)):
        main(["encode", checkpoint, "--out", str(tmp_path / "z.npy"), *(["--site", site] if site else [])])
        assert np.load(tmp_path / "z.npy").shape == (300, width)


def test_sample_and_encode_refuse_what_they_cannot_write(run, tmp_path, capsys):
    checkpoint = str(run / "checkpoint.pt")
    assert re.search(r"--out a\.txt: .* \.npy or \.png", cli_error(capsys, ["sample", checkpoint, "--out", "a.txt"]))
    assert re.search(r"\.npy or \.npz", cli_error(capsys, ["encode", checkpoint, "--out", "a.png"]))
    main(["train", "--model", "autoencoder", "--epochs", "1", "--z-dim", "2", "--out", str(tmp_path / "ae"),
          "--quiet"])  # fmt: skip
    message = cli_error(capsys, ["sample", str(tmp_path / "ae" / "checkpoint.pt"), "--out", "a.npy"])
    assert re.search("autoencoder: it has no prior", message)
    assert not (tmp_path / "a.npy").exists()


def test_plot_never_replaces_a_picture_no_out_named(run, capsys):
    checkpoint = str(run / "checkpoint.pt")
    trained = (run / "samples.png").read_bytes()
    for number in (2, 3):
        main(["plot", "samples", checkpoint, "--seed", str(number)])
        assert f"this picture goes to {run / f'samples-{number}.png'}" in capsys.readouterr().err
        assert png_size(run / f"samples-{number}.png") == png_size(run / "samples.png")
    assert (run / "samples.png").read_bytes() == trained  # training's picture is kept
    main(["plot", "samples", checkpoint, "--out", str(run / "samples.png"), "--seed", "5"])  # named: replaced
    assert (run / "samples.png").read_bytes() != trained


def test_the_split_seed_is_recorded_and_reloaded(tmp_path):
    """``--split-seed`` carves other test digits; ``encode`` reloads the run's own (its labels say which)."""
    main(["train", "--epochs", "1", "--z-dim", "2", "--split-seed", "3", "--out", str(tmp_path / "run"), "--quiet"])
    main(["encode", str(tmp_path / "run" / "checkpoint.pt"), "--out", str(tmp_path / "codes.npz")])
    labels = torch.from_numpy(np.load(tmp_path / "codes.npz")["y"])
    assert torch.equal(labels, load_dataset("digits", split_seed=3).test.y)
    assert not torch.equal(labels, load_dataset("digits").test.y)
