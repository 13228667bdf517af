import gc
import math
import weakref

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine

from pyrovae import VAE, log_marginal_likelihood
from pyrovae.infer.importance import (
    ALLOCATOR_OVERHEAD,
    bytes_per_pair,
    chunk_sizes,
    collect_young_only,
    psis_khat,
    release_free_memory,
)
from pyrovae.infer.memory import PeakMemory
from pyrovae.infer.noise import IndexedNoise
from pyrovae.models.iaf import IAFVAE
from tests.common import tiny_dataset, tiny_vae


class PPCA:
    """Probabilistic PCA, z ~ N(0, I_d), x | z ~ N(W z + b, s^2 I_D), with W's columns orthogonal so that
    the exact posterior N(mu(x), Sigma) has a diagonal Sigma and fits a mean-field guide."""

    def __init__(self, x_dim: int = 5, z_dim: int = 2, noise: float = 0.5) -> None:
        g = torch.Generator().manual_seed(1)
        q, _ = torch.linalg.qr(torch.randn(x_dim, z_dim, generator=g, dtype=torch.float64))
        self.W = q * torch.tensor([2.0, 0.7], dtype=torch.float64)[:z_dim]
        self.b = torch.randn(x_dim, generator=g, dtype=torch.float64)
        self.s = noise
        precision = 1 + (self.W**2).sum(0) / self.s**2  # diagonal of I + W^T W / s^2
        self.post_var = 1 / precision

    def model(self, x):
        with pyro.plate("data", len(x)):
            z = pyro.sample("z", dist.Normal(torch.zeros(len(x), self.W.shape[1], dtype=x.dtype), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z @ self.W.T + self.b, self.s).to_event(1), obs=x)

    def posterior(self, x):
        return self.post_var * ((x - self.b) @ self.W) / self.s**2, self.post_var.sqrt()

    def guide(self, x, loc_shift=0.0, scale_factor=1.0):
        loc, scale = self.posterior(x)
        with pyro.plate("data", len(x)):
            pyro.sample("z", dist.Normal(loc + loc_shift, scale * scale_factor).expand(loc.shape).to_event(1))

    def log_px(self, x):
        cov = self.W @ self.W.T + self.s**2 * torch.eye(len(self.b), dtype=torch.float64)
        return dist.MultivariateNormal(self.b, cov).log_prob(x)

    def data(self, n: int = 6) -> torch.Tensor:
        g = torch.Generator().manual_seed(2)
        z = torch.randn(n, self.W.shape[1], generator=g, dtype=torch.float64)
        return z @ self.W.T + self.b + self.s * torch.randn(n, len(self.b), generator=g, dtype=torch.float64)


def global_shift_model(x):
    """A global shift t ~ N(0, 1), sampled once outside the data plate, then z_n ~ N(0, 1) and x_n ~ N(t + z_n, 1):
    given t, p(z_n | x_n, t) = N((x_n - t) / 2, 1/2) and p(x_n | t) = N(t, 2)."""
    t = pyro.sample("t", dist.Normal(torch.zeros((), dtype=x.dtype), 1.0))
    with pyro.plate("data", len(x)):
        z = pyro.sample("z", dist.Normal(torch.zeros_like(x), 1.0))
        pyro.sample("x", dist.Normal(t + z, 1.0), obs=x)


def posterior_given_t(x, t, loc_shift=0.0, scale_factor=1.0):
    """q(z_n | x_n, t) = N((x_n - t) / 2 + loc_shift, scale_factor^2 / 2), the exact posterior given t by default."""
    with pyro.plate("data", len(x)):
        pyro.sample("z", dist.Normal((x - t) / 2 + loc_shift, scale_factor * math.sqrt(0.5)))


def global_shift_guide(x, loc_shift=0.0, scale_factor=1.0):
    """Some guide for t, q(t) = N(0.3, 2^2), then q(z_n | x_n, t) (:func:`posterior_given_t`)."""
    t = pyro.sample("t", dist.Normal(torch.tensor(0.3, dtype=x.dtype), 2.0))
    posterior_given_t(x, t, loc_shift, scale_factor)


