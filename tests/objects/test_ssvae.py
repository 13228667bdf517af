import pytest
import torch

import pyrovae
from pyrovae.objects import SSVAEModel


@pytest.fixture(scope="module")
def digits():
    return pyrovae.load_dataset("digits", binarize="none")


@pytest.fixture(scope="module")
def trained(digits):
    x, y = digits.train.x[:600], digits.train.y[:600]
    m = SSVAEModel(x, labels=y, num_labels=100, z_dim=4, hidden=(32,))
    m.train(epochs=1, verbose=False, batch_size=50, lr=3e-3)
    return m


def test_predicts_better_than_chance_after_a_short_training(trained, digits):
    x, y = digits.test.x, digits.test.y
    probs = trained.predict_proba(x)
    torch.testing.assert_close(probs.sum(-1), torch.ones(len(x)))
    assert torch.equal(trained.predict(x), probs.argmax(-1))
    assert (trained.predict(x) == y).float().mean() > 0.2  # chance: 0.1
    assert trained.latent(x[:5]).shape == trained.latent(x[:5], y[:5]).shape == (5, 4)
    assert trained.sample(3, seed=0).shape == (3, 64)


def test_save_load_round_trip(trained, digits, tmp_path):
    x = digits.test.x[:10]
    trained.save(tmp_path)
    loaded = SSVAEModel.load(tmp_path)
    assert torch.equal(loaded.predict_proba(x), trained.predict_proba(x))
    assert torch.equal(loaded.log_px(x, 20, seed=2), trained.log_px(x, 20, seed=2))
    with pytest.raises(pyrovae.CheckpointError, match="not one of VAEModel"):
        pyrovae.VAEModel.load(tmp_path)


def test_labels_are_needed_and_checked(digits):
    with pytest.raises(ValueError, match="learns from labels"):
        SSVAEModel(digits.train.x)
    with pytest.raises(ValueError):
        SSVAEModel(digits.train.x, labels=digits.train.y[:10])
    with pytest.raises(TypeError, match="own labels"):
        SSVAEModel(digits, labels=digits.train.y)


def test_missing_labels_are_minus_one_and_training_uses_the_given_ones(digits):
    x, y = digits.train.x[:300], digits.train.y[:300].clone()
    y[60:] = -1  # 60 labels given
    m = SSVAEModel(x, labels=y, num_labels=100, z_dim=2, hidden=(16,))  # num_labels: ignored, the labels given count
    assert m.train_defaults["num_labels"] == 60 and m.module.num_classes == 10
    history = m.train(epochs=1, verbose=False, batch_size=60)
    assert torch.isfinite(torch.tensor(history[-1]["labelled_elbo"]))
    with pytest.raises(ValueError, match="every label is -1"):
        SSVAEModel(x, labels=torch.full((300,), -1), num_classes=10)
