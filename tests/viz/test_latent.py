import math

import pytest
import torch

import pyrovae
from pyrovae import latent
from pyrovae.viz.compare import digit_classifier
from tests.common import tiny_vae


def _x(n=5, x_dim=6, seed=0):
    return torch.bernoulli(torch.full((n, x_dim), 0.5), generator=torch.Generator().manual_seed(seed))


def test_posterior_means_are_the_encoder_locations():
    vae = tiny_vae(z_dim=3)
    x = _x(7)
    expected, _ = vae.encoder(x)
    assert torch.allclose(latent.posterior_means(vae.guide, x, batch_size=3), expected.detach())
    with pytest.raises(ValueError, match="no site 'w'"):
        latent.posterior_means(vae.guide, x, site="w")


def test_decode_gives_the_bernoulli_means_of_the_decoder():
    vae = tiny_vae(z_dim=2)
    z = torch.randn(4, 2)
    assert torch.allclose(latent.decode(vae.model, z), torch.sigmoid(vae.decoder(z)).detach())
    assert latent.latent_dim(vae.model) == 2


def test_manifold_codes_are_prior_quantiles_on_a_grid():
    eps = 0.05
    z = latent.manifold_codes(5, epsilon=eps)
    lo, hi = (torch.distributions.Normal(0.0, 1.0).icdf(torch.tensor(p)).item() for p in (eps, 1 - eps))
    assert z.shape == (25, 2)
    assert z[0].tolist() == pytest.approx([lo, hi])  # top left: first coordinate low, second high
    assert z[-1].tolist() == pytest.approx([hi, lo])
    assert z[:5, 1].unique().numel() == 1 and z[::5, 0].unique().numel() == 1  # rows share z2, columns z1
    with pytest.raises(ValueError, match="z_dim = 2"):
        latent.manifold_codes(5, z_dim=3)
    with pytest.raises(ValueError, match="grid >= 2"):
        latent.manifold_codes(1)


def test_manifold_decodes_exactly_grid_squared_images():
    vae = tiny_vae(z_dim=2)
    images = latent.manifold_images(vae.model, grid=4)
    assert images.shape == (4, 4, 6)
    expected = latent.decode(vae.model, latent.manifold_codes(4)).reshape(4, 4, 6)
    assert torch.allclose(images, expected)
    with pytest.raises(ValueError, match="z_dim = 2"):
        latent.manifold_images(tiny_vae(z_dim=3).model)


def test_linear_interpolation():
    z0, z1 = torch.tensor([0.0, 2.0]), torch.tensor([4.0, -2.0])
    path = latent.interpolate(z0, z1, 5)
    assert path.shape == (5, 2)
    assert torch.equal(path[0], z0) and torch.equal(path[-1], z1)
    assert path[2].tolist() == [2.0, 0.0]


def test_spherical_interpolation_keeps_the_norm_and_falls_back_to_linear_when_parallel():
    z0, z1 = torch.tensor([[3.0, 0.0]]), torch.tensor([[0.0, 3.0]])
    path = latent.interpolate(z0, z1, 7, method="spherical")
    assert path.shape == (1, 7, 2)
    assert torch.allclose(path[0, 0], z0[0]) and torch.allclose(path[0, -1], z1[0], atol=1e-6)
    assert torch.allclose(path.norm(dim=-1), torch.full((1, 7), 3.0))  # linear would dip to 3 / sqrt(2)
    assert path[0, 3].tolist() == pytest.approx([3 / math.sqrt(2)] * 2)
    parallel = latent.interpolate(z0, 2 * z0, 3, method="spherical")
    assert torch.allclose(parallel, latent.interpolate(z0, 2 * z0, 3))
    with pytest.raises(ValueError, match="unknown interpolation"):
        latent.interpolate(z0, z1, 3, method="cubic")
    with pytest.raises(ValueError, match="at least 2 steps"):
        latent.interpolate(z0, z1, 1)


@pytest.mark.parametrize("method", latent.INTERPOLATIONS)
def test_interpolation_endpoints_decode_to_the_endpoints_reconstructions(method):
    vae = tiny_vae(z_dim=3)
    x0, x1 = _x(4, seed=1), _x(4, seed=2)
    images = latent.interpolation_images(vae.model, vae.guide, x0, x1, steps=6, method=method)
    assert images.shape == (4, 6, 6)
    for column, x in ((0, x0), (-1, x1)):
        expected = latent.decode(vae.model, latent.posterior_means(vae.guide, x))
        assert torch.allclose(images[:, column], expected, atol=1e-6)


