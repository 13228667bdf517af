import json

import pyro
import pytest
import torch

import pyrovae
from pyrovae import TrainConfig, fit, load_dataset
from pyrovae.checkpoint import CheckpointError, param_state
from pyrovae.errors import TrainingDiverged
from tests.common import BatchNormEncoder, tiny_dataset, tiny_vae


def test_training_on_digits_raises_test_elbo_by_a_wide_margin():
    """Untrained: about -44 nats per 8x8 digit (64 pixels near log 2 each). After 30 epochs it must be
    at least 10 nats higher (measured: -44.4 -> -26.6)."""
    data = load_dataset("digits")
    vae = pyrovae.VAE(data.x_dim, z_dim=16)
    untrained = pyrovae.elbo_per_datapoint(vae.model, vae.guide, data.test.x)
    history = fit(vae.model, vae.guide, data, TrainConfig(epochs=30, device="cpu"), verbose=False)
    assert untrained < -40
    assert history[-1]["test_elbo"] > untrained + 10
    assert history[-1]["train_elbo"] > history[0]["train_elbo"]


def _train(out, epochs, resume=False, init_seed=0, **settings):
    pyro.clear_param_store()
    torch.manual_seed(init_seed)
    vae = tiny_vae()
    config = TrainConfig(epochs=epochs, batch_size=16, device="cpu", seed=7, **settings)
    history = fit(vae.model, vae.guide, tiny_dataset(), config, out_dir=out, resume=resume, verbose=False)
    return history, param_state()


@pytest.mark.parametrize("lr_decay", [1.0, 0.5])
def test_resume_gives_exactly_the_uninterrupted_run(tmp_path, lr_decay):
    """2 epochs, stop, resume for 2 more == 4 epochs straight: same parameters bit for bit (CPU), also when
    the learning rate decays (epoch e trains with lr * lr_decay**e, whatever Adam's saved state says)."""
    straight, params = _train(tmp_path / "a", 4, lr_decay=lr_decay)
    _train(tmp_path / "b", 2, lr_decay=lr_decay)
    resumed, params_resumed = _train(tmp_path / "b", 4, resume=True, init_seed=123, lr_decay=lr_decay)
    if lr_decay != 1:
        assert [r["lr"] for r in resumed] == [1e-3, 5e-4, 2.5e-4, 1.25e-4]
    assert params.keys() == params_resumed.keys()
    for name in params:
        assert torch.equal(params[name], params_resumed[name]), name
    assert [r["train_elbo"] for r in straight] == [r["train_elbo"] for r in resumed]
    rows = [json.loads(line) for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4]


def test_resume_rejects_other_settings_and_missing_or_corrupt_checkpoints(tmp_path):
    _train(tmp_path, 1)
    vae = tiny_vae()
    with pytest.warns(UserWarning, match="training starts from the values Pyro's param store held"):
        fit(vae.model, vae.guide, tiny_dataset(), TrainConfig(epochs=1, batch_size=16, seed=7), verbose=False)
    pyro.clear_param_store()
    changeable = "only epochs, device, divergence, device_data_limit, compile may"
    with pytest.raises(CheckpointError, match=f"trained with lr=0.001, not 0.1: {changeable}"):
        fit(vae.model, vae.guide, tiny_dataset(), TrainConfig(epochs=2, lr=0.1, batch_size=16, seed=7),
            out_dir=tmp_path, resume=True, verbose=False)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        fit(vae.model, vae.guide, tiny_dataset(), out_dir=tmp_path / "empty", resume=True, verbose=False)
    (tmp_path / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupt"):
        fit(vae.model, vae.guide, tiny_dataset(), TrainConfig(batch_size=16, seed=7),
            out_dir=tmp_path, resume=True, verbose=False)


@pytest.mark.parametrize("elbo", ["trace", "meanfield"])
@pytest.mark.parametrize("jit", [False, True])
def test_every_objective_trains(elbo, jit):
    data = tiny_dataset(n_train=64)
    vae = tiny_vae()
    config = TrainConfig(epochs=3, batch_size=30, elbo=elbo, jit=jit, num_particles=2, device="cpu")
    history = fit(vae.model, vae.guide, data, config, verbose=False)
    assert len(history) == 3 and all(torch.isfinite(torch.tensor(r["test_elbo"])) for r in history)


def test_dynamic_binarization_draws_fresh_batches():
    grey = torch.full((20, 6), 0.5)
    data = pyrovae.Dataset.from_tensors(grey, binarize="dynamic")
    seen = []
    vae = tiny_vae()

    def model(x, num_data=None):  # records the batches
        seen.append(x.clone())
        return vae.model(x, num_data)

    fit(model, vae.guide, data, TrainConfig(epochs=2, batch_size=20, device="cpu"), verbose=False)
    batches = [x for x in seen if len(x) == 20]
    assert all(set(x.unique().tolist()) <= {0.0, 1.0} for x in batches)
    assert not torch.equal(batches[0], batches[-1])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"epochs": 0}, "epochs must be a positive"),
        ({"lr": -1.0}, "lr must be positive"),
        ({"lr_decay": 0.0}, "lr_decay must be in"),
        ({"lr_decay": 1.5}, "lr_decay must be in"),
        ({"elbo": "renyi"}, "unknown elbo"),
        ({"batch_size": 0}, "batch_size must be a positive"),
    ],
)
def test_config_is_validated(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kwargs)


