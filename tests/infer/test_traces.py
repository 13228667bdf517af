"""Tests of pyrovae/infer/traces.py against closed forms: a conjugate Gaussian model, whose posterior and
marginal are known, traced under a particle plate."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine

from pyrovae.infer.traces import (
    compute_log_probs,
    data_plate_frame,
    data_plate_frames,
    log_prob_sum,
    model_and_guide_traces,
    outside_plate,
    per_datapoint_log_prob,
    remove_global_observations,
    site_names,
    subsample_scale,
)

X = torch.tensor([-2.0, -0.3, 0.0, 1.1, 3.0], dtype=torch.float64)
K = 7  # particles
TIGHT = {"rtol": 1e-12, "atol": 1e-12}  # float64, the same densities by other kernels


# z ~ N(0, 1), x | z ~ N(z, 1): p(z | x) = N(x / 2, 1/2) and p(x) = N(0, 2)
def model(x, subsample=None):
    with pyro.plate("data", len(x) if subsample is None else 10, subsample=subsample) as idx:
        z = pyro.sample("z", dist.Normal(torch.zeros(len(idx), dtype=x.dtype), 1.0))
        pyro.sample("x", dist.Normal(z, 1.0), obs=x[idx] if subsample is not None else x)


def guide_with(a, b, s):
    """q(z | x) = N(a x + b, s^2)."""

    def guide(x, subsample=None):
        with pyro.plate("data", len(x) if subsample is None else 10, subsample=subsample) as idx:
            x = x[idx] if subsample is not None else x
            pyro.sample("z", dist.Normal(a * x + b, s))

    return guide


def particle_traces(model, guide, *args, num_particles=K, dim=-2):
    particles = pyro.plate("particles", num_particles, dim=dim)
    return model_and_guide_traces(particles(model), particles(guide), *args)


def log_weights(model_trace, guide_trace, plate="data", num_particles=K, particle_dim=-2, **kwargs):
    frames = data_plate_frames(plate, model_trace, guide_trace)
    return (per_datapoint_log_prob(model_trace, frames, num_particles, particle_dim, **kwargs)
            - per_datapoint_log_prob(guide_trace, frames, num_particles, particle_dim, **kwargs))  # fmt: skip


# two views of each point, x_n and -x_n, each modelled as above in its own data plate, "a" and "b"
def two_views_model(x):
    for view, sign in (("a", 1.0), ("b", -1.0)):
        with pyro.plate(view, len(x)):
            z = pyro.sample(f"{view}/z", dist.Normal(torch.zeros_like(x), 1.0))
            pyro.sample(f"{view}/x", dist.Normal(z, 1.0), obs=sign * x)


def two_views_guide(x):
    """The exact posterior of each view's z."""
    for view, sign in (("a", 1.0), ("b", -1.0)):
        with pyro.plate(view, len(x)):
            pyro.sample(f"{view}/z", dist.Normal(sign * x / 2, math.sqrt(0.5)))


def test_the_model_is_replayed_on_the_guides_samples():
    model_trace, guide_trace = particle_traces(model, guide_with(0.2, 0.3, 1.2), X)
    z = guide_trace.nodes["z"]["value"]
    assert z.shape == (K, len(X)) and model_trace.nodes["z"]["value"] is z
    assert site_names(model_trace) == ["z", "x"] and site_names(guide_trace) == ["z"]  # trace order, no "data"
    assert site_names(model_trace, observed=True) == ["x"] and site_names(model_trace, observed=False) == ["z"]


def test_per_datapoint_log_weights_match_the_closed_form():
    """log w_kn = log N(z_kn; 0, 1) + log N(x_n; z_kn, 1) - log N(z_kn; a x_n + b, s^2), one per particle and point."""
    a, b, s = 0.2, 0.3, 1.2
    model_trace, guide_trace = particle_traces(model, guide_with(a, b, s), X)
    z = guide_trace.nodes["z"]["value"]
    normal = torch.distributions.Normal
    expected = normal(0.0, 1.0).log_prob(z) + normal(z, 1.0).log_prob(X) - normal(a * X + b, s).log_prob(z)
    log_w = log_weights(model_trace, guide_trace)
    assert log_w.shape == (K, len(X))
    torch.testing.assert_close(log_w, expected, **TIGHT)


