import subprocess
import sys
import textwrap

import pyro
import pytest
import torch

import pyrovae
from pyrovae import TrainConfig, fit, load_model
from pyrovae.infer.importance import log_marginal_likelihood
from pyrovae.models.store import owner
from tests.common import tiny_dataset, tiny_vae


def _log_px(vae, x):
    """Per-point log p(x), deterministic given the weights (indexed noise)."""
    return log_marginal_likelihood(vae.model, vae.guide, x, 64, seed=0).log_px


def _trained(out=None, epochs=20):
    vae = tiny_vae(seed=0)
    fit(vae.model, vae.guide, tiny_dataset(), TrainConfig(epochs=epochs, batch_size=8, lr=1e-2, seed=0),
        out_dir=out, verbose=False)  # fmt: skip
    return vae


def test_param_store_save_and_load_in_a_new_process_gives_the_trained_model(tmp_path):
    """Pyro's idiom: save the param store, load it in a new process, and a freshly built VAE (other initial
    weights) evaluates with the stored weights: the trained model's log p(x), not its own untrained one's."""
    vae, x = _trained(), tiny_dataset().test.x
    trained = _log_px(vae, x)
    pyro.get_param_store().save(tmp_path / "params.pt")
    torch.save(x, tmp_path / "x.pt")
    script = textwrap.dedent(f"""
        import pyro, torch
        from pyrovae.infer.importance import log_marginal_likelihood
        from tests.common import tiny_vae
        vae, x = tiny_vae(seed=1), torch.load({str(tmp_path / "x.pt")!r}, weights_only=True)
        untrained = log_marginal_likelihood(vae.model, vae.guide, x, 64, seed=0).log_px
        pyro.get_param_store().load({str(tmp_path / "params.pt")!r})
        fresh = tiny_vae(seed=2)
        torch.save([untrained, log_marginal_likelihood(fresh.model, fresh.guide, x, 64, seed=0).log_px],
                   {str(tmp_path / "out.pt")!r})
    """)
    subprocess.run([sys.executable, "-c", script], check=True, cwd=str(pyrovae.__path__[0] + "/.."))
    untrained, reloaded = torch.load(tmp_path / "out.pt", weights_only=True)
    assert torch.allclose(reloaded, trained, rtol=1e-5)
    assert (untrained.mean() - trained.mean()).abs() > 1  # the test can tell trained from untrained weights


def test_two_live_models_with_the_same_names_each_run_with_their_own_weights():
    """Two VAEs without a prefix share site names; each call runs with the caller's own weights (the store takes
    them), never silently with the other's, and a fit of one trains its own weights without a warning."""
    x = tiny_dataset().test.x
    a, b = tiny_vae(seed=0), tiny_vae(seed=1)
    alone = [_log_px(m, x) for m in (a, b)]
    pyro.clear_param_store()
    both = [_log_px(m, x) for m in (a, b, a)]
    assert torch.equal(both[0], alone[0]) and torch.equal(both[1], alone[1]) and torch.equal(both[2], alone[0])
    before = {k: v.clone() for k, v in a.state_dict().items()}
    fit(b.model, b.guide, tiny_dataset(), TrainConfig(epochs=2, batch_size=8, seed=0), verbose=False)
    assert torch.equal(_log_px(a, x), alone[0])  # a untouched by b's training
    assert not torch.equal(_log_px(b, x), alone[1])
    assert all(torch.equal(v, before[k]) for k, v in a.state_dict().items())
    name = "decoder$$$" + next(n for n, _ in a.decoder.named_parameters())
    assert owner(pyro.param(name)) is b.decoder  # the store holds the weights of the model called last


def test_load_model_runs_with_the_checkpoint_weights_whatever_the_store_held(tmp_path):
    """A checkpoint loaded in a process whose store holds values under the same names (loaded there, so owned by
    no model) evaluates with the checkpoint's weights."""
    trained = _trained(tmp_path / "run", epochs=5)
    x = tiny_dataset().test.x
    expected = _log_px(trained, x)
    pyro.get_param_store().save(tmp_path / "params.pt")
    pyro.clear_param_store()
    other = tiny_vae(seed=3)
    _log_px(other, x)
    pyro.get_param_store().save(tmp_path / "other.pt")
    del trained, other
    pyro.clear_param_store()
    pyro.get_param_store().load(tmp_path / "other.pt")  # stale values, owned by no model
    loaded = load_model(tmp_path / "run" / "checkpoint.pt").model
    assert torch.allclose(_log_px(loaded, x), expected, rtol=1e-6)


def test_fit_warns_when_it_starts_from_stored_values(tmp_path):
    """Values loaded into the store are the model's starting point (Pyro's idiom), with a warning."""
    _trained(epochs=1)
    pyro.get_param_store().save(tmp_path / "params.pt")
    pyro.clear_param_store()
    pyro.get_param_store().load(tmp_path / "params.pt")
    fresh = tiny_vae(seed=5)
    with pytest.warns(UserWarning, match="training starts from the values Pyro's param store held"):
        fit(fresh.model, fresh.guide, tiny_dataset(), TrainConfig(epochs=1, batch_size=8, seed=0), verbose=False)


def test_a_model_that_took_stored_values_owns_them():
    """After taking values loaded into the store, the model's parameters are the store's tensors and are recorded
    as its own: a second model with the same names then runs with its own weights, and the first with the loaded
    ones."""
    x = tiny_dataset().test.x
    a = tiny_vae(seed=0)
    expected = _log_px(a, x)
    state = {name: p.detach().clone() for name, p in pyro.get_param_store().named_parameters()}
    pyro.clear_param_store()
    for name, value in state.items():
        pyro.param(name, value)  # values put into the store by hand: owned by no model
    fresh = tiny_vae(seed=1)
    assert torch.equal(_log_px(fresh, x), expected)
    assert all(owner(p) is not None for p in fresh.parameters())
    other = tiny_vae(seed=2)
    assert not torch.equal(_log_px(other, x), expected)
    assert torch.equal(_log_px(fresh, x), expected)
