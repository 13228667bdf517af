from pathlib import Path

import pyro.poutine as poutine
import pytest
import torch

from pyrovae import load_dataset, load_ssvae, load_vae

LEGACY = Path(__file__).parents[1] / "data" / "legacy"
EXPECTED = torch.load(LEGACY / "expected.pt", weights_only=True)


@pytest.mark.parametrize("name", ["vae", "two-layer", "iaf", "autoencoder", "normal"])
def test_vae_checkpoints_of_952ab13_load_and_compute_what_they_did(name):
    vae, _ = load_vae(LEGACY / f"{name}.pt")
    x = load_dataset("digits").test.x[:5] if name == "normal" else EXPECTED["x"]
    z = EXPECTED[name]["z"]
    guide = poutine.trace(poutine.condition(vae.guide, z)).get_trace(x)
    model = poutine.trace(poutine.condition(vae.model, z)).get_trace(x)
    torch.testing.assert_close(model.log_prob_sum() - guide.log_prob_sum(), EXPECTED[name]["log_weight"])


@pytest.mark.parametrize("name", ["ssvae", "adgm", "m1m2"])
def test_ssvae_checkpoints_of_952ab13_load_and_compute_what_they_did(name):
    ssvae, features, _ = load_ssvae(LEGACY / f"{name}.pt")
    x = EXPECTED["x"] if features is None else features(EXPECTED["x"])
    torch.manual_seed(2)
    torch.testing.assert_close(ssvae.log_predict(x), EXPECTED[name]["log_predict"])
    torch.testing.assert_close(ssvae.style(x, torch.arange(5)), EXPECTED[name]["style"])