def test_the_exact_posterior_gives_log_px_for_every_particle():
    model_trace, guide_trace = particle_traces(model, guide_with(0.5, 0.0, math.sqrt(0.5)), X)
    exact = dist.Normal(torch.zeros_like(X), math.sqrt(2.0)).log_prob(X)
    torch.testing.assert_close(log_weights(model_trace, guide_trace), exact.expand(K, len(X)), **TIGHT)


def test_a_per_datapoint_sum_over_inner_plates_and_batch_dims_with_vectorized_particles():
    """Each point has D = 3 pixels x_nd ~ N(z_n, 1) in an inner plate, and 2 unplated noise values u_nj ~ N(0, 1)
    batched left of the pixels: per point and particle, log p(x_n, z_kn) sums all of them."""
    x = torch.arange(12, dtype=torch.float64).reshape(4, 3) / 4

    def nested_model(x):
        with pyro.plate("data", len(x), dim=-3):
            z = pyro.sample("z", dist.Normal(torch.zeros(len(x), 1, 1, dtype=x.dtype), 1.0))
            pyro.sample("u", dist.Normal(torch.zeros(len(x), 2, 1, dtype=x.dtype), 1.0))
            with pyro.plate("pixels", 3, dim=-1):
                pyro.sample("x", dist.Normal(z, 1.0), obs=x.unsqueeze(-2))

    def nested_guide(x):
        with pyro.plate("data", len(x), dim=-3):
            pyro.sample("z", dist.Normal(x.mean(-1).reshape(-1, 1, 1), 0.5))
            pyro.sample("u", dist.Normal(torch.zeros(len(x), 2, 1, dtype=x.dtype), 1.0))

    model_trace, guide_trace = particle_traces(nested_model, nested_guide, x, dim=-4)
    z = guide_trace.nodes["z"]["value"].reshape(K, len(x))
    u = guide_trace.nodes["u"]["value"].reshape(K, len(x), 2)
    normal = torch.distributions.Normal
    log_p = (normal(0.0, 1.0).log_prob(z) + normal(0.0, 1.0).log_prob(u).sum(-1)
             + normal(z.unsqueeze(-1), 1.0).log_prob(x).sum(-1))  # fmt: skip
    frame = data_plate_frame("data", model_trace, guide_trace)
    assert frame.dim == -3 and frame.size == len(x)
    torch.testing.assert_close(per_datapoint_log_prob(model_trace, frame, K, -4), log_p, **TIGHT)

    # without a particle plate: one row
    model_trace, guide_trace = model_and_guide_traces(nested_model, nested_guide, x)
    log_w = log_weights(model_trace, guide_trace, num_particles=1, particle_dim=None)
    assert log_w.shape == (1, len(x))


