r"""Walking the latent space of a trained model: encoding, decoding, grids, paths and attribute vectors.

Encoding and decoding go through Pyro traces of the model and guide, so they work for any model whose
latent site (``"z"``) is a plain sample site and whose observation site (``"x"``) has a ``mean``:

- :func:`posterior_means` traces the guide and reads :math:`\mathbb{E}_{q(z|x)}[z]` from the site's
  distribution;
- :func:`decode` runs the model under ``poutine.condition`` on chosen codes and reads
  :math:`\mathbb{E}_{p(x|z)}[x]` (pixel probabilities for a Bernoulli likelihood).

Both run without gradients and with the modules owning the model and guide in evaluation mode
(:func:`pyrovae.device.evaluating`). For a :class:`pyrovae.VAE` in hand, :meth:`pyrovae.VAE.decode_mean` and
:meth:`pyrovae.VAE.reconstruct` compute the same means directly.

The rest are small functions on codes, each a picture in the papers: the 2-D manifold of Kingma & Welling
(2014, Fig. 4), linear and spherical interpolation (White 2016), traversals of one unit, and attribute
vectors (Larsen et al. 2016; White 2016): the mean code of images with an attribute minus the mean code
of those without.

**References**

[1] Auto-Encoding Variational Bayes, D. P. Kingma and M. Welling, ICLR 2014.
[2] Sampling Generative Networks, T. White, arXiv:1609.04468, 2016.

[3] Autoencoding beyond pixels using a learned similarity metric, A. B. L. Larsen, S. K. Sønderby,
    H. Larochelle and O. Winther, ICML 2016.

[4] Visualizing Data using t-SNE, L. van der Maaten and G. Hinton, JMLR 2008.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pyro.poutine as poutine
import torch

from pyrovae.device import chunks, device_of, evaluating

#: draws averaged for the posterior mean of a guide without a closed-form mean
MEAN_SAMPLES = 256
#: interpolation methods of :func:`interpolate`
INTERPOLATIONS = ("linear", "spherical")


def posterior_means(guide: Callable, x: torch.Tensor, site: str = "z", batch_size: int = 1000) -> torch.Tensor:
    """:math:`\\mathbb{E}_{q(z|x_n)}[z]` for every row of ``x``, ``(N, z_dim)``: the guide is traced on chunks of
    ``batch_size`` rows and the mean of ``site``'s distribution is read from the trace; where it has no
    closed form (a flow guide, :mod:`pyrovae.models.iaf`), it is the average of :data:`MEAN_SAMPLES` draws. Rows in
    host memory go to the device of the module owning ``guide`` a chunk at a time (:func:`pyrovae.device.chunks`).

    :raises ValueError: if the guide has no site ``site``.
    """
    means, device = [], device_of(guide, default=x.device)
    with torch.no_grad(), evaluating(guide):
        for chunk in chunks(x, batch_size, device):  # data in host memory: a chunk at a time to the guide's device
            trace = poutine.trace(guide).get_trace(chunk)
            if site not in trace.nodes:
                raise ValueError(f"the guide has no site {site!r}; its sites are {sorted(trace.stochastic_nodes)}")
            fn = trace.nodes[site]["fn"]
            try:
                means.append(fn.mean)
            except NotImplementedError:  # e.g. a flow: no closed form, so a Monte-Carlo average
                means.append(fn.sample((MEAN_SAMPLES,)).mean(0))
    return torch.cat(means)


def decode(model: Callable, z: torch.Tensor, site: str = "z", obs_site: str = "x", **conditions) -> torch.Tensor:
    """:math:`\\mathbb{E}_{p(x|z)}[x]` for each code ``z`` ``(N, z_dim)``, ``(N, x_dim)``: the model runs without
    data (``model(None, num_data=N)``) conditioned on ``{site: z, **conditions}`` (e.g. ``y=labels`` for
    an :class:`pyrovae.SSVAE`), and the mean of ``obs_site``'s distribution is read from the trace."""
    with torch.no_grad(), evaluating(model):
        conditioned = poutine.condition(model, data={site: z, **conditions})
        trace = poutine.trace(conditioned).get_trace(None, num_data=len(z))
    return trace.nodes[obs_site]["fn"].mean


