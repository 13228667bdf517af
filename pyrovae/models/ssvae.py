r"""The semi-supervised VAE "M2" of Kingma et al. (2014) as a Pyro model and guide.

Generative model and guide, for each data point :math:`n` in the data plate, with :math:`C` classes:

.. math::

    p(y_n) = \mathrm{Cat}(1/C), \quad p(z_n) = \mathcal{N}(0, I), \quad
    p(x_n | y_n, z_n) = \text{Bernoulli or Normal}(f_\theta(z_n, y_n)),

    q(y_n | x_n) = \mathrm{Cat}(\pi_\phi(x_n)) \;\text{(the classifier)}, \qquad
    q(z_n | x_n, y_n) = \mathcal{N}(\mu_\phi(x_n, y_n), \mathrm{diag}\,\sigma_\phi(x_n, y_n)^2).

For a labelled point the ELBO is :math:`\mathcal{L}(x, y) = \mathbb{E}_{q(z|x,y)}[\log p(x|y,z) + \log p(y)
+ \log p(z) - \log q(z|x,y)]`; for an unlabelled point ``y`` is a latent variable of the guide that
Pyro's ``TraceEnum_ELBO`` sums out exactly (parallel enumeration over the ``C`` classes):

.. math:: \mathcal{U}(x) = \sum_y q(y|x)\, \mathcal{L}(x, y) + \mathcal{H}[q(y|x)].

Labelled points add the **classification term** :math:`\alpha \log q(y_n|x_n)` (Kingma et al. eq. 9), so
that the classifier learns from labels directly and not only through :math:`\mathcal{U}`. It is a
``pyro.factor`` site of the model, so one SVI objective trains everything: maximising
:math:`\sum_{\text{labelled}} [\mathcal{L}(x, y) + \alpha \log q(y|x)] + \sum_{\text{unlabelled}} \mathcal{U}(x)`.
``alpha`` is a weight **per labelled data point** on the scale of ELBOs summed over pixels (Pyro's
SS-VAE example uses 46 with one labelled step per pass over the labels; :func:`pyrovae.fit_semisupervised`
by default takes a labelled step after every unlabelled one, and 5 did best there; its ``"joint"`` schedule,
which counts every point once per epoch, goes with Kingma et al.'s :math:`0.1 N / N_l`).

**Auxiliary variable** (``a_dim > 0``; the ADGM of Maaløe et al. 2016): an auxiliary latent
:math:`a_n` leaves the marginal :math:`p(x, y, z)` unchanged and makes the guide richer. The model gains
:math:`p(a_n | x_n, y_n, z_n) = \mathcal{N}(\mu_\theta(x_n, y_n, z_n), \mathrm{diag}\,\sigma_\theta^2)`, the guide
becomes :math:`q(a_n|x_n)\,q(y_n|a_n, x_n)\,q(z_n|a_n, x_n, y_n)`, all Gaussians but the classifier, whose
marginal :math:`q(y|x) = \mathbb{E}_{q(a|x)}[q(y|a, x)]` is no longer a single softmax (:meth:`SSVAE.predict`
averages ``predict_samples`` draws of ``a``). The label is still summed out exactly given the sampled ``a``,
and the classification term is :math:`\alpha \log q(y|a, x)` at the guide's ``a``.

Labels are **integer class indices** (``torch.long``, shape ``(batch,)``), not one-hot vectors. One call
of :meth:`SSVAE.model` / :meth:`SSVAE.guide` is either fully labelled (``y`` given) or fully unlabelled
(``y=None``); :func:`pyrovae.train.semisupervised.semisupervised_loss` combines a labelled and an unlabelled
minibatch into one loss, and splits mixed batches.

Sites (``prefix="p"`` makes them ``"p/<name>"``):

====================  =============================================================================  ==================
site                  what                                                                           shape
====================  =============================================================================  ==================
``"data"``            data plate, size ``num_data`` (subsampled minibatch)                           dim -1
``"y"``               label: observed, or enumerated in the guide (``C`` values at dim -2)           ``(batch,)``
``"z"``               style latent, ``Normal(0, I).to_event(1)`` / guide Normal                      ``(batch, z_dim)``
``"x"``               observation, ``IndependentBernoulli`` or ``Normal(...).to_event(1)``           ``(batch, x_dim)``
``"a"``               auxiliary latent (``a_dim > 0``): model p(a|x,y,z), guide q(a|x)               ``(batch, a_dim)``
``"classification"``  ``pyro.factor`` :math:`\alpha \log q(y|x)` (model, labelled only) [#a]_        ``(batch,)``
``"classifier"``      ``pyro.module``: :math:`x \mapsto` logits of q(y|x) (guide and model) [#a]_
``"encoder"``         ``pyro.module``: :math:`(x, y) \mapsto` loc, scale of q(z|x,y) (guide) [#a]_
``"decoder"``         ``pyro.module``: :math:`(z, y) \mapsto` parameters of p(x|y,z) (model)
``"aux_encoder"``     ``pyro.module``: :math:`x \mapsto` loc, scale of q(a|x) (guide)
``"aux_decoder"``     ``pyro.module``: :math:`([x, z], y) \mapsto` loc, scale of p(a|x,y,z) (model)
====================  =============================================================================  ==================

.. [#a] With ``a_dim > 0`` the classifier and q(z|·) take :math:`[x, a]` in place of :math:`x`: q(y|a,x), q(z|a,x,y).

Train with ``TraceEnum_ELBO(max_plate_nesting=1)``.

**References**

[1] Semi-Supervised Learning with Deep Generative Models, D. P. Kingma, D. J. Rezende, S. Mohamed and
    M. Welling, NeurIPS 2014.

[2] Auxiliary Deep Generative Models, L. Maaløe, C. K. Sønderby, S. K. Sønderby and O. Winther, ICML 2016.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import torch
import torch.nn.functional as F
from pyro.infer.util import is_validation_enabled
from torch import nn

from pyrovae.data.validation import check_labels, check_shape, parameter_dtype
from pyrovae.models.likelihoods import check_support, observation, positive_scale
from pyrovae.models.nets import ConditionalMLP, Encoder, mlp
from pyrovae.models.plate import data_plate, num_generated
from pyrovae.seeding import seeded

#: the observation models :class:`SSVAE` knows (of :data:`pyrovae.models.likelihoods.LIKELIHOODS`)
LIKELIHOODS = ("bernoulli", "continuous-bernoulli", "normal")
#: default weight of the classification term per labelled point, chosen on MNIST's validation split
#: (M1+M2, 100 labels, 6 epochs of :func:`pyrovae.fit_semisupervised`: validation accuracy 84.3 / 84.7 /
#: 83.1 / 77.9 % for alpha = 1 / 5 / 50 / 500)
DEFAULT_ALPHA = 5.0


class ConditionalEncoder(nn.Module):
    r""":math:`(x, y) \mapsto (\mu, \sigma)` of q(z|x,y), with :math:`\sigma = \mathrm{softplus}(\cdot) + 10^{-4}`."""

    def __init__(
        self, x_dim: int | Sequence[int], num_classes: int, z_dim: int, hidden: Sequence[int], activation
    ) -> None:
        super().__init__()
        self.net = ConditionalMLP(x_dim, num_classes, [*hidden, 2 * z_dim], activation)
        self.z_dim = z_dim

    def forward(
        self, x: torch.Tensor | Sequence[torch.Tensor], y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` one input, or several (:class:`pyrovae.models.nets.ConditionalMLP`)."""
        loc, raw_scale = self.net(x, y).split(self.z_dim, dim=-1)
        return loc, F.softplus(raw_scale) + 1e-4


