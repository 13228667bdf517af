import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import pytest
import torch
from torch.distributions import kl_divergence

from pyrovae.infer.metrics import elbo_per_datapoint, elbo_terms
from pyrovae.models.distributions import IndependentBernoulli
from tests.common import tiny_dataset, tiny_vae


def _vae_with_a_far_posterior(z_dim: int = 2):
    """A tiny VAE whose q(z|x) is far from N(0, I) (KL of a few nats), so that a wrong KL shows."""
    vae = tiny_vae(z_dim=z_dim)
    last = vae.encoder.net[-1]
    with torch.no_grad():
        last.bias.copy_(torch.tensor([1.5, -1.0, -1.5, 1.0]))  # loc (1.5, -1), scale (0.2, 1.3) + x-dependence
    return vae


def test_elbo_is_reconstruction_minus_kl_and_the_same_estimate_as_trace_elbo():
    vae, x = tiny_vae(), tiny_dataset().train.x
    pyro.set_rng_seed(3)
    terms = elbo_terms(vae.model, vae.guide, x, batch_size=7)
    assert set(terms) == {"elbo", "reconstruction", "kl"}
    assert terms["elbo"] == terms["reconstruction"] - terms["kl"]
    assert terms["reconstruction"] < 0 < terms["kl"]
    pyro.set_rng_seed(3)  # Trace_ELBO draws the same z: guide first, then the model replayed
    assert terms["elbo"] == pytest.approx(elbo_per_datapoint(vae.model, vae.guide, x, batch_size=7), rel=1e-6)


def test_terms_match_a_hand_computation_from_the_same_draws(float64):
    vae, x = _vae_with_a_far_posterior(), tiny_dataset(n_train=10).train.x.double()
    pyro.set_rng_seed(5)
    terms = elbo_terms(vae.model, vae.guide, x, batch_size=4)
    pyro.set_rng_seed(5)
    reconstruction = kl = 0.0
    with torch.no_grad():
        for chunk in x.split(4):  # the same chunks, so the same draws of z ~ q(z|x)
            z = poutine.trace(vae.guide).get_trace(chunk).nodes["z"]["value"]
            loc, scale = vae.encoder(chunk)
            reconstruction += IndependentBernoulli(vae.decoder(z)).log_prob(chunk).sum().item()
            kl += (dist.Normal(loc, scale).log_prob(z) - dist.Normal(0.0, 1.0).log_prob(z)).sum().item()
    assert terms["reconstruction"] == pytest.approx(reconstruction / len(x), rel=1e-12)
    assert terms["kl"] == pytest.approx(kl / len(x), rel=1e-12)


def test_kl_term_is_an_unbiased_estimate_of_the_analytic_kl(float64):
    """Three rows, each repeated 20,000 times: the mean one-sample KL estimate must match
    KL(N(loc, scale) || N(0, I)) from the encoder's outputs within 5 Monte-Carlo standard errors."""
    vae, rows = _vae_with_a_far_posterior(), tiny_dataset(n_train=3).train.x.double()
    repeats = 20000
    x = rows.repeat_interleave(repeats, dim=0)
    with torch.no_grad():
        q = dist.Normal(*vae.encoder(rows)).to_event(1)
        p = dist.Normal(torch.zeros(3, 2), 1.0).to_event(1)
        analytic = kl_divergence(q, p).mean().item()
        z = q.sample((repeats,))  # for the Monte-Carlo error: sd of log q(z) - log p(z) for each row
        se = ((q.log_prob(z) - p.log_prob(z)).var(dim=0).mean() / len(x)).sqrt().item()
    assert analytic > 2  # a test that a zero KL would fail
    terms = elbo_terms(vae.model, vae.guide, x)
    assert terms["kl"] == pytest.approx(analytic, abs=5 * se)


def test_factor_sites_are_left_out_of_both_terms():
    def model(x, with_factor=True):
        with pyro.plate("data", len(x)):
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            if with_factor:
                pyro.factor("bonus", torch.full((len(x),), 5.0))
            pyro.sample("x", dist.Normal(z, 1.0), obs=x)

    def guide(x, with_factor=True):
        with pyro.plate("data", len(x)):
            pyro.sample("z", dist.Normal(0.5 * x, 0.7))

    x = torch.randn(20)
    pyro.set_rng_seed(1)
    with_factor = elbo_terms(model, guide, x)
    pyro.set_rng_seed(1)
    without = elbo_terms(lambda x: model(x, with_factor=False), guide, x)
    assert with_factor == without
    pyro.set_rng_seed(1)
    assert elbo_per_datapoint(model, guide, x) == pytest.approx(with_factor["elbo"] + 5.0, rel=1e-5)


def test_empty_data_raise():
    vae = tiny_vae()
    with pytest.raises(ValueError, match="empty"):
        elbo_terms(vae.model, vae.guide, torch.zeros(0, 6))



def test_nan_data_give_an_error_with_pyro_validation_off():
    """Without Pyro's validation the model does not read the data's values: a NaN ELBO is explained after the fact
    instead of returned."""
    vae = tiny_vae()
    x = tiny_dataset().test.x.clone()
    x[3, 1] = float("nan")
    pyro.enable_validation(False)
    with pytest.raises(ValueError, match=r"the ELBO is NaN because 1 data rows hold NaN or infinite values \(e.g. rows "
                       r"\[3\]\)"):  # fmt: skip
        elbo_per_datapoint(vae.model, vae.guide, x)
    with pytest.raises(ValueError, match="is NaN because 1 data rows"):
        elbo_terms(vae.model, vae.guide, x)
