from pathlib import Path

import pyro
import pyro.poutine as poutine
import pytest
import torch
from pyro.infer import TraceEnum_ELBO

from pyrovae import (
    ADGM,
    SSVAE,
    VAE,
    Autoencoder,
    CheckpointError,
    TwoLayerVAE,
    load_dataset,
    load_model,
    load_ssvae,
    load_vae,
)
from pyrovae.checkpoint import param_state, save_checkpoint
from pyrovae.models.iaf import IAFVAE
from pyrovae.models.registry import MODELS, model_from_config, vae_from_config
from tests.common import binary

LEGACY = Path(__file__).parents[1] / "data" / "legacy"
EXPECTED = torch.load(LEGACY / "expected.pt", weights_only=True)
#: what each legacy checkpoint rebuilds as, though none records its kind
LEGACY_KINDS = {"vae": VAE, "two-layer": TwoLayerVAE, "iaf": IAFVAE, "autoencoder": Autoencoder, "normal": VAE,
                "ssvae": SSVAE, "adgm": ADGM, "m1m2": SSVAE}  # fmt: skip
#: the settings of a small model of each kind
CONFIGS = {
    "vae": {"x_dim": 6, "z_dim": 2, "hidden": [8]},
    "autoencoder": {"x_dim": 6, "z_dim": 2, "hidden": [8]},
    "iaf": {"x_dim": 6, "z_dim": 2, "hidden": [8], "flow_depth": 1},
    "vamp": {"x_dim": 6, "z_dim": 2, "hidden": [8], "pseudo_inputs": 3},
    "two-layer": {"x_dim": 6, "z1_dim": 3, "z2_dim": 2, "hidden1": [8], "hidden2": [4], "likelihood": "normal"},
    "ssvae": {"x_dim": 6, "num_classes": 3, "z_dim": 2, "hidden": [8], "likelihood": "normal"},
    "adgm": {"x_dim": 6, "num_classes": 3, "z_dim": 2, "hidden": [8], "a_dim": 2},
    "cvae-baseline": {"image_shape": [1, 4, 4], "quadrants": 2, "hidden": [4]},
    "cvae": {"image_shape": [1, 4, 4], "quadrants": 2, "z_dim": 2, "hidden": [4]},
}


def vae_by_load_vae(path):
    return load_vae(path)[0]


def vae_by_load_model(path):
    return load_model(path).model


def ssvae_by_load_ssvae(path):
    ssvae, features, _ = load_ssvae(path)
    return ssvae, features


def ssvae_by_load_model(path):
    model, _, features = load_model(path)
    return model, features


@pytest.mark.parametrize("load", [vae_by_load_vae, vae_by_load_model])
@pytest.mark.parametrize("name", ["vae", "two-layer", "iaf", "autoencoder", "normal"])
def test_vae_checkpoints_of_952ab13_load_and_compute_what_they_did(name, load):
    vae = load(LEGACY / f"{name}.pt")
    x = load_dataset("digits").test.x[:5] if name == "normal" else EXPECTED["x"]
    z = EXPECTED[name]["z"]
    guide = poutine.trace(poutine.condition(vae.guide, z)).get_trace(x)
    model = poutine.trace(poutine.condition(vae.model, z)).get_trace(x)
    torch.testing.assert_close(model.log_prob_sum() - guide.log_prob_sum(), EXPECTED[name]["log_weight"])


@pytest.mark.parametrize("load", [ssvae_by_load_ssvae, ssvae_by_load_model])
@pytest.mark.parametrize("name", ["ssvae", "adgm", "m1m2"])
def test_ssvae_checkpoints_of_952ab13_load_and_compute_what_they_did(name, load):
    ssvae, features = load(LEGACY / f"{name}.pt")
    x = EXPECTED["x"] if features is None else features(EXPECTED["x"])
    torch.manual_seed(2)
    torch.testing.assert_close(ssvae.log_predict(x), EXPECTED[name]["log_predict"])
    torch.testing.assert_close(ssvae.style(x, torch.arange(5)), EXPECTED[name]["style"])


@pytest.mark.parametrize("name, losses", [("ssvae", (221.49084, 295.33746)), ("adgm", (214.61191, 280.73389))])
def test_ssvae_checkpoints_of_952ab13_have_the_elbo_they_had(name, losses):
    """The losses of TraceEnum_ELBO after pyro.set_rng_seed(0), as the SSVAE with its a_dim branches computed them
    (f556cf9): the same sites, drawn in the same order from the same random stream."""
    ssvae = load_model(LEGACY / f"{name}.pt").model
    for y, expected in zip((None, torch.arange(5)), losses, strict=True):  # unlabelled, labelled
        pyro.set_rng_seed(0)
        assert TraceEnum_ELBO(max_plate_nesting=1).loss(ssvae.model, ssvae.guide, EXPECTED["x"], y) == pytest.approx(
            expected, abs=1e-4
        )


@pytest.mark.parametrize("name", sorted(LEGACY_KINDS))
def test_checkpoints_without_kind_rebuild_as_before(name):
    model, state, features = load_model(LEGACY / f"{name}.pt")
    assert type(model) is LEGACY_KINDS[name] and not model.training
    assert "model" not in state["extra"].get("ssvae", {})  # written before SSVAE settings recorded it
    assert (features is not None) == (name == "m1m2")


def save(model, path: Path) -> None:
    """A checkpoint as ``pyrovae train`` (param store) or ``pyrovae train-ss`` (state_dict) writes it."""
    if isinstance(model, SSVAE):
        save_checkpoint(path, {"weights": model.state_dict(), "extra": {"ssvae": model.config}})
        return
    pyro.clear_param_store()
    x = binary(3, model.x_dim)
    model.guide(x)  # registers the modules with the param store
    model.model(x)
    save_checkpoint(path, {"params": param_state(), "extra": {"vae": model.config}})