def concat(x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """``[x, h]`` along the last dimension, the other dimensions broadcast (enumerated or sampled ones)."""
    shape = torch.broadcast_shapes(x.shape[:-1], h.shape[:-1])
    return torch.cat([x.expand(*shape, x.shape[-1]), h.expand(*shape, h.shape[-1])], -1)


class SSVAE(nn.Module):
    """The M2 semi-supervised VAE, or with ``a_dim > 0`` the auxiliary deep generative model (ADGM);
    :meth:`model` and :meth:`guide` are ordinary Pyro callables.

    :param int x_dim: data dimension (784 for MNIST; 50 when modelling the codes of a VAE, "M1+M2").
    :param int num_classes: number of classes ``C``.
    :param int z_dim: dimension of the style latent ``z``.
    :param hidden: hidden layer sizes of the classifier and the encoder; the decoder mirrors them.
    :param activation: activation of the MLPs (name or ``nn.Module`` class).
    :param float alpha: weight of the classification term per labelled point (0 switches it off).
    :param str likelihood: ``"bernoulli"`` for binary data (logits from the decoder),
        ``"continuous-bernoulli"`` for grey levels in [0, 1] (Loaiza-Ganem & Cunningham 2019; logits from the
        decoder) or ``"normal"`` for real-valued data (diagonal Gaussian with a learned, input-dependent scale).
    :param str enumerate: ``"parallel"`` (default) marks the guide's ``y`` site for Pyro's parallel
        enumeration (train with ``TraceEnum_ELBO``); ``None`` samples it instead (score-function
        gradients with ``Trace_ELBO``, much noisier).
    :param str prefix: prepended to every site and module name.
    :param int a_dim: dimension of the auxiliary latent ``a`` (Maaløe et al. 2016); 0 (default) is plain M2.
    :param int predict_samples: draws of ``a`` that :meth:`predict` averages ``q(y|a, x)`` over (``a_dim > 0``).
    :param int seed: seed of the initial weights (as :class:`pyrovae.VAE`'s); ``None`` draws them from torch's
        global generator.
    """

    def __init__(
        self,
        x_dim: int,
        num_classes: int = 10,
        z_dim: int = 50,
        hidden: Sequence[int] = (500,),
        activation: str | type[nn.Module] = "softplus",
        alpha: float = DEFAULT_ALPHA,
        likelihood: str = "bernoulli",
        enumerate: str | None = "parallel",
        prefix: str = "",
        a_dim: int = 0,
        predict_samples: int = 10,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        if int(x_dim) < 1 or int(z_dim) < 1 or int(num_classes) < 2:
            raise ValueError(
                f"need x_dim >= 1, z_dim >= 1 and num_classes >= 2, got {x_dim}, {z_dim} and {num_classes}"
            )
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"unknown likelihood {likelihood!r}: choose one of {LIKELIHOODS}")
        if enumerate not in ("parallel", None):
            raise ValueError(f"enumerate must be 'parallel' or None, got {enumerate!r}")
        if not alpha >= 0:
            raise ValueError(f"alpha must be >= 0, got {alpha}")
        if int(a_dim) < 0 or int(predict_samples) < 1:
            raise ValueError(f"need a_dim >= 0 and predict_samples >= 1, got {a_dim} and {predict_samples}")
        self.x_dim, self.num_classes, self.z_dim = int(x_dim), int(num_classes), int(z_dim)
        self.alpha, self.likelihood, self.enumerate, self.prefix = float(alpha), likelihood, enumerate, prefix
        self.a_dim, self.predict_samples = int(a_dim), int(predict_samples)
        out_dim = self.x_dim * (2 if likelihood == "normal" else 1)
        context_dim = self.x_dim + self.a_dim  # the input of the classifier and of q(z|·): x, or [x, a]
        with seeded(seed):
            self.classifier = mlp([context_dim, *hidden, self.num_classes], activation)
            self.encoder = ConditionalEncoder(context_dim, self.num_classes, self.z_dim, hidden, activation)
            self.decoder = ConditionalMLP(self.z_dim, self.num_classes, [*reversed(hidden), out_dim], activation)
            if self.a_dim:
                self.aux_encoder = Encoder(self.x_dim, self.a_dim, hidden, activation)
                self.aux_decoder = ConditionalEncoder((self.x_dim, self.z_dim), self.num_classes, self.a_dim, hidden,
                                                      activation)  # fmt: skip
        #: constructor arguments, saved in checkpoints (``None`` for an activation class)
        self.config: dict[str, Any] | None = None
        if isinstance(activation, str):
            self.config = {
                "x_dim": self.x_dim, "num_classes": self.num_classes, "z_dim": self.z_dim,
                "hidden": [int(h) for h in hidden], "activation": activation, "alpha": self.alpha,
                "likelihood": likelihood, "enumerate": enumerate, "prefix": prefix, "a_dim": self.a_dim,
                "predict_samples": self.predict_samples,
            }  # fmt: skip

    def site(self, name: str) -> str:
        """The full name of site ``name`` with this model's prefix."""
        return f"{self.prefix}/{name}" if self.prefix else name

    def _device(self) -> torch.device:
        return next(self.decoder.parameters()).device

    def _check(self, x: torch.Tensor, y: torch.Tensor | None) -> None:
        check_shape(x, self.x_dim, dtype=parameter_dtype(self))
        if y is not None:
            check_labels(y, len(x), self.num_classes)
        if is_validation_enabled():
            check_support(self.likelihood, x)

    def observation(self, z: torch.Tensor, y: torch.Tensor) -> dist.TorchDistribution:
        """The distribution p(x | y, z) (batch shape ``z.shape[:-1]`` broadcast with ``y``, event ``(x_dim,)``)."""
        out = self.decoder(z, y)
        if self.likelihood != "normal":
            return observation(self.likelihood, out)
        loc, raw_scale = out.split(self.x_dim, dim=-1)  # identity link; scale softplus(raw) + MIN_SCALE
        return observation("normal", loc, positive_scale(raw_scale))

    def model(
        self, x: torch.Tensor | None = None, y: torch.Tensor | None = None, num_data: int | None = None
    ) -> torch.Tensor:
        r"""Generative model :math:`p(y)\,p(z)\,p(x|y,z)` (times :math:`p(a|x,y,z)` with ``a_dim > 0``), plus the
        classification factor when ``y`` is given.

        :param torch.Tensor x: data ``(batch, x_dim)``, or ``None`` to generate.
        :param torch.Tensor y: integer labels ``(batch,)`` (observed), or ``None`` (latent). To generate
            digits of chosen classes, pass ``y`` with ``x=None``.
        :param int num_data: size of the full (labelled or unlabelled) set ``x`` is a minibatch of; with
            ``x=None`` and ``y=None``, the number of points to generate (default 1).
        :returns: ``x`` (observed or sampled).
        """
        pyro.module(self.site("decoder"), self.decoder)
        labelled_data = x is not None and y is not None
        if x is not None:
            self._check(x, y)
            batch_size, device = x.shape[0], x.device
        elif y is not None:
            check_labels(y, len(y), self.num_classes)
            batch_size, device, num_data = len(y), y.device, None
        else:
            batch_size, device, num_data = num_generated(num_data), self._device(), None
        with data_plate(self.site("data"), batch_size, num_data, device):
            prior = dist.Normal(torch.zeros(batch_size, self.z_dim, device=device), 1.0).to_event(1)
            z = pyro.sample(self.site("z"), prior)
            uniform = torch.zeros(batch_size, self.num_classes, device=device)
            label = pyro.sample(self.site("y"), dist.Categorical(logits=uniform), obs=y)
            x = pyro.sample(self.site("x"), self.observation(z, label), obs=x)
            if self.a_dim:
                pyro.module(self.site("aux_decoder"), self.aux_decoder)
                loc, scale = self.aux_decoder((x, z), label)  # x mapped once, not once per enumerated label
                a = pyro.sample(self.site("a"), dist.Normal(loc, scale).to_event(1))
            if labelled_data and self.alpha > 0:
                pyro.module(self.site("classifier"), self.classifier)
                log_q = dist.Categorical(logits=self.classifier(concat(x, a) if self.a_dim else x)).log_prob(y)
                pyro.factor(self.site("classification"), self.alpha * log_q)
            return x

    def guide(self, x: torch.Tensor | None = None, y: torch.Tensor | None = None, num_data: int | None = None) -> None:
        r"""Guide :math:`q(y|x)\,q(z|x,y)`; with ``y`` given only :math:`q(z|x,y)`. With ``a_dim > 0``,
        :math:`q(a|x)\,q(y|a,x)\,q(z|a,x,y)`.

        :param torch.Tensor x: data ``(batch, x_dim)``; the guide needs it.
        :param torch.Tensor y: integer labels ``(batch,)`` or ``None``; when ``None`` the ``"y"`` site is
            marked for parallel enumeration (unless the model was built with ``enumerate=None``).
        :param int num_data: as in :meth:`model`.
        """
        if x is None:
            raise ValueError("the guide q(y, z|x) needs data x; to generate, run the model alone")
        pyro.module(self.site("classifier"), self.classifier)
        pyro.module(self.site("encoder"), self.encoder)
        self._check(x, y)
        with data_plate(self.site("data"), x.shape[0], num_data, x.device):
            context = x
            if self.a_dim:
                pyro.module(self.site("aux_encoder"), self.aux_encoder)
                context = concat(x, pyro.sample(self.site("a"), dist.Normal(*self.aux_encoder(x)).to_event(1)))
            if y is None:
                infer = {"enumerate": self.enumerate} if self.enumerate else {}
                y = pyro.sample(self.site("y"), dist.Categorical(logits=self.classifier(context)), infer=infer)
            loc, scale = self.encoder(context, y)
            pyro.sample(self.site("z"), dist.Normal(loc, scale).to_event(1))

    def generative_model(
        self, x: torch.Tensor | None = None, y: torch.Tensor | None = None, num_data: int | None = None
    ) -> torch.Tensor:
        r""":meth:`model` without the ``"classification"`` factor: exactly :math:`p(y)\,p(z)\,p(x|y,z)` (times
        :math:`p(a|x,y,z)`, which integrates to one, with ``a_dim > 0``).
        The classification term belongs to the training objective, not to the density, so estimate
        :math:`\log p(x, y)` with this model, e.g.
        ``log_marginal_likelihood(ssvae.generative_model, ssvae.guide, (x, y))``. (Unlabelled calls of
        :meth:`model` have no factor: ``log_marginal_likelihood(ssvae.model, ssvae.guide, x)`` is
        :math:`\log p(x) = \log \sum_y p(x, y)`.)"""
        return poutine.block(self.model, hide=[self.site("classification")])(x, y, num_data)

    def class_log_probs(self, x: torch.Tensor, num_samples: int = 1) -> torch.Tensor:
        r"""Differentiable log class probabilities :math:`\log q(y|x)` of the classifier, ``(batch, num_classes)``;
        with ``a_dim > 0`` the Monte Carlo estimate :math:`\log \frac1S \sum_s q(y|a_s, x)` from ``S = num_samples``
        reparameterized draws :math:`a_s \sim q(a|x)`. ``x`` is not checked (see :meth:`log_predict`)."""
        if not self.a_dim:
            return self.classifier(x).log_softmax(-1)
        a = dist.Normal(*self.aux_encoder(x)).rsample((num_samples,))
        return self.classifier(concat(x, a)).log_softmax(-1).logsumexp(0) - math.log(num_samples)

    @torch.no_grad()
    def log_predict(self, x: torch.Tensor) -> torch.Tensor:
        r"""Log class probabilities :math:`\log q(y|x)` of the classifier, ``(batch, num_classes)``, ``x`` checked;
        with ``a_dim > 0`` averaged over ``predict_samples`` draws of ``a`` (:meth:`class_log_probs`)."""
        self._check(x, None)
        return self.class_log_probs(x, self.predict_samples)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Class probabilities q(y|x) of the classifier, ``(batch, num_classes)``."""
        return self.log_predict(x).exp()

    @torch.no_grad()
    def style(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """The posterior mean of the style ``z`` given ``x`` and its label (the classifier's guess when
        ``y`` is ``None``), ``(batch, z_dim)``; with ``a_dim > 0``, given the mean of q(a|x)."""
        self._check(x, y)
        if y is None:
            y = self.log_predict(x).argmax(-1)
        context = concat(x, self.aux_encoder(x)[0]) if self.a_dim else x  # a at the mean of q(a|x)
        return self.encoder(context, y)[0]

    @torch.no_grad()
    def generate(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Mean of p(x | y, z) for styles ``z`` ``(batch, z_dim)`` and labels ``y`` broadcasting with
        ``z.shape[:-1]`` (pixel probabilities for the Bernoulli likelihood)."""
        return self.observation(z, y).mean

    @torch.no_grad()
    def analogies(self, x: torch.Tensor) -> torch.Tensor:
        """Kingma et al. (2014) Fig. 1: keep the style of each row of ``x`` and sweep the label over all
        classes. Returns ``(batch, num_classes, x_dim)`` means; ``[:, c]`` is every style drawn as class ``c``.
        """
        z = self.style(x)
        labels = torch.arange(self.num_classes, device=x.device)
        return self.generate(z[:, None, :], labels)
