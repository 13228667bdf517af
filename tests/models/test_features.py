import pytest
import torch
from torch import nn

from pyrovae import VAE, LatentFeatures, active_units


class KnownEncoder(nn.Module):
    """q(z|x) with mean (x0, 0.001 * x1, 5) and scale 0.5: only the first unit varies with x (Var > 0.01)."""

    def forward(self, x):
        loc = torch.stack([x[:, 0], 1e-3 * x[:, 1], torch.full_like(x[:, 0], 5.0)], -1)
        return loc, torch.full_like(loc, 0.5)


def test_active_units_follow_burda_criterion():
    x = torch.randn(500, 2)
    assert active_units(KnownEncoder(), x, batch_size=64).tolist() == [True, False, False]
    assert active_units(KnownEncoder(), 0.01 * x).tolist() == [False, False, False]
    with pytest.raises(ValueError, match="at least two"):
        active_units(KnownEncoder(), x[:1])


def test_latent_features_mean_sample_and_decode():
    decoder = nn.Linear(3, 4)
    features = LatentFeatures(KnownEncoder(), decoder, torch.tensor([True, False, True]))
    x = torch.randn(2000, 2)
    assert features.dim == 2
    assert not any(p.requires_grad for p in features.parameters())
    features.eval()
    assert torch.equal(features(x), torch.stack([x[:, 0], torch.full((2000,), 5.0)], -1))
    features.train()
    noise = features(x) - features.eval()(x)
    assert noise.std(0).tolist() == pytest.approx([0.5, 0.5], abs=0.03)  # a draw from q(z|x)
    z = torch.tensor([[1.0, 2.0]])
    assert torch.allclose(features.decode(z), decoder(torch.tensor([[1.0, 0.0, 2.0]])).sigmoid())
    with pytest.raises(ValueError, match="boolean mask"):
        LatentFeatures(KnownEncoder(), decoder, torch.zeros(3, dtype=torch.bool))


def test_latent_features_of_a_convolutional_vae_take_flat_images():
    """M1 with convolutional nets (``VAE(net="conv")``): flat images in, the active codes out, and decoded
    codes are the decoder's pixel probabilities, flat."""
    torch.manual_seed(0)
    vae = VAE(64, z_dim=6, hidden=(16,), net="conv", image_shape=(1, 8, 8))
    active = torch.tensor([True, False, True, True, False, True])
    features = LatentFeatures(vae.encoder, vae.decoder, active).eval()
    x = torch.rand(5, 64).bernoulli()
    loc, _ = vae.encoder(x)
    assert torch.equal(features(x), loc[:, active])
    z = torch.randn(5, 4)
    full = torch.zeros(5, 6)
    full[:, active] = z
    assert features.decode(z).shape == (5, 64)
    assert torch.allclose(features.decode(z), vae.decoder(full).sigmoid())
