r"""A pyrovae model's amortized guide as one part of Pyro's :class:`~pyro.infer.autoguide.AutoGuideList`.

The standard recipe for a model with **global** latents (a temperature of the decoder, a mixture weight: sites
outside the data plate) and **local** ones (each point's :math:`z_n`) is a mean-field guide

.. math:: q(\theta, z_{1:N} | x) = q(\theta)\, \prod_n q_\phi(z_n | x_n)

with an automatic guide for :math:`\theta` and the VAE's encoder for :math:`z_n`:
``AutoGuideList([AutoNormal(poutine.block(model, expose=[...globals])), AmortizedGuide(model, vae.guide)])``.

:class:`~pyro.infer.autoguide.AutoGuideList` opens one plate per plate of the model and hands them to its
:class:`~pyro.infer.autoguide.AutoGuide` parts; a plain callable part (wrapped in
:class:`~pyro.infer.autoguide.AutoCallable`) cannot reach them, so a guide that opens the model's data plate itself
clashes with the list's ("Multiple sample sites named 'data'"). :class:`AmortizedGuide` enters the list's plate
and runs the guide inside it; pyrovae's guides then use that plate rather than opening their own
(:mod:`pyrovae.models.plate`), and return their latents by site name, as an autoguide part must.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from pyro.infer.autoguide import AutoCallable
from torch import nn


class AmortizedGuide(AutoCallable):
    """The guide ``guide`` (e.g. ``vae.guide``) as an autoguide part, run inside the plate named ``plate`` of the
    :class:`~pyro.infer.autoguide.AutoGuideList` it belongs to (or of its own, used alone).

    The guide is called with the model's arguments, less ``subsample``: the rows are the plate's (give the list
    ``create_plates=`` to choose them; an amortized guide needs only their number and the data size).
    When ``guide`` is a method of an ``nn.Module`` (``vae.guide``), that module becomes a submodule here, so that
    moving or training the list moves and trains the VAE with it.

    :param model: the whole model, as given to the :class:`~pyro.infer.autoguide.AutoGuideList`.
    :param guide: a guide of the local latents in the data plate, returning ``{site: value}``.
    :param str plate: the name of the model's data plate (``vae.site("data")``, or the caller's plate that the
        VAE runs in).
    """

    def __init__(self, model: Callable, guide: Callable, plate: str = "data") -> None:
        super().__init__(model, guide)
        self.plate = plate
        owner = getattr(guide, "__self__", None)
        if isinstance(owner, nn.Module):
            self.owner = owner

    def forward(self, *args, **kwargs) -> dict[str, torch.Tensor]:
        if self.master is None and self.prototype_trace is None:  # used alone: the model's plates are its own
            self._setup_prototype(*args, **kwargs)
        plates = self._create_plates(*args, **kwargs)
        if self.plate not in plates:
            raise ValueError(
                f"the model has no plate {self.plate!r} (its plates: {sorted(plates)}): pass "
                "AmortizedGuide(model, guide, plate=...) the name of its data plate"
            )
        kwargs.pop("subsample", None)
        with plates[self.plate]:
            result = self._guide(*args, **kwargs)
        return {} if result is None else result