def test_traversal_changes_only_the_chosen_unit():
    z = torch.tensor([1.0, 2.0, 3.0])
    codes = latent.traversal(z, [2, 0], torch.tensor([-1.0, 0.0, 1.0]))
    assert codes.shape == (2, 3, 3)
    assert codes[0, :, 2].tolist() == [-1.0, 0.0, 1.0] and torch.all(codes[0, :, :2] == z[:2])
    assert codes[1, :, 0].tolist() == [-1.0, 0.0, 1.0] and torch.all(codes[1, :, 1:] == z[1:])
    per_unit = latent.traversal(z, [0, 1], torch.tensor([[5.0, 6.0], [7.0, 8.0]]))
    assert per_unit[1, :, 1].tolist() == [7.0, 8.0]
    with pytest.raises(ValueError, match="outside 0..2"):
        latent.traversal(z, [3], torch.zeros(2))
    with pytest.raises(ValueError, match="one code"):
        latent.traversal(z[None], [0], torch.zeros(2))


def test_traversal_images_pick_the_most_variable_units():
    vae = tiny_vae(z_dim=3)
    reference = _x(50, seed=3)
    images, units = latent.traversal_images(vae.model, vae.guide, reference[0], reference, num_units=2, steps=4)
    std = latent.posterior_means(vae.guide, reference).std(0)
    assert images.shape == (2, 4, 6)
    assert units == std.argsort(descending=True)[:2].tolist()


def test_attribute_vector_is_the_difference_of_group_means():
    codes = torch.tensor([[1.0, 0.0], [3.0, 2.0], [0.0, 0.0], [0.0, 4.0]])
    vector = latent.attribute_vector(codes, torch.tensor([True, True, False, False]))
    assert vector.tolist() == [2.0 - 0.0, 1.0 - 2.0]
    moved = latent.add_attribute(codes[2:], vector, [0.0, 1.0, 2.0])
    assert moved.shape == (2, 3, 2)
    assert torch.equal(moved[:, 0], codes[2:]) and moved[0, 2].tolist() == [4.0, -2.0]
    with pytest.raises(ValueError, match="with and without"):
        latent.attribute_vector(codes, torch.ones(4, dtype=torch.bool))
    with pytest.raises(ValueError, match="expected \\(4,\\)"):
        latent.attribute_vector(codes, torch.ones(3, dtype=torch.bool))


def test_class_vector_of_a_trained_vae_turns_other_digits_into_that_class():
    """On the embedded digits, the attribute vector "class 0 minus the other classes" added with growing weight
    to 50 test digits of other classes must raise a pixel classifier's probability of class 0 at every step
    and past one half at weight 1.5 (measured: 0.02, 0.23, 0.53, 0.88). (Stroke thickness is not a direction
    of the 8x8 digits' latent space: its vector barely changes the ink there; it is on MNIST.)"""
    data = pyrovae.load_dataset("digits")
    vae = pyrovae.VAE(data.x_dim, z_dim=8)
    pyrovae.fit(vae.model, vae.guide, data, pyrovae.TrainConfig(epochs=30, device="cpu"), verbose=False)
    classifier = digit_classifier(data.train.x, data.train.y)
    x, y = data.test.x, data.test.y
    images = latent.attribute_images(vae.model, vae.guide, x, y == 0, x[y != 0][:50], weights=(0.0, 0.5, 1.0, 1.5))
    p0 = torch.as_tensor(classifier.predict_proba(images.reshape(-1, data.x_dim).numpy()))[:, 0].reshape(50, 4)
    p0 = p0.mean(0)
    assert torch.all(p0.diff() > 0.05) and p0[-1] > 0.5, p0


def test_embed_2d():
    codes2 = torch.randn(30, 2)
    assert torch.equal(latent.embed_2d(codes2), codes2)
    codes = torch.randn(30, 5)
    points = latent.embed_2d(codes, seed=1)
    assert points.shape == (30, 2) and torch.isfinite(points).all()
    assert torch.equal(points, latent.embed_2d(codes, seed=1))
    with pytest.raises(ValueError, match="5-D"):
        latent.embed_2d(codes, method="identity")
    with pytest.raises(ValueError, match="unknown method"):
        latent.embed_2d(codes, method="umap")
