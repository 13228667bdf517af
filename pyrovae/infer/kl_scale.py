r"""Scaling the KL term of the ELBO: β-VAE and KL warm-up, as a Pyro effect handler.

The ELBO of a VAE splits into a reconstruction term and a KL term,

.. math:: \mathcal{L}_\beta(x) = \mathbb{E}_{q(z|x)}[\log p(x|z)] - \beta\,
    \mathbb{E}_{q(z|x)}[\log q(z|x) - \log p(z)],

and the KL term is carried exactly by the *latent* sample sites: every site of the guide, and the model's
sites that are not observed. :class:`KLScaleMessenger` multiplies the ``scale`` of those sites by
:math:`\beta`, as ``poutine.scale`` would (``poutine.scale`` itself scales every site in its context and
rejects 0, the reconstruction term alone), and leaves observed sites (the likelihood ``"x"``, observed labels,
``pyro.factor`` terms) alone; wrapping both the model and the guide turns any Pyro ELBO into
:math:`\mathcal{L}_\beta`. :math:`\beta = 1` is the ELBO, :math:`\beta = 0` the reconstruction term alone,
:math:`\beta > 1` the β-VAE objective (Higgins et al. 2017).

**KL warm-up** (Bowman et al. 2016; Sønderby et al. 2016) raises :math:`\beta` linearly from 0 to its final
value over the first steps of training (:func:`warmup_scale`), so that the decoder learns to use the code
before the KL term pulls the posterior onto the prior; it is a remedy for inactive units (posterior
collapse), which :func:`pyrovae.active_units` counts.

**References**

[1] Generating Sentences from a Continuous Space, S. R. Bowman, L. Vilnis, O. Vinyals, A. M. Dai,
    R. Jozefowicz and S. Bengio, CoNLL 2016.

[2] Ladder Variational Autoencoders, C. K. Sønderby, T. Raiko, L. Maaløe, S. K. Sønderby and O. Winther,
    NeurIPS 2016.

[3] β-VAE: Learning Basic Visual Concepts with a Constrained Variational Framework, I. Higgins et al., ICLR 2017.
"""

from __future__ import annotations

from pyro.poutine.messenger import Messenger


class KLScaleMessenger(Messenger):
    """Multiply the log-density of every latent (unobserved) sample site by ``scale``.

    The same instance may wrap the model and the guide (``kl(model)``, ``kl(guide)``), and its ``scale``
    attribute may be changed between steps (a warm-up schedule); do not change it inside a JIT-compiled
    ELBO, which fixes the value it was traced with.

    :param float scale: :math:`\\beta \\geq 0`.
    """

    def __init__(self, scale: float = 1.0) -> None:
        super().__init__()
        self.scale = scale

    @property
    def scale(self) -> float:
        return self._scale

    @scale.setter
    def scale(self, value: float) -> None:
        if not float(value) >= 0:
            raise ValueError(f"the KL scale must be a number >= 0, got {value}")
        self._scale = float(value)

    def _process_message(self, msg: dict) -> None:
        if msg["type"] == "sample" and not msg["is_observed"]:
            msg["scale"] = msg["scale"] * self._scale


def warmup_scale(step: int, warmup_steps: int, beta: float = 1.0) -> float:
    """:math:`\\beta \\min(1, (t + 1) / T)` for step :math:`t` (counted from 0) of a linear warm-up over
    :math:`T` = ``warmup_steps`` steps; ``beta`` throughout when ``warmup_steps`` is 0."""
    if warmup_steps < 0 or step < 0:
        raise ValueError(f"step and warmup_steps must be >= 0, got {step} and {warmup_steps}")
    return beta if warmup_steps == 0 else beta * min(1.0, (step + 1) / warmup_steps)