def test_device_errors():
    vae = tiny_vae()
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            fit(vae.model, vae.guide, tiny_dataset(), TrainConfig(device="cuda"), verbose=False)
    with pytest.raises(ValueError, match="unknown device"):
        fit(vae.model, vae.guide, tiny_dataset(), TrainConfig(device="tpu9"), verbose=False)


@pytest.mark.parametrize("validate, checked", [("first-epoch", [True, False, False]), ("always", [True] * 3)])
def test_validation_runs_in_the_first_epoch_only_by_default(validate, checked):
    """Pyro's validation is on during the steps of the first epoch (which visits every row) and off after it,
    unless validate="always"; a resumed process validates its own first epoch again."""
    vae, steps = tiny_vae(), []

    def model(x, num_data=None):
        steps.append(pyro.infer.util.is_validation_enabled())
        return vae.model(x, num_data)

    data = pyrovae.Dataset.from_tensors(tiny_dataset().train.x)  # no test split: every call is a training step
    fit(model, vae.guide, data, TrainConfig(epochs=3, batch_size=20, device="cpu", validate=validate), verbose=False)
    # steps[0]: finding the parameters; steps[1]: the untrained model's ELBO (the divergence check's reference)
    assert steps[2:] == [c for c in checked for _ in range(2)]
    with pytest.raises(ValueError, match="unknown validate"):
        TrainConfig(validate="sometimes")


def test_a_diverging_run_stops_with_a_clear_error(tmp_path):
    vae, calls = tiny_vae(), []

    def model(x, num_data=None):  # NaN from epoch 2 (call 1 finds the parameters, call 2 is the untrained ELBO)
        calls.append(1)
        nan = float("nan") if len(calls) > 3 else 0.0
        pyro.factor("broken", pyro.param("w", torch.tensor(1.0)) * nan)
        return vae.model(x, num_data)

    match = r"diverged at epoch 2 \(1 parameters hold NaN.*\['w'\].*kept at .*checkpoint.pt \(epoch 1\).*Lower the"
    with pytest.raises(TrainingDiverged, match=match):
        data = pyrovae.Dataset.from_tensors(tiny_dataset().train.x)  # no test split: every call is a training step
        fit(model, vae.guide, data, TrainConfig(epochs=3, device="cpu"), out_dir=tmp_path, verbose=False)
    assert pyrovae.load_checkpoint(tmp_path / "checkpoint.pt")["epoch"] == 1