def test_exact_posterior_gives_the_analytic_log_marginal_to_float_precision():
    ppca = PPCA()
    x = ppca.data()
    est = log_marginal_likelihood(ppca.model, ppca.guide, x, num_samples=200, data_chunk=4, sample_chunk=64)
    torch.testing.assert_close(est.log_px, ppca.log_px(x), rtol=0, atol=1e-10)
    # every weight is p(x): ELBO, IWAE and log p(x) coincide and there is no Monte-Carlo error
    torch.testing.assert_close(est.elbo, est.log_px, rtol=0, atol=1e-10)
    torch.testing.assert_close(est.iwae, est.log_px, rtol=0, atol=1e-10)
    assert est.stderr.max() < 1e-6


def test_wrong_guide_converges_to_the_analytic_value():
    ppca = PPCA()
    x = ppca.data()

    def wrong(x):
        ppca.guide(x, loc_shift=0.4, scale_factor=1.6)

    exact = ppca.log_px(x)
    errors = {}
    for k in (10, 20000):
        est = log_marginal_likelihood(ppca.model, wrong, x, num_samples=k)
        errors[k] = (est.log_px - exact).abs()
    assert errors[20000].mean() < errors[10].mean() / 10 and errors[20000].max() < 0.05
    assert (est.elbo < exact - 1).all()  # the proposal is visibly wrong: the ELBO is far below
    # the reported standard error is of the size of the actual error
    assert ((est.log_px - exact).abs() < 4 * est.stderr).all()


def test_estimate_is_above_the_elbo_and_iwae_bound_grows_with_k():
    data = tiny_dataset()
    vae = tiny_vae()
    x = data.test.x
    bounds = [log_marginal_likelihood(vae.model, vae.guide, x, 4000, iwae_k=k) for k in (1, 10, 100, 1000)]
    est = bounds[0]
    assert (est.log_px >= est.elbo).all()  # logsumexp - log K >= mean, for the very same weights
    torch.testing.assert_close(est.iwae, est.elbo)  # IWAE with k=1 is the ELBO
    means = [b.iwae.mean().item() for b in bounds]
    assert means == sorted(means) and means[-1] - means[0] > 0.1
    assert est.log_px.mean() >= means[-1] - 1e-9


def test_results_do_not_depend_on_chunk_sizes_or_batch_composition():
    vae = tiny_vae()
    x = tiny_dataset(n_test=11).test.x
    ref = log_marginal_likelihood(vae.model, vae.guide, x, 600, seed=3)
    for data_chunk, sample_chunk in ((1, 600), (4, 77), (11, 1), (5, 300)):
        est = log_marginal_likelihood(
            vae.model, vae.guide, x, 600, seed=3, data_chunk=data_chunk, sample_chunk=sample_chunk
        )
        for a, b in ((est.log_px, ref.log_px), (est.elbo, ref.elbo), (est.iwae, ref.iwae)):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
    # a shuffled subset with its original indices gets the same per-point values
    rows = torch.tensor([7, 2, 9])
    sub = log_marginal_likelihood(vae.model, vae.guide, x[rows], 600, seed=3, indices=rows)
    torch.testing.assert_close(sub.log_px, ref.log_px[rows], rtol=1e-6, atol=1e-6)
    # the global random state plays no part; another seed gives other noise
    pyro.set_rng_seed(123)
    torch.testing.assert_close(log_marginal_likelihood(vae.model, vae.guide, x, 600, seed=3).log_px, ref.log_px)
    assert not torch.allclose(log_marginal_likelihood(vae.model, vae.guide, x, 600, seed=4).log_px, ref.log_px)