@pytest.mark.parametrize("kind", sorted(CONFIGS))
def test_every_kind_records_its_kind_and_rebuilds_from_its_checkpoint(kind, tmp_path):
    model = model_from_config({"model": kind, **CONFIGS[kind]}, seed=1)
    assert type(model) is MODELS[kind] and model.kind == kind and model.config["model"] == kind
    save(model, tmp_path / "c.pt")
    loaded, state, features = load_model(tmp_path / "c.pt")
    assert type(loaded) is type(model) and loaded.config == model.config and features is None
    assert state["extra"] == {"ssvae" if isinstance(model, SSVAE) else "vae": model.config}
    expected = model.state_dict()
    assert all(torch.equal(v, expected[k]) for k, v in loaded.state_dict().items())
    assert model_from_config(model.config, seed=1).config == model.config


def test_the_old_names_still_work(tmp_path):
    assert vae_from_config is model_from_config
    save(model_from_config({"model": "adgm", **CONFIGS["adgm"]}), tmp_path / "ss.pt")
    save(model_from_config(CONFIGS["vae"]), tmp_path / "vae.pt")
    ssvae, features, state = load_ssvae(tmp_path / "ss.pt")
    assert type(ssvae) is ADGM and features is None and state["extra"]["ssvae"]["model"] == "adgm"
    vae, state = load_vae(tmp_path / "vae.pt")
    assert type(vae) is VAE and state["extra"]["vae"] == vae.config
    with pytest.raises(CheckpointError, match="holds no SSVAE"):
        load_ssvae(tmp_path / "vae.pt")
    with pytest.raises(CheckpointError, match="holds no VAE settings"):
        load_vae(tmp_path / "ss.pt")


def test_an_unknown_kind_is_named_with_the_kinds_there_are(tmp_path):
    with pytest.raises(ValueError, match=r"unknown model 'gan': choose one of \['adgm', 'autoencoder', 'cvae', "):
        model_from_config({"model": "gan", "x_dim": 6})
    save_checkpoint(tmp_path / "c.pt", {"weights": {}, "extra": {"ssvae": {"model": "gan", "x_dim": 6}}})
    with pytest.raises(CheckpointError, match="describes a model that cannot be built: unknown model 'gan'"):
        load_model(tmp_path / "c.pt")


def test_a_checkpoint_of_neither_family_is_refused(tmp_path):
    for extra in ({"data": {}}, {"vae": None}, None):
        save_checkpoint(tmp_path / "c.pt", {"params": {}, "extra": extra})
        with pytest.raises(CheckpointError, match=r"holds no model settings, neither extra\['vae'\] .* nor extra"):
            load_model(tmp_path / "c.pt")


def test_settings_in_the_other_family_s_place_are_refused(tmp_path):
    vae = model_from_config(CONFIGS["vae"])
    save_checkpoint(tmp_path / "c.pt", {"weights": vae.state_dict(), "extra": {"ssvae": vae.config}})
    with pytest.raises(CheckpointError, match=r"malformed: extra\['ssvae'\] describes a 'vae' model"):
        load_model(tmp_path / "c.pt")


@pytest.mark.parametrize("kind", ["two-layer", "adgm"])
def test_weights_that_do_not_fit_are_refused(kind, tmp_path):
    model = model_from_config({"model": kind, **CONFIGS[kind]})
    save(model, tmp_path / "c.pt")
    bigger = model_from_config({**model.config, "x_dim": 7})
    state = torch.load(tmp_path / "c.pt", weights_only=True)
    state["extra"] = {key: bigger.config for key in state["extra"]}
    save_checkpoint(tmp_path / "c.pt", state)
    with pytest.raises(CheckpointError, match=f"the weights in .* do not fit the '{kind}' model it describes"):
        load_model(tmp_path / "c.pt")


def test_fit_saves_the_settings_and_custom_networks_load_into_a_model_built_the_same_way(tmp_path):
    """fit stores a pyrovae model's settings without being asked, so load_model rebuilds it; a model with custom
    networks has none (fit warns), and its checkpoint loads with load_model(path, model=...)."""
    from torch import nn

    from pyrovae import TrainConfig, fit
    from pyrovae.models.nets import Decoder, Encoder
    from tests.common import tiny_dataset, tiny_vae

    data, x = tiny_dataset(), tiny_dataset().test.x
    vae = tiny_vae(seed=0)
    fit(vae.model, vae.guide, data, TrainConfig(epochs=1, batch_size=8), out_dir=tmp_path / "a", verbose=False)
    loaded = load_model(tmp_path / "a" / "checkpoint.pt").model
    assert loaded.config == vae.config

    def custom(seed):
        torch.manual_seed(seed)
        return VAE(6, z_dim=2, encoder=Encoder(6, 2, (8,), nn.Tanh), decoder=Decoder(2, 6, (8,), nn.Tanh))

    pyro.clear_param_store()
    trained = custom(0)
    with pytest.warns(UserWarning, match=r"load it with pyrovae.load_model\(path, model=...\)"):
        fit(trained.model, trained.guide, data, TrainConfig(epochs=1, batch_size=8), out_dir=tmp_path / "b",
            verbose=False)  # fmt: skip
    with pytest.raises(CheckpointError, match=r"custom networks \(load it with load_model\(path, model=...\)"):
        load_model(tmp_path / "b" / "checkpoint.pt")
    reloaded = load_model(tmp_path / "b" / "checkpoint.pt", model=custom(1)).model
    for (name, p), q in zip(trained.named_parameters(), reloaded.parameters(), strict=True):
        assert torch.equal(p, q), name
    assert torch.equal(reloaded.posterior(x).mean, trained.posterior(x).mean)
