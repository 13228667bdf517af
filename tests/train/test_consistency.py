import math

import pytest
import torch

from pyrovae.models.adgm import ADGM
from pyrovae.models.ssvae import SSVAE
from pyrovae.train.consistency import consistency_loss


def linear_ssvae() -> SSVAE:
    """An SSVAE whose classifier's logits are its two inputs themselves (one linear layer, W = I, b = 0)."""
    ssvae = SSVAE(2, num_classes=2, z_dim=1, hidden=(3,), likelihood="normal")
    ssvae.classifier = torch.nn.Linear(2, 2)
    with torch.no_grad():
        ssvae.classifier.weight.copy_(torch.eye(2))
        ssvae.classifier.bias.zero_()
    return ssvae


def test_consistency_is_the_squared_distance_of_the_class_probabilities():
    """Logits (0, 0) and (log 3, 0) give q = (1/2, 1/2) and (3/4, 1/4): (1/4)^2 + (1/4)^2 = 1/8 for that
    row; a row seen twice alike adds nothing, and (0, 20) against (20, 0) nearly the maximum 2."""
    ssvae = linear_ssvae()
    view = torch.tensor([[0.0, 0.0], [1.0, -2.0], [0.0, 20.0]])
    other = torch.tensor([[math.log(3.0), 0.0], [1.0, -2.0], [20.0, 0.0]])
    assert consistency_loss(ssvae, view, other).item() == pytest.approx(0.125 + 0.0 + 2.0, abs=1e-6)
    assert consistency_loss(ssvae, other, view).item() == pytest.approx(consistency_loss(ssvae, view, other).item())


def test_gradients_reach_the_classifier_through_both_views_and_nothing_else():
    ssvae = SSVAE(4, num_classes=3, z_dim=2, hidden=(5,), likelihood="normal")
    view = torch.randn(6, 4, requires_grad=True)
    other = torch.randn(6, 4, requires_grad=True)
    consistency_loss(ssvae, view, other).backward()
    assert view.grad.abs().sum() > 0 and other.grad.abs().sum() > 0  # no stop-gradient on either view
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in ssvae.classifier.parameters())
    assert all(p.grad is None for p in [*ssvae.encoder.parameters(), *ssvae.decoder.parameters()])


def test_auxiliary_model_differentiates_through_its_draw_of_a():
    """With ``a_dim > 0`` the classifier is q(y|a, x), a reparameterized a ~ q(a|x) per view."""
    ssvae = ADGM(4, num_classes=3, z_dim=2, hidden=(5,), likelihood="normal", a_dim=2)
    x = torch.randn(6, 4)
    loss = consistency_loss(ssvae, x, x)  # the same x, two draws of a: not zero
    assert 0 < loss.item() < 2 * len(x)
    loss.backward()
    assert all(p.grad is not None for p in ssvae.aux_encoder.parameters())


def test_views_must_match_the_model_and_each_other():
    ssvae = linear_ssvae()
    with pytest.raises(ValueError, match=r"other_view must have shape \(batch, 2\), got \(3, 4\)"):
        consistency_loss(ssvae, torch.zeros(3, 2), torch.zeros(3, 4))
    with pytest.raises(ValueError, match="one row per point each, got 3 and 2 rows"):
        consistency_loss(ssvae, torch.zeros(3, 2), torch.zeros(2, 2))
