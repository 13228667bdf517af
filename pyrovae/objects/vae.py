"""The VAE as one object: data in, a :class:`pyrovae.VAE` built for them, trained by :func:`pyrovae.fit`, evaluated
in the data's own units, saved and loaded back (:mod:`pyrovae.objects.base`).

.. code-block:: python

    m = pyrovae.VAEModel(x, z_dim=8)          # x: (N, D) tensor or array, a Dataset or a file's path
    m.train(epochs=20)
    z = m.latent(x)                           # posterior means E[z|x]
    m.save("runs/vae"); m = pyrovae.VAEModel.load("runs/vae")
"""

from __future__ import annotations

from typing import Any

import torch
from pyro import poutine

from pyrovae.data.datasets import Dataset
from pyrovae.device import evaluating
from pyrovae.models.vae import VAE
from pyrovae.models.vamp import PRIORS
from pyrovae.objects.base import BATCH_SIZE, DataLike, ModelObject, intake
from pyrovae.seeding import seeded
from pyrovae.train.svi import TrainConfig, fit
from pyrovae.viz.latent import posterior_means


class VAEModel(ModelObject):
    """A :class:`pyrovae.VAE` with its data, training and evaluation in one object.

    :param data: the training data: a :class:`~pyrovae.data.Dataset`, an ``(N, D)`` tensor or NumPy array, or the
        path of a file read by :func:`pyrovae.data.files.load_file` (see :func:`pyrovae.objects.base.intake`).
    :param int z_dim: latent dimension.
    :param str likelihood: ``"auto"`` (default: what the values call for, ``likelihood_reason`` says why) or one
        of ``"bernoulli"``, ``"continuous-bernoulli"``, ``"normal"``.
    :param str binarize: of a tensor or a file: ``"none"`` (default: the values as they are), ``"dynamic"`` or
        ``"static"`` (grey levels made binary, for a Bernoulli likelihood).
    :param bool standardize: standardize real-valued data (default); the methods still take and return the data's
        units.
    :param image_shape: of a tensor: ``(C, H, W)`` of a row, needed by ``net="conv"``.
    :param int seed: seed of the initial weights and (by default) of the training noise.
    :param dict data_options: options of ``load_file`` when ``data`` is a path.
    :param str prior: ``"standard"`` (default), N(0, I); or ``"vamp"``, the VampPrior
        (:class:`pyrovae.models.vamp.VampVAE`, with ``pseudo_inputs=K`` among the ``model_options``, default 500).
    :param model_options: further arguments of :class:`pyrovae.VAE` (``hidden``, ``activation``, ``net``,
        ``scale``, ...).
    :raises ValueError: for an unknown ``prior``, or ``pseudo_inputs`` without ``prior="vamp"``.
    """

    section, config_class, module_class = "vae", TrainConfig, VAE

    def __init__(
        self,
        data: DataLike,
        *,
        z_dim: int = 10,
        likelihood: str = "auto",
        binarize: str = "none",
        standardize: bool = True,
        image_shape: tuple[int, int, int] | None = None,
        seed: int = 0,
        data_options: dict[str, Any] | None = None,
        prior: str = "standard",
        **model_options: Any,
    ) -> None:
        if prior not in PRIORS:
            raise ValueError(f"unknown prior {prior!r}: choose one of {sorted(PRIORS)}")
        if "pseudo_inputs" in model_options and prior != "vamp":
            raise ValueError("pseudo_inputs are those of the VampPrior: pass prior='vamp'")
        dataset, likelihood, reason = intake(data, likelihood, binarize=binarize, standardize=standardize,
                                             image_shape=image_shape, data_options=data_options)  # fmt: skip
        if model_options.get("net") == "conv":
            model_options.setdefault("image_shape", dataset.image_shape)
        vae = PRIORS[prior](dataset.x_dim, z_dim=z_dim, likelihood=likelihood, seed=seed, **model_options)
        super().__init__(vae, dataset, reason, seed)

    def _fit(self, data: Dataset, config: TrainConfig, **options: Any) -> list[dict[str, Any]]:
        return fit(self.model, self.guide, data, config, **options)

    def latent(
        self, x: Any, *, mean: bool = True, seed: int | None = None, batch_size: int = BATCH_SIZE
    ) -> torch.Tensor:
        r"""The codes of the rows ``x`` (data units), ``(N, z_dim)``: the posterior means
        :math:`\mathbb{E}_{q(z|x)}[z]` (:func:`~pyrovae.viz.latent.posterior_means`), or with ``mean=False`` one draw
        of :math:`q(z|x)` per row, seeded by ``seed`` (:func:`pyrovae.seeding.seeded`; ``None``: torch's generator).

        :raises ValueError: for rows of another width."""
        x, site = self.inputs(x), self.module.site("z")
        if mean:
            return posterior_means(self.guide, x, site=site, batch_size=batch_size)
        with seeded(seed), torch.no_grad(), evaluating(self.guide):
            return torch.cat([poutine.trace(self.guide).get_trace(chunk).nodes[site]["value"]
                              for chunk in x.split(batch_size)])  # fmt: skip

    def reconstruct(self, x: Any, *, batch_size: int = BATCH_SIZE) -> torch.Tensor:
        """The reconstruction of each row of ``x`` in the data's units, ``(N, D)``: :meth:`pyrovae.VAE.reconstruct`,
        the mean of p(x|z) at the posterior mean of z.

        :raises ValueError: for rows of another width."""
        return self.outputs(torch.cat([self.module.reconstruct(chunk) for chunk in self.inputs(x).split(batch_size)]))
