r"""What every pyrovae model shares: a Pyro model and guide over data :math:`x` of ``x_dim`` coordinates, in a
data plate, with an observation model :math:`p(x | \cdot)` (:mod:`pyrovae.models.likelihoods`).

:class:`ObservedModel` is the base class of the VAE family (:class:`pyrovae.VAE`, :class:`pyrovae.Autoencoder`,
:class:`pyrovae.models.iaf.IAFVAE`, :class:`pyrovae.TwoLayerVAE`) and of the semi-supervised models
(:class:`pyrovae.SSVAE`, :class:`pyrovae.ADGM`). It holds what they do alike:

* **site names** with a prefix: ``site("z")`` is ``"z"``, or ``"p/z"`` with ``prefix="p"``, so that several
  models can live in one Pyro program;
* the **input checks** of the likelihood: shape and dtype always, values (finite, in the likelihood's support)
  while Pyro validation is on;
* the **observation** :math:`p(x | \cdot)` read from a decoder's output :math:`f`: logits for the Bernoulli
  likelihoods, and for the Gaussian :math:`\mathcal{N}(\mu = f, \sigma^2)` a scale :math:`\sigma` that is fixed,
  learned per coordinate (:class:`~pyrovae.models.likelihoods.PixelScale`) or, when the model sets none, given
  by the decoder with the mean: :math:`f = [\mu, \rho]`, :math:`\sigma = \mathrm{softplus}(\rho) + \sigma_{\min}`;
* the **data plate** of a model run: the rows of ``x`` (subsampled at ``subsample`` out of ``num_data``), or
  ``num_data`` points to generate; or the caller's own plate over the rows (:mod:`pyrovae.models.plate`);
* the **modules** in Pyro's param store (:mod:`pyrovae.models.store`): a model call uses the values loaded into
  the store under its names (after ``pyro.get_param_store().load(path)``, the stored weights, as in Pyro's own
  examples), never another live model's;
* the **registry entries**: ``kind``, the name under which checkpoints record the class, and ``config``, the
  constructor's arguments as plain values (with ``"model": kind``), from which
  :func:`pyrovae.models.registry.model_from_config` rebuilds the model.

**References**

[1] Auto-Encoding Variational Bayes, D. P. Kingma and M. Welling, ICLR 2014.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any, ClassVar

import pyro
import pyro.distributions as dist
import torch
from pyro.infer.util import is_validation_enabled
from torch import nn

from pyrovae.data.validation import check_shape, parameter_dtype
from pyrovae.device import device_of
from pyrovae.models import plate as plates
from pyrovae.models import store
from pyrovae.models.likelihoods import PixelScale, check_likelihood, check_support, observation, positive_scale


def standard_normal(batch_size: int, dim: int, device: torch.device) -> dist.TorchDistribution:
    """:math:`\\mathcal{N}(0, I)` over ``dim`` coordinates, batch shape ``(batch_size,)``: the prior of a top latent."""
    return dist.Normal(torch.zeros(batch_size, dim, device=device), 1.0).to_event(1)


class ObservedModel(nn.Module):
    """The base class of pyrovae's models (see the module docstring): prefixed site names, the input checks of the
    likelihood, the observation distribution p(x|·) with its Gaussian scale, and the registry entries ``kind``
    and ``config``.

    :param int x_dim: data dimension.
    :param str prefix: prepended to every site and module name (``"p/z"``).
    :param str likelihood: the observation model, one of :data:`pyrovae.models.likelihoods.LIKELIHOODS`.
    """

    #: the name under which checkpoints record the class (``config["model"]``), its key in
    #: :data:`pyrovae.models.registry.MODELS`
    kind: ClassVar[str]

    def __init__(self, x_dim: int, prefix: str = "", likelihood: str = "bernoulli") -> None:
        super().__init__()
        self.x_dim, self.prefix, self.likelihood = int(x_dim), prefix, check_likelihood(likelihood)
        #: the Gaussian scale of ``likelihood="normal"``: a :class:`~pyrovae.models.likelihoods.PixelScale` module
        #: when learned per coordinate, a float when fixed, ``None`` when the decoder gives it (and for the other
        #: likelihoods); set by ``_init_scale``
        self.scale: PixelScale | float | None = None
        #: constructor arguments as plain values, with ``"model": kind``, saved in checkpoints so that
        #: :func:`pyrovae.load_model` can rebuild the model; ``None`` when it cannot be rebuilt from settings alone
        #: (a custom network or an activation class)
        self.config: dict[str, Any] | None = None

    def _init_scale(self, scale: float | None) -> None:
        """A Gaussian scale shared by all data points: ``scale`` fixed, or learned per coordinate when ``None``
        (``likelihood="normal"`` only: the other likelihoods take none).

        :raises ValueError: for a scale with another likelihood, or one that is not a positive number.
        """
        if scale is not None and self.likelihood != "normal":
            raise ValueError(
                f"scale={scale} is the Gaussian scale: it needs likelihood='normal', not {self.likelihood!r}"
            )
        if scale is not None and not 0 < float(scale) < float("inf"):
            raise ValueError(f"scale must be a positive number (or None to learn it), got {scale}")
        if self.likelihood == "normal":
            self.scale = PixelScale(self.x_dim) if scale is None else float(scale)

    @property
    def output_dim(self) -> int:
        """The size of the decoder output that ``_observe`` reads: ``x_dim``, or ``2 * x_dim`` (mean and raw
        scale) for a Gaussian whose scale the decoder gives."""
        return 2 * self.x_dim if self.likelihood == "normal" and self.scale is None else self.x_dim

    def site(self, name: str) -> str:
        """The full name of site ``name`` (``"z"``, ``"x"``, ``"data"``, ...) with this model's prefix."""
        return f"{self.prefix}/{name}" if self.prefix else name

    def _check(self, x: torch.Tensor) -> None:
        """Shape and dtype checks always; value checks (finite, in the likelihood's support) while Pyro validation
        is on."""
        check_shape(x, self.x_dim, dtype=parameter_dtype(self))
        if is_validation_enabled():
            check_support(self.likelihood, x)

    def register(self, *names: str) -> None:
        """Register the child modules ``names`` (``"encoder"``, ``"decoder"``, ...) with Pyro's param store under
        ``site(name)``, as ``pyro.module`` does but taking values loaded into the store and never another live
        model's (:func:`pyrovae.models.store.register`); what the models' ``model`` and ``guide`` do, and what a user's
        model that runs the networks itself should do."""
        for name in names:
            store.register(self.site(name), getattr(self, name))

    def data_plate(
        self, x: torch.Tensor | None = None, num_data: int | None = None, *, subsample: torch.Tensor | None = None
    ) -> pyro.plate:
        """A new plate named ``site("data")`` as a run of the model on these arguments opens it: over the
        rows of ``x`` subsampled at ``subsample`` (default the first rows) out of ``num_data`` points. For a guide
        that must see the model's rows, e.g. ``AutoNormal(vae.model, create_plates=vae.data_plate)`` with
        per-point parameters, called as ``(x, num_data=N, subsample=idx)``."""
        plate, _, _ = self._data_plate(x, num_data, subsample, None)
        if not isinstance(plate, pyro.plate):
            raise ValueError(f"a plate named {self.site('data')!r} is already open: use it")
        return plate

    def _data_plate(
        self,
        x: torch.Tensor | None,
        num_data: int | None,
        subsample: torch.Tensor | None,
        plate: str | None,
    ) -> tuple[AbstractContextManager, int, torch.device]:
        """``(plate, batch_size, device)`` of a run (:func:`pyrovae.models.plate.data_plate`): over the rows of
        ``x`` (checked), out of ``num_data``; or, to generate (``x=None``), ``num_data`` new points (default 1) on
        the model's device."""
        if x is not None:
            self._check(x)
            batch_size, device = x.shape[0], x.device
        else:
            batch_size, device, num_data = plates.num_generated(num_data), device_of(self), None
        context = plates.data_plate(self.site("data"), batch_size, num_data, device, subsample=subsample, plate=plate)
        return context, batch_size, device

    def _observe(self, output: torch.Tensor) -> dist.TorchDistribution:
        """p(x|·) of the likelihood from the decoder's ``output`` (``(..., output_dim)``); a learned Gaussian scale
        is registered with Pyro here (``pyro.module`` ``"scale"``)."""
        scale = self.scale
        if isinstance(scale, nn.Module):
            scale = store.register(self.site("scale"), scale)()
        elif self.likelihood == "normal" and scale is None:  # identity link for the mean, softplus for the scale
            output, raw_scale = output.split(self.x_dim, dim=-1)
            scale = positive_scale(raw_scale)
        return observation(self.likelihood, output, scale)
