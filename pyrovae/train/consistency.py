r"""A consistency term for the classifier on unlabelled data: the same image, seen twice, gets the same label.

For each unlabelled point :math:`x_n` the training draws two random views :math:`v_n, v'_n` (dynamic
binarization, a fresh M1 code, a random translation: whatever stochastic input pipeline is in use) and
penalises the squared distance between the classifier's class probabilities on them, the
:math:`\Pi`-model of Laine & Aila (2017) (the transformation/stability loss of Sajjadi et al. 2016):

.. math:: \mathcal{C}(x_n) = \lVert q(\cdot | v_n) - q(\cdot | v'_n) \rVert_2^2
          = \sum_y \bigl(q(y|v_n) - q(y|v'_n)\bigr)^2 \in [0, 2].

:func:`pyrovae.fit_semisupervised` (``SemiSupervisedConfig(consistency=beta)``) subtracts
:math:`\beta \sum_n \mathcal{C}(x_n)` from the unlabelled minibatch's ELBO, so the objective becomes

.. math:: \mathcal{J}_\beta = \mathcal{J} - \beta \sum_{x \in \text{unlabelled}} \mathcal{C}(x).

Like the classification term :math:`\alpha \log q(y|x)` it trains the classifier and is not part of the
density :math:`p(x, y, z)`: the generative model, its ELBO and :math:`\log p(x)` are unchanged. It acts
where M2's unlabelled term :math:`\sum_y q(y|x) \mathcal{L}(x, y) + \mathcal{H}[q(y|x)]` is weakest: that
term never asks two views of a digit to share a label, and its entropy bonus rewards hedging.
Gradients flow through both views, as in the :math:`\Pi`-model.

**References**

[1] Temporal Ensembling for Semi-Supervised Learning, S. Laine and T. Aila, ICLR 2017.

[2] Regularization With Stochastic Transformations and Perturbations for Deep Semi-Supervised Learning,
    M. Sajjadi, M. Javanmardi and T. Tasdizen, NeurIPS 2016.
"""

from __future__ import annotations

import torch

from pyrovae.data.validation import check_shape
from pyrovae.models.ssvae import SSVAE


def consistency_loss(ssvae: SSVAE, view: torch.Tensor, other_view: torch.Tensor) -> torch.Tensor:
    r""":math:`\sum_n \lVert q(\cdot|v_n) - q(\cdot|v'_n) \rVert_2^2` over the rows of two views ``(batch, x_dim)``
    of the same points (:meth:`pyrovae.SSVAE.class_log_probs`, one draw of ``a`` per view with ``a_dim > 0``);
    differentiable in both.

    :raises ValueError: if a view is not a ``(batch, ssvae.x_dim)`` batch
        (:func:`pyrovae.data.validation.check_shape`) or the two have different numbers of rows.
    """
    check_shape(view, ssvae.x_dim, "view")
    check_shape(other_view, ssvae.x_dim, "other_view")
    if len(view) != len(other_view):
        raise ValueError(f"the two views must have one row per point each, got {len(view)} and {len(other_view)} rows")
    probs, other_probs = ssvae.class_log_probs(torch.cat([view, other_view])).exp().chunk(2)  # one pass for both
    return (probs - other_probs).pow(2).sum()
