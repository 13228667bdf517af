import numpy as np
import pytest
import torch

import pyrovae
from pyrovae import compare
from pyrovae.models.autoencoder import Autoencoder


def test_nearest_distances():
    reference = torch.tensor([[0.0, 0.0], [3.0, 4.0]])
    images = torch.tensor([[0.0, 1.0], [3.0, 4.0], [6.0, 8.0]])
    assert compare.nearest_distances(images, reference, batch_size=2).tolist() == [1.0, 0.0, 5.0]


def test_frechet_distance_of_gaussians():
    """Same samples: 0. Shifted by c: |c|^2 (the covariances are equal). Scaled by s in 1-D: (s - 1)^2 var."""
    rng = np.random.default_rng(0)
    a = rng.normal(size=(2000, 3))
    assert compare.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    assert compare.frechet_distance(a, a + [1.0, 2.0, 0.0]) == pytest.approx(5.0, rel=1e-6)
    b = rng.normal(size=(2000, 1))
    b -= b.mean()
    assert compare.frechet_distance(b, 3 * b) == pytest.approx(4 * b.var(ddof=1), rel=1e-6)


def test_sample_quality_ranges_and_classifier_features():
    data = pyrovae.load_dataset("digits")
    classifier = compare.digit_classifier(data.train.x, data.train.y, max_iter=50)
    features = compare.hidden_features(classifier, data.test.x[:5])
    assert features.shape == (5, 256) and (features >= 0).all()
    real = compare.sample_quality(data.test.x, classifier, data.train.x, reference=data.train.x)
    assert 0.5 < real["confident_share"] <= 1
    assert 2.0 < real["class_entropy"] <= np.log(10) + 1e-9  # the test set covers all 10 classes evenly
    assert real["nearest_distance"] > 0 and real["frechet_distance"] >= 0
    constant = compare.sample_quality(data.test.x[:1].expand(100, -1), classifier, data.train.x, data.train.x)
    assert constant["class_entropy"] == pytest.approx(0.0, abs=1e-12)  # one image, one class
    assert constant["frechet_distance"] > real["frechet_distance"]


def test_compare_generators_is_reproducible_with_a_seed():
    data = pyrovae.load_dataset("digits")
    fit = [compare.digit_classifier(data.train.x, data.train.y, seed=5, max_iter=20) for _ in range(2)]
    assert all(np.array_equal(a, b) for a, b in zip(fit[0].coefs_, fit[1].coefs_, strict=True))
    models = {"vae": pyrovae.VAE(data.x_dim, z_dim=4).model, "ae": Autoencoder(data.x_dim, z_dim=4).model}
    args = (models, data.train.x, data.train.y, data.test.x)
    first = compare.compare_generators(*args, num_samples=200, seed=3, classifier=fit[0])
    assert set(first) == {"real", "vae", "ae"}
    assert first == compare.compare_generators(*args, num_samples=200, seed=3, classifier=fit[1])
    assert first["vae"] != compare.compare_generators(*args, num_samples=200, seed=4, classifier=fit[0])["vae"]
