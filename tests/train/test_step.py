"""The training step: Pyro's ELBO as a loss and one (fused) torch Adam, against pyro.infer.SVI."""

import functools

import pyro
import pytest
import torch
from pyro.infer import SVI, Trace_ELBO

from pyrovae.checkpoint import CheckpointError
from pyrovae.train.step import AdamStep, adam, scheduled_lr, trained_params
from tests.common import tiny_vae

X = torch.tensor([[1.0, 0, 1, 1, 0, 0], [0, 1, 1, 0, 1, 0], [1, 1, 0, 0, 0, 1], [0, 0, 0, 1, 1, 1]])


def _params_after(run) -> dict[str, torch.Tensor]:
    pyro.clear_param_store()
    torch.manual_seed(0)
    vae = tiny_vae()
    run(vae)
    return {name: p.detach().clone() for name, p in pyro.get_param_store().named_parameters()}


def _adam_steps(vae, steps, lr=0.05, state=None) -> AdamStep:
    params = trained_params(vae.model, vae.guide, X, num_data=40)
    step = AdamStep(params, functools.partial(Trace_ELBO().differentiable_loss, vae.model, vae.guide), lr)
    if state is not None:
        step.set_state(state)
    for k in steps:
        pyro.set_rng_seed(k)
        step(X, num_data=40)
    return step


def _svi_steps(vae, steps, lr=0.05) -> pyro.optim.PyroOptim:
    optim = pyro.optim.Adam({"lr": lr})
    svi = SVI(vae.model, vae.guide, optim, Trace_ELBO())
    for k in steps:
        pyro.set_rng_seed(k)
        svi.step(X, num_data=40)
    return optim


def test_adam_step_follows_svi_with_pyro_adam():
    """Same noise, same batches: one fused torch Adam over all parameters takes SVI's steps (Pyro's one Adam
    per parameter), to float rounding, and moves every parameter."""
    ours = _params_after(lambda vae: _adam_steps(vae, range(10)))
    svi = _params_after(lambda vae: _svi_steps(vae, range(10)))
    start = _params_after(lambda vae: trained_params(vae.model, vae.guide, X))
    assert ours.keys() == svi.keys() == start.keys() and len(ours) == 8
    for name in ours:
        torch.testing.assert_close(ours[name], svi[name], rtol=1e-5, atol=1e-6)
        assert not torch.allclose(ours[name], start[name], atol=1e-3), name


def test_state_round_trip_and_pyro_optim_state_continue_the_same_run():
    straight = _params_after(lambda vae: _adam_steps(vae, range(6)))

    def resumed_from(get_state):
        def run(vae):
            state = get_state(vae)
            _adam_steps(vae, range(3, 6), state=state)

        return run

    ours = _params_after(resumed_from(lambda vae: _adam_steps(vae, range(3)).get_state()))
    from_svi = _params_after(resumed_from(lambda vae: _svi_steps(vae, range(3)).get_state()))
    for name in straight:
        torch.testing.assert_close(ours[name], straight[name], rtol=0, atol=0)
        torch.testing.assert_close(from_svi[name], straight[name], rtol=1e-5, atol=1e-6)


def test_foreign_optimizer_state_is_rejected():
    pyro.clear_param_store()
    vae = tiny_vae()
    state = _adam_steps(vae, range(1)).get_state()
    with pytest.raises(CheckpointError, match="optimizer state is for parameters"):
        _adam_steps(vae, [], state={**state, "params": list(reversed(state["params"]))})
    with pytest.raises(CheckpointError, match="neither pyrovae's nor pyro.optim.Adam's"):
        _adam_steps(vae, [], state={"torch_adam": state["adam"]})


def test_trained_params_are_the_modules_own_tensors_guide_first():
    pyro.clear_param_store()
    vae = tiny_vae()
    params = trained_params(vae.model, vae.guide, X)
    assert list(params)[0].startswith("encoder") and list(params)[-1].startswith("decoder")
    assert {id(p) for p in params.values()} == {id(p) for p in vae.parameters()}
    with pytest.raises(ValueError, match="declare no parameters"):
        trained_params(lambda x: None, lambda x: None, X)


def test_adam_is_fused_on_the_cpu():
    assert adam([torch.zeros(3, requires_grad=True)], 1e-3).param_groups[0]["fused"] is True


def test_scheduled_lr_decays_and_steps_at_the_milestones():
    rates = [scheduled_lr(0.1, 0.5, epoch, milestones=(2, 3), gamma=0.1) for epoch in range(5)]
    assert rates == pytest.approx([0.1, 0.05, 0.025 * 0.1, 0.0125 * 0.01, 0.00625 * 0.01])
    assert [scheduled_lr(1e-3, 1.0, epoch) for epoch in (0, 100)] == [1e-3, 1e-3]
