r"""How pyrovae's modules live in Pyro's param store.

Pyro keeps every parameter in one global store, by name: a module registered as ``pyro.module("decoder", net)``
puts ``net``'s parameters there as ``"decoder$$$<parameter>"``, and SVI trains the tensors the store holds. Two
things can put other tensors under those names, and pyrovae tells them apart:

* **values loaded into the store** (``pyro.get_param_store().load(path)``, ``set_state``, a user's
  ``pyro.param``), which belong to no live module: the model's next call **takes them** (``pyro.module(...,
  update_module_params=True)``), as in Pyro's own examples, so that a freshly built model evaluates and trains
  with the stored weights;
* **the parameters of another live model with the same site names** (two ``VAE()`` without a prefix, a model loaded
  from a checkpoint beside a trained one): the store **takes the calling model's own** parameters instead, so that
  each model always runs with its own weights (never silently with another model's), and the last model called is
  the one whose parameters the store holds.

The parameters a model registers are recorded with their module (weak references, nothing kept alive, nothing
added to the tensors, which Pyro's ``save`` pickles), which is how the second case is recognised.
"""

from __future__ import annotations

import weakref

import pyro
from pyro.params import param_with_module_name
from torch import nn

#: ``id(parameter) -> (weak reference to it, weak reference to its module)`` of the registered parameters; an
#: entry goes when its parameter does
_OWNERS: dict[int, tuple[weakref.ref, weakref.ref]] = {}


def register(name: str, module: nn.Module) -> nn.Module:
    """``pyro.module(name, module, update_module_params=True)``, except that parameters of another live module
    stored under the same names are replaced by ``module``'s own rather than taken (see the module docstring).

    Every call checks the store's entry for the module's first parameter; when it is the module's own the call is
    Pyro's alone."""
    params = _registered(module)
    if not params:
        return module
    store = pyro.get_param_store()
    first = param_with_module_name(name, params[0][0])
    if first in store and store[first] is params[0][1] and owner(params[0][1]) is module:
        return pyro.module(name, module, update_module_params=True)
    for param_name, param in params:
        full_name = param_with_module_name(name, param_name)
        if full_name in store and store[full_name] is not param and _owned_elsewhere(store[full_name], module):
            del store[full_name]
    pyro.module(name, module, update_module_params=True)
    module_ref = weakref.ref(module)
    for _, param in _registered(module):  # the store's tensors where the module took them
        key = id(param)
        _OWNERS[key] = (weakref.ref(param, lambda _, key=key: _OWNERS.pop(key, None)), module_ref)
    return module


def forget(names: list[str]) -> None:
    """Remove from the store every parameter registered under the module names ``names`` (so that the next call of
    a model whose weights were just loaded from a checkpoint registers those, not values the store held)."""
    store = pyro.get_param_store()
    heads = [param_with_module_name(name, "") for name in names]
    for full_name in [k for k in store.keys() if any(k.startswith(head) for head in heads)]:
        del store[full_name]


def owner(param) -> nn.Module | None:
    """The live module that registered ``param`` with :func:`register`, or ``None``."""
    param_ref, module_ref = _OWNERS.get(id(param), (None, None))
    return module_ref() if param_ref is not None and param_ref() is param else None


def _registered(module: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """The parameters of ``module`` that ``pyro.module`` registers: those that require gradients."""
    return [(param_name, p) for param_name, p in module.named_parameters() if p.requires_grad]


def _owned_elsewhere(stored, module: nn.Module) -> bool:
    """Whether the stored tensor is a parameter of a live module other than ``module``."""
    other = owner(stored)
    return other is not None and other is not module and any(p is stored for p in other.parameters())
