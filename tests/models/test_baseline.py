import pyro
import pytest
import torch
import torch.nn.functional as F
from pyro.infer import Trace_ELBO

import pyrovae
from pyrovae.models.baseline import Baseline
from pyrovae.models.registry import model_from_config

#: the hidden pixels of a 4x4 image with the bottom left quadrant observed (rows 2-3, columns 0-1 observed)
HIDDEN_4X4_Q1 = [0, 1, 2, 3, 4, 5, 6, 7, 10, 11, 14, 15]


def binary_images(n: int = 5, dim: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.bernoulli(torch.full((n, dim), 0.4), generator=torch.Generator().manual_seed(seed))


def test_elbo_is_the_masked_cross_entropy_of_the_prediction():
    """No latent: -ELBO is the tutorial's MaskedBCELoss, the binary cross-entropy of the network's prediction from
    the image with its hidden pixels at -1, summed over the hidden pixels only."""
    baseline = Baseline((1, 4, 4), quadrants=1, hidden=(7,), seed=0)
    x = binary_images()
    inputs = x.clone()
    inputs[:, HIDDEN_4X4_Q1] = -1.0
    first, last = baseline.net[0], baseline.net[2]
    logits = last(torch.relu(first(inputs)))  # one logit per hidden pixel, in the image's order
    expected = F.binary_cross_entropy_with_logits(logits, x[:, HIDDEN_4X4_Q1], reduction="sum")
    pyro.clear_param_store()
    assert Trace_ELBO().loss(baseline.model, baseline.guide, x) == pytest.approx(expected.item(), rel=1e-5)
    per_image = F.binary_cross_entropy_with_logits(logits, x[:, HIDDEN_4X4_Q1], reduction="none").sum(-1)
    assert torch.allclose(baseline.log_prob(x), -per_image, rtol=1e-5)
    # and the minibatch is scaled to the data set
    scaled = Trace_ELBO().loss(baseline.model, baseline.guide, x, num_data=50)
    assert scaled == pytest.approx(10 * expected.item(), rel=1e-5)


def test_the_prediction_ignores_the_hidden_pixels():
    baseline = Baseline((1, 4, 4), quadrants=2, hidden=(7,), seed=0)
    x = binary_images()
    changed = x.clone()
    changed[:, ~baseline.mask] = 1 - changed[:, ~baseline.mask]
    assert torch.equal(baseline.guess(x), baseline.guess(changed))
    completed = baseline.complete(x)
    assert torch.equal(completed[:, baseline.mask], x[:, baseline.mask])
    assert torch.equal(completed[:, ~baseline.mask], baseline.guess(x).detach())


def test_fit_trains_it_and_load_model_rebuilds_it(tmp_path):
    data = pyrovae.load_dataset("digits")
    pyro.clear_param_store()
    baseline = Baseline(data.image_shape, quadrants=3, hidden=(16,), seed=0)
    history = pyrovae.fit(baseline.model, baseline.guide, data, pyrovae.TrainConfig(epochs=2, batch_size=200),
                          out_dir=tmp_path, verbose=False)  # fmt: skip
    assert history[-1]["test_elbo"] > history[0]["test_elbo"]
    loaded, _, _ = pyrovae.load_model(tmp_path / "checkpoint.pt")
    assert isinstance(loaded, Baseline) and loaded.config == baseline.config
    x = data.fixed_x("test")[:8]
    assert torch.equal(loaded.complete(x), baseline.complete(x))


def test_settings_rebuild_it():
    baseline = Baseline((1, 4, 6), quadrants=2, hidden=(5, 3), activation="tanh", seed=1)
    again = model_from_config(baseline.config, seed=1)
    assert isinstance(again, Baseline) and again.y_dim == 12
    assert all(torch.equal(a, b) for a, b in zip(baseline.parameters(), again.parameters(), strict=True))


def test_bad_settings_and_data_are_refused():
    with pytest.raises(ValueError, match="1, 2 or 3"):
        Baseline((1, 4, 4), quadrants=4)
    with pytest.raises(ValueError, match="cannot be cut"):
        Baseline((1, 5, 4))
    with pytest.raises(ValueError, match="continuous-bernoulli"):
        Baseline((1, 4, 4), likelihood="normal")
    baseline = Baseline((1, 4, 4), hidden=(3,))
    with pytest.raises(ValueError, match="give x"):
        baseline.model(None)
    with pytest.raises(ValueError):
        baseline.model(torch.zeros(2, 15))  # not 4x4 images