def test_chunked_estimator_matches_plain_torch_with_the_same_noise():
    vae = tiny_vae()
    x = tiny_dataset(n_test=9).test.x
    num_samples = 700
    est = log_marginal_likelihood(vae.model, vae.guide, x, num_samples, seed=5, data_chunk=2, sample_chunk=300)

    # the same noise, drawn in one block, and the VAE's densities written out in torch
    noise = IndexedNoise(5, "data", range(len(x)), 0, particle_dim=-2)
    eps = noise.standard_normal("z", torch.Size([num_samples, len(x), vae.z_dim]), 1, torch.zeros(()))
    with torch.no_grad():
        loc, scale = vae.encoder(x)
        z = loc + scale * eps
        log_q = torch.distributions.Normal(loc, scale).log_prob(z).sum(-1)
        log_prior = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
        log_lik = torch.distributions.Bernoulli(logits=vae.decoder(z)).log_prob(x).sum(-1)
    log_w = (log_prior + log_lik - log_q).double()
    torch.testing.assert_close(est.log_px, log_w.logsumexp(0) - math.log(num_samples), rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(est.elbo, log_w.mean(0), rtol=1e-6, atol=1e-5)
    w = (log_w - log_w.max(0).values).exp()
    rel_var = w.var(0, unbiased=False) / w.mean(0) ** 2
    torch.testing.assert_close(est.stderr, (rel_var / num_samples).sqrt(), rtol=1e-4, atol=1e-8)


def test_summary_reports_dataset_averages():
    vae = tiny_vae()
    x = tiny_dataset().test.x
    est = log_marginal_likelihood(vae.model, vae.guide, x, 300, iwae_k=30, khat=True)
    summary = est.summary()
    assert summary["nll"] == pytest.approx(-est.log_px.mean().item())
    assert summary["gap"] == pytest.approx(summary["nll"] * -1 - summary["elbo"]) and summary["gap"] > 0
    assert summary["num_samples"] == 300 and summary["iwae_k"] == 30 and summary["num_points"] == len(x)
    assert 0 < summary["nll_stderr"] < est.stderr.max()
    assert est.khat.shape == (len(x),) and 0 <= summary["khat_above_0.7"] <= 1


def test_one_sample_has_no_standard_error():
    """With one importance sample per point the estimate is a single log-weight, whose spread is unknown: its
    standard error is undefined, not 0 (which read as an exact estimate)."""
    vae = tiny_vae()
    est = log_marginal_likelihood(vae.model, vae.guide, tiny_dataset().test.x, 1, iwae_k=1)
    assert est.stderr.isnan().all() and est.summary()["nll_stderr"] is None
    torch.testing.assert_close(est.log_px, est.elbo, rtol=1e-12, atol=1e-12)  # one sample: log p(x) is its log-weight
    two = log_marginal_likelihood(vae.model, vae.guide, tiny_dataset().test.x, 2, iwae_k=1)
    assert two.summary()["nll_stderr"] > 0


def test_khat_flags_a_too_narrow_proposal():
    """A Gaussian proposal s times as wide as a Gaussian posterior gives weights with a Pareto tail of shape
    k = 1 - s^2 when s < 1 (0.96 here) and light tails when s > 1; the estimate of k from the 3 sqrt(K) largest
    weights has a standard deviation of about (1 + k) / sqrt(3 sqrt(K)), 0.1 at K = 20,000."""
    ppca = PPCA()
    x = ppca.data(3)

    def narrow(x):
        ppca.guide(x, scale_factor=0.2)

    with pytest.warns(UserWarning, match="k-hat > 0.7"):
        bad = log_marginal_likelihood(ppca.model, narrow, x, 20000, khat=True)
    good = log_marginal_likelihood(ppca.model, lambda x: ppca.guide(x, scale_factor=1.2), x, 20000, khat=True)
    assert (bad.khat > 0.7).all() and (good.khat < 0.5).all()


def test_psis_khat_recovers_a_pareto_tail():
    # weights with a Pareto(shape 1/k) tail: log w = k * Exponential(1) has P(w > t) = t^(-1/k)
    g = torch.Generator().manual_seed(0)
    log_w = 0.8 * torch.empty(20000, 2, dtype=torch.float64).exponential_(generator=g)
    assert psis_khat(log_w).sub(0.8).abs().max() < 0.1


def test_a_fixed_global_latent_gives_the_analytic_conditional_log_marginal():
    """With fixed={"t": t0}, model and guide run at t = t0 (the guide does not sample t), so the guide of z is the
    exact posterior given t0 and every weight is p(x_n | t0) = N(x_n; t0, 2)."""
    x = torch.tensor([-2.0, -0.3, 0.0, 1.1, 3.0], dtype=torch.float64)
    for t0 in (torch.tensor(-0.5, dtype=torch.float64), torch.tensor(1.3, dtype=torch.float64)):
        exact = dist.Normal(t0, math.sqrt(2.0)).log_prob(x)
        est = log_marginal_likelihood(global_shift_model, global_shift_guide, x, 20, fixed={"t": t0})
        torch.testing.assert_close(est.log_px, exact, rtol=0, atol=1e-10)
        torch.testing.assert_close(est.elbo, exact, rtol=0, atol=1e-10)


def test_a_model_conditioned_on_a_global_value_matches_fixing_it():
    """A model conditioned on t = t0 (poutine.condition), with a guide that does not sample t, gives the estimate
    of fixed={"t": t0}: the same weights, drawn with the same noise. With a wrong guide of z, both estimate
    log p(x_n | t0) within their Monte-Carlo error."""
    x = torch.tensor([-2.0, -0.3, 0.0, 1.1, 3.0], dtype=torch.float64)
    t0 = torch.tensor(0.8, dtype=torch.float64)

    def wrong(x):
        global_shift_guide(x, loc_shift=0.4, scale_factor=1.5)

    fixed = log_marginal_likelihood(global_shift_model, wrong, x, 2000, fixed={"t": t0})
    conditioned = log_marginal_likelihood(
        poutine.condition(global_shift_model, {"t": t0}), lambda x: posterior_given_t(x, t0, 0.4, 1.5), x, 2000
    )
    for a, b in ((fixed.log_px, conditioned.log_px), (fixed.elbo, conditioned.elbo)):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    exact = dist.Normal(t0, math.sqrt(2.0)).log_prob(x)
    assert ((fixed.log_px - exact).abs() < 4 * fixed.stderr).all() and (fixed.elbo < exact - 0.05).all()


def test_global_latent_variables_and_mismatched_programs_are_refused():
    x = torch.randn(4, 3)

    def model(x):
        w = pyro.sample("w", dist.Normal(0.0, 1.0))
        with pyro.plate("data", len(x)):
            pyro.sample("x", dist.Normal(w, 1.0).expand([len(x), 3]).to_event(1), obs=x)

    def guide(x):
        pyro.sample("w", dist.Normal(0.0, 1.0))

    advice = r"latent sites \['w'\] are not in the data plate 'data': .* with fixed=\{'w': value, ...\}"
    with pytest.raises(ValueError, match=advice):
        log_marginal_likelihood(model, guide, x, 10)
    with pytest.raises(ValueError, match=advice):
        log_marginal_likelihood(model, guide, x, 10, data_plate="data")
    # the advice works: nothing is left to sample, log p(x_n | w = 0.5) is exact
    est = log_marginal_likelihood(model, guide, x, 10, fixed={"w": torch.tensor(0.5)})
    torch.testing.assert_close(est.log_px, dist.Normal(0.5, 1.0).log_prob(x).sum(-1).double(), rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match=advice):  # the guide need not propose w for the advice to apply
        log_marginal_likelihood(model, lambda x: None, x, 10)
    with pytest.raises(ValueError, match=r"latent sites \['z'\] are not sampled by the guide"):
        log_marginal_likelihood(global_shift_model, lambda x: None, x[:, 0], 10, fixed={"t": torch.tensor(0.5)})
    with pytest.raises(ValueError, match=r"guide's sites \['w'\] are not latent sites of the model: .* pass fixed="):
        log_marginal_likelihood(poutine.condition(model, {"w": torch.tensor(0.5)}), guide, x, 10)

    def extra_guide(x):
        guide(x)
        pyro.sample("u", dist.Normal(0.0, 1.0))

    with pytest.raises(ValueError, match=r"guide's sites \['u'\] are not latent sites of the model"):
        log_marginal_likelihood(model, extra_guide, x, 10, fixed={"w": torch.tensor(0.5)})
    with pytest.raises(ValueError, match=r"fixed holds \['v'\], which are not sample sites of the model or the "
                       r"guide; the model's sample sites are \['w', 'x'\]"):  # fmt: skip
        log_marginal_likelihood(model, guide, x, 10, fixed={"w": torch.tensor(0.5), "v": torch.tensor(1.0)})
    t0 = torch.tensor(0.0, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"the fixed sites \['z'\] are in the data plate 'data': fixed holds values "
                       "of global sites"):  # fmt: skip
        log_marginal_likelihood(global_shift_model, global_shift_guide, x[:, 0].double(), 10,
                                fixed={"t": t0, "z": t0})  # fmt: skip
    with pytest.raises(ValueError, match="data_plate must name plates that hold sample sites, got \\['dta'\\]"):
        log_marginal_likelihood(model, guide, x, 10, fixed={"w": torch.tensor(0.5)}, data_plate="dta")


def test_an_observation_outside_the_data_plate_is_not_taken_for_a_global_one_silently():
    """An observed site outside the data plate counts as a global value the model is conditioned on; when it is the
    only observed site, it is the data put outside the plate by mistake, and the estimate is refused."""

    def model(x):
        with pyro.plate("data", len(x)):
            z = pyro.sample("z", dist.Normal(torch.zeros_like(x), 1.0))
        pyro.sample("x", dist.Normal(z, 1.0).to_event(1), obs=x)

    def guide(x):
        with pyro.plate("data", len(x)):
            pyro.sample("z", dist.Normal(x / 2, 1.0))

    with pytest.raises(ValueError, match="no observed site of the model is in the data plate 'data'"):
        log_marginal_likelihood(model, guide, torch.randn(4), 10)


def test_two_views_in_two_data_plates_add_up():
    """Two independent VAEs, one per view of each row, each in its own data plate ("a/data", "b/data", found without
    being named): log p(x^a_n, x^b_n) = log p(x^a_n) + log p(x^b_n). With one seed each VAE's site gets the same noise
    alone or in the pair, so every joint log-weight is the sum of the two VAEs' (the ELBOs add up to float32
    precision); the log p(x) estimates, K = 5000, agree within 4 times the sum of their standard errors (the three
    share their noise: the standard deviation of the difference is at most the sum of theirs)."""
    a, b = tiny_vae(6, prefix="a", seed=0), tiny_vae(4, prefix="b", seed=1)
    xa, xb = tiny_dataset(x_dim=6).test.x, tiny_dataset(x_dim=4, seed=1).test.x

    def model(xa, xb):
        a.model(xa)
        b.model(xb)

    def guide(xa, xb):
        a.guide(xa)
        b.guide(xb)

    joint = log_marginal_likelihood(model, guide, (xa, xb), 5000, seed=2)
    alone = [log_marginal_likelihood(vae.model, vae.guide, x, 5000, seed=2) for vae, x in ((a, xa), (b, xb))]
    torch.testing.assert_close(joint.elbo, alone[0].elbo + alone[1].elbo, rtol=0, atol=1e-5)
    error = joint.log_px - alone[0].log_px - alone[1].log_px
    assert (error.abs() < 4 * (joint.stderr + alone[0].stderr + alone[1].stderr)).all()
    named = log_marginal_likelihood(model, guide, (xa, xb), 5000, seed=2, data_plate=["a/data", "b/data"])
    assert torch.equal(named.log_px, joint.log_px)

    def unequal(xa, xb):  # view b of one row fewer
        a.model(xa)
        b.model(xb[1:])

    def unequal_guide(xa, xb):
        a.guide(xa)
        b.guide(xb[1:])

    with pytest.raises(ValueError, match=r"the data plates \['a/data', 'b/data'\] must have the same \(size, "
                       r"full_size\) at every site, one entry per data point"):  # fmt: skip
        log_marginal_likelihood(unequal, unequal_guide, (xa, xb), 10)


def test_minibatch_scaling_is_ignored_and_random_subsampling_refused():
    vae = tiny_vae()
    x = tiny_dataset().test.x
    ref = log_marginal_likelihood(vae.model, vae.guide, x, 50)
    scaled = log_marginal_likelihood(
        lambda x: vae.model(x, num_data=1000), lambda x: vae.guide(x, num_data=1000), x, 50
    )
    torch.testing.assert_close(scaled.log_px, ref.log_px)

    def subsampled(x):
        with pyro.plate("data", len(x), subsample_size=2) as idx:
            pyro.sample("x", dist.Bernoulli(0.5).expand([2, 6]).to_event(1), obs=x[idx])

    with pytest.raises(ValueError, match="without subsampling, one plate entry per row"):
        log_marginal_likelihood(subsampled, lambda x: None, x, 5)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_samples": 0}, "num_samples must be a positive integer"),
        ({"num_samples": 10, "iwae_k": 11}, "iwae_k must be between 1 and num_samples=10"),
        ({"data_chunk": 0}, "data_chunk must be a positive integer"),
        ({"indices": [0, 1]}, "indices has 2 entries"),
        ({"seed": -1}, "seed and indices must be non-negative"),
    ],
)
def test_bad_arguments_are_explained(kwargs, message):
    vae = tiny_vae()
    x = tiny_dataset().test.x
    with pytest.raises(ValueError, match=message):
        log_marginal_likelihood(vae.model, vae.guide, x, **{"num_samples": 5, **kwargs})


