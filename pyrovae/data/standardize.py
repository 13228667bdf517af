r"""Standardization of real-valued data, and what it does to densities.

A model of real-valued features trains best on standardized columns, :math:`s(x) = (x - \mu) / \sigma` with the
training split's mean :math:`\mu` and standard deviation :math:`\sigma` per column. A density of the standardized
data is not a density of the data: by the change of variables,

.. math:: \log p_X(x) = \log p_S(s(x)) + \log |\det \partial s / \partial x|
    = \log p_S(s(x)) - \sum_d \log \sigma_d,

so every log-likelihood or ELBO computed on standardized data is reported in the data's own units by adding
:attr:`Standardization.log_abs_det_jacobian` (a constant per point). Leaving it out is a silent error of
:math:`\sum_d \log \sigma_d` nats per point: two models of the same data standardized differently could not be
compared.

A column that is constant on the training split has :math:`\sigma_d = 0`; it is centred but not scaled
(:math:`\sigma_d` is taken as 1), so that no value becomes infinite, and a warning says to drop it.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import torch

#: rows read at a time when the statistics are computed (bounded memory for memory-mapped data)
CHUNK_ROWS = 65536


@dataclass(frozen=True)
class Standardization:
    r"""The map :math:`s(x) = (x - \mu) / \sigma`, column by column.

    :ivar torch.Tensor mean: :math:`\mu`, shape ``(D,)``.
    :ivar torch.Tensor std: :math:`\sigma`, shape ``(D,)``, positive (1 for a constant column).
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __post_init__(self) -> None:
        if self.mean.dim() != 1 or self.mean.shape != self.std.shape:
            raise ValueError(
                f"mean and std must be (D,) tensors of one shape, got {tuple(self.mean.shape)} and "
                f"{tuple(self.std.shape)}"
            )
        if not (torch.isfinite(self.mean).all() and torch.isfinite(self.std).all() and (self.std > 0).all()):
            raise ValueError("a standardization needs a finite mean and a finite, positive std in every column")

    @classmethod
    def fit(cls, x: torch.Tensor) -> Standardization:
        """The standardization of the rows of ``x`` (``(N, D)``, N >= 1): their mean and (population) standard
        deviation per column, computed in float64 a chunk of rows at a time."""
        if x.dim() != 2 or len(x) == 0:
            raise ValueError(f"standardize needs a non-empty (N, D) tensor, got shape {tuple(x.shape)}")
        total = torch.zeros(x.shape[1], dtype=torch.float64)
        squares = torch.zeros_like(total)
        for start in range(0, len(x), CHUNK_ROWS):
            chunk = torch.as_tensor(x[start : start + CHUNK_ROWS]).to("cpu", torch.float64)
            total += chunk.sum(0)
            squares += chunk.square().sum(0)
        mean = total / len(x)
        std = (squares / len(x) - mean.square()).clamp_min(0).sqrt()
        constant = ~(std > 1e-12 * mean.abs().clamp_min(1))
        if constant.any():
            warnings.warn(
                f"{int(constant.sum())} column(s) are constant on the training rows (e.g. column "
                f"{int(constant.nonzero()[0])}): a density of such a column is a spike, which a Gaussian likelihood "
                "models only down to its smallest scale, so log p(x) grows with their number; drop them",
                stacklevel=2,
            )
        std = torch.where(constant, torch.ones_like(std), std)
        return cls(mean.float(), std.float())

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        r""":math:`s(x) = (x - \mu) / \sigma` of the rows ``x`` (``(..., D)``)."""
        return (x - self.mean.to(x.device, x.dtype)) / self.std.to(x.device, x.dtype)

    def inverse(self, s: torch.Tensor) -> torch.Tensor:
        r""":math:`x = \mu + \sigma s`, back in the data's units."""
        return self.mean.to(s.device, s.dtype) + self.std.to(s.device, s.dtype) * s

    @property
    def log_abs_det_jacobian(self) -> float:
        r""":math:`-\sum_d \log \sigma_d`: add it to a log-density of standardized rows to get the log-density of
        the rows in the data's units."""
        return -float(self.std.double().log().sum())

    def state(self) -> dict[str, torch.Tensor]:
        """What a checkpoint stores (tensors only: loads with ``weights_only=True``)."""
        return {"mean": self.mean.detach().cpu(), "std": self.std.detach().cpu()}

    @classmethod
    def from_state(cls, state: Any) -> Standardization:
        """The standardization stored by :meth:`state`.

        :raises ValueError: if ``state`` is not such a dict."""
        if not isinstance(state, dict) or not all(isinstance(state.get(k), torch.Tensor) for k in ("mean", "std")):
            raise ValueError("a stored standardization must be a dict of the tensors 'mean' and 'std'")
        return cls(state["mean"].float(), state["std"].float())
