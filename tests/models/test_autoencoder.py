import pyro.poutine as poutine
import pytest
import torch
import torch.nn.functional as F
from pyro.infer import Trace_ELBO

import pyrovae
from pyrovae.checkpoint import CheckpointError
from pyrovae.models.autoencoder import Autoencoder
from pyrovae.models.registry import vae_from_config
from tests.common import tiny_dataset


def tiny_autoencoder(**kwargs) -> Autoencoder:
    return Autoencoder(6, z_dim=2, hidden=(8,), **kwargs)


def test_guide_is_a_point_mass_at_the_encoder_mean():
    ae = tiny_autoencoder()
    x = torch.bernoulli(torch.full((5, 6), 0.5))
    trace = poutine.trace(ae.guide).get_trace(x)
    loc, _ = ae.encoder(x)
    assert torch.equal(trace.nodes["z"]["value"], loc)
    assert torch.equal(trace.nodes["z"]["value"], poutine.trace(ae.guide).get_trace(x).nodes["z"]["value"])


def test_objective_is_the_reconstruction_log_likelihood():
    """Trace_ELBO's loss of the autoencoder == binary cross-entropy of x against decoder(encoder mean), summed:
    the masked prior and the point-mass guide add nothing."""
    ae = tiny_autoencoder()
    x = torch.bernoulli(torch.full((5, 6), 0.3))
    loc, _ = ae.encoder(x)
    expected = F.binary_cross_entropy_with_logits(ae.decoder(loc), x, reduction="sum")
    assert Trace_ELBO().loss(ae.model, ae.guide, x) == pytest.approx(expected.item(), rel=1e-6)
    # scaled to the whole dataset like the VAE's
    assert Trace_ELBO().loss(ae.model, ae.guide, x, num_data=50) == pytest.approx(10 * expected.item(), rel=1e-6)


def test_model_without_data_decodes_standard_normal_codes():
    ae = tiny_autoencoder()
    trace = poutine.trace(ae.model).get_trace(None, num_data=4000)
    z = trace.nodes["z"]["value"]
    assert z.shape == (4000, 2)
    assert z.mean().abs() < 0.1 and (z.std() - 1).abs() < 0.1
    assert torch.allclose(trace.nodes["x"]["fn"].mean, torch.sigmoid(ae.decoder(z)))


def test_trained_autoencoder_reconstructs_better_than_the_vae_and_reloads(tmp_path):
    """Same nets, same data, same epochs: the autoencoder's reconstruction log-likelihood beats the VAE's ELBO
    (it pays no KL and no posterior noise), and its checkpoint rebuilds an Autoencoder."""
    data = tiny_dataset(n_train=60, x_dim=6)
    config = pyrovae.TrainConfig(epochs=30, batch_size=16, device="cpu")
    ae = tiny_autoencoder()
    ae_history = pyrovae.fit(ae.model, ae.guide, data, config, out_dir=tmp_path, extra={"vae": ae.config},
                             verbose=False)  # fmt: skip
    vae = pyrovae.VAE(6, z_dim=2, hidden=(8,), prefix="v")
    vae_history = pyrovae.fit(vae.model, vae.guide, data, config, verbose=False)
    assert ae_history[-1]["train_elbo"] > vae_history[-1]["train_elbo"]
    loaded, _ = pyrovae.load_vae(tmp_path / "checkpoint.pt")
    assert isinstance(loaded, Autoencoder) and loaded.config == ae.config
    x = data.test.x
    assert torch.allclose(loaded.encoder(x)[0], ae.encoder(x)[0])


def test_unknown_model_kind_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="unknown model 'gan'"):
        vae_from_config({"model": "gan", "x_dim": 6})
    assert type(vae_from_config({"x_dim": 6, "z_dim": 2})) is pyrovae.VAE  # checkpoints from before the key
    ae = tiny_autoencoder()
    pyrovae.save_checkpoint(tmp_path / "c.pt", {"params": {}, "extra": {"vae": {**ae.config, "model": "gan"}}})
    with pytest.raises(CheckpointError, match="unknown model 'gan'"):
        pyrovae.load_vae(tmp_path / "c.pt")