def test_bad_data_is_explained():
    vae = tiny_vae()
    with pytest.raises(ValueError, match="non-empty tensors with the same number of rows"):
        log_marginal_likelihood(vae.model, vae.guide, torch.zeros(0, 6), 5)
    with pytest.raises(ValueError, match=r"outside \{0, 1\}"):
        log_marginal_likelihood(vae.model, vae.guide, torch.full((3, 6), 0.5), 5)


def test_chunk_sizes_respect_the_memory_budget():
    # 6,272 bytes per (sample, point) pair and half of 1 MiB for tensors: 83 pairs
    assert chunk_sizes(10000, 5000, 6272, 2**20) == (1, 83)
    data_chunk, sample_chunk = chunk_sizes(10000, 5000, 6272, 2**30)
    assert sample_chunk == 5000 and data_chunk == 2**30 // (2 * 6272) // 5000
    assert chunk_sizes(10000, 5000, 6272, 2**28) == (4, 5000)
    assert chunk_sizes(3, 5000, 6272, 2**40) == (3, 5000)  # never more than there is
    assert chunk_sizes(100, 5000, 6272, 2**30, data_chunk=10) == (10, 5000)
    assert chunk_sizes(100, 5000, 6272, 2**26, sample_chunk=100) == (53, 100)


