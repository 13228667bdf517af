"""Encoder and decoder networks: plain :class:`torch.nn.Module` s that a user can replace.

Shapes: ``x`` is ``(batch, x_dim)``, ``z`` is ``(batch, z_dim)``. An encoder maps ``x`` to the
``(loc, scale)`` of a diagonal Gaussian q(z|x); a decoder maps ``z`` to the logits of p(x|z).
Any module with the same input and output shapes can stand in for either.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

import torch
import torch.nn.functional as F
from torch import nn

#: the default network families of :class:`pyrovae.VAE` (``net=``)
NETS = ("mlp", "conv")

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "softplus": nn.Softplus,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "leaky_relu": nn.LeakyReLU,
}


def activation_class(activation: str | type[nn.Module]) -> type[nn.Module]:
    """Resolve an activation given by name (``"relu"``, ``"tanh"``, ...) or as an ``nn.Module`` class."""
    if isinstance(activation, str):
        try:
            return ACTIVATIONS[activation]
        except KeyError:
            raise ValueError(
                f"unknown activation {activation!r}: choose one of {sorted(ACTIVATIONS)} "
                "or pass an nn.Module class"
            ) from None
    if isinstance(activation, type) and issubclass(activation, nn.Module):
        return activation
    raise TypeError(f"activation must be a name or an nn.Module class, got {activation!r}")


def mlp(sizes: Sequence[int], activation: str | type[nn.Module] = "relu") -> nn.Sequential:
    """A multilayer perceptron ``sizes[0] -> ... -> sizes[-1]`` with ``activation`` between layers
    and a linear output."""
    if len(sizes) < 2 or any(int(s) < 1 for s in sizes):
        raise ValueError(f"an MLP needs at least two positive layer sizes, got {list(sizes)}")
    act = activation_class(activation)
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(pairwise(sizes)):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(act())
    return nn.Sequential(*layers)


class Encoder(nn.Module):
    r"""Amortized posterior network: :math:`x \mapsto (\mu(x), \sigma(x))`, with
    :math:`\sigma = \mathrm{softplus}(\cdot) + \epsilon` so that the scale is always positive.

    :param int x_dim: data dimension.
    :param int z_dim: latent dimension.
    :param hidden: hidden layer sizes, e.g. ``(400,)`` or ``(200, 200)``.
    :param activation: activation between hidden layers (name or ``nn.Module`` class).
    """

    def __init__(
        self,
        x_dim: int,
        z_dim: int,
        hidden: Sequence[int] = (400,),
        activation: str | type[nn.Module] = "relu",
        min_scale: float = 1e-4,
    ) -> None:
        super().__init__()
        self.net = mlp([x_dim, *hidden, 2 * z_dim], activation)
        self.z_dim = z_dim
        self.min_scale = min_scale

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.head(self.hidden(x))

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        """The last hidden layer's activations ``(batch, hidden[-1])`` (``x`` itself without hidden layers)."""
        return self.net[:-1](x)

    def head(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(loc, scale)`` from the last hidden layer's activations ``h``."""
        loc, raw_scale = self.net[-1](h).split(self.z_dim, dim=-1)
        return loc, F.softplus(raw_scale) + self.min_scale


class Decoder(nn.Module):
    r"""Generative network: :math:`z \mapsto` logits of :math:`p(x|z)`.

    :param int z_dim: latent dimension.
    :param int x_dim: data dimension.
    :param hidden: hidden layer sizes, e.g. ``(400,)``.
    :param activation: activation between hidden layers (name or ``nn.Module`` class).
    """

    def __init__(
        self, z_dim: int, x_dim: int, hidden: Sequence[int] = (400,), activation: str | type[nn.Module] = "relu"
    ) -> None:
        super().__init__()
        self.net = mlp([z_dim, *hidden, x_dim], activation)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class ConditionalMLP(nn.Module):
    r"""An MLP on the concatenation :math:`[h, \mathrm{onehot}(y)]` of an input and a class label,
    computed without building the concatenation: the first layer is
    :math:`W [h, \mathrm{onehot}(y)] + b = W_h h + W_y[:, y] + b`, a linear map of ``h`` plus an embedding
    of ``y``. Under Pyro's parallel enumeration ``y`` has shape ``(C, 1)`` while ``h`` is ``(batch, dim)``:
    the linear map of ``h`` is then computed once and broadcast against the ``C`` label embeddings.
    With several inputs (``in_dim`` a sequence) the first layer is :math:`\sum_i W_i h_i + W_y[:, y] + b`,
    the MLP on :math:`[h_1, h_2, \ldots, \mathrm{onehot}(y)]`, each input mapped at its own batch shape
    (``x`` once, an enumerated ``z`` once per label) before the sum broadcasts them.

    :param in_dim: dimension of ``h``, or the dimensions of the inputs ``(h_1, h_2, ...)``.
    :param int num_classes: number of labels ``C``.
    :param sizes: hidden and output sizes, e.g. ``(500, 100)``.
    :param activation: activation between layers (name or ``nn.Module`` class).
    """

    def __init__(
        self,
        in_dim: int | Sequence[int],
        num_classes: int,
        sizes: Sequence[int],
        activation: str | type[nn.Module] = "relu",
    ) -> None:
        super().__init__()
        if not sizes:
            raise ValueError("a conditional MLP needs at least an output size")
        in_dims = [in_dim] if isinstance(in_dim, int) else list(in_dim)
        self.input = nn.Linear(in_dims[0], sizes[0])
        #: the linear maps of the further inputs (none for a single input)
        self.extra = nn.ModuleList(nn.Linear(d, sizes[0], bias=False) for d in in_dims[1:])
        self.label = nn.Embedding(num_classes, sizes[0])
        bound = 1.0 / (sum(in_dims) + num_classes) ** 0.5  # as nn.Linear on the concatenation
        for weight in [self.input.weight, *(e.weight for e in self.extra), self.label.weight]:
            nn.init.uniform_(weight, -bound, bound)
        rest = mlp(sizes, activation) if len(sizes) > 1 else nn.Identity()
        self.rest = nn.Sequential(activation_class(activation)(), rest) if len(sizes) > 1 else rest

    def forward(self, h: torch.Tensor | Sequence[torch.Tensor], y: torch.Tensor) -> torch.Tensor:
        """``h``: ``(..., in_dim)``, or a sequence of inputs ``(..., in_dim[i])``; ``y``: integer labels. The
        batch shapes of the inputs and ``y`` broadcast."""
        first, *others = [h] if isinstance(h, torch.Tensor) else h
        if len(others) != len(self.extra):
            raise ValueError(f"expected {1 + len(self.extra)} inputs, got {1 + len(others)}")
        out = self.input(first) + self.label(y)
        for linear, g in zip(self.extra, others, strict=True):
            out = out + linear(g)
        return self.rest(out)


class ConvEncoder(Encoder):
    r"""Convolutional amortized posterior network for images: :math:`x \mapsto (\mu(x), \sigma(x))`.

    ``x`` ``(..., C*H*W)`` is reshaped to ``(C, H, W)`` and passed through stride-2 convolutions (kernel 4,
    padding 1: each halves the height and width); the flattened feature maps then go through the MLP of an
    :class:`Encoder` with ``hidden`` sizes, which gives ``(loc, scale)``. Any leading batch dimensions are kept.

    :param image_shape: ``(C, H, W)``; ``H`` and ``W`` must be divisible by ``2 ** len(channels)``.
    :param channels: output channels of the convolutions, e.g. ``(32, 64)``: 28x28 -> 14x14 -> 7x7.
    """

    def __init__(
        self,
        image_shape: Sequence[int],
        z_dim: int,
        hidden: Sequence[int] = (400,),
        activation: str | type[nn.Module] = "relu",
        channels: Sequence[int] = (32, 64),
        min_scale: float = 1e-4,
    ) -> None:
        image_shape = _check_image_shape(image_shape, len(channels))
        super().__init__(_conv_size(image_shape, channels), z_dim, hidden, activation, min_scale)
        self.image_shape = image_shape
        act = activation_class(activation)
        layers: list[nn.Module] = []
        for n_in, n_out in pairwise([image_shape[0], *channels]):
            layers += [nn.Conv2d(n_in, n_out, kernel_size=4, stride=2, padding=1), act()]
        self.conv = nn.Sequential(*layers, nn.Flatten())

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        return super().hidden(self.conv(x.reshape(-1, *self.image_shape)).reshape(*lead, -1))


class ConvDecoder(nn.Module):
    r"""Convolutional generative network: :math:`z \mapsto` logits (or means) of :math:`p(x|z)`, the mirror of
    :class:`ConvEncoder`: an MLP to ``channels[-1]`` feature maps of ``H / 2**L x W / 2**L``, then stride-2
    transposed convolutions (kernel 4, padding 1) up to ``(C, H, W)``, flattened to ``(..., C*H*W)``.

    :param image_shape: ``(C, H, W)``.
    :param channels: the encoder's channels, e.g. ``(32, 64)`` (used in reverse order).
    """

    def __init__(
        self,
        z_dim: int,
        image_shape: Sequence[int],
        hidden: Sequence[int] = (400,),
        activation: str | type[nn.Module] = "relu",
        channels: Sequence[int] = (32, 64),
    ) -> None:
        super().__init__()
        self.image_shape = _check_image_shape(image_shape, len(channels))
        c, h, w = self.image_shape
        self.grid = (channels[-1], h >> len(channels), w >> len(channels))
        act = activation_class(activation)
        self.net = nn.Sequential(mlp([z_dim, *hidden, _conv_size(self.image_shape, channels)], activation), act())
        layers: list[nn.Module] = []
        for n_in, n_out in pairwise([*reversed(channels), c]):
            layers += [nn.ConvTranspose2d(n_in, n_out, kernel_size=4, stride=2, padding=1), act()]
        self.deconv = nn.Sequential(*layers[:-1])  # linear output

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        lead = z.shape[:-1]
        out = self.deconv(self.net(z.reshape(-1, z.shape[-1])).reshape(-1, *self.grid))
        return out.reshape(*lead, -1)


def _check_image_shape(image_shape: Sequence[int], num_convs: int) -> tuple[int, int, int]:
    if len(image_shape) != 3 or any(int(s) < 1 for s in image_shape):
        raise ValueError(f"image_shape must be (C, H, W), got {tuple(image_shape)}")
    c, h, w = (int(s) for s in image_shape)
    if h % 2**num_convs or w % 2**num_convs:
        raise ValueError(
            f"{num_convs} stride-2 convolutions need H and W divisible by {2**num_convs}, got {h}x{w}: "
            "use fewer channels or the MLP nets"
        )
    return c, h, w


def _conv_size(image_shape: tuple[int, int, int], channels: Sequence[int]) -> int:
    """Features after the convolutions: ``channels[-1] * H / 2**L * W / 2**L``."""
    _, h, w = image_shape
    return channels[-1] * (h >> len(channels)) * (w >> len(channels))
