r"""Random translations of images, to stretch a handful of labels.

With 100 labelled MNIST digits the classifier :math:`q(y|x)` of the semi-supervised VAE sees the same 100
images at every labelled step and fits them long before the unlabelled term has shaped it. Translating
each labelled image by a few pixels (a new shift at every step) is the standard remedy of the
semi-supervised literature (e.g. Laine & Aila 2017: random translations of up to 2 pixels on SVHN and CIFAR-10;
Kingma et al. 2014 used none): the labels stay right, the pixels do not repeat.

:func:`random_shift` moves every image of a flattened batch by its own offset
:math:`(\delta_h, \delta_w)`, drawn uniformly from :math:`\{-s, \dots, s\}^2` with torch's global
generator (so ``pyro.set_rng_seed`` makes it reproducible), filling the uncovered border with 0
(the background of MNIST):

.. math:: x'_{c, i, j} = x_{c,\, i - \delta_h,\, j - \delta_w}
          \text{ where that pixel exists, else } 0.

**References**

[1] Temporal Ensembling for Semi-Supervised Learning, S. Laine and T. Aila, ICLR 2017.

[2] Semi-Supervised Learning with Deep Generative Models, D. P. Kingma, D. J. Rezende, S. Mohamed and
    M. Welling, NeurIPS 2014.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.nn import functional as F

from pyrovae.data.validation import check_shape


def check_shift(image_shape: Sequence[int], max_shift: int) -> None:
    """Check that ``image_shape`` is ``(C, H, W)`` and ``max_shift`` a shift in ``0..min(H, W) - 1``.

    :raises ValueError: saying which.
    """
    if len(image_shape) != 3:
        raise ValueError(f"image_shape must be (channels, height, width), got {tuple(image_shape)}")
    if not 0 <= int(max_shift) < min(image_shape[1:]):
        raise ValueError(f"max_shift must be in 0..{min(image_shape[1:]) - 1} pixels for "
                         f"{image_shape[1]}x{image_shape[2]} images, got {max_shift}")  # fmt: skip


def random_shift(x: torch.Tensor, image_shape: Sequence[int], max_shift: int) -> torch.Tensor:
    """Each row of ``x`` ``(N, C*H*W)``, read as a ``(C, H, W)`` image, translated by its own random
    offset of at most ``max_shift`` pixels along each axis, zero-filled; same shape as ``x``.
    ``max_shift=0`` returns ``x`` itself.

    :raises ValueError: if ``max_shift`` is negative or not smaller than the image (:func:`check_shift`), or
        ``x`` is not a non-empty ``(N, C*H*W)`` batch (:func:`pyrovae.data.validation.check_shape`).
    """
    check_shift(image_shape, max_shift)
    c, h, w = (int(s) for s in image_shape)
    check_shape(x, c * h * w)
    s = int(max_shift)
    if s == 0:
        return x
    n = len(x)
    padded = F.pad(x.reshape(n, c, h, w), (s, s, s, s))
    top, left = torch.randint(0, 2 * s + 1, (2, n, 1), device=x.device)  # window corner: offset s - top, s - left
    rows = (top + torch.arange(h, device=x.device))[:, None, :, None]
    cols = (left + torch.arange(w, device=x.device))[:, None, None, :]
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    channel = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[batch, channel, rows, cols].reshape(n, -1)
