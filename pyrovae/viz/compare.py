r"""How good are a generator's samples? Numbers for the VAE-versus-autoencoder comparison.

Both models are asked to generate the same way: draw :math:`z \sim \mathcal{N}(0, I)` and decode
:math:`\mathbb{E}[x | z]` (:func:`pyrovae.viz.plots.prior_means`). The VAE was trained so that its codes fill
that prior; the autoencoder's codes lie wherever the encoder put them, so most prior draws decode to
something that is not a digit. Three measurements say how much:

- ``confident_share``: the share of decoded samples that a classifier trained on the real training
  images assigns to some class with probability above a threshold (0.9): a sample that looks like a
  digit gets a confident answer;
- ``class_entropy``: the entropy (nats) of the histogram of predicted classes, at most
  :math:`\log C`; low when the samples collapse onto a few classes;
- ``nearest_distance``: the mean Euclidean distance from each sample to its nearest training image, in
  pixel units; the real test images give the scale of a "typical" digit's distance;
- ``frechet_distance``: the Fréchet distance between Gaussians fitted to the classifier's hidden-layer
  features of the samples and of real test images (Heusel et al. 2017's FID, with the digit classifier
  in place of Inception): 0 for a generator whose samples match the test images in mean and covariance.

The same numbers for real test images are reported as the reference a perfect generator would match
(their Fréchet distance is measured against real training images). The classifier is scikit-learn's
``MLPClassifier``, seeded, so that every number is reproducible.

**References**

[1] GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash Equilibrium, M. Heusel,
    H. Ramsauer, T. Unterthiner, B. Nessler and S. Hochreiter, NeurIPS 2017.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import pyro
import torch

from pyrovae.viz.plots import prior_means

if TYPE_CHECKING:  # scikit-learn is imported when a classifier is fitted, not with pyrovae
    from sklearn.neural_network import MLPClassifier

#: probability above which a classifier's answer counts as confident
CONFIDENCE = 0.9


def digit_classifier(x: torch.Tensor, labels: torch.Tensor, seed: int = 0, max_iter: int = 200) -> MLPClassifier:
    """A one-hidden-layer classifier (256 ReLU units, Adam) fitted to images ``x`` ``(N, D)`` in [0, 1] and
    integer ``labels`` ``(N,)``, seeded with ``seed``; ``max_iter`` passes over the data at most."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    classifier = MLPClassifier(hidden_layer_sizes=(256,), max_iter=max_iter, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # a capped number of passes is the intent
        classifier.fit(x.detach().cpu().numpy(), labels.detach().cpu().numpy())
    return classifier


def nearest_distances(images: torch.Tensor, reference: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Euclidean distance from each of ``images`` ``(N, D)`` to its nearest row of ``reference`` ``(M, D)``,
    ``(N,)``, computed in chunks of ``batch_size`` images."""
    reference = reference.float()
    return torch.cat([torch.cdist(chunk.float(), reference).min(-1).values for chunk in images.split(batch_size)])


def hidden_features(classifier: MLPClassifier, x: torch.Tensor) -> np.ndarray:
    """The activations of ``classifier``'s last hidden layer for images ``x`` ``(N, D)``, ``(N, H)``."""
    h = x.detach().cpu().double().numpy()
    for weight, bias in zip(classifier.coefs_[:-1], classifier.intercepts_[:-1], strict=True):
        h = np.maximum(h @ weight + bias, 0.0)  # MLPClassifier's default ReLU
    return h


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to the rows of ``a`` and of ``b``,
    :math:`\\lVert\\mu_a - \\mu_b\\rVert^2 + \\mathrm{tr}\\,\\Sigma_a + \\mathrm{tr}\\,\\Sigma_b
    - 2\\,\\mathrm{tr}(\\Sigma_a^{1/2}\\Sigma_b\\Sigma_a^{1/2})^{1/2}`; the last trace is the sum of the square
    roots of the eigenvalues of a symmetric positive semi-definite matrix, so singular covariances (dead
    features) are fine."""
    cov_a, cov_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    w, v = np.linalg.eigh(cov_a)
    root_a = (v * np.sqrt(w.clip(min=0))) @ v.T
    trace_root = np.sqrt(np.linalg.eigvalsh(root_a @ cov_b @ root_a).clip(min=0)).sum()
    return float(((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * trace_root)


def sample_quality(
    images: torch.Tensor,
    classifier: MLPClassifier,
    train_x: torch.Tensor,
    reference: torch.Tensor,
    threshold: float = CONFIDENCE,
) -> dict[str, float]:
    """``confident_share``, ``class_entropy``, ``nearest_distance`` and ``frechet_distance`` (see the module
    docstring) of ``images`` ``(N, D)``, judged by ``classifier``, the training images ``train_x`` and the
    real images ``reference`` that the Fréchet distance compares with."""
    probs = torch.as_tensor(classifier.predict_proba(images.detach().cpu().float().numpy()))
    counts = torch.bincount(probs.argmax(-1), minlength=probs.shape[-1]).double()
    share = counts / counts.sum()
    return {
        "confident_share": float((probs.max(-1).values > threshold).double().mean()),
        "class_entropy": float(-(share * share.clamp_min(1e-300).log()).sum()),
        "nearest_distance": float(nearest_distances(images.detach().cpu(), train_x.detach().cpu()).mean()),
        "frechet_distance": frechet_distance(
            hidden_features(classifier, images), hidden_features(classifier, reference)
        ),
    }


def compare_generators(
    models: dict[str, Callable],
    train_x: torch.Tensor,
    train_labels: torch.Tensor,
    test_x: torch.Tensor,
    num_samples: int = 1000,
    seed: int = 0,
    classifier: MLPClassifier | None = None,
) -> dict[str, dict[str, float]]:
    """:func:`sample_quality` of ``num_samples`` decoded prior samples of each model (name -> Pyro model
    taking ``(None, num_data=n)``), and of ``num_samples`` real ``test_x`` images under the name ``"real"``.

    Pass grey-level images (``load_dataset(..., binarize="none")``): the samples are decoded pixel
    probabilities, so binarized real images would be judged on another footing.

    Samples are drawn after ``pyro.set_rng_seed(seed + i)`` for the ``i``-th model, and the classifier
    (fitted on ``train_x``, ``train_labels`` unless given) is seeded with ``seed``: the same call gives the
    same numbers.
    """
    if classifier is None:
        classifier = digit_classifier(train_x, train_labels, seed=seed)
    test_x = test_x[:num_samples].cpu()
    results = {"real": sample_quality(test_x, classifier, train_x, reference=train_x[:num_samples])}
    for i, (name, model) in enumerate(models.items()):
        pyro.set_rng_seed(seed + i)
        results[name] = sample_quality(prior_means(model, num_samples).cpu(), classifier, train_x, reference=test_x)
    return results