def embed_2d(codes: torch.Tensor, method: str = "auto", seed: int = 0, perplexity: float = 30.0) -> torch.Tensor:
    """Points in the plane for a scatter plot of ``codes`` ``(N, z_dim)``, ``(N, 2)``: the codes themselves
    when ``z_dim == 2`` (``method="identity"``), otherwise scikit-learn's t-SNE (``method="tsne"``, PCA
    initialisation, seeded). ``"auto"`` picks the first that applies.

    :raises ValueError: for an unknown method, or ``"identity"`` on codes that are not 2-D.
    """
    if method == "auto":
        method = "identity" if codes.shape[-1] == 2 else "tsne"
    if method == "identity":
        if codes.shape[-1] != 2:
            raise ValueError(f"the codes are {codes.shape[-1]}-D: plot them with method='tsne'")
        return codes.detach().cpu().float()
    if method != "tsne":
        raise ValueError(f"unknown method {method!r}: choose 'auto', 'identity' or 'tsne'")
    if len(codes) < 3:
        raise ValueError(f"t-SNE needs at least 3 points, got {len(codes)}")
    from sklearn.manifold import TSNE  # imported here, not with pyrovae: it takes a second

    tsne = TSNE(2, perplexity=min(perplexity, len(codes) - 1.0), init="pca", random_state=seed)
    return torch.as_tensor(tsne.fit_transform(codes.detach().cpu().double().numpy()), dtype=torch.float32)


def manifold_codes(grid: int, z_dim: int = 2, epsilon: float = 0.05) -> torch.Tensor:
    """Kingma & Welling's Fig. 4 grid: ``grid x grid`` codes ``(grid**2, 2)`` whose coordinates are
    :math:`\\Phi^{-1}(u)` for ``grid`` evenly spaced quantiles :math:`u \\in [\\epsilon, 1 - \\epsilon]`,
    so that equal areas of the picture hold equal prior mass. Rows run along the second latent
    coordinate (top = high), columns along the first.

    :raises ValueError: unless ``z_dim == 2`` (a plane of codes covers the prior only in two dimensions).
    """
    if z_dim != 2:
        raise ValueError(f"the 2-D manifold needs a model with z_dim = 2, this one has z_dim = {z_dim}")
    if int(grid) < 2 or not 0 < epsilon < 0.5:
        raise ValueError(f"need grid >= 2 and 0 < epsilon < 0.5, got grid={grid}, epsilon={epsilon}")
    values = torch.distributions.Normal(0.0, 1.0).icdf(torch.linspace(epsilon, 1 - epsilon, int(grid)))
    z2, z1 = torch.meshgrid(values.flip(0), values, indexing="ij")
    return torch.stack([z1.reshape(-1), z2.reshape(-1)], dim=-1)


def interpolate(z0: torch.Tensor, z1: torch.Tensor, steps: int, method: str = "linear") -> torch.Tensor:
    """``steps`` codes from ``z0`` to ``z1`` (both ``(..., z_dim)``), ``(..., steps, z_dim)``, endpoints included.

    ``"linear"``: :math:`(1-t) z_0 + t z_1`. ``"spherical"`` (White 2016):
    :math:`\\frac{\\sin((1-t)\\Omega)}{\\sin\\Omega} z_0 + \\frac{\\sin(t\\Omega)}{\\sin\\Omega} z_1` with
    :math:`\\cos\\Omega = \\hat z_0 \\cdot \\hat z_1`, which keeps the norm typical of Gaussian codes
    instead of passing near the origin; it falls back to linear where the codes are (anti)parallel.
    """
    if int(steps) < 2:
        raise ValueError(f"an interpolation needs at least 2 steps (the endpoints), got {steps}")
    if method not in INTERPOLATIONS:
        raise ValueError(f"unknown interpolation {method!r}: choose one of {INTERPOLATIONS}")
    z0, z1 = torch.broadcast_tensors(z0, z1)
    t = torch.linspace(0.0, 1.0, int(steps), dtype=z0.dtype, device=z0.device)[:, None]
    a, b = z0.unsqueeze(-2), z1.unsqueeze(-2)
    linear = (1 - t) * a + t * b
    if method == "linear":
        return linear
    cos = torch.nn.functional.cosine_similarity(a, b, dim=-1).unsqueeze(-1).clamp(-1.0, 1.0)
    omega = torch.arccos(cos)
    sin = torch.sin(omega)
    safe = sin.abs() > 1e-6
    sin = torch.where(safe, sin, torch.ones_like(sin))
    spherical = (torch.sin((1 - t) * omega) * a + torch.sin(t * omega) * b) / sin
    return torch.where(safe, spherical, linear)


def traversal(z: torch.Tensor, units: Sequence[int], values: torch.Tensor) -> torch.Tensor:
    """Vary one unit at a time: for each unit ``units[i]``, copies of the code ``z`` ``(z_dim,)`` with that
    coordinate set to each of ``values`` (``(steps,)``, or ``(len(units), steps)`` for values per unit);
    ``(len(units), steps, z_dim)``."""
    if z.dim() != 1:
        raise ValueError(f"traverse one code of shape (z_dim,), got shape {tuple(z.shape)}")
    bad = [u for u in units if not 0 <= u < len(z)]
    if bad:
        raise ValueError(f"units {bad} are outside 0..{len(z) - 1}")
    values = values.to(z).expand(len(units), values.shape[-1])
    codes = z.expand(len(units), values.shape[-1], len(z)).clone()
    for row, unit in enumerate(units):
        codes[row, :, unit] = values[row]
    return codes