def test_several_data_plates_over_the_same_points_sum_their_sites():
    """Each view's exact posterior makes its weight p(x_n) = N(x_n; 0, 2) for every particle; the joint weight of the
    two views, summed over both plates, is twice that."""
    model_trace, guide_trace = particle_traces(two_views_model, two_views_guide, X)
    frames = data_plate_frames(["b", "a"], model_trace, guide_trace)
    assert [(f.name, f.dim, f.size) for f in frames] == [("b", -1, len(X)), ("a", -1, len(X))]
    exact = dist.Normal(torch.zeros_like(X), math.sqrt(2.0)).log_prob(X)
    torch.testing.assert_close(log_weights(model_trace, guide_trace, ["a", "b"]), 2 * exact.expand(K, len(X)), **TIGHT)
    with pytest.raises(ValueError, match=r"sites \['b/x', 'b/z'\] are not in the vectorized data plate 'a'"):
        data_plate_frames(["a"], model_trace, guide_trace)
    with pytest.raises(ValueError, match=r"sites \['a/x', 'a/z'\] lie in more than one of the data plates \['a', "
                       r"'particles'\]: each must lie in exactly one"):  # fmt: skip
        data_plate_frames(["a", "particles"], model_trace)
    # view "a" of the 5 points, view "b" of 2 of them
    view_a = poutine.trace(poutine.block(two_views_model, hide_fn=lambda msg: msg["name"].startswith("b/")))
    view_b = poutine.trace(poutine.block(two_views_model, hide_fn=lambda msg: msg["name"].startswith("a/")))
    sizes = r"must have the same \(size, full_size\) at every site, one entry per data point"
    found = r"found 'a': \[\(5, 5\)\], 'b': \[\(2, 2\)\]"
    with pytest.raises(ValueError, match=rf"the data plates \['a', 'b'\] {sizes}; {found}"):
        data_plate_frames(["a", "b"], view_a.get_trace(X), view_b.get_trace(X[:2]))


def test_observed_sites_outside_the_data_plates_are_removed_latent_ones_kept():
    """A global scale s observed (conditioned on a value) outside the data plate is removed from the trace; a global
    latent w stays, and the plate check then names it."""

    def global_model(x):
        w = pyro.sample("w", dist.Normal(0.0, 1.0))
        s = pyro.sample("s", dist.LogNormal(0.0, 1.0))
        with pyro.plate("data", len(x)):
            pyro.sample("x", dist.Normal(w, s), obs=x)

    trace = poutine.trace(poutine.condition(global_model, {"s": torch.tensor(2.0)})).get_trace(X)
    assert remove_global_observations(trace, ["data"]) == ["s"]
    assert site_names(trace) == ["w", "x"] and outside_plate(trace, ["data", "other"]) == ["w"]
    assert remove_global_observations(trace, "data") == []


def test_subsample_scale_and_masks():
    """A subsampled data plate (3 of 10 points) scales each site by 10/3: per point, the scaled log-density is
    10/3 times the unscaled one, which is the density of a single point. A masked point counts 0 either way;
    ``poutine.scale`` counts only in the scaled densities."""
    subsample = torch.tensor([0, 2, 4])
    guide = guide_with(0.5, 0.0, math.sqrt(0.5))
    masked = poutine.mask(model, mask=torch.tensor([True, False, True]))
    scaled = poutine.scale(masked, scale=0.25)
    model_trace, guide_trace = particle_traces(scaled, guide, X, subsample)
    frame = data_plate_frame("data", model_trace, guide_trace)
    assert (frame.size, frame.full_size) == (3, 10) and subsample_scale(frame) == 10 / 3
    unscaled = per_datapoint_log_prob(model_trace, frame, K, -2, scaled=False)
    expected = (dist.Normal(0.0, 1.0).log_prob(guide_trace.nodes["z"]["value"])
                + dist.Normal(guide_trace.nodes["z"]["value"], 1.0).log_prob(X[subsample]))  # fmt: skip
    expected[:, 1] = 0.0
    torch.testing.assert_close(unscaled, expected, **TIGHT)
    torch.testing.assert_close(per_datapoint_log_prob(model_trace, frame, K, -2), 10 / 3 * 0.25 * unscaled, **TIGHT)
    # the guide, unmasked and unscaled but for the plate: log q of the exact posterior
    log_q = per_datapoint_log_prob(guide_trace, frame, K, -2) / subsample_scale(frame)
    torch.testing.assert_close(log_q, per_datapoint_log_prob(guide_trace, frame, K, -2, scaled=False), **TIGHT)
    assert subsample_scale(data_plate_frame("data", *model_and_guide_traces(model, guide, X))) == 1.0


