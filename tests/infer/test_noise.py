import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.distributions.transforms import AffineTransform, ExpTransform

from pyrovae.infer.noise import NOISE_BLOCK, IndexedNoise, seed_hash


def draw(seed=0, indices=range(3), start=0, num_samples=1000, site="z", shape=(4,)):
    noise = IndexedNoise(seed, "data", indices, start, particle_dim=-2)
    return noise.standard_normal(site, torch.Size([num_samples, len(indices), *shape]), 1, torch.zeros(()))


def test_noise_is_standard_normal_and_independent_across_samples_points_and_sites():
    eps = draw(num_samples=4 * NOISE_BLOCK)
    assert eps.shape == (4 * NOISE_BLOCK, 3, 4)
    flat = eps.reshape(len(eps), -1)
    # 4 standard errors of the mean and of the variance of 12 x 1024 standard normals
    assert flat.mean().abs() < 4 / flat.numel() ** 0.5
    assert (flat.var() - 1).abs() < 4 * (2 / flat.numel()) ** 0.5
    corr = torch.corrcoef(flat.T)
    assert (corr - torch.eye(12)).abs().max() < 4.5 / len(flat) ** 0.5
    # every block of samples is new noise, not a repeat of the first one
    blocks = eps.reshape(4, NOISE_BLOCK, -1)
    assert all(not torch.allclose(blocks[0], blocks[i]) for i in range(1, 4))
    assert not torch.allclose(draw(site="z"), draw(site="z2"))
    assert not torch.allclose(draw(seed=0), draw(seed=1))


def test_noise_depends_only_on_seed_site_index_and_sample_number():
    full = draw(indices=range(5), num_samples=700)
    part = draw(indices=[3, 1], start=123, num_samples=400)
    torch.testing.assert_close(part, full[123:523][:, [3, 1]], rtol=0, atol=0)
    pyro.set_rng_seed(7)  # the global generator plays no part
    torch.testing.assert_close(draw(indices=range(5), num_samples=700), full, rtol=0, atol=0)


def test_guide_sites_are_reparameterized_from_the_noise_even_through_transforms():
    loc, scale = torch.randn(3, 2), torch.rand(3, 2) + 0.5
    flow = [AffineTransform(1.0, 2.0), ExpTransform()]

    def guide():
        with pyro.plate("data", 3):
            pyro.sample("z", dist.Normal(loc, scale).to_event(1))
            pyro.sample("f", dist.TransformedDistribution(dist.Normal(loc, scale), flow).to_event(1))
        pyro.sample("g", dist.Normal(0.0, 1.0))  # global: not in the data plate, left to the global generator

    def traced(global_seed):
        pyro.set_rng_seed(global_seed)
        with IndexedNoise(4, "data", [10, 11, 12], 50, particle_dim=-2), pyro.plate("particles", 6, dim=-2):
            return poutine.trace(guide).get_trace().nodes

    first, second = traced(0), traced(1)
    eps = IndexedNoise(4, "data", [10, 11, 12], 50, particle_dim=-2)
    torch.testing.assert_close(first["z"]["value"], loc + scale * eps.standard_normal("z", (6, 3, 2), 1, loc))
    base = loc + scale * eps.standard_normal("f", (6, 3, 2), 1, loc)
    torch.testing.assert_close(first["f"]["value"], (1 + 2 * base).exp())
    torch.testing.assert_close(first["z"]["value"], second["z"]["value"], rtol=0, atol=0)
    assert not torch.equal(first["g"]["value"], second["g"]["value"])


def test_seed_hash_is_splitmix64():
    """SplitMix64 from state 0 outputs 0xE220A8397B1DCDAF, then 0x6E789E6AA1B965F4 (Steele et al.'s reference
    generator); ``seed_hash(w)`` is one step from state ``w``, and chained words give unrelated seeds."""
    gamma = 0x9E3779B97F4A7C15
    assert seed_hash(0) == 0xE220A8397B1DCDAF
    assert seed_hash(gamma) == 0x6E789E6AA1B965F4
    seeds = {seed_hash(0, 1, n, b) for n in range(100) for b in range(10)}
    assert len(seeds) == 1000 and all(0 <= s < 2**64 for s in seeds)
