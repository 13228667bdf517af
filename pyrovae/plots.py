"""Pictures of a trained model: prior samples, reconstructions and ELBO curves.

The image functions read the observation site's distribution from Pyro traces, so they work for any
model whose observation site (``"x"`` by default) has a ``mean``; they show means (pixel
probabilities for a Bernoulli likelihood), not noisy samples.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import matplotlib

matplotlib.use("Agg")  # files only: no display needed
import matplotlib.pyplot as plt  # noqa: E402
import pyro.poutine as poutine  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torchvision.utils import save_image  # noqa: E402

from .data.datasets import Dataset  # noqa: E402

#: images smaller than this (e.g. the 8x8 digits) are enlarged with nearest-neighbour pixels
MIN_PIXELS = 28


def prior_means(model: Callable, num_samples: int, site: str = "x") -> torch.Tensor:
    """Mean of ``site`` for ``num_samples`` draws from the prior, ``(num_samples, D)``:
    the model is run with ``x=None, num_data=num_samples``."""
    with torch.no_grad():
        trace = poutine.trace(model).get_trace(None, num_data=num_samples)
    return trace.nodes[site]["fn"].mean


def reconstruction_means(model: Callable, guide: Callable, x: torch.Tensor, site: str = "x") -> torch.Tensor:
    """Mean of ``p(x | z)`` with ``z ~ q(z | x)``: the guide is traced on ``x`` and the model replayed on it."""
    with torch.no_grad():
        guide_trace = poutine.trace(guide).get_trace(x)
        trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(x)
    return trace.nodes[site]["fn"].mean


def _as_images(x: torch.Tensor, image_shape: Sequence[int]) -> torch.Tensor:
    images = x.detach().float().cpu().reshape(len(x), *image_shape)
    height = images.shape[-2]
    if height < MIN_PIXELS:
        images = F.interpolate(images, scale_factor=-(-MIN_PIXELS // height), mode="nearest")
    return images


def save_samples(
    model: Callable, path: str | os.PathLike, image_shape: Sequence[int], num_samples: int = 64, site: str = "x"
) -> torch.Tensor:
    """Save a grid of decoded prior samples to ``path`` (PNG); returns the images."""
    images = _as_images(prior_means(model, num_samples, site), image_shape)
    save_image(images, path, nrow=int(num_samples**0.5), pad_value=1.0)
    return images


def save_reconstructions(
    model: Callable,
    guide: Callable,
    x: torch.Tensor,
    path: str | os.PathLike,
    image_shape: Sequence[int],
    site: str = "x",
) -> torch.Tensor:
    """Save the images ``x`` (top row) above their reconstructions (bottom row); returns the images."""
    pair = torch.cat([x, reconstruction_means(model, guide, x, site)])
    images = _as_images(pair, image_shape)
    save_image(images, path, nrow=len(x), pad_value=1.0)
    return images


def plot_elbo(history: Sequence[dict], path: str | os.PathLike) -> plt.Figure:
    """Plot train and test ELBO (nats per data point) against epochs and save the figure to ``path``."""
    return plot_curves(history, path, {"train_elbo": "train", "test_elbo": "test"}, "ELBO (nats per data point)")


def plot_curves(history: Sequence[dict], path: str | os.PathLike, series: dict[str, str], ylabel: str) -> plt.Figure:
    """Plot the metrics ``series`` (history key -> legend label; missing keys are skipped) against epochs
    and save the figure to ``path``."""
    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=120)
    epochs = [row["epoch"] for row in history]
    for key, label in series.items():
        if history and key in history[0]:
            ax.plot(epochs, [row[key] for row in history], label=label, marker="." if len(epochs) < 30 else None)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return fig


def save_figures(
    model: Callable, guide: Callable, data: Dataset, history: Sequence[dict], out_dir: str | os.PathLike
) -> dict[str, str]:
    """Write ``samples.png``, ``reconstructions.png`` (16 test images, or training images if there is no
    test set) and ``elbo.png`` into ``out_dir``; returns their paths by name."""
    device = data.train.x.device
    x = (data.test if len(data.test) else data.train).x[:16]
    if data.binarize == "dynamic" and not len(data.test):
        x = torch.bernoulli(x)
    paths = {name: os.path.join(out_dir, f"{name}.png") for name in ("samples", "reconstructions", "elbo")}
    save_samples(model, paths["samples"], data.image_shape)
    save_reconstructions(model, guide, x.to(device), paths["reconstructions"], data.image_shape)
    plot_elbo(history, paths["elbo"])
    return paths


def save_analogies(
    images: torch.Tensor, analogies: torch.Tensor, path: str | os.PathLike, image_shape: Sequence[int]
) -> torch.Tensor:
    """Kingma et al. (2014) Fig. 1: each row shows a test image, then its style drawn as every class.

    :param images: ``(rows, D)`` the test images.
    :param analogies: ``(rows, C, D)`` e.g. from :meth:`pyrovae.SSVAE.analogies`.
    :returns: the saved grid's images.
    """
    rows = torch.cat([images[:, None, :], analogies], dim=1)
    grid = _as_images(rows.reshape(-1, rows.shape[-1]), image_shape)
    save_image(grid, path, nrow=rows.shape[1], pad_value=1.0)
    return grid