def test_chunks_follow_the_models_own_tensors():
    """The probes see a flow's intermediates: a wide IAF guide takes several times the bytes per (sample, point)
    of the plain guide; and with a budget sized for 20 points per chunk, both models run in chunks of 20 whose
    tensors stay within the budget's share for tensors (max_memory / ALLOCATOR_OVERHEAD), give or take the
    per-chunk constants."""
    x = torch.bernoulli(torch.full((100, 20), 0.5), generator=torch.Generator().manual_seed(0))
    models = {"vae": VAE(20, z_dim=8, hidden=(16,)), "iaf": IAFVAE(20, 8, hidden=(16,), flow_hidden=[256])}
    pair_bytes = {}
    for name, vae in models.items():
        with torch.no_grad():
            pair_bytes[name] = bytes_per_pair(vae.model, vae.guide, [x[:2]], "data", 1, seed=0)
        budget = int(ALLOCATOR_OVERHEAD * pair_bytes[name] * 500 * 20) + 64  # + 64: no rounding down to 19
        assert chunk_sizes(100, 500, pair_bytes[name], budget) == (20, 500)
        with PeakMemory() as memory:
            log_marginal_likelihood(vae.model, vae.guide, x, 500, max_memory=budget, progress=False)
        assert memory.peak < 1.2 * budget / ALLOCATOR_OVERHEAD, name
    assert pair_bytes["iaf"] > 3 * pair_bytes["vae"]


