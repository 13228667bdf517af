r"""One training step: Pyro's ELBO as a differentiable loss, one ``torch.optim.Adam`` update.

:func:`pyrovae.fit` minimises

.. math:: \ell(\theta, \phi) = -\widehat{\mathcal{L}}(\theta, \phi; x_{1:B}),

Pyro's Monte-Carlo estimate of the negative ELBO on a minibatch scaled to the data set
(``elbo.differentiable_loss(model, guide, x, num_data=N)``): the same estimate, and the same gradient, that
``pyro.infer.SVI(model, guide, pyro.optim.Adam(...), elbo).step(x, num_data=N)`` follows, but steps **one**
``torch.optim.Adam`` over all the parameters instead of Pyro's one optimizer per parameter: this is the
PyTorch-native route Pyro documents for its ELBOs (``ELBO.__call__(model, guide)``, ``ELBOModule``), and the one
``DistributedDataParallel`` needs. Adam is elementwise, so one optimizer over all parameters takes the same update
as one per parameter; the **fused** implementation (one kernel for every parameter, on CPU and CUDA) is used where
the device has it. ``benchmarks/step_time.py`` measures what each choice costs.

The parameters are found by running the guide and the model once on an example minibatch and collecting their
``pyro.param`` / ``pyro.module`` sites (:func:`trained_params`); Adam updates their unconstrained values, which
are the tensors in Pyro's param store (for ``pyro.module`` the module's own ``nn.Parameter`` s).

**References**

[1] Adam: A Method for Stochastic Optimization, D. P. Kingma and J. Ba, ICLR 2015.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Sequence

import pyro
import pyro.poutine as poutine
import torch
from pyro.infer import Trace_ELBO
from torch import nn

from pyrovae.checkpoint import CheckpointError

#: devices with a fused Adam kernel
FUSED_DEVICES = ("cpu", "cuda")
#: options of ``torch.optim.Adam`` that choose an implementation, not the update: a resumed run takes them from
#: its own device, not from the checkpoint
IMPLEMENTATION = ("fused", "foreach", "capturable", "differentiable")


def trained_params(model: Callable, guide: Callable, *args, **kwargs) -> dict[str, torch.Tensor]:
    """Every parameter that ``guide`` and ``model`` declare when run on ``*args, **kwargs``, created if new:
    ``{name: unconstrained tensor}`` in the order the sites appear (nothing is recorded; the RNG advances).

    :raises ValueError: if they declare none.
    """
    params = {name: pyro.param(name).unconstrained() for name in _param_sites(model, guide, *args, **kwargs)}
    if not params:
        raise ValueError("the model and guide declare no parameters (pyro.param or pyro.module): nothing to train")
    return params


def _param_sites(model: Callable, guide: Callable, *args, **kwargs) -> dict[str, dict]:
    """The ``pyro.param`` / ``pyro.module`` sites that ``guide`` and ``model`` declare when run on ``*args,
    **kwargs``, by name, in the order they appear (nothing is recorded; the RNG advances)."""
    with poutine.block(), poutine.trace(param_only=True) as capture:
        Trace_ELBO().loss(model, guide, *args, **kwargs)
    return dict(capture.trace.nodes)


def owned_params(
    model: Callable, guide: Callable, owners: Sequence[nn.Module], *args, rows_given: bool = True, **kwargs
) -> dict[str, torch.Tensor]:
    """:func:`trained_params`, checked by :func:`check_owned`. A pyrovae model takes the values Pyro's param store
    holds under its names (:mod:`pyrovae.models.store`: loaded with ``pyro.get_param_store().load``, or left by an
    earlier model that is gone): a warning says so, since training then starts from them.

    :param bool rows_given: whether the training steps pass each minibatch's rows to model and guide (as the data
        plate's ``subsample``); if not, parameters **per data point** are an error: a ``pyro.param`` with an
        ``event_dim`` inside a plate, which the plate slices at its subsample (as
        ``AutoNormal(vae.model, create_plates=vae.data_plate)`` declares its locations and scales), would be read
        and updated at the plate's default rows at every step, silently.
    :raises ValueError: as :func:`check_owned`, and for parameters per data point without ``rows_given``.
    """
    initial = [{name: id(p) for name, p in owner.named_parameters()} for owner in owners]
    sites = _param_sites(model, guide, *args, **kwargs)
    per_point = [name for name, site in sites.items()
                 if site["kwargs"].get("event_dim") is not None and site["cond_indep_stack"]]  # fmt: skip
    if per_point and not rows_given:
        raise ValueError(
            f"the parameters {per_point[:3]} are per data point (pyro.param with event_dim inside a plate, as an "
            "autoguide with create_plates declares them): each training step must pass the minibatch's rows as "
            "subsample=, which a JIT-compiled or torch.compile'd step cannot, nor a model or guide without a "
            "subsample keyword. Train without jit/compile, with a model and guide that take subsample"
        )
    params = {name: pyro.param(name).unconstrained() for name in sites}
    taken = [
        name
        for owner, before in zip(owners, initial, strict=True)
        for name, p in owner.named_parameters()
        if before.get(name, id(p)) != id(p)  # replaced, not created by the first call (an autoguide's)
    ]
    if taken:
        warnings.warn(
            f"training starts from the values Pyro's param store held under the model's names ({len(taken)} "
            f"tensors: {taken[:3]}...), put there by pyro.get_param_store().load or by an earlier model with the "
            "same site names; call pyro.clear_param_store() first to train from the model's own weights",
            stacklevel=3,
        )
    check_owned(params, owners)
    return params


def check_owned(params: dict[str, torch.Tensor], owners: Sequence[nn.Module]) -> None:
    """Check that every parameter of ``owners`` is among ``params`` (what Pyro's param store gives for the names
    the model and guide declare), so that training updates the modules' own tensors.

    :raises ValueError: when the store holds other tensors under the modules' names, left there by an earlier
        model with the same site names (``pyro.module`` keeps a stored value rather than the module's own).
    """
    trained = {id(p) for p in params.values()}
    left_out = [name for owner in owners for name, p in owner.named_parameters() if id(p) not in trained]
    if left_out:
        raise ValueError(
            f"the model's parameters {left_out[:3]} are not the ones Pyro's param store holds under their names: "
            "the store still has the parameters of an earlier model with the same site names. Call "
            "pyro.clear_param_store() before building a new model, or give the new one another prefix"
        )


def adam(params: Iterable[torch.Tensor], lr: float) -> torch.optim.Adam:
    """``torch.optim.Adam`` over ``params``, fused into one kernel when they all live on a device of
    :data:`FUSED_DEVICES` and are floating point."""
    params = list(params)
    fused = all(p.device.type in FUSED_DEVICES and p.is_floating_point() for p in params)
    return torch.optim.Adam(params, lr=lr, fused=fused or None)


def check_lr(lr: float, lr_decay: float = 1.0, milestones: Sequence[int] = (), gamma: float = 0.1) -> None:
    """Raise a ``ValueError`` naming the setting unless ``lr > 0``, ``0 < lr_decay <= 1``, ``0 < gamma <= 1``
    and the ``milestones`` are increasing epochs >= 1 (see :func:`scheduled_lr`)."""
    if not lr > 0:
        raise ValueError(f"lr must be positive, got {lr}")
    if not 0 < lr_decay <= 1:
        raise ValueError(f"lr_decay must be in (0, 1], got {lr_decay}")
    if not 0 < gamma <= 1:
        raise ValueError(f"the learning-rate factor at each milestone (gamma) must be in (0, 1], got {gamma}")
    if any(not isinstance(m, int) or m < 1 for m in milestones) or list(milestones) != sorted(set(milestones)):
        raise ValueError(f"lr milestones must be increasing epochs >= 1, got {list(milestones)}")


def scheduled_lr(lr: float, lr_decay: float, epoch: int, milestones: Sequence[int] = (), gamma: float = 0.1) -> float:
    r"""The learning rate of epoch ``epoch`` (counted from 0): :math:`\text{lr} \cdot \text{lr\_decay}^e
    \cdot \gamma^{m(e)}`, :math:`m(e)` the number of ``milestones`` at or before :math:`e` (an exponential decay
    times ``torch.optim.lr_scheduler.MultiStepLR``'s steps)."""
    return lr * lr_decay**epoch * gamma ** sum(epoch >= m for m in milestones)


def set_lr(optim: torch.optim.Optimizer, lr: float) -> float:
    """Set the learning rate of every parameter group of ``optim`` (e.g. a schedule, once per epoch); returns it."""
    for group in optim.param_groups:
        group["lr"] = lr
    return lr


class AdamStep:
    """One step per call: ``loss(*args, **kwargs)``, backward, Adam; returns the loss, detached (no device sync).

    :param dict params: the parameters to train, by Pyro name (:func:`trained_params`).
    :param loss: e.g. ``functools.partial(elbo.differentiable_loss, model, guide)``, or a
        ``DistributedDataParallel``-wrapped :class:`pyrovae.train.distributed.LossModule`.
    :param float lr: Adam's learning rate.
    """

    def __init__(self, params: dict[str, torch.Tensor], loss: Callable[..., torch.Tensor], lr: float) -> None:
        self.params, self.loss = params, loss
        self.optim = adam(params.values(), lr)

    def __call__(self, *args, **kwargs) -> torch.Tensor:
        loss = self.loss(*args, **kwargs)
        self.optim.zero_grad(set_to_none=True)
        loss.backward()
        self.optim.step()
        return loss.detach()

    def set_lr(self, lr: float) -> float:
        """Set Adam's learning rate (e.g. a schedule, once per epoch); returns it."""
        return set_lr(self.optim, lr)

    def get_state(self) -> dict:
        """Adam's state and the names of the parameters in its order."""
        return {"adam": self.optim.state_dict(), "params": list(self.params)}

    def set_state(self, state: dict) -> None:
        """Restore :meth:`get_state`'s output; also takes the per-parameter state of ``pyro.optim.Adam``
        (``{name: torch Adam state_dict}``, what pyrovae's checkpoints held before this module).

        :raises CheckpointError: if the state is for other parameters or of an unknown kind.
        """
        if "adam" not in state:
            state = _from_pyro_optim(state, list(self.params))
        if state["params"] != list(self.params):
            raise CheckpointError(
                f"the optimizer state is for parameters {state['params'][:4]}..., the model has "
                f"{list(self.params)[:4]}...: build the model with the checkpoint's settings"
            )
        # hyperparameters from the checkpoint, the implementation (fused or not) of this device's optimizer
        impl = {k: v for k, v in self.optim.param_groups[0].items() if k in IMPLEMENTATION}
        groups = [{**group, **impl} for group in state["adam"]["param_groups"]]
        self.optim.load_state_dict({"state": state["adam"]["state"], "param_groups": groups})


def _from_pyro_optim(state: dict, names: list[str]) -> dict:
    """:meth:`AdamStep.get_state`'s format from ``pyro.optim.Adam.get_state()``'s (one torch Adam per parameter)."""
    if set(state) != set(names) or not all(isinstance(s, dict) and "param_groups" in s for s in state.values()):
        raise CheckpointError(
            f"the optimizer state (keys {sorted(state)[:4]}) is neither pyrovae's nor pyro.optim.Adam's for this "
            "model's parameters: it was written by another model or version; start a new run"
        )
    group = {k: v for k, v in state[names[0]]["param_groups"][0].items() if k != "params"}
    adam_state = {i: state[name]["state"][0] for i, name in enumerate(names) if state[name]["state"]}
    return {"adam": {"state": adam_state, "param_groups": [{**group, "params": list(range(len(names)))}]},
            "params": names}  # fmt: skip
