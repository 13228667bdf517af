import pyro
import pyro.poutine as poutine
import pytest
import torch

import pyrovae
from pyrovae.infer.importance import log_marginal_likelihood
from pyrovae.models.adgm import ADGM, concat
from pyrovae.models.registry import model_from_config
from tests.common import binary, tiny_ssvae


def test_auxiliary_variable_leaves_log_px_unchanged():
    """The ADGM's p(a|x,y,z) integrates to one, so with the same p(y) p(z) p(x|y,z) (the M2's decoder) its
    log p(x), estimated by importance sampling over (a, y, z), equals the M2's (over (y, z)) to Monte Carlo
    error, whatever its auxiliary nets; and predict() averages q(y|a, x) over draws of a."""
    m2, x = tiny_ssvae(), binary(3)
    adgm = tiny_ssvae(a_dim=2, predict_samples=50)
    adgm.decoder.load_state_dict(m2.decoder.state_dict())
    estimates = [log_marginal_likelihood(m.model, m.guide, x, 20000, seed=3) for m in (m2, adgm)]
    error = (estimates[0].stderr ** 2 + estimates[1].stderr ** 2).sqrt()
    assert ((estimates[0].log_px - estimates[1].log_px).abs() < 4 * error + 0.01).all()
    probs = adgm.predict(x)
    assert probs.shape == (3, 3) and torch.allclose(probs.sum(-1), torch.ones(3))
    pyro.set_rng_seed(0)
    log_q = adgm.log_predict(x)
    pyro.set_rng_seed(0)
    a = torch.distributions.Normal(*adgm.aux_encoder(x)).sample((50,))
    by_hand = adgm.classifier(concat(x, a)).softmax(-1).mean(0).log()
    assert torch.allclose(log_q, by_hand, atol=1e-5)


def test_sites_and_modules_of_the_auxiliary_variable():
    """a is drawn from q(a|x) in the guide and p(a|x,y,z) in the model, at the documented sites and modules; the
    classifier and q(z|·) take [x, a]."""
    pyro.clear_param_store()
    adgm, x, y = tiny_ssvae(a_dim=3, prefix="p"), binary(4), torch.tensor([0, 1, 2, 0])
    guide = poutine.trace(adgm.guide).get_trace(x, y)
    model = poutine.trace(poutine.replay(adgm.model, trace=guide)).get_trace(x, y)
    assert guide.stochastic_nodes == ["p/data", "p/a", "p/z"]  # in this order: the order of the draws
    assert model.stochastic_nodes == ["p/data", "p/z", "p/a"]
    assert model.nodes["p/a"]["value"].shape == (4, 3) and "p/classification" in model.nodes
    modules = {name.split("$$$")[0] for name in pyro.get_param_store()}
    assert modules == {"p/classifier", "p/encoder", "p/decoder", "p/aux_encoder", "p/aux_decoder"}
    logits = adgm.classifier(concat(x, model.nodes["p/a"]["value"]))  # alpha log q(y|a, x) at the model's a
    expected = adgm.alpha * torch.distributions.Categorical(logits=logits).log_prob(y)
    assert torch.allclose(model.nodes["p/classification"]["fn"].log_factor, expected)


def test_a_partially_labelled_call_draws_a_on_every_row_then_y():
    """-1 marks a missing label: the guide draws a ~ q(a|x) on every row, then y from q(y|a, x) where the label is
    missing and a point mass on each given label, then z; the classification factor is alpha log q(y|a, x) at the
    guide's a on the labelled rows, 0 on the others. (Its loss is that of the labelled rows' call plus the unlabelled
    rows' call: tests/models/test_ssvae.py.)"""
    adgm, x, y = tiny_ssvae(a_dim=3, prefix="p"), binary(4), torch.tensor([0, -1, 2, -1])
    guide = poutine.trace(adgm.guide).get_trace(x, y)
    model = poutine.trace(poutine.replay(adgm.model, trace=guide)).get_trace(x, y)
    assert guide.stochastic_nodes == ["p/data", "p/a", "p/y", "p/z"]
    assert model.stochastic_nodes == ["p/data", "p/z", "p/y", "p/a"]
    log_q = adgm.classifier(concat(x, guide.nodes["p/a"]["value"])).log_softmax(-1)
    q = guide.nodes["p/y"]["fn"]
    assert torch.allclose(q.logits[[1, 3]], log_q[[1, 3]]) and torch.equal(q.probs[[0, 2]].argmax(-1), y[[0, 2]])
    assert (q.probs[[0, 2]].max(-1).values == 1).all()
    factor = model.nodes["p/classification"]["fn"].log_factor
    assert torch.allclose(factor[[0, 2]], adgm.alpha * log_q[[0, 2], y[[0, 2]]]) and (factor[[1, 3]] == 0).all()


def test_an_ssvae_with_a_dim_points_to_the_adgm():
    with pytest.raises(ValueError, match=r"a_dim=3: the auxiliary latent a is the ADGM's.*ADGM\(\.\.\., a_dim=3\)"):
        pyrovae.SSVAE(5, a_dim=3)
    assert type(pyrovae.SSVAE(5, a_dim=0)) is pyrovae.SSVAE
    adgm = model_from_config({"model": "ssvae", "x_dim": 5, "a_dim": 3, "predict_samples": 4})
    assert type(adgm) is ADGM and adgm.config["model"] == "adgm" and adgm.predict_samples == 4
    for bad in ({"a_dim": 0}, {"a_dim": 2, "predict_samples": 0}):
        with pytest.raises(ValueError, match="need a_dim >= 1 and predict_samples >= 1"):
            ADGM(5, **bad)


def test_config_rebuilds_the_adgm():
    adgm = ADGM(5, 3, z_dim=2, hidden=(7,), a_dim=4, predict_samples=6, seed=1)
    assert adgm.config == {
        "model": "adgm", "x_dim": 5, "num_classes": 3, "z_dim": 2, "hidden": [7], "activation": "softplus",
        "alpha": 5.0, "likelihood": "bernoulli", "enumerate": "parallel", "prefix": "", "a_dim": 4,
        "predict_samples": 6,
    }  # fmt: skip
    again = model_from_config(adgm.config, seed=1)
    assert type(again) is ADGM and again.config == adgm.config
    assert all(torch.equal(a, b) for a, b in zip(adgm.state_dict().values(), again.state_dict().values(), strict=True))
    assert ADGM(5, a_dim=2, activation=torch.nn.Tanh).config is None


def test_exported():
    assert pyrovae.ADGM is ADGM and issubclass(ADGM, pyrovae.SSVAE)