def test_a_nan_loss_under_jit_stops_the_run_at_the_end_of_its_epoch():
    """The compiled step reads nothing on the host (no NaN warning per step), so the epoch's check is what stops
    a run whose loss is NaN: here from the first step, a NaN factor that Pyro's validation would have refused."""
    vae, calls = tiny_vae(), []

    def model(x, num_data=None):  # NaN from the first step (call 1 finds the parameters, 2 is the untrained ELBO)
        calls.append(1)
        pyro.factor("broken", pyro.param("w", torch.tensor(1.0)) * (float("nan") if len(calls) > 2 else 0.0))
        return vae.model(x, num_data)

    pyro.enable_validation(False)
    with pytest.raises(TrainingDiverged, match="diverged at epoch 1 "):
        fit(model, vae.guide, tiny_dataset(), TrainConfig(epochs=2, batch_size=20, jit=True, device="cpu"),
            verbose=False)  # fmt: skip


def test_real_valued_tabular_data_train_a_gaussian_vae():
    """Five Gaussian columns far outside [0, 1] (two latent factors plus noise): Dataset.from_tensors(real=True)
    takes them and fit raises the test ELBO of VAE(5, likelihood="normal") (measured: -77 nats untrained, -12
    after 5 epochs)."""
    g = torch.Generator().manual_seed(0)
    x = 3.0 + 4.0 * torch.randn(600, 2, generator=g) @ torch.randn(2, 5, generator=g)
    x = x + 0.1 * torch.randn(600, 5, generator=g)
    data = pyrovae.Dataset.from_tensors(x[:500], x[500:], real=True)
    vae = pyrovae.VAE(5, z_dim=2, hidden=(32,), likelihood="normal", seed=0)
    untrained = pyrovae.elbo_per_datapoint(vae.model, vae.guide, data.test.x)
    config = TrainConfig(epochs=5, batch_size=50, lr=1e-2, device="cpu")
    history = fit(vae.model, vae.guide, data, config, verbose=False)
    assert history[-1]["test_elbo"] > untrained + 30
    assert history[-1]["train_elbo"] > history[0]["train_elbo"]


@pytest.mark.parametrize("training", [True, False])
def test_a_batchnorm_encoder_trains_in_training_mode_and_is_evaluated_in_evaluation_mode(training):
    """97 training rows in minibatches of 32 (one row left over, joined to the last minibatch), validation chunks
    of 4 of 9 rows (the last has one row): the steps alone update BatchNorm's running statistics, evaluation and
    the callback see the module in evaluation mode, and fit gives the module back in the mode it had."""
    x = tiny_dataset(n_train=115, n_test=0).train.x
    data = pyrovae.Dataset.from_tensors(x[:97], x[97:106], x[106:])
    vae = pyrovae.VAE(6, z_dim=2, encoder=BatchNormEncoder(6, 2), seed=0)
    vae.train(training)
    untrained = pyrovae.elbo_per_datapoint(vae.model, vae.guide, data.test.x)
    modes = []
    config = TrainConfig(epochs=4, batch_size=32, eval_batch_size=4, lr=1e-2, device="cpu")
    history = fit(vae.model, vae.guide, data, config, verbose=False,
                  callback=lambda row: modes.append((vae.training, vae.encoder.norm.training)))  # fmt: skip
    assert int(vae.encoder.norm.num_batches_tracked) == 4 * 3  # epochs x steps: no probe, no evaluation
    assert modes == [(False, False)] * 4
    assert vae.training == training and vae.encoder.norm.training == training
    assert history[-1]["test_elbo"] > untrained and history[-1]["train_elbo"] > history[0]["train_elbo"]
    vae.train()
    running_mean = vae.encoder.norm.running_mean.clone()
    pyrovae.elbo_per_datapoint(vae.model, vae.guide, data.valid.x, batch_size=4)
    assert torch.equal(vae.encoder.norm.running_mean, running_mean) and vae.encoder.norm.training


def _fit_tiny(out=None, resume=False, epochs=2, **settings):
    """A tiny VAE trained on 40 rows in minibatches of 16 (the last of each epoch has 8), from the same weights and
    seed whatever the settings."""
    pyro.clear_param_store()
    vae = tiny_vae(seed=0)
    config = TrainConfig(epochs=epochs, batch_size=16, device="cpu", seed=3, **settings)
    history = fit(vae.model, vae.guide, tiny_dataset(), config, out_dir=out, resume=resume, verbose=False)
    return history, param_state()