def test_log_prob_sum_splits_observed_from_latent_and_leaves_factors_out():
    def model_with_factor(x):
        with pyro.plate("data", len(x)):
            z = pyro.sample("z", dist.Normal(torch.zeros_like(x), 1.0))
            pyro.factor("bonus", torch.full((len(x),), 5.0, dtype=x.dtype))
            pyro.sample("x", dist.Normal(z, 1.0), obs=x)

    model_trace, guide_trace = model_and_guide_traces(model_with_factor, guide_with(0.2, 0.3, 1.2), X)
    z = guide_trace.nodes["z"]["value"]
    torch.testing.assert_close(log_prob_sum(model_trace, observed=True), dist.Normal(z, 1.0).log_prob(X).sum(), **TIGHT)
    torch.testing.assert_close(
        log_prob_sum(model_trace, observed=False), dist.Normal(0.0, 1.0).log_prob(z).sum(), **TIGHT
    )
    torch.testing.assert_close(
        log_prob_sum(guide_trace, observed=False), dist.Normal(0.2 * X + 0.3, 1.2).log_prob(z).sum(), **TIGHT
    )
    assert log_prob_sum(guide_trace, observed=True) == 0.0


def test_subsample_sites_get_no_log_prob():
    model_trace, guide_trace = model_and_guide_traces(model, guide_with(0.5, 0.0, 1.0), X, torch.tensor([1, 3]))
    compute_log_probs(model_trace, guide_trace)
    assert "log_prob" not in model_trace.nodes["data"] and "log_prob" in model_trace.nodes["x"]
    assert "log_prob" not in guide_trace.nodes["data"] and "log_prob" in guide_trace.nodes["z"]


def test_sites_outside_the_data_plate_and_inconsistent_plates_are_explained():
    def global_model(x):
        w = pyro.sample("w", dist.Normal(0.0, 1.0))
        with pyro.plate("data", len(x)):
            pyro.sample("x", dist.Normal(w, 1.0), obs=x)

    def global_guide(x):
        pyro.sample("w", dist.Normal(0.0, 1.0))

    model_trace, guide_trace = model_and_guide_traces(global_model, global_guide, X)
    assert outside_plate(model_trace, "data") == ["w"] and outside_plate(model_trace, "other") == ["w", "x"]
    with pytest.raises(ValueError, match=r"sites \['w'\] are not in the vectorized data plate 'data'"):
        data_plate_frame("data", model_trace, guide_trace)

    # the guide subsamples 3 of the 5 points, the model takes all 5
    model_trace, guide_trace = model_and_guide_traces(model, guide_with(0.5, 0.0, 1.0), X)
    subsampled = poutine.trace(guide_with(0.5, 0.0, 1.0)).get_trace(X, torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match=r"the data plate 'data' must have the same \(size, full_size\) at every site, "
                       r"one entry per data point; found 'data': \[\(3, 10\), \(5, 5\)\]"):  # fmt: skip
        data_plate_frame("data", model_trace, subsampled)
    with pytest.raises(ValueError, match="the data plate 'data' has no sample site"):
        data_plate_frame("data", poutine.trace(lambda: None).get_trace())


def test_observations_of_the_points_outside_the_data_plate_are_not_dropped_as_globals():
    """A conditioned global (one value) leaves the trace; an observation with a dim of its own over the points,
    left outside the data plate by mistake, is an error rather than silently dropped."""
    from pyrovae.infer.traces import remove_global_observations

    def model(x):
        pyro.sample("t", dist.Normal(0.0, 1.0), obs=torch.tensor(0.5))
        with pyro.plate("data", len(x)):
            pyro.sample("x", dist.Normal(0.0, 1.0), obs=x[:, 0])
        pyro.sample("y", dist.Normal(torch.zeros(len(x)), 1.0), obs=x[:, 1])  # not in the plate

    x = torch.randn(3, 2)
    trace = poutine.trace(model).get_trace(x)
    with pytest.raises(ValueError, match=r"the observed site 'y' is outside the data plate but has batch shape \(3,\)"):
        remove_global_observations(trace, "data")
    trace = poutine.trace(poutine.block(model, hide=["y"])).get_trace(x)
    assert remove_global_observations(trace, "data") == ["t"] and "t" not in trace.nodes
