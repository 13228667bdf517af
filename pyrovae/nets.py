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
        self,
        z_dim: int,
        x_dim: int,
        hidden: Sequence[int] = (400,),
        activation: str | type[nn.Module] = "relu",
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

    :param int in_dim: dimension of ``h``.
    :param int num_classes: number of labels ``C``.
    :param sizes: hidden and output sizes, e.g. ``(500, 100)``.
    :param activation: activation between layers (name or ``nn.Module`` class).
    """

    def __init__(
        self, in_dim: int, num_classes: int, sizes: Sequence[int], activation: str | type[nn.Module] = "relu"
    ) -> None:
        super().__init__()
        if not sizes:
            raise ValueError("a conditional MLP needs at least an output size")
        self.input = nn.Linear(in_dim, sizes[0])
        self.label = nn.Embedding(num_classes, sizes[0])
        bound = 1.0 / (in_dim + num_classes) ** 0.5  # as nn.Linear on the concatenation
        nn.init.uniform_(self.input.weight, -bound, bound)
        nn.init.uniform_(self.label.weight, -bound, bound)
        rest = mlp(sizes, activation) if len(sizes) > 1 else nn.Identity()
        self.rest = nn.Sequential(activation_class(activation)(), rest) if len(sizes) > 1 else rest

    def forward(self, h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``h``: ``(..., in_dim)``; ``y``: integer labels whose shape broadcasts with ``h.shape[:-1]``."""
        return self.rest(self.input(h) + self.label(y))