def attribute_vector(codes: torch.Tensor, has_attribute: torch.Tensor) -> torch.Tensor:
    """The attribute vector: mean of the ``codes`` ``(N, z_dim)`` whose row of the boolean mask
    ``has_attribute`` ``(N,)`` is true, minus the mean of the others, ``(z_dim,)``.

    :raises ValueError: if the mask has another length or either group is empty.
    """
    has_attribute = torch.as_tensor(has_attribute, dtype=torch.bool, device=codes.device)
    if has_attribute.shape != codes.shape[:1]:
        raise ValueError(f"the mask has shape {tuple(has_attribute.shape)}, expected ({len(codes)},)")
    with_, without = int(has_attribute.sum()), int((~has_attribute).sum())
    if not with_ or not without:
        raise ValueError(
            f"an attribute vector needs codes with and without the attribute, got {with_} with and {without} without"
        )
    return codes[has_attribute].mean(0) - codes[~has_attribute].mean(0)


def add_attribute(codes: torch.Tensor, vector: torch.Tensor, weights: Sequence[float]) -> torch.Tensor:
    """``codes + w * vector`` for every weight ``w``: ``(N, len(weights), z_dim)``."""
    w = torch.as_tensor(list(weights), dtype=codes.dtype, device=codes.device)[:, None]
    return codes.unsqueeze(-2) + w * vector


def ink(x: torch.Tensor) -> torch.Tensor:
    """Stroke thickness measured from pixels: the mean intensity of each image ``(N, D)`` -> ``(N,)``
    (the share of inked pixels for binary images)."""
    return x.float().mean(-1)


def latent_dim(model: Callable, site: str = "z") -> int:
    """The dimension of ``site`` in ``model``, read from one run without data (``model(None, num_data=1)``)."""
    with torch.no_grad(), evaluating(model):
        trace = poutine.trace(model).get_trace(None, num_data=1)
    return trace.nodes[site]["value"].shape[-1]


def manifold_images(model: Callable, grid: int = 20, epsilon: float = 0.05) -> torch.Tensor:
    """Decoded :func:`manifold_codes` of a model with a 2-D latent space, ``(grid, grid, x_dim)``."""
    z = manifold_codes(grid, latent_dim(model), epsilon)
    return decode(model, z.to(device_of(model, default="cpu"))).reshape(int(grid), int(grid), -1)


def interpolation_images(
    model: Callable, guide: Callable, x0: torch.Tensor, x1: torch.Tensor, steps: int = 10, method: str = "linear"
) -> torch.Tensor:
    """Decoded :func:`interpolate` paths between the posterior means of the rows of ``x0`` and ``x1``
    (both ``(N, D)``), ``(N, steps, D)``; the first and last columns are the means' reconstructions."""
    codes = interpolate(posterior_means(guide, x0), posterior_means(guide, x1), steps, method)
    return decode(model, codes.reshape(-1, codes.shape[-1])).reshape(*codes.shape[:-1], -1)


def traversal_images(
    model: Callable,
    guide: Callable,
    x: torch.Tensor,
    reference: torch.Tensor,
    num_units: int = 8,
    steps: int = 9,
    span: float = 2.0,
) -> tuple[torch.Tensor, list[int]]:
    """Latent traversals of one image ``x`` ``(D,)``: starting from its posterior mean, each of the
    ``num_units`` units whose posterior means vary most over the ``reference`` images ``(N, D)`` is set in
    turn to ``steps`` values from mean - ``span`` std to mean + ``span`` std of that unit over the reference.

    :returns: the decoded images ``(num_units, steps, D)`` and the units, most variable first.
    """
    codes = posterior_means(guide, reference)
    mean, std = codes.mean(0), codes.std(0)
    units = std.argsort(descending=True)[: int(num_units)].tolist()
    t = torch.linspace(-span, span, int(steps), device=codes.device)
    values = mean[units, None] + t * std[units, None]
    z = traversal(posterior_means(guide, x[None])[0], units, values)
    return decode(model, z.reshape(-1, z.shape[-1])).reshape(*z.shape[:-1], -1), units


def attribute_images(
    model: Callable,
    guide: Callable,
    x: torch.Tensor,
    has_attribute: torch.Tensor,
    targets: torch.Tensor,
    weights: Sequence[float] = (0.0, 0.5, 1.0, 1.5, 2.0),
) -> torch.Tensor:
    """The attribute vector of the images ``x`` ``(N, D)`` split by the mask ``has_attribute`` (see
    :func:`attribute_vector`), added with each of ``weights`` to the posterior means of ``targets``
    ``(M, D)`` and decoded: ``(M, len(weights), D)``."""
    vector = attribute_vector(posterior_means(guide, x), has_attribute)
    codes = add_attribute(posterior_means(guide, targets), vector, weights)
    return decode(model, codes.reshape(-1, codes.shape[-1])).reshape(*codes.shape[:-1], -1)