def test_nan_log_densities_are_reported_not_averaged():
    ppca = PPCA()
    x = ppca.data(4)

    def broken(x):
        loc, scale = ppca.posterior(x)
        loc = loc.clone()
        loc[1] = float("nan")
        with pyro.plate("data", len(x)):
            pyro.sample("z", dist.Normal(loc, scale).to_event(1))

    with pytest.raises(ValueError, match="Expected parameter loc"):  # validation on: caught up front
        log_marginal_likelihood(ppca.model, broken, x, 10)
    with pyro.validation_enabled(False), pytest.raises(ValueError, match=r"NaN for 1 data points \(first: index 1\)"):
        log_marginal_likelihood(ppca.model, broken, x, 10)


def test_discrete_latent_sites_are_importance_sampled_too():
    # a mixture: y ~ Categorical(pi), x | y ~ N(mu_y, 1); exact log p(x) = logsumexp_y log pi_y N(x; mu_y, 1)
    pi, mu = torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64), torch.tensor([-2.0, 0.0, 3.0], dtype=torch.float64)
    x = torch.tensor([-2.5, 0.3, 1.5, 4.0], dtype=torch.float64)

    def model(x):
        with pyro.plate("data", len(x)):
            y = pyro.sample("y", dist.Categorical(pi))
            pyro.sample("x", dist.Normal(mu[y], 1.0), obs=x)

    def guide(x):
        with pyro.plate("data", len(x)):
            pyro.sample("y", dist.Categorical(logits=-(x.unsqueeze(-1) - mu).abs()))

    exact = (pi.log() + dist.Normal(mu, 1.0).log_prob(x.unsqueeze(-1))).logsumexp(-1)
    est = log_marginal_likelihood(model, guide, x, 20000)
    assert ((est.log_px - exact).abs() < 4 * est.stderr + 1e-3).all()
    assert (est.elbo < exact).all()