def test_a_compiled_run_is_the_eager_run_and_its_checkpoint_loads_into_an_eager_model(tmp_path):
    """fit with compile (backend aot_eager: the recorded graph with eager kernels; inductor in the slow test below)
    keeps the last, smaller minibatch and draws the same noise, so it reproduces the eager run: an epoch compiled,
    then resumed eagerly (compile may change on resume), gives the eager run's ELBOs and parameters (rtol 1e-5: the
    graph may add in another order); its checkpoint loads into an eager model under the same parameter names."""
    eager, eager_params = _fit_tiny()
    compiled, first_epoch = _fit_tiny(tmp_path, epochs=1, compile="aot_eager")
    loaded = pyrovae.load_model(tmp_path / "checkpoint.pt").model
    saved = {name.replace("$$$", "."): p for name, p in first_epoch.items()}
    assert dict(loaded.named_parameters()).keys() == saved.keys()
    assert all(torch.equal(p, saved[name]) for name, p in loaded.named_parameters())
    resumed, resumed_params = _fit_tiny(tmp_path, resume=True)
    for key in ("train_elbo", "test_elbo"):
        assert [r[key] for r in resumed] == pytest.approx([r[key] for r in eager], rel=1e-5)
    assert resumed_params.keys() == eager_params.keys()
    for name in eager_params:
        torch.testing.assert_close(resumed_params[name], eager_params[name], rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_an_inductor_compiled_run_is_the_eager_run():
    """As above with inductor's generated kernels (compiling takes seconds to a minute on a CPU)."""
    eager, eager_params = _fit_tiny()
    compiled, compiled_params = _fit_tiny(compile=True)
    assert [r["train_elbo"] for r in compiled] == pytest.approx([r["train_elbo"] for r in eager], rel=1e-5)
    for name in eager_params:
        torch.testing.assert_close(compiled_params[name], eager_params[name], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "settings, match",
    [
        ({"compile": True, "jit": True}, "choose one of them"),
        ({"compile": True, "elbo": "meanfield"}, "has no torch.compile variant"),
        ({"compile": True, "elbo": "iwae"}, "has no torch.compile variant"),
        ({"compile": True, "kl_warmup_epochs": 2}, "KL warm-up"),
        ({"compile": "no-such-backend"}, "unknown torch.compile backend"),
    ],
)
def test_compile_settings_are_validated(settings, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**settings)


def test_compile_refuses_modules_with_buffers():
    """Recording the ELBO runs the model and guide, which would update BatchNorm's running statistics outside the
    steps (measured: 5 updates for 3 steps): an error, not a silently different model."""
    vae = tiny_vae(encoder=BatchNormEncoder(6, 2))
    with pytest.raises(ValueError, match="buffers"):
        fit(vae.model, vae.guide, tiny_dataset(), TrainConfig(epochs=1, compile="aot_eager", device="cpu"),
            verbose=False)


def test_compile_takes_modules_with_constant_buffers():
    """Only buffers that the forward pass updates (running statistics) are refused: a constant buffer, such as the
    quadrant models' mask, is read by the recorded graph and left as it is."""
    vae = tiny_vae()
    vae.encoder.register_buffer("offset", torch.zeros(6))
    history = fit(vae.model, vae.guide, tiny_dataset(), TrainConfig(epochs=1, compile="aot_eager", device="cpu"),
                  verbose=False)  # fmt: skip
    assert len(history) == 1 and torch.equal(vae.encoder.offset, torch.zeros(6))


@pytest.mark.filterwarnings("error")
def test_a_jit_run_raises_no_warning():
    """fit --jit traces Pyro's JitTrace_ELBO: no deprecation warning (or any other) reaches the user."""
    history, _ = _fit_tiny(jit=True)
    assert len(history) == 2
