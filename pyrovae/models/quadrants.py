r"""The quadrant split of Sohn et al.'s structured-output task (and of Pyro's CVAE tutorial): an image is cut into
four quadrants; one, two or three of them are the observed input :math:`x`, the rest the output :math:`y` to
predict.

With ``quadrants`` observed (the tutorial's masks, ``MaskImages``), of an image of height :math:`H` and width
:math:`W` (both even):

=============  =============================================  ====================================
``quadrants``  observed input :math:`x`                       output :math:`y`
=============  =============================================  ====================================
1              bottom left                                    top left, top right, bottom right
2              left half (top left, bottom left)              right half
3              all but the bottom right                       bottom right
=============  =============================================  ====================================

Every channel of a pixel is on the same side. :class:`QuadrantModel` is what the models of this task share
(:class:`pyrovae.models.baseline.Baseline`, :class:`pyrovae.models.cvae.CVAE`): they take **whole images**
:math:`(x, y)` as their data, cut each with their fixed mask, and model :math:`p(y | x)`; the input :math:`x` is
conditioned on, never a sample site, so that :func:`pyrovae.fit` trains them and
:func:`pyrovae.infer.importance.log_marginal_likelihood` estimates :math:`\log p(y | x)` unchanged.

The networks see a whole image, the hidden pixels set to :data:`HIDDEN` (-1, outside the pixels' range, as in the
tutorial) or filled with a guess of them.

**References**

[1] Learning Structured Output Representation using Deep Conditional Generative Models, K. Sohn, H. Lee and
    X. Yan, NeurIPS 2015.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from pyrovae.models.base import ObservedModel

#: the numbers of observed quadrants
QUADRANTS = (1, 2, 3)
#: the value of a hidden pixel in a network's input
HIDDEN = -1.0


def check_quadrants(quadrants: int) -> int:
    """Return ``quadrants`` if it is one of :data:`QUADRANTS`.

    :raises ValueError: saying which values are allowed.
    """
    if isinstance(quadrants, bool) or quadrants not in QUADRANTS:
        raise ValueError(f"quadrants is the number of observed quadrants, 1, 2 or 3; got {quadrants!r}")
    return int(quadrants)


def check_image_shape(image_shape: Sequence[int]) -> tuple[int, int, int]:
    """``image_shape`` as ``(C, H, W)`` if it can be cut into four equal quadrants (``H`` and ``W`` even).

    :raises ValueError: for a shape that is not ``(C, H, W)`` of positive sizes, or an odd height or width.
    """
    shape = tuple(int(s) for s in image_shape) if image_shape is not None else ()
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"image_shape must be (channels, height, width) of positive sizes, got {image_shape!r}")
    if shape[1] % 2 or shape[2] % 2:
        raise ValueError(
            f"images of {shape[1]}x{shape[2]} pixels cannot be cut into four equal quadrants: height and width must "
            "be even (a table's rows, image_shape (1, 1, D), are no images at all)"
        )
    return shape


def observed_mask(image_shape: Sequence[int], quadrants: int) -> torch.Tensor:
    """The observed pixels of a flattened image, a boolean vector of ``C * H * W`` entries (True: input :math:`x`,
    False: output :math:`y`), as in the module docstring's table.

    :raises ValueError: as :func:`check_quadrants` and :func:`check_image_shape`.
    """
    channels, height, width = check_image_shape(image_shape)
    quadrants = check_quadrants(quadrants)
    mask = torch.zeros(channels, height, width, dtype=torch.bool)
    mask[:, height // 2 :, : width // 2] = True  # bottom left
    if quadrants >= 2:
        mask[:, :, : width // 2] = True  # the left half
    if quadrants == 3:
        mask[:, : height // 2, :] = True  # and the top half
    return mask.reshape(math.prod((channels, height, width)))


def hide(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The images ``x`` ``(..., D)`` with their hidden pixels (``~mask``) set to :data:`HIDDEN`: what a network that
    sees only the observed input :math:`x` is given."""
    return x.masked_fill(~mask, HIDDEN)


def paste(x: torch.Tensor, mask: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """The images ``x`` ``(..., D)`` with their hidden pixels (``~mask``) replaced by ``values`` ``(..., n_hidden)``,
    in the order of the flattened image; leading dims broadcast (``values`` of ``(S, B, n_hidden)`` complete ``x`` of
    ``(B, D)`` ``S`` times)."""
    shape = torch.broadcast_shapes(x.shape[:-1], values.shape[:-1])
    out = x.expand(*shape, x.shape[-1]).clone()
    out[..., ~mask] = values.expand(*shape, values.shape[-1]).to(out.dtype)
    return out


class QuadrantModel(ObservedModel):
    r"""A model of the output quadrants :math:`y` of an image given its observed quadrants :math:`x` (see the module
    docstring): the mask, the cut of an image into ``(x, y)``, and the observation :math:`p(y | \cdot)` of the
    hidden pixels only.

    :param image_shape: ``(C, H, W)`` of the images, ``H`` and ``W`` even.
    :param int quadrants: the number of observed quadrants, 1, 2 or 3.
    :param str prefix: prepended to every site and module name.
    :param str likelihood: ``"bernoulli"`` (binary pixels) or ``"continuous-bernoulli"`` (grey levels in [0, 1]).
    :raises ValueError: for bad quadrants, an image that cannot be cut in quadrants, or another likelihood.
    """

    def __init__(self, image_shape: Sequence[int], quadrants: int = 1, prefix: str = "",
                 likelihood: str = "bernoulli") -> None:  # fmt: skip
        mask = observed_mask(image_shape, quadrants)
        super().__init__(len(mask), prefix, likelihood)
        if likelihood == "normal":
            raise ValueError("the quadrant models predict pixels: use likelihood 'bernoulli' or 'continuous-bernoulli'")
        self.image_shape, self.quadrants = check_image_shape(image_shape), int(quadrants)
        #: the observed pixels of a flattened image (True: the input x)
        self.register_buffer("mask", mask, persistent=False)
        #: the number of hidden pixels, the size of y
        self.y_dim = int((~mask).sum())

    def target(self, x: torch.Tensor) -> torch.Tensor:
        """The output :math:`y` of the images ``x`` ``(..., D)``: their hidden pixels ``(..., y_dim)``."""
        return x[..., ~self.mask]

    def _settings(self) -> dict:
        """The entries of :attr:`config` every quadrant model has."""
        return {"model": self.kind, "image_shape": list(self.image_shape), "quadrants": self.quadrants,
                "prefix": self.prefix, "likelihood": self.likelihood}  # fmt: skip
