import pyro
import pytest
import torch
from pyro.infer import Trace_ELBO

import pyrovae
from pyrovae.cli import main
from pyrovae.models.iaf import IAFVAE
from pyrovae.models.nets import ConditionalMLP, ConvDecoder, ConvEncoder


def test_conv_nets_keep_leading_dims_and_mirror_each_other():
    encoder, decoder = ConvEncoder((1, 28, 28), 16), ConvDecoder(16, (1, 28, 28))
    x = torch.rand(3, 5, 784)  # e.g. (particles, batch, pixels)
    loc, scale = encoder(x)
    assert loc.shape == scale.shape == (3, 5, 16) and (scale > 0).all()
    assert torch.allclose(encoder(x[1])[0], loc[1], atol=1e-6)  # each image encoded on its own
    assert decoder(loc).shape == (3, 5, 784)
    assert encoder.hidden(x).shape == (3, 5, 400)
    assert [m.out_channels for m in encoder.conv if isinstance(m, torch.nn.Conv2d)] == [32, 64]


def test_conv_nets_reject_shapes_they_cannot_halve():
    with pytest.raises(ValueError, match="divisible by 4"):
        ConvEncoder((1, 30, 30), 4)
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        ConvDecoder(4, (28, 28))
    with pytest.raises(ValueError, match="needs the image_shape"):
        pyrovae.VAE(784, net="conv")
    with pytest.raises(ValueError, match="needs the image_shape"):
        pyrovae.VAE(784, net="conv", image_shape=(1, 8, 8))
    with pytest.raises(ValueError, match="unknown net 'resnet'"):
        pyrovae.VAE(784, net="resnet")


def test_conv_vae_trains_reloads_and_takes_a_flow(tmp_path):
    data = pyrovae.load_dataset("digits")
    vae = pyrovae.VAE(data.x_dim, z_dim=8, hidden=(128,), net="conv", image_shape=data.image_shape)
    untrained = pyrovae.elbo_per_datapoint(vae.model, vae.guide, data.test.x)
    config = pyrovae.TrainConfig(epochs=5, device="cpu")
    history = pyrovae.fit(vae.model, vae.guide, data, config, out_dir=tmp_path, extra={"vae": vae.config},
                          verbose=False)  # fmt: skip
    assert history[-1]["test_elbo"] > untrained + 5  # measured -44.5 -> -27.6
    loaded, _ = pyrovae.load_vae(tmp_path / "checkpoint.pt")
    assert isinstance(loaded.encoder, ConvEncoder) and loaded.config == vae.config
    x = data.test.x[:20]
    pyro.set_rng_seed(1)
    expected = Trace_ELBO().loss(vae.model, vae.guide, x)
    pyro.set_rng_seed(1)
    assert Trace_ELBO().loss(loaded.model, loaded.guide, x) == pytest.approx(expected, rel=1e-6)
    iaf = IAFVAE(data.x_dim, z_dim=8, hidden=(128,), net="conv", image_shape=data.image_shape)
    assert isinstance(iaf.encoder.base, ConvEncoder)
    assert pyrovae.elbo_per_datapoint(iaf.model, iaf.guide, x) < 0


def test_cli_conv_nets_resume(tmp_path, capsys):
    main(["train", "--net", "conv", "--epochs", "1", "--out", str(tmp_path), "--device", "cpu", "--quiet"])
    main(["train", "--epochs", "2", "--out", str(tmp_path), "--resume", "--quiet"])
    vae, state = pyrovae.load_vae(tmp_path / "checkpoint.pt")
    assert state["epoch"] == 2 and isinstance(vae.encoder, ConvEncoder) and vae.config["image_shape"] == [1, 8, 8]


def test_conditional_mlp_with_several_inputs_is_the_mlp_on_their_concatenation():
    """W_x x + W_z z + W_y[:, y] + b equals one linear map of [x, z, onehot(y)], with x (batch, dim) broadcast
    against an enumerated z (C, batch, dim) and labels (C, 1) without being expanded."""
    net = ConditionalMLP((5, 2), 3, (7, 4), "softplus")
    x, z, y = torch.randn(4, 5), torch.randn(3, 4, 2), torch.arange(3)[:, None]
    weight = torch.cat([net.input.weight, net.extra[0].weight, net.label.weight.T], dim=1)
    joined = torch.cat([x.expand(3, 4, 5), z, torch.nn.functional.one_hot(y, 3).float().expand(3, 4, 3)], -1)
    expected = net.rest(joined @ weight.T + net.input.bias)
    assert torch.allclose(net((x, z), y), expected, atol=1e-6)
    assert net((x, z), y).shape == (3, 4, 4)
    with pytest.raises(ValueError, match="expected 2 inputs, got 1"):
        net(x, y)
