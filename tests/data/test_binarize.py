import pytest
import torch

from pyrovae.data import binarize


def test_binarize_draws_bernoulli_with_the_given_probabilities():
    p = torch.tensor([0.0, 0.1, 0.5, 0.9, 1.0]).expand(20000, 5)
    xb = binarize(p)
    assert set(xb.unique().tolist()) <= {0.0, 1.0}
    # 4 standard errors of a Bernoulli mean over 20000 draws is at most 4 * 0.5 / sqrt(20000) = 0.0142
    assert torch.allclose(xb.mean(0), p[0], atol=0.0142)
    assert xb[:, 0].sum() == 0 and xb[:, 4].sum() == 20000


def test_seeded_binarization_is_reproducible_and_leaves_global_rng_alone():
    x = torch.rand(50, 10)
    state = torch.get_rng_state()
    a, b = binarize(x, seed=3), binarize(x, seed=3)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a, b)
    assert not torch.equal(a, binarize(x, seed=4))


def test_binarize_rejects_values_outside_unit_interval():
    with pytest.raises(ValueError, match=r"grey levels in \[0, 1\].*255"):
        binarize(torch.tensor([0.0, 255.0]))
