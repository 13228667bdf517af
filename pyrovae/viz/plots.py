"""Pictures of a trained model: prior samples, reconstructions, ELBO curves, image grids and latent maps.

The image functions read the observation site's distribution from Pyro traces, so they work for any
model whose observation site (``"x"`` by default) has a ``mean``; they show means (pixel
probabilities for a Bernoulli likelihood), not noisy samples, computed with the modules owning the model and
guide in evaluation mode (:func:`pyrovae.device.evaluating`).
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
from torchvision.utils import make_grid, save_image  # noqa: E402

from pyrovae.data.datasets import Dataset  # noqa: E402
from pyrovae.device import evaluating  # noqa: E402

#: images smaller than this (e.g. the 8x8 digits) are enlarged with nearest-neighbour pixels
MIN_PIXELS = 28


def prior_means(model: Callable, num_samples: int, site: str = "x") -> torch.Tensor:
    """Mean of ``site`` for ``num_samples`` draws from the prior, ``(num_samples, D)``:
    the model is run with ``x=None, num_data=num_samples``."""
    with torch.no_grad(), evaluating(model):
        trace = poutine.trace(model).get_trace(None, num_data=num_samples)
    return trace.nodes[site]["fn"].mean


def reconstruction_means(model: Callable, guide: Callable, x: torch.Tensor, site: str = "x") -> torch.Tensor:
    """Mean of ``p(x | z)`` with ``z ~ q(z | x)``: the guide is traced on ``x`` and the model replayed on it."""
    with torch.no_grad(), evaluating(model, guide):
        guide_trace = poutine.trace(guide).get_trace(x)
        trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(x)
    return trace.nodes[site]["fn"].mean


def as_images(x: torch.Tensor, image_shape: Sequence[int]) -> torch.Tensor:
    images = x.detach().float().cpu().reshape(len(x), *image_shape)
    height = images.shape[-2]
    if height < MIN_PIXELS:
        images = F.interpolate(images, scale_factor=-(-MIN_PIXELS // height), mode="nearest")
    return images


def save_samples(
    model: Callable, path: str | os.PathLike, image_shape: Sequence[int], num_samples: int = 64, site: str = "x"
) -> torch.Tensor:
    """Save a grid of decoded prior samples to ``path`` (PNG); returns the images."""
    images = as_images(prior_means(model, num_samples, site), image_shape)
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
    images = as_images(pair, image_shape)
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
    x = data.fixed_x("test" if len(data.test) else "train")[:16]
    paths = {name: os.path.join(out_dir, f"{name}.png") for name in ("samples", "reconstructions", "elbo")}
    save_samples(model, paths["samples"], data.image_shape)
    save_reconstructions(model, guide, x.to(device), paths["reconstructions"], data.image_shape)
    plot_elbo(history, paths["elbo"])
    return paths


def save_grid(images: torch.Tensor, path: str | os.PathLike, image_shape: Sequence[int]) -> torch.Tensor:
    """Save ``images`` ``(rows, cols, D)`` as one PNG grid of ``rows x cols`` pictures (2 pixels of white
    padding, as ``torchvision.utils.make_grid``); returns the pictures ``(rows * cols, C, H, W)``."""
    if images.dim() != 3:
        raise ValueError(f"expected images of shape (rows, cols, D), got {tuple(images.shape)}")
    grid = as_images(images.reshape(-1, images.shape[-1]), image_shape)
    save_image(grid, path, nrow=images.shape[1], pad_value=1.0)
    return grid


def save_analogies(
    images: torch.Tensor, analogies: torch.Tensor, path: str | os.PathLike, image_shape: Sequence[int]
) -> torch.Tensor:
    """Kingma et al. (2014) Fig. 1: each row shows a test image, then its style drawn as every class.

    :param images: ``(rows, D)`` the test images.
    :param analogies: ``(rows, C, D)`` e.g. from :meth:`pyrovae.SSVAE.analogies`.
    :returns: the saved grid's images.
    """
    return save_grid(torch.cat([images[:, None, :], analogies], dim=1), path, image_shape)


def plot_latent_map(
    points: torch.Tensor, labels: torch.Tensor | None, path: str | os.PathLike, title: str = ""
) -> plt.Figure:
    """Scatter ``points`` ``(N, 2)`` (e.g. from :func:`pyrovae.viz.latent.embed_2d`) coloured by integer
    ``labels`` ``(N,)``, one legend entry per class; 600 x 600 pixels, saved to ``path``."""
    points = points.detach().cpu()
    fig, ax = plt.subplots(figsize=(6, 6), dpi=100)
    if labels is None:
        ax.scatter(points[:, 0], points[:, 1], s=4, alpha=0.6)
    else:
        labels = labels.detach().cpu()
        cmap = plt.get_cmap("tab10" if int(labels.max()) < 10 else "tab20")
        for label in labels.unique().tolist():
            keep = labels == label
            ax.scatter(points[keep, 0], points[keep, 1], s=4, alpha=0.6, color=cmap(label), label=str(label))
        ax.legend(markerscale=3, fontsize=8, loc="best", ncol=2)
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return fig


def plot_panels(
    panels: dict[str, torch.Tensor], path: str | os.PathLike, image_shape: Sequence[int], nrow: int = 8
) -> plt.Figure:
    """Grids of images side by side, one titled panel per entry of ``panels`` (title -> ``(N, D)``
    images, ``nrow`` per row), e.g. decoded prior samples of a VAE beside those of an autoencoder."""
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.5), dpi=100, squeeze=False)
    for ax, (title, images) in zip(axes[0], panels.items(), strict=True):
        grid = make_grid(as_images(images, image_shape), nrow=nrow, pad_value=1.0)
        ax.imshow(grid.permute(1, 2, 0).clamp(0, 1).numpy(), interpolation="nearest")
        ax.set_title(title, fontsize=10)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return fig
