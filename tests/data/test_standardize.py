"""Standardization: the map, its inverse, its stored form, and the change of variables of densities."""

import math

import pytest
import torch

from pyrovae.data.standardize import Standardization


def test_fit_gives_columns_of_mean_0_and_std_1_and_the_inverse_undoes_it():
    x = torch.randn(500, 3, dtype=torch.float64) * torch.tensor([1.0, 50.0, 0.01]) + torch.tensor([0.0, -7.0, 3.0])
    scale = Standardization.fit(x)
    s = scale(x)
    # the map is kept in float32: a mean of 3 held to 2e-7, over a std of 0.01, is 2e-5 off
    torch.testing.assert_close(s.mean(0), torch.zeros(3, dtype=s.dtype), atol=1e-4, rtol=0)
    torch.testing.assert_close(s.std(0, correction=0), torch.ones(3, dtype=s.dtype), atol=1e-5, rtol=0)
    torch.testing.assert_close(scale.inverse(s), x, rtol=1e-6, atol=1e-6)


def test_the_jacobian_turns_a_density_of_standardized_rows_into_one_of_the_rows():
    """The density of x ~ N(mu, sigma^2) per column is the standard normal density of s(x) plus log|det ds/dx|."""
    mu, sigma = torch.tensor([2.0, -3.0, 10.0]), torch.tensor([0.5, 4.0, 30.0])
    scale = Standardization(mu, sigma)
    x = mu + sigma * torch.randn(7, 3)
    direct = torch.distributions.Normal(mu, sigma).log_prob(x).sum(-1)
    via = torch.distributions.Normal(0.0, 1.0).log_prob(scale(x)).sum(-1) + scale.log_abs_det_jacobian
    torch.testing.assert_close(via, direct, rtol=1e-5, atol=1e-5)
    assert scale.log_abs_det_jacobian == pytest.approx(-math.log(0.5 * 4.0 * 30.0))


def test_a_constant_column_is_centred_not_scaled_and_a_warning_says_so():
    x = torch.cat([torch.randn(50, 1), torch.full((50, 1), 4.0)], 1)
    with pytest.warns(UserWarning, match=r"1 column\(s\) are constant .* column 1\)"):
        scale = Standardization.fit(x)
    assert scale.std[1] == 1 and torch.equal(scale(x)[:, 1], torch.zeros(50))


def test_the_stored_form_round_trips_and_bad_ones_are_errors():
    scale = Standardization(torch.tensor([1.0, 2.0]), torch.tensor([3.0, 4.0]))
    again = Standardization.from_state(scale.state())
    assert torch.equal(again.mean, scale.mean) and torch.equal(again.std, scale.std)
    with pytest.raises(ValueError, match="dict of the tensors 'mean' and 'std'"):
        Standardization.from_state({"mean": [1.0]})
    with pytest.raises(ValueError, match="positive std"):
        Standardization(torch.zeros(2), torch.tensor([1.0, 0.0]))
    with pytest.raises(ValueError, match=r"\(D,\) tensors of one shape"):
        Standardization(torch.zeros(2), torch.ones(3))
