r"""Observation models :math:`p(x | z)`: how the decoder's output becomes a distribution over the data.

The decoder maps a code :math:`z` to one vector :math:`f = f_\theta(z)` of the data's size; the likelihood
reads it as follows (all are products over the data coordinates :math:`d`, one event of size ``x_dim``):

==========================  ==================================================  =======================
name                        :math:`p(x_d | z)`                                  support of :math:`x_d`
==========================  ==================================================  =======================
``"bernoulli"``             :math:`\mathrm{Bernoulli}(\sigma(f_d))`             :math:`\{0, 1\}`
``"continuous-bernoulli"``  :math:`\mathcal{CB}(\lambda_d = \sigma(f_d))`       :math:`[0, 1]`
``"normal"``                :math:`\mathcal{N}(\mu_d = f_d, \sigma_d^2)`        :math:`\mathbb{R}`
==========================  ==================================================  =======================

**Bernoulli**, for binary (binarized) images: :math:`\log p(x|f) = \sum_d x_d f_d - \mathrm{softplus}(f_d)`,
computed by the fused :class:`pyrovae.models.distributions.IndependentBernoulli`.

**Continuous Bernoulli** (Loaiza-Ganem & Cunningham 2019), for grey levels in :math:`[0, 1]`: a Bernoulli
likelihood applied to grey data, :math:`\lambda^x (1-\lambda)^{1-x}`, is *not* a density on :math:`[0, 1]`;
the continuous Bernoulli is that expression normalised,

.. math::

    p(x | \lambda) = C(\lambda)\, \lambda^x (1 - \lambda)^{1 - x}, \qquad
    C(\lambda) = \begin{cases} \dfrac{2 \tanh^{-1}(1 - 2\lambda)}{1 - 2\lambda} & \lambda \ne 1/2, \\
    2 & \lambda = 1/2, \end{cases}

so that :math:`\log p(x|f) = \sum_d x_d f_d - \mathrm{softplus}(f_d) + \log C(\sigma(f_d))`. Its mean is
**not** :math:`\lambda`: :math:`\mathbb{E}[x] = \lambda / (2\lambda - 1) + 1 / (2 \tanh^{-1}(1 - 2\lambda))`
(:math:`1/2` at :math:`\lambda = 1/2`), which is what ``.mean`` returns and what pictures show.

**Normal**, for grey levels or any real-valued data: a diagonal Gaussian,

.. math::

    \log p(x | \mu, \sigma) = \sum_d -\frac{(x_d - \mu_d)^2}{2 \sigma_d^2} - \log \sigma_d - \frac{1}{2}\log 2\pi,

with the **identity link** :math:`\mu = f_\theta(z)` (Kingma & Welling 2014, appendix C.2). The identity, not
a sigmoid into :math:`[0, 1]`: the support of a Gaussian is :math:`\mathbb{R}`, so the likelihood serves any
real data (standardised features, the codes of another VAE) and not only pixels; the Gaussian's gradient
:math:`(x - \mu)/\sigma^2` reaches the decoder undamped, where a sigmoid would multiply it by
:math:`\sigma'(f)`, which vanishes at the 0 and 1 that most pixels of MNIST are; and a mean that strays
outside :math:`[0, 1]` only costs likelihood (pictures clip it). The scale :math:`\sigma` is either a fixed
number or learned; a learned scale is :math:`\sigma = \mathrm{softplus}(\rho) + \sigma_{\min}`
(:func:`positive_scale`, :class:`PixelScale`), whose floor :data:`MIN_SCALE` keeps the density bounded on
pixels that never change (the always-black corners of MNIST would otherwise drive :math:`\sigma \to 0` and
the ELBO to infinity).

Continuous likelihoods give densities, not probabilities: their ELBOs and log-likelihoods are in nats of a
density on :math:`[0, 1]^D` (or :math:`\mathbb{R}^D`), may be positive, and cannot be compared with a
Bernoulli model's numbers on binarized data.

**References**

[1] The continuous Bernoulli: fixing a pervasive error in variational autoencoders, G. Loaiza-Ganem and
    J. P. Cunningham, NeurIPS 2019.

[2] Auto-Encoding Variational Bayes, D. P. Kingma and M. Welling, ICLR 2014.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import pyro.distributions as dist
import torch
import torch.nn.functional as F
from torch import nn

from pyrovae.models.distributions import IndependentBernoulli

if TYPE_CHECKING:
    from pyrovae.data.datasets import Dataset

#: the observation models, by name
LIKELIHOODS = ("bernoulli", "continuous-bernoulli", "normal")
#: the floor of a learned Gaussian scale (keeps the density bounded)
MIN_SCALE = 1e-3
#: a learned per-pixel scale starts here
INIT_SCALE = 1.0


def check_likelihood(name: str) -> str:
    """Return ``name`` if it is one of :data:`LIKELIHOODS`.

    :raises ValueError: listing the choices.
    """
    if name not in LIKELIHOODS:
        raise ValueError(f"unknown likelihood {name!r}: choose one of {', '.join(repr(n) for n in LIKELIHOODS)}")
    return name


def positive_scale(raw: torch.Tensor) -> torch.Tensor:
    r"""An unconstrained ``raw`` tensor as a Gaussian scale, :math:`\mathrm{softplus}(\rho) + \sigma_{\min}`."""
    return F.softplus(raw) + MIN_SCALE


class PixelScale(nn.Module):
    r"""A learned scale :math:`\sigma_d = \mathrm{softplus}(\rho_d) + \sigma_{\min}` for each data coordinate,
    shared by all data points; :math:`\rho` is the module's one parameter, ``raw``, initialised so that
    :math:`\sigma_d =` ``init``.

    :param int dim: number of data coordinates (``x_dim``).
    :param float init: initial scale, above :data:`MIN_SCALE`.
    """

    def __init__(self, dim: int, init: float = INIT_SCALE) -> None:
        super().__init__()
        if not init > MIN_SCALE:
            raise ValueError(f"the initial scale must exceed MIN_SCALE = {MIN_SCALE}, got {init}")
        raw = math.log(math.expm1(init - MIN_SCALE))  # inverse softplus
        self.raw = nn.Parameter(torch.full((int(dim),), raw))

    def forward(self) -> torch.Tensor:
        """The scales ``(dim,)``."""
        return positive_scale(self.raw)


def observation(name: str, output: torch.Tensor, scale: torch.Tensor | float | None = None) -> dist.TorchDistribution:
    """The distribution :math:`p(x | z)` named ``name`` given the decoder's ``output`` (see the module docstring).

    :param str name: one of :data:`LIKELIHOODS`.
    :param torch.Tensor output: decoder output ``(..., x_dim)``: logits for ``"bernoulli"`` and
        ``"continuous-bernoulli"``, the mean for ``"normal"``.
    :param scale: the Gaussian scale, a positive number or a tensor broadcasting with ``output``
        (``"normal"`` only; required there).
    :returns: a distribution with batch shape ``output.shape[:-1]`` and event shape ``(x_dim,)``.
    :raises ValueError: for an unknown name, or a scale given to (or missing from) the wrong likelihood.
    """
    check_likelihood(name)
    if (scale is not None) != (name == "normal"):
        raise ValueError(
            f"the {name} likelihood {'needs a' if name == 'normal' else 'takes no'} scale"
            + ("" if name == "normal" else f", got scale={scale}")
        )
    if name == "bernoulli":
        return IndependentBernoulli(output)
    if name == "continuous-bernoulli":
        return dist.ContinuousBernoulli(logits=output).to_event(1)
    return dist.Normal(output, scale).to_event(1)


def check_support(name: str, x: torch.Tensor, what: str = "x") -> None:
    """Check that every value of ``x`` lies in the support of the likelihood ``name``: :math:`\\{0, 1\\}` for
    ``"bernoulli"``, :math:`[0, 1]` for ``"continuous-bernoulli"``, finite for all (so also for ``"normal"``).

    :raises ValueError: saying what is wrong, with an example value, and how to fix it.
    """
    check_likelihood(name)
    # one pass when the data are fine (NaN fails every comparison, so the support checks catch it too)
    if name == "bernoulli":
        inside = (x == 0) | (x == 1)
    elif name == "continuous-bernoulli":
        inside = (x >= 0) & (x <= 1)
    else:
        inside = torch.isfinite(x)
    if bool(inside.all()):
        return
    finite = torch.isfinite(x)
    if not finite.all():
        bad = int((~finite).reshape(len(x), -1).any(-1).sum())
        raise ValueError(f"{what} contains NaN or inf in {bad} row(s): clean the data before using it")
    outside = ~inside
    if name == "bernoulli":
        raise ValueError(
            f"{what} has {int(outside.sum())} value(s) outside {{0, 1}} (e.g. {x[outside][0].item():g}), "
            "but the Bernoulli likelihood needs binary data: binarize it (pyrovae.data.binarize, or "
            "load_dataset(..., binarize='dynamic'/'static')), or, for grey levels, use "
            "likelihood='continuous-bernoulli' or 'normal'"
        )
    raise ValueError(
        f"{what} has {int(outside.sum())} value(s) outside [0, 1] (e.g. {x[outside][0].item():g}), "
        "but the continuous Bernoulli likelihood needs grey levels in [0, 1]: rescale the data to "
        "[0, 1], or use likelihood='normal' for unbounded real values"
    )


#: rows read at a time by :func:`likelihood_for` (bounded memory for memory-mapped data)
SCAN_ROWS = 65536


def likelihood_for(x: torch.Tensor) -> tuple[str, str]:
    """The likelihood that fits the values of ``x`` (``(N, D)``, finite), and why: ``"bernoulli"`` when every value is
    0 or 1, ``"continuous-bernoulli"`` when they lie in [0, 1], else ``"normal"`` (real values, best standardized:
    :mod:`pyrovae.data.standardize`). The rows are read a chunk at a time.

    :returns: ``(name, reason)``, the reason a phrase such as ``"every value is 0 or 1"``.
    """
    binary, low, high = True, math.inf, -math.inf
    for start in range(0, len(x), SCAN_ROWS):
        chunk = torch.as_tensor(x[start : start + SCAN_ROWS])
        if not chunk.numel():
            continue
        low, high = min(low, chunk.min().item()), max(high, chunk.max().item())
        binary = binary and bool(((chunk == 0) | (chunk == 1)).all())
    if binary and low <= high:
        return "bernoulli", "every value is 0 or 1"
    if 0 <= low and high <= 1:
        return "continuous-bernoulli", f"the values lie in [0, 1] ({low:g} .. {high:g}), not only 0 and 1"
    return "normal", f"the values are real numbers outside [0, 1] ({low:g} .. {high:g})"


def choose_likelihood(data: Dataset) -> tuple[str, str]:
    """The likelihood that fits the values of the dataset ``data`` as they are (in the data's own units, before any
    standardization), and why: ``"bernoulli"`` for binarized data, else that of :func:`likelihood_for` for the
    training split, widened to the support the other splits need (a test split with values outside [0, 1] makes it
    ``"normal"``).

    :returns: ``(name, reason)``, the reason a phrase such as ``"every value is 0 or 1"``.
    """
    if data.binarize != "none":
        return "bernoulli", f"the data are binarized ({data.binarize})"
    xs = {key: getattr(data, key).x for key in ("train", "valid", "test")}
    if data.standardization is not None:
        xs = {key: data.standardization.inverse(x) for key, x in xs.items()}
    name, reason = likelihood_for(xs["train"])
    for key in ("valid", "test"):
        if len(xs[key]):
            other, why = likelihood_for(xs[key])
            if LIKELIHOODS.index(other) > LIKELIHOODS.index(name):
                name, reason = other, f"in the {key} split {why}"
    return name, reason
