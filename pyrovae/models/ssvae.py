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

The ADGM (:class:`pyrovae.ADGM`, :mod:`pyrovae.models.adgm`) is this model with an auxiliary latent :math:`a`.

Labels are **integer class indices** (``torch.long``, shape ``(batch,)``), not one-hot vectors, and **-1 marks a
missing label** (as in scikit-learn's semi-supervised estimators). One call of :meth:`SSVAE.model` /
:meth:`SSVAE.guide` may be

* fully labelled (``y`` given, no -1): ``"y"`` is an observed site of the model and absent from the guide;
* fully unlabelled (``y=None``): ``"y"`` is a latent site of the guide, drawn from :math:`q(y|x)` and marked for
  enumeration;
* **partially labelled** (some -1): ``"y"`` is a latent site on every row, and the guide draws it from
  :math:`q(y|x)` on the unlabelled rows and from a point mass on the label on the labelled ones (log-probability 0
  at the label, :math:`-\infty` elsewhere). Enumerating it then gives exactly :math:`\mathcal{L}(x, y)` on a
  labelled row (``TraceEnum_ELBO`` drops the terms of probability 0) and :math:`\mathcal{U}(x)` on an unlabelled
  one, and the ``"classification"`` factor is 0 on the unlabelled rows: the loss of the call, and its gradient,
  is the sum of those of a call on its labelled rows and a call on its unlabelled rows (tested). The labelled rows
  then cost the decoder ``C`` passes each, as the unlabelled ones do; a fully labelled call costs one.

The site names are the same in the three cases (Pyro's own ``obs_mask`` would split ``"y"`` into
``"y_observed"`` and ``"y_unobserved"``). All the rows of a call are scaled alike, by ``num_data / batch``;
:func:`pyrovae.train.semisupervised.semisupervised_loss` adds a labelled and an unlabelled minibatch each scaled
to its own set.

Sites (``prefix="p"`` makes them ``"p/<name>"``):

====================  =============================================================================  ==================
site                  what                                                                           shape
====================  =============================================================================  ==================
``"data"``            data plate, size ``num_data`` (subsampled minibatch)                           dim -1
``"y"``               label: observed, or latent, enumerated in the guide (``C`` values at dim -2)   ``(batch,)``
``"z"``               style latent, ``Normal(0, I).to_event(1)`` / guide Normal                      ``(batch, z_dim)``
``"x"``               observation, ``IndependentBernoulli`` or ``Normal(...).to_event(1)``           ``(batch, x_dim)``
``"classification"``  ``pyro.factor`` :math:`\alpha \log q(y|x)` (model, ``y`` given; 0 at -1)       ``(batch,)``
``"classifier"``      ``pyro.module``: :math:`x \mapsto` logits of q(y|x) (guide and model)
``"encoder"``         ``pyro.module``: :math:`(x, y) \mapsto` loc, scale of q(z|x,y) (guide)
``"decoder"``         ``pyro.module``: :math:`(z, y) \mapsto` parameters of p(x|y,z) (model)
====================  =============================================================================  ==================

Train with ``TraceEnum_ELBO(max_plate_nesting=1)``. The guide's ``"y"`` is enumerated in parallel by default;
``SSVAE(..., enumerate="sequential")`` enumerates it one class at a time (``C`` runs of the model and guide, less
memory), and with ``enumerate=None`` it is sampled, unless ``pyro.infer.config_enumerate(ssvae.guide, ...)`` marks
it: all give the same ``TraceEnum_ELBO`` loss.

**References**

[1] Semi-Supervised Learning with Deep Generative Models, D. P. Kingma, D. J. Rezende, S. Mohamed and
    M. Welling, NeurIPS 2014.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import torch
import torch.nn.functional as F
from torch import nn

from pyrovae.data.validation import check_labels
from pyrovae.models.base import ObservedModel, standard_normal
from pyrovae.models.nets import ConditionalMLP, mlp
from pyrovae.seeding import seeded

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

    def forward(self, x: torch.Tensor | Sequence[torch.Tensor], y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` one input, or several (:class:`pyrovae.models.nets.ConditionalMLP`)."""
        loc, raw_scale = self.net(x, y).split(self.z_dim, dim=-1)
        return loc, F.softplus(raw_scale) + 1e-4


class SSVAE(ObservedModel):
    """The M2 semi-supervised VAE; :meth:`model` and :meth:`guide` are ordinary Pyro callables.

    A variant with more latents in the guide (:class:`pyrovae.ADGM`) overrides the hooks where they enter: the
    input of the classifier and of q(z|·) (``_context_dim``, ``_guide_context``, ``_model_context``,
    ``_mean_context``) and the classifier's marginal (:meth:`class_log_probs`).

    :param int x_dim: data dimension (784 for MNIST; 50 when modelling the codes of a VAE, "M1+M2").
    :param int num_classes: number of classes ``C``.
    :param int z_dim: dimension of the style latent ``z``.
    :param hidden: hidden layer sizes of the classifier and the encoder; the decoder mirrors them.
    :param activation: activation of the MLPs (name or ``nn.Module`` class).
    :param float alpha: weight of the classification term per labelled point (0 switches it off).
    :param str likelihood: ``"bernoulli"`` for binary data (logits from the decoder),
        ``"continuous-bernoulli"`` for grey levels in [0, 1] (Loaiza-Ganem & Cunningham 2019; logits from the
        decoder) or ``"normal"`` for real-valued data (diagonal Gaussian with a learned, input-dependent scale:
        the decoder gives the mean and the scale).
    :param str enumerate: ``"parallel"`` (default) marks the guide's ``y`` site for Pyro's parallel
        enumeration (train with ``TraceEnum_ELBO``), ``"sequential"`` for sequential enumeration (one run per
        class); ``None`` samples it instead (score-function gradients with ``Trace_ELBO``, much noisier), or leaves
        the choice to ``pyro.infer.config_enumerate(ssvae.guide, "parallel" or "sequential")``.
    :param str prefix: prepended to every site and module name.
    :param int a_dim: must be 0: the auxiliary latent ``a`` of Maaløe et al. (2016) is the
        :class:`pyrovae.ADGM`'s (``ADGM(..., a_dim=N)``, or
        ``pyrovae.models.registry.model_from_config({"model": "ssvae", "a_dim": N, ...})``, which picks the class).
    :param int seed: seed of the initial weights (as :class:`pyrovae.VAE`'s); ``None`` draws them from torch's
        global generator.
    :raises ValueError: for ``a_dim > 0``, pointing to :class:`pyrovae.ADGM`.
    """

    kind = "ssvae"
    #: draws that :meth:`log_predict` averages the classifier over: M2's q(y|x) is one softmax, exact
    predict_samples = 1

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
        seed: int | None = None,
    ) -> None:
        if a_dim:
            raise ValueError(
                f"a_dim={a_dim}: the auxiliary latent a is the ADGM's (Maaløe et al. 2016): build "
                f"pyrovae.ADGM(..., a_dim={a_dim}), the SSVAE with a, or model_from_config({{'model': 'ssvae', "
                f"'a_dim': {a_dim}, ...}}) of pyrovae.models.registry, which picks the class"
            )
        super().__init__(x_dim, prefix, likelihood)
        if int(x_dim) < 1 or int(z_dim) < 1 or int(num_classes) < 2:
            raise ValueError(
                f"need x_dim >= 1, z_dim >= 1 and num_classes >= 2, got {x_dim}, {z_dim} and {num_classes}"
            )
        if enumerate not in ("parallel", "sequential", None):
            raise ValueError(f"enumerate must be 'parallel', 'sequential' or None, got {enumerate!r}")
        if not alpha >= 0:
            raise ValueError(f"alpha must be >= 0, got {alpha}")
        self.num_classes, self.z_dim = int(num_classes), int(z_dim)
        self.alpha, self.enumerate = float(alpha), enumerate
        with seeded(seed):
            self._build_nets(hidden, activation)
        if isinstance(activation, str):
            self.config = {
                "model": self.kind, "x_dim": self.x_dim, "num_classes": self.num_classes, "z_dim": self.z_dim,
                "hidden": [int(h) for h in hidden], "activation": activation, "alpha": self.alpha,
                "likelihood": likelihood, "enumerate": enumerate, "prefix": prefix,
            }  # fmt: skip

    def _build_nets(self, hidden: Sequence[int], activation: str | type[nn.Module]) -> None:
        """The classifier q(y|·), the encoder q(z|·, y) and the decoder p(x|y, z), in this order (the order of their
        initial weights); the first two take an input of ``_context_dim``."""
        context_dim = self._context_dim()
        self.classifier = mlp([context_dim, *hidden, self.num_classes], activation)
        self.encoder = ConditionalEncoder(context_dim, self.num_classes, self.z_dim, hidden, activation)
        self.decoder = ConditionalMLP(self.z_dim, self.num_classes, [*reversed(hidden), self.output_dim], activation)

    def _context_dim(self) -> int:
        """The size of the input of the classifier and of q(z|·): ``x_dim``."""
        return self.x_dim

    def _guide_context(self, x: torch.Tensor) -> torch.Tensor:
        """The input of the classifier and of q(z|·) in the guide, inside the data plate: ``x``."""
        return x

    def _model_context(self, x: torch.Tensor, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The input of the classifier in the model's classification term, inside the data plate after ``"x"``:
        ``x``."""
        return x

    def _mean_context(self, x: torch.Tensor) -> torch.Tensor:
        """The input of q(z|·) for :meth:`style`: ``x``."""
        return x

    def _check(self, x: torch.Tensor, y: torch.Tensor | None = None) -> None:
        """The checks of :class:`~pyrovae.models.base.ObservedModel`, and of the labels ``y`` (-1 where missing) if
        given."""
        super()._check(x)
        if y is not None:
            check_labels(y, len(x), self.num_classes, missing=True)

    def observation(self, z: torch.Tensor, y: torch.Tensor) -> dist.TorchDistribution:
        """The distribution p(x | y, z) (batch shape ``z.shape[:-1]`` broadcast with ``y``, event ``(x_dim,)``)."""
        return self._observe(self.decoder(z, y))

    def model(
        self,
        x: torch.Tensor | None = None,
        y: torch.Tensor | None = None,
        num_data: int | None = None,
        *,
        subsample: torch.Tensor | None = None,
        plate: str | None = None,
    ) -> torch.Tensor:
        r"""Generative model :math:`p(y)\,p(z)\,p(x|y,z)`, plus the classification factor when ``y`` is given.

        :param torch.Tensor x: data ``(batch, x_dim)``, or ``None`` to generate.
        :param torch.Tensor y: integer labels ``(batch,)`` (observed), -1 where a label is missing (a partially
            labelled call, see the module docstring), or ``None`` (latent). To generate digits of chosen classes,
            pass ``y`` without -1 and with ``x=None``.
        :param int num_data: size of the full (labelled or unlabelled) set ``x`` is a minibatch of; with
            ``x=None`` and ``y=None``, the number of points to generate (default 1).
        :param torch.Tensor subsample: the data plate's indices, as in :meth:`pyrovae.VAE.model`.
        :param str plate: a caller's plate to use, as in :meth:`pyrovae.VAE.model`.
        :returns: ``x`` (observed or sampled).
        """
        self.register("decoder")
        labelled_data = x is not None and y is not None
        if x is None and y is not None:  # generate points of the classes y
            num_data = len(y)
        data, batch_size, device = self._data_plate(x, num_data, subsample, plate)
        if y is not None:
            check_labels(y, batch_size, self.num_classes, missing=True)
        partially_labelled = y is not None and bool((y < 0).any())
        if partially_labelled and x is None:
            raise ValueError(
                "y has missing labels (-1) but there is no data x: to generate points of chosen classes give every "
                "label, or y=None to draw the labels from p(y)"
            )
        with data:
            z = pyro.sample(self.site("z"), standard_normal(batch_size, self.z_dim, device))
            uniform = torch.zeros(batch_size, self.num_classes, device=device)
            # partially labelled: y is latent on every row, the guide's point masses stand in for the given labels
            label = pyro.sample(self.site("y"), dist.Categorical(logits=uniform), obs=None if partially_labelled else y)
            x = pyro.sample(self.site("x"), self.observation(z, label), obs=x)
            context = self._model_context(x, z, label)
            if labelled_data and self.alpha > 0:
                self.register("classifier")
                log_q = dist.Categorical(logits=self.classifier(context)).log_prob(y.clamp(min=0))
                pyro.factor(self.site("classification"), self.alpha * torch.where(y >= 0, log_q, 0.0))
            return x

    def guide(
        self,
        x: torch.Tensor | None = None,
        y: torch.Tensor | None = None,
        num_data: int | None = None,
        *,
        subsample: torch.Tensor | None = None,
        plate: str | None = None,
    ) -> dict[str, torch.Tensor]:
        r"""Guide :math:`q(y|x)\,q(z|x,y)`; with ``y`` given only :math:`q(z|x,y)`.

        :param torch.Tensor x: data ``(batch, x_dim)``; the guide needs it.
        :param torch.Tensor y: integer labels ``(batch,)``, -1 where missing, or ``None``; when ``None`` or
            partially labelled, the ``"y"`` site is drawn from :math:`q(y|x)` (a point mass on each given label)
            and marked for enumeration as the SSVAE was built (``enumerate``).
        :param int num_data: as in :meth:`model`.
        :param torch.Tensor subsample: as in :meth:`model`.
        :param str plate: as in :meth:`model`.
        :returns: the sampled latents by site name: ``site("z")`` and, when any label is missing, ``site("y")``.
        """
        if x is None:
            raise ValueError("the guide q(y, z|x) needs data x; to generate, run the model alone")
        self.register("classifier", "encoder")
        data, batch_size, _ = self._data_plate(x, num_data, subsample, plate)
        if y is not None:
            check_labels(y, batch_size, self.num_classes, missing=True)
        latents = {}
        with data:
            context = self._guide_context(x)
            if y is None or (y < 0).any():
                logits = self.classifier(context)
                if y is not None:  # partially labelled: a point mass on each given label, log q = 0 there
                    point_masses = F.one_hot(y.clamp(min=0), self.num_classes).to(logits).log()
                    logits = torch.where((y < 0)[:, None], logits, point_masses)
                infer = {"enumerate": self.enumerate} if self.enumerate else {}
                y = pyro.sample(self.site("y"), dist.Categorical(logits=logits), infer=infer)
                latents[self.site("y")] = y
            loc, scale = self.encoder(context, y)
            latents[self.site("z")] = pyro.sample(self.site("z"), dist.Normal(loc, scale).to_event(1))
        return latents

    def generative_model(
        self,
        x: torch.Tensor | None = None,
        y: torch.Tensor | None = None,
        num_data: int | None = None,
        *,
        subsample: torch.Tensor | None = None,
        plate: str | None = None,
    ) -> torch.Tensor:
        r""":meth:`model` without the ``"classification"`` factor: exactly :math:`p(y)\,p(z)\,p(x|y,z)` (times
        the ADGM's :math:`p(a|x,y,z)`, which integrates to one).
        The classification term belongs to the training objective, not to the density, so estimate
        :math:`\log p(x, y)` with this model, e.g.
        ``log_marginal_likelihood(ssvae.generative_model, ssvae.guide, (x, y))``. (Unlabelled calls of
        :meth:`model` have no factor: ``log_marginal_likelihood(ssvae.model, ssvae.guide, x)`` is
        :math:`\log p(x) = \log \sum_y p(x, y)`.)"""
        model = poutine.block(self.model, hide=[self.site("classification")])
        return model(x, y, num_data, subsample=subsample, plate=plate)

    def class_log_probs(self, x: torch.Tensor, num_samples: int = 1) -> torch.Tensor:
        r"""Differentiable log class probabilities :math:`\log q(y|x)` of the classifier, ``(batch, num_classes)``.
        ``x`` is not checked (see :meth:`log_predict`); ``num_samples`` is the ADGM's (draws of its ``a``), M2's
        :math:`q(y|x)` is exact."""
        return self.classifier(x).log_softmax(-1)

    @torch.no_grad()
    def log_predict(self, x: torch.Tensor) -> torch.Tensor:
        r"""Log class probabilities :math:`\log q(y|x)` of the classifier, ``(batch, num_classes)``, ``x`` checked;
        :meth:`class_log_probs` with ``predict_samples`` draws."""
        self._check(x)
        return self.class_log_probs(x, self.predict_samples)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Class probabilities q(y|x) of the classifier, ``(batch, num_classes)``."""
        return self.log_predict(x).exp()

    @torch.no_grad()
    def style(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """The posterior mean of the style ``z`` given ``x`` and its label (the classifier's guess when
        ``y`` is ``None``, and on the rows where it is -1), ``(batch, z_dim)``."""
        self._check(x, y)
        if y is None or (y < 0).any():
            guess = self.log_predict(x).argmax(-1)
            y = guess if y is None else torch.where(y < 0, guess, y)
        return self.encoder(self._mean_context(x), y)[0]

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