def test_an_estimate_leaves_no_tensors_behind():
    """Pyro's flow transforms hold their cached tensors in reference cycles; the estimator collects them after
    each chunk, so that once it returns only its results are alive of all the tensors it made."""
    x = torch.bernoulli(torch.full((40, 20), 0.5), generator=torch.Generator().manual_seed(0))
    vae = IAFVAE(20, 8, hidden=(16,))
    with PeakMemory() as memory:
        estimate = log_marginal_likelihood(vae.model, vae.guide, x, 200, data_chunk=10, sample_chunk=200)
    results = [estimate.log_px, estimate.elbo, estimate.iwae, estimate.stderr]
    assert memory.live <= sum(t.untyped_storage().nbytes() for t in results)


def test_collections_inside_an_estimate_scan_only_new_objects():
    """collect_young_only freezes what existed before (gc.freeze), so the per-chunk collections do not scan the
    whole process; a reference cycle made inside is still collected, and on the way out nothing stays frozen.
    A caller's own freeze is left alone."""

    class Node:
        pass

    freed = []
    with collect_young_only():
        assert gc.get_freeze_count() > 1000  # torch's and Pyro's objects, at least
        cycle = Node()
        cycle.self = cycle
        weakref.finalize(cycle, freed.append, True)
        del cycle
        release_free_memory()
        assert freed == [True]
    assert gc.get_freeze_count() == 0
    gc.freeze()
    try:
        with collect_young_only():
            pass
        assert gc.get_freeze_count() > 1000  # still frozen: not unfrozen on the way out
    finally:
        gc.unfreeze()


def test_estimates_run_in_evaluation_mode_whatever_the_chunks():
    """A BatchNorm encoder left in training mode would normalise each chunk by its own statistics: the estimate
    runs the modules in evaluation mode, so it does not depend on the chunk size, and gives their mode back."""
    from tests.common import BatchNormEncoder, binary

    vae = VAE(5, z_dim=2, encoder=BatchNormEncoder(5, 2), seed=0)
    with torch.no_grad():
        vae.encoder(binary(64, seed=1))  # running statistics away from their initial values
    x = binary(6)
    small, large = (log_marginal_likelihood(vae.model, vae.guide, x, 20, data_chunk=c, seed=0).log_px for c in (1, 6))
    assert torch.allclose(small, large, rtol=1e-6)
    assert vae.training and vae.encoder.training
