r"""TensorBoard logging of a training run, one step per epoch, for any model/guide pair.

:class:`TensorBoardLogger` is a :func:`pyrovae.fit` callback. At the end of epoch ``t`` it writes, at
step ``t``, through ``torch.utils.tensorboard``:

* every numeric entry of the epoch's metrics row as a scalar: ``train_elbo`` as ``"elbo/train"``,
  ``test_elbo`` as ``"elbo/test"``, ``seconds`` as ``"time/seconds"`` (see :func:`scalar_tag`);
* the two terms of the ELBO on (at most ``eval_points``) held-out points, from :func:`pyrovae.infer.metrics.elbo_terms`,

  .. math:: \mathcal{L}(x) = \mathbb{E}_{q(z|x)}[\log p(x|z)] - \mathrm{KL}(q(z|x) \,\|\, p(z)),

  as ``"test/reconstruction"``, ``"test/kl"`` and ``"test/elbo"`` (nats per data point, one sample of
  ``z`` per point; ``"train/..."`` when the dataset has no test split and training points are used);
* two image grids: ``"samples"``, the decoded means of ``num_images`` draws from the prior
  (:func:`pyrovae.viz.plots.prior_means`), and ``"reconstructions"``, 16 held-out images (top row) above
  the means of :math:`p(x|z)` with :math:`z \sim q(z|x)` (:func:`pyrovae.viz.plots.reconstruction_means`).

The logger's own draws use a fixed seed (the same prior draws and the same :math:`z` noise every epoch,
so that the pictures and curves change only with the parameters) and leave the global random state as
they found it, so a run with the logger trains exactly as one without.

Needs the optional ``tensorboard`` package: ``pip install "pyrovae[tensorboard]"``. View the logs with
``tensorboard --logdir LOG_DIR``.
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Callable

import torch
from torchvision.utils import make_grid

from pyrovae.checkpoint import rng_state, set_rng_state
from pyrovae.data.datasets import Dataset
from pyrovae.device import device_of
from pyrovae.infer.metrics import elbo_terms
from pyrovae.viz.plots import as_images, prior_means, reconstruction_means

#: held-out images shown (top row) above their reconstructions
NUM_RECONSTRUCTIONS = 16
#: row prefixes read as the split a metric was computed on: ``test_elbo`` -> ``elbo/test``
SPLITS = ("train", "valid", "test")


def scalar_tag(key: str) -> str:
    """The TensorBoard tag of a metrics-row key: ``"<split>_<metric>"`` becomes ``"<metric>/<split>"``
    (so that TensorBoard draws train and test of one metric side by side), ``"seconds"`` becomes
    ``"time/seconds"``, and any other key is kept as it is."""
    if key == "seconds":
        return "time/seconds"
    split, _, metric = key.partition("_")
    return f"{metric}/{split}" if split in SPLITS and metric else key


def summary_writer_class() -> type:
    """``torch.utils.tensorboard.SummaryWriter``, imported on first use.

    :raises ImportError: with the install command, if the ``tensorboard`` package is missing.
    """
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as err:
        raise ImportError(
            'TensorBoard logging needs the tensorboard package: pip install "pyrovae[tensorboard]"'
        ) from err
    return SummaryWriter


class TensorBoardLogger:
    """Write an epoch's metrics, ELBO terms and image grids to TensorBoard; pass it as ``fit``'s callback::

        with TensorBoardLogger("out/tensorboard", vae.model, vae.guide, data) as logger:
            fit(vae.model, vae.guide, data, config, callback=logger)

    ``model`` is run as ``model(None, num_data=n)`` to generate and ``model(x)`` / ``guide(x)`` to evaluate,
    like :meth:`pyrovae.VAE.model`; its observation site must be ``"x"`` with a ``mean``. The held-out
    points are the first ``eval_points`` test images, or training images if there is no test split
    (binarized once with :data:`pyrovae.data.binarize.EVAL_SEED` when the training set is dynamically
    binarized, as in :func:`pyrovae.viz.plots.save_figures`). They are moved to the device of the module that
    owns ``model`` (``vae.model`` belongs to ``vae``) when the logger is called, so it follows ``fit``
    onto a GPU.

    :param log_dir: folder of the event files (created if missing).
    :param Dataset data: the dataset being trained on; ``data.image_shape`` shapes the images.
    :param int num_images: prior samples in the ``"samples"`` grid (``int(sqrt(num_images))`` per row).
    :param int eval_points: at most this many held-out points for the ELBO terms, so that they stay cheap.
    :param int seed: seed of the logger's own draws (prior samples and :math:`z \\sim q(z|x)`).
    :raises ImportError: if the ``tensorboard`` package is not installed.
    """

    def __init__(
        self,
        log_dir: str | os.PathLike,
        model: Callable,
        guide: Callable,
        data: Dataset,
        num_images: int = 64,
        *,
        eval_points: int = 1000,
        seed: int = 0,
    ) -> None:
        writer_class = summary_writer_class()
        if int(num_images) < 1 or int(eval_points) < 1:
            raise ValueError(f"num_images and eval_points must be positive, got {num_images} and {eval_points}")
        self.model, self.guide, self.data = model, guide, data
        self.num_images, self.seed = int(num_images), int(seed)
        #: the split the ELBO terms and reconstructions come from: ``"test"``, or ``"train"`` if there is none
        self.split = "test" if len(data.test) else "train"
        self.eval_x = data.fixed_x(self.split)[: int(eval_points)]
        self.writer = writer_class(log_dir=os.fspath(log_dir))

    def __call__(self, row: dict[str, float]) -> None:
        """Log the epoch of ``row`` (a row of :func:`pyrovae.fit`'s history) at step ``row["epoch"]``."""
        step = int(row["epoch"])
        for key, value in row.items():
            if key != "epoch" and isinstance(value, numbers.Real) and not isinstance(value, bool):
                self.writer.add_scalar(scalar_tag(key), float(value), step)
        state = rng_state()
        try:
            torch.manual_seed(self.seed)
            x = self.eval_x.to(device_of(self.model, self.guide, default=self.eval_x.device))
            for name, value in elbo_terms(self.model, self.guide, x).items():
                self.writer.add_scalar(f"{self.split}/{name}", value, step)
            for tag, grid in self.image_grids(x[:NUM_RECONSTRUCTIONS]).items():
                self.writer.add_image(tag, grid, step)
        finally:
            set_rng_state(state)
        self.writer.flush()

    def image_grids(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The ``"samples"`` and ``"reconstructions"`` (of ``x``) grids, each ``(3, H, W)`` in [0, 1]:
        images of ``data.image_shape`` (small ones enlarged, as in :mod:`pyrovae.viz.plots`) with 2 white
        pixels of padding between and around them."""
        shape = self.data.image_shape
        samples = as_images(prior_means(self.model, self.num_images), shape)
        pair = torch.cat([x, reconstruction_means(self.model, self.guide, x)])
        return {
            "samples": make_grid(samples, nrow=int(self.num_images**0.5), pad_value=1.0),
            "reconstructions": make_grid(as_images(pair, shape), nrow=len(x), pad_value=1.0),
        }

    def close(self) -> None:
        """Flush and close the event file."""
        self.writer.close()

    def __enter__(self) -> TensorBoardLogger:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
