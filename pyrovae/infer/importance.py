r"""Per-datapoint log marginal likelihood by importance sampling, read from Pyro traces.

For each data point :math:`x_n` and :math:`K` samples :math:`z_{kn} \sim q(z | x_n)` from the guide,

.. math::

    \log w_{kn} = \log p(x_n, z_{kn}) - \log q(z_{kn} | x_n), \qquad
    \log \hat p(x_n) = \operatorname{logsumexp}_k \log w_{kn} - \log K .

:math:`\hat p(x_n)` is unbiased for :math:`p(x_n)`; its log is a lower bound in expectation that tightens
as :math:`K` grows (the IWAE bound of Burda et al.), and it is the figure papers report as test NLL
(:math:`-\frac1N\sum_n \log \hat p(x_n)`, :math:`K = 5000`). From the same weights come the ELBO
(:math:`\frac1K \sum_k \log w_{kn}`), the IWAE-:math:`k` bound for a smaller :math:`k` (the average of
:math:`\operatorname{logsumexp} - \log k` over :math:`K/k` disjoint groups), the Monte-Carlo standard
error of :math:`\log \hat p(x_n)` by the delta method,

.. math:: \mathrm{se}_n = \sqrt{\frac{1}{K}\left(\frac{\overline{w^2}}{\bar w^2} - 1\right)},

and optionally the Pareto :math:`\hat k` of the weights (Yao et al. 2018), as in
:func:`pyro.infer.importance.psis_diagnostic` but per data point.

The weights are Pyro's: the guide is traced under a particle ``pyro.plate``, the model is replayed on
that trace, and each sample site's ``log_prob`` (unscaled, masked) is summed over every dim except the
particles and the data plate (:mod:`pyrovae.infer.traces`). So any model/guide pair works whose
per-datapoint sites sit in a data plate (or in several, below), called as ``model(*args)`` / ``guide(*args)`` on a
chunk of rows with one plate entry per row.

Note that :func:`pyro.infer.importance.vectorized_importance_weights` sums over the data plate and
so gives the joint log-density of a whole batch, not per-point figures.

*Several data plates.* A program may index its rows by several data plates of the same size, e.g. two prefixed
VAEs modelling two views :math:`x_n = (x^a_n, x^b_n)` of each row in plates ``"a/data"`` and ``"b/data"``. Every
per-datapoint site lies in exactly one of them, and a point's log-densities sum the sites of all of them:
:math:`\log p(x_n, z_{kn}) = \log p(x^a_n, z^a_{kn}) + \log p(x^b_n, z^b_{kn})` for independent views.

*Global sites.* A site outside the data plates, :math:`\theta` (a scalar "temperature" of the decoder's logits,
sampled once before the plate), has no density per data point. Held at a value :math:`\theta_0`, observed in the
model (``poutine.condition``) and absent from the guide, or fixed in both with ``fixed={name: value}``, it is
a constant of the estimate, which is then of :math:`\log p(x_n | \theta_0)`, with

.. math:: \log w_{kn} = \log p(x_n, z_{kn} | \theta_0) - \log q(z_{kn} | x_n, \theta_0), \qquad
    z_{kn} \sim q(z | x_n, \theta_0);

:math:`\log p(\theta_0)`, the same for every point and part of none, is left out (a data set's joint
:math:`\log p(\theta_0, x_{1:N})` would add it once). Given :math:`\theta_0` the points are independent and
:math:`\sum_n \log p(x_n | \theta_0) = \log p(x_{1:N} | \theta_0)`; a latent global site, which makes them
dependent, is refused.

Memory is bounded by chunking over data points and over samples: the decoder's ``(samples, points, pixels)`` tensors
are only ever materialized for one chunk; across sample chunks only the ``(K, points)`` matrix of log-weights of the
current data chunk is kept (4 bytes per weight). The chunk sizes follow the model: two probes (2 points, 256 and
1,024 samples) measure the peak bytes of the tensors one more (sample, point) pair creates
(:class:`pyrovae.infer.memory.PeakMemory`), so the intermediates of a convolutional decoder, a flow or a second
layer count, not only the data's size (what they measure for each model: the documentation's results page), and a
chunk's tensors take at most ``max_memory /`` :data:`ALLOCATOR_OVERHEAD`, the rest being room for the allocator.
After each data chunk, reference cycles among the objects the chunks made are collected (Pyro's flow transforms keep
cached tensors in them; the objects that predate the estimate are not scanned: :func:`collect_young_only`) and freed
memory is returned to the operating system (:func:`release_free_memory`). ``max_memory`` bounds the chunks' tensors
and the process only approximately: the allocator's fragmentation creeps over many chunks (peaks measured: the
documentation's results page). Noise comes from :class:`pyrovae.infer.noise.IndexedNoise`, so results are identical
for any chunk sizes.

**References**

[1] Importance Weighted Autoencoders, Y. Burda, R. Grosse and R. Salakhutdinov, ICLR 2016.

[2] Yes, but Did It Work?: Evaluating Variational Inference, Y. Yao, A. Vehtari, D. Simpson and
    A. Gelman, ICML 2018.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import math
import platform
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pyro
import torch
from pyro import poutine
from pyro.infer.util import get_plate_stacks, is_validation_enabled
from pyro.ops.stats import fit_generalized_pareto
from pyro.poutine.indep_messenger import CondIndepStackFrame
from tqdm.auto import tqdm

from pyrovae.device import device_of, evaluating
from pyrovae.infer.memory import PeakMemory
from pyrovae.infer.noise import NOISE_BLOCK, IndexedNoise
from pyrovae.infer.traces import (
    data_plate_frames,
    describe_data_plates,
    model_and_guide_traces,
    outside_plate,
    per_datapoint_log_prob,
    remove_global_observations,
    site_names,
)

#: name of the particle plate the guide is traced under
PARTICLES = "importance_samples"
#: default memory budget for one chunk, in bytes
MAX_MEMORY = 1 << 30
#: the memory budget over the peak bytes of the chunk's tensors (room for the allocator's fragmentation)
ALLOCATOR_OVERHEAD = 2.0
#: samples of the two probes that measure the bytes per (sample, point) pair
PROBE_SAMPLES = (256, 1024)
#: the C library, when it is glibc (for ``malloc_trim``)
_LIBC = ctypes.CDLL(ctypes.util.find_library("c")) if platform.libc_ver()[0] == "glibc" else None
#: Pareto k-hat above which the proposal is poor (Yao et al. 2018)
KHAT_THRESHOLD = 0.7


@dataclass(frozen=True)
class ImportanceEstimate:
    """Per-datapoint results of :func:`log_marginal_likelihood`, each a CPU ``float64`` tensor ``(N,)``.

    :ivar log_px: importance-sampled :math:`\\log \\hat p(x_n)` with all ``num_samples`` samples.
    :ivar elbo: :math:`\\frac1K\\sum_k \\log w_{kn}`, the ELBO estimate from the same samples.
    :ivar iwae: the IWAE bound with ``iwae_k`` samples, averaged over ``num_samples // iwae_k`` groups.
    :ivar stderr: Monte-Carlo standard error of ``log_px`` (delta method); NaN with one sample, from which no
        spread can be estimated.
    :ivar khat: Pareto :math:`\\hat k` of each point's weights, or ``None`` if not asked for.
    """

    log_px: torch.Tensor
    elbo: torch.Tensor
    iwae: torch.Tensor
    stderr: torch.Tensor
    khat: torch.Tensor | None
    num_samples: int
    iwae_k: int

    def summary(self) -> dict[str, Any]:
        """Dataset averages in nats per data point: ``nll`` (:math:`-\\overline{\\log \\hat p(x)}`),
        ``nll_stderr`` (its Monte-Carlo standard error for this fixed data set; ``None`` with one sample per point,
        which gives no estimate of it), ``elbo``, ``iwae``
        (bound with ``iwae_k`` samples) and ``gap`` (``log p(x) - ELBO``, an estimate of the average
        KL(q(z|x) || p(z|x))); plus the sample counts and, with k-hat, its mean and the share of points
        above 0.7."""
        n = len(self.log_px)
        out: dict[str, Any] = {
            "nll": -self.log_px.mean().item(),
            "nll_stderr": self.stderr.square().sum().sqrt().item() / n if self.num_samples > 1 else None,
            "elbo": self.elbo.mean().item(),
            "iwae": self.iwae.mean().item(),
            "gap": (self.log_px - self.elbo).mean().item(),
            "num_points": n,
            "num_samples": self.num_samples,
            "iwae_k": self.iwae_k,
        }
        if self.khat is not None:
            out["khat_mean"] = self.khat.mean().item()
            out["khat_above_0.7"] = (self.khat > KHAT_THRESHOLD).double().mean().item()
        return out


def log_marginal_likelihood(
    model: Callable,
    guide: Callable,
    x: torch.Tensor | Sequence[torch.Tensor],
    num_samples: int = 5000,
    *,
    iwae_k: int | None = None,
    seed: int = 0,
    indices: torch.Tensor | Sequence[int] | None = None,
    max_memory: int = MAX_MEMORY,
    data_chunk: int | None = None,
    sample_chunk: int | None = None,
    khat: bool = False,
    fixed: dict[str, torch.Tensor] | None = None,
    data_plate: str | Sequence[str] | None = None,
    max_plate_nesting: int | None = None,
    progress: bool | None = None,
) -> ImportanceEstimate:
    """Estimate :math:`\\log p(x_n)` for every row of ``x`` by importance sampling with the guide as proposal.

    ``model(*chunk)`` and ``guide(*chunk)`` are called on chunks of rows (no ``num_data``, so no
    subsampling scale), e.g. ``vae.model`` / ``vae.guide``. Scale factors (``poutine.scale``, subsample
    scaling) are ignored: the figures are densities of single points. Masks are applied. With Pyro's
    validation on (the default), every row is checked once with a single sample (data values,
    distribution arguments); the passes over all samples then run unchecked. A NaN estimate raises. The modules
    owning ``model`` and ``guide`` run in evaluation mode (BatchNorm's running statistics, no dropout), their modes
    given back after, so that each point's estimate depends on that point alone, not on its chunk.

    Every latent site must be a per-datapoint site, in a data plate (or in one of several data plates indexing
    the same rows). Observed sites of the model outside the data plates, which the guide does not sample, are
    global values :math:`\\theta_0` the model is conditioned on: the estimate is then of
    :math:`\\log p(x_n | \\theta_0)` and :math:`\\log p(\\theta_0)` is left out (see
    :mod:`pyrovae.infer.importance`).

    :param x: data ``(N, ...)``, or a tuple of tensors with the same ``N`` passed as positional arguments; on the
        model's device or in host memory (e.g. memory-mapped): each chunk is moved to the device of the modules
        owning ``model`` and ``guide`` (:func:`pyrovae.device.device_of`).
    :param int num_samples: importance samples per data point (papers use 5000).
    :param int iwae_k: samples per group of the reported IWAE bound (default ``min(50, num_samples)``).
    :param int seed: seed of the noise; with the same seed, results are identical for any chunk sizes.
    :param indices: global index of each row (default ``0..N-1``); a row's noise depends on its index, so
        evaluating a subset with its original indices reproduces those rows' results.
    :param int max_memory: approximate budget in bytes for one chunk (default 1 GiB); sets the chunk
        sizes that are not given.
    :param int data_chunk: data points per chunk.
    :param int sample_chunk: samples per chunk.
    :param bool khat: also compute each point's Pareto k-hat, warning when q is a poor proposal.
    :param dict fixed: values of global sites (outside the data plates), e.g. ``{"temperature": torch.tensor(1.5)}``:
        model and guide are conditioned on them (``poutine.condition``; the guide does not sample them, and its
        downstream computations see the values) and they are hidden from both traces, so the estimate is of
        :math:`\\log p(x_n | \\theta = \\theta_0)`.
    :param data_plate: name of the plate indexing data points, or the names of several plates indexing the same
        data points, with the same size (default: the outermost plate that every sample site in a plate is in;
        without one, the outermost plate of each such site, e.g. ``"a/data"`` and ``"b/data"`` of two prefixed
        VAEs). Sites in no plate are global.
    :param int max_plate_nesting: plates nested in model and guide (default: read from a trace).
    :param bool progress: tqdm progress bar (default: only when stderr is a terminal).
    :raises ValueError: on empty or mismatched data, bad sizes, a model/guide without per-point structure, a
        latent global site, or names in ``fixed`` that are sites of neither program or lie in a data plate.
    """
    args = (x,) if isinstance(x, torch.Tensor) else tuple(x)
    num_points = _check_args(args)
    index = torch.arange(num_points) if indices is None else torch.as_tensor(indices).reshape(-1)
    if len(index) != num_points:
        raise ValueError(f"indices has {len(index)} entries for {num_points} data points")
    if seed < 0 or (len(index) and int(index.min()) < 0):
        raise ValueError("seed and indices must be non-negative integers")
    for name, value in (("num_samples", num_samples), ("max_memory", max_memory)):
        if int(value) < 1:
            raise ValueError(f"{name} must be a positive integer, got {value}")
    iwae_k = min(50, num_samples) if iwae_k is None else int(iwae_k)
    if not 1 <= iwae_k <= num_samples:
        raise ValueError(f"iwae_k must be between 1 and num_samples={num_samples}, got {iwae_k}")
    fixed, device = dict(fixed or {}), device_of(model, guide, default=args[0].device)

    def on_device(start: int, stop: int) -> list[torch.Tensor]:  # on the model's device, wherever the data are
        return [a[start:stop].to(device, non_blocking=True) for a in args]

    with torch.no_grad(), evaluating(model, guide), collect_young_only():
        data_plate, nesting = _structure(model, guide, on_device(0, min(2, num_points)), data_plate, max_plate_nesting,
                                         fixed)  # fmt: skip
        if fixed:  # both programs at the fixed values, and those sites out of both traces
            model, guide = (_at(p, fixed, hide_fixed=True) for p in (model, guide))
        if data_chunk is None or sample_chunk is None:
            pair_bytes = bytes_per_pair(model, guide, on_device(0, 2), data_plate, nesting, seed)
        else:
            pair_bytes = 1.0  # both sizes given: nothing to size
        data_chunk, sample_chunk = chunk_sizes(
            num_points, num_samples, pair_bytes, max_memory, data_chunk=data_chunk, sample_chunk=sample_chunk
        )
        if is_validation_enabled():
            # check every row once, with one sample (data values, distribution arguments); the passes
            # over all samples then run without per-chunk checks, which slow every chunk
            pairs = data_chunk * sample_chunk
            for start in range(0, num_points, pairs):
                log_weights(model, guide, on_device(start, start + pairs), 1, data_plate, nesting)
        results = []
        bar = tqdm(
            total=num_points * num_samples,
            disable=None if progress is None else not progress,
            unit="sample",
            unit_scale=True,
            desc="log p(x)",
        )
        with pyro.validation_enabled(False), bar:
            for start in range(0, num_points, data_chunk):
                chunk = on_device(start, start + data_chunk)
                rows = index[start : start + data_chunk].tolist()
                log_w = []
                for first in range(0, num_samples, sample_chunk):
                    size = min(sample_chunk, num_samples - first)
                    noise = IndexedNoise(seed, data_plate, rows, first, particle_dim=-nesting - 1)
                    log_w.append(log_weights(model, guide, chunk, size, data_plate, nesting, noise))
                    bar.update(size * len(rows))
                results.append(_statistics(torch.cat(log_w).double().cpu(), iwae_k, khat))
                release_free_memory()
    log_px, elbo, iwae, stderr, khats = (torch.cat(r) if r[0] is not None else None for r in zip(*results, strict=True))
    if log_px.isnan().any():
        first = int(index[log_px.isnan()][0])
        raise ValueError(
            f"log p(x) is NaN for {int(log_px.isnan().sum())} data points (first: index {first}): the model or "
            "guide gives NaN log-densities there; check those rows and the networks' outputs"
        )
    if khats is not None and (khats > KHAT_THRESHOLD).any():
        warnings.warn(
            f"Pareto k-hat > {KHAT_THRESHOLD} for {(khats > KHAT_THRESHOLD).double().mean():.1%} of the data "
            "points: q(z|x) is a poor importance proposal there and their log p(x) estimates may be far off "
            "(Yao et al. 2018); use more samples or a better guide",
            stacklevel=2,
        )
    return ImportanceEstimate(log_px, elbo, iwae, stderr, khats, int(num_samples), iwae_k)


def log_weights(
    model: Callable,
    guide: Callable,
    args: Sequence[torch.Tensor],
    num_samples: int,
    data_plate: str | Sequence[str],
    max_plate_nesting: int,
    noise: IndexedNoise | None = None,
) -> torch.Tensor:
    """The ``(num_samples, batch)`` matrix of :math:`\\log p(x_n, z_{kn}) - \\log q(z_{kn} | x_n)`: the
    guide traced under a particle plate (inside ``noise``, if given), the model replayed on it, the model's observed
    sites outside the data plate(s) ``data_plate`` left out (global values,
    :func:`pyrovae.infer.traces.remove_global_observations`), and each trace's unscaled, masked log-densities
    summed per sample and data point (:func:`pyrovae.infer.traces.per_datapoint_log_prob`)."""
    particle_dim = -max_plate_nesting - 1
    particles = pyro.plate(PARTICLES, num_samples, dim=particle_dim)
    guide = particles(guide) if noise is None else noise(particles(guide))  # noise outside the particle plate
    model_trace, guide_trace = model_and_guide_traces(particles(model), guide, *args)
    remove_global_observations(model_trace, data_plate)
    frames = data_plate_frames(data_plate, model_trace, guide_trace)
    num_rows = len(args[0])
    if frames[0].size != num_rows:
        raise ValueError(
            f"the {describe_data_plates(data_plate)} has {frames[0].size} entries for {num_rows} rows of data: model "
            "and guide must be called without subsampling, one plate entry per row"
        )
    model_log_p, guide_log_q = (
        per_datapoint_log_prob(trace, frames, num_samples, particle_dim, scaled=False)
        for trace in (model_trace, guide_trace)
    )
    return model_log_p - guide_log_q


def _at(program: Callable, fixed: dict[str, torch.Tensor], hide_fixed: bool = False) -> Callable:
    """``program`` conditioned on the values ``fixed``, with the auxiliary global sites that drew them out of its
    trace (an autoguide's ``"<name>_unconstrained"``, whose value the fixed one replaces), and the fixed sites too
    with ``hide_fixed``. ``program`` itself without ``fixed``."""
    if not fixed:
        return program

    def hidden(msg: dict) -> bool:
        global_auxiliary = msg["infer"].get("is_auxiliary") and not any(f.vectorized for f in msg["cond_indep_stack"])
        return bool(global_auxiliary) or (hide_fixed and msg["name"] in fixed)

    return poutine.block(poutine.condition(program, data=fixed), hide_fn=hidden)


def _structure(
    model: Callable,
    guide: Callable,
    args: list[torch.Tensor],
    data_plate: str | Sequence[str] | None,
    max_plate_nesting: int | None,
    fixed: dict[str, torch.Tensor],
) -> tuple[tuple[str, ...], int]:
    """Trace model and guide once on a few rows, both conditioned on ``fixed``; find the data plates and the plate
    nesting, and check that the model's latent sites are per-datapoint sites, that the guide proposes them, and that
    the fixed sites are global ones."""
    with poutine.block():
        model_trace, guide_trace = model_and_guide_traces(_at(model, fixed), _at(guide, fixed), *args)
    model_sites = site_names(model_trace)
    unknown = sorted(set(fixed) - set(model_sites) - set(site_names(guide_trace)))
    if unknown:
        raise ValueError(
            f"fixed holds {unknown}, which are not sample sites of the model or the guide; the model's sample sites "
            f"are {model_sites}"
        )
    guide_sites, latent = set(site_names(guide_trace)) - set(fixed), set(site_names(model_trace, observed=False))
    frames = [
        {f.name: f for f in stack}
        for trace in (model_trace, guide_trace)
        for name, stack in get_plate_stacks(trace).items()
        if name not in fixed
    ]
    plates = _data_plates(frames, data_plate)
    where = describe_data_plates(plates)
    global_latent = sorted(set(outside_plate(model_trace, plates)) & latent)
    if global_latent:
        raise ValueError(
            f"the latent sites {global_latent} are not in the {where}: a global latent variable has no log p(x) per "
            f"data point; estimate log p(x | {', '.join(global_latent)}) at given values with "
            f"fixed={{{global_latent[0]!r}: value, ...}}"
        )
    if latent - guide_sites:
        raise ValueError(
            f"the model's latent sites {sorted(latent - guide_sites)} are not sampled by the guide: "
            "importance sampling needs the guide to propose every latent variable"
        )
    if guide_sites - latent:
        raise ValueError(
            f"the guide's sites {sorted(guide_sites - latent)} are not latent sites of the model: "
            "log p(x) by importance sampling needs guide and model to share their latent sites (to hold a global "
            "site at a value in both, pass fixed={name: value})"
        )
    for trace in (model_trace, guide_trace):
        remove_global_observations(trace, plates)
    inside = sorted(set(fixed) & {name for trace in (model_trace, guide_trace) for name in site_names(trace)})
    if inside:
        raise ValueError(
            f"the fixed sites {inside} are in the {where}: fixed holds values of global sites, shared by all data "
            "points"
        )
    if not site_names(model_trace, observed=True):
        raise ValueError(
            f"no observed site of the model is in the {where}: log p(x) needs each data point's observations in a "
            "data plate (observed sites outside the data plates are global values the model is conditioned on, and "
            "are left out)"
        )
    data_plate_frames(plates, model_trace, guide_trace)  # every site in one data plate, all of one size
    if max_plate_nesting is None:
        max_plate_nesting = max((-f.dim for fs in frames for f in fs.values()), default=0)
    return plates, max_plate_nesting


def _data_plates(
    frames: list[dict[str, CondIndepStackFrame]], data_plate: str | Sequence[str] | None
) -> tuple[str, ...]:
    """The names of the data plates, from the frames of each sample site by plate name: those named by
    ``data_plate``; by default the outermost plate that every site in a plate is in, or without one, the outermost
    plate of each such site (in order of appearance)."""
    if data_plate is not None:
        plates = (data_plate,) if isinstance(data_plate, str) else tuple(data_plate)
        known = sorted({name for site in frames for name in site})
        if not plates or not set(plates) <= set(known):
            raise ValueError(
                f"data_plate must name plates that hold sample sites, got {list(plates)}; the plates of the model "
                f"and guide are {known}"
            )
        return plates
    plated = [site for site in frames if site]
    if not plated:
        raise ValueError(
            "no sample site is in a plate, so log p(x) per data point is not defined: put each data point's sites "
            "in a data plate (a pyro.plate over the rows of x)"
        )
    common = set.intersection(*(set(site) for site in plated))
    if common:
        return (max(common, key=lambda name: -plated[0][name].dim),)
    return tuple(dict.fromkeys(max(site.values(), key=lambda f: -f.dim).name for site in plated))


def bytes_per_pair(
    model: Callable,
    guide: Callable,
    args: list[torch.Tensor],
    data_plate: str | Sequence[str],
    max_plate_nesting: int,
    seed: int,
) -> float:
    """Bytes of tensors that one more (sample, point) pair of :func:`log_weights` takes at its peak: the slope
    between two probes on the rows ``args`` with :data:`PROBE_SAMPLES` samples (validation off; the noise of
    ``seed``, so the global RNG is untouched)."""
    peaks = []
    with pyro.validation_enabled(False):
        for num_samples in PROBE_SAMPLES:
            noise = IndexedNoise(seed, data_plate, range(len(args[0])), 0, particle_dim=-max_plate_nesting - 1)
            with PeakMemory() as memory:
                log_weights(model, guide, args, num_samples, data_plate, max_plate_nesting, noise)
            peaks.append(memory.peak)
    pairs = [len(args[0]) * k for k in PROBE_SAMPLES]
    return max((peaks[1] - peaks[0]) / (pairs[1] - pairs[0]), 1.0)


def chunk_sizes(
    num_points: int,
    num_samples: int,
    pair_bytes: float,
    max_memory: int = MAX_MEMORY,
    *,
    data_chunk: int | None = None,
    sample_chunk: int | None = None,
) -> tuple[int, int]:
    """``(data_chunk, sample_chunk)`` so that one chunk's ``data_chunk * sample_chunk`` (sample, point)
    pairs at ``pair_bytes`` each (:func:`bytes_per_pair`) fill ``max_memory /`` :data:`ALLOCATOR_OVERHEAD`;
    given sizes are kept.
    Whole sample sets are preferred (several points at a time), else sample chunks in multiples of the
    noise block for one point at a time."""
    for name, value in (("data_chunk", data_chunk), ("sample_chunk", sample_chunk)):
        if value is not None and int(value) < 1:
            raise ValueError(f"{name} must be a positive integer, got {value}")
    pairs = max(1, int(max_memory / ALLOCATOR_OVERHEAD / pair_bytes))
    if sample_chunk is None:
        if data_chunk is None and pairs < num_samples:
            data_chunk = 1
        per_point = pairs // (data_chunk or 1)
        sample_chunk = per_point if per_point < NOISE_BLOCK else per_point - per_point % NOISE_BLOCK
    sample_chunk = max(1, min(int(sample_chunk), num_samples))
    if data_chunk is None:
        data_chunk = pairs // sample_chunk
    return max(1, min(int(data_chunk), num_points)), sample_chunk


def release_free_memory() -> None:
    """Free what the last chunk left behind: collect reference cycles, then give freed memory back to the
    operating system (glibc's ``malloc_trim``).

    Pyro's flow transforms keep the tensors they cache in reference cycles, which Python's cycle collector may
    not visit for many chunks, so memory grows chunk after chunk. Chunk-sized tensors freed by several threads
    also leave glibc's heaps fragmented: without the trim the resident memory of a long CPU evaluation creeps well
    past ``max_memory`` (figures: the documentation's results page). The trim is a no-op where glibc is absent.
    Inside :func:`collect_young_only` the collection scans only the objects made since it was entered."""
    gc.collect()
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


@contextmanager
def collect_young_only() -> Iterator[None]:
    """Within the block, Python's cycle collector skips the objects that existed when it was entered
    (``gc.freeze``; ``gc.unfreeze`` on the way out), so the collection after every chunk scans only what the
    chunks made. A full collection scans every object of the process, hundreds of thousands with torch and Pyro
    imported: more time per chunk than many chunks' tensor work on a GPU (figures: the documentation's results
    page).
    Objects a caller froze before are left as they are (nothing is frozen then)."""
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _statistics(
    log_w: torch.Tensor, iwae_k: int, khat: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Per-point ``log_px``, ``elbo``, ``iwae``, ``stderr`` and k-hat from ``(K, B)`` log-weights."""
    num_samples = len(log_w)
    log_px = log_w.logsumexp(0) - math.log(num_samples)
    log_mean_w2 = (2 * log_w).logsumexp(0) - math.log(num_samples)
    stderr = ((log_mean_w2 - 2 * log_px).expm1().clamp(min=0) / num_samples).sqrt()
    if num_samples == 1:  # the sample variance of one weight is undefined, not 0
        stderr = torch.full_like(stderr, math.nan)
    groups = num_samples // iwae_k
    iwae = (log_w[: groups * iwae_k].reshape(groups, iwae_k, -1).logsumexp(1) - math.log(iwae_k)).mean(0)
    return log_px, log_w.mean(0), iwae, stderr, psis_khat(log_w) if khat else None


def psis_khat(log_w: torch.Tensor) -> torch.Tensor:
    """Pareto :math:`\\hat k` of each column of ``(K, B)`` log-weights, with the tail choice of
    :func:`pyro.infer.importance.psis_diagnostic` (the largest ``min(0.2 K, 3 sqrt(K))`` weights) and
    Pyro's :func:`~pyro.ops.stats.fit_generalized_pareto`; ``inf`` when the tail has under 10 weights."""
    num_samples = len(log_w)
    cut = -math.ceil(min(0.2 * num_samples, 3.0 * math.sqrt(num_samples))) - 1
    if -cut > num_samples:
        return torch.full(log_w.shape[1:], math.inf, dtype=log_w.dtype)
    out = []
    for column in log_w.T:
        sorted_w = (column - column.max()).sort().values
        cutoff = max(math.log(1e-15), sorted_w[cut].item())
        tail = sorted_w[sorted_w > cutoff]
        out.append(fit_generalized_pareto(tail.exp() - math.exp(cutoff))[0] if len(tail) >= 10 else math.inf)
    return torch.tensor(out, dtype=log_w.dtype)


def _check_args(args: tuple[torch.Tensor, ...]) -> int:
    if not args or not all(isinstance(a, torch.Tensor) for a in args):
        raise TypeError("x must be a tensor or a tuple of tensors")
    sizes = {len(a) if a.dim() else -1 for a in args}
    if len(sizes) != 1 or min(sizes) < 1:
        raise ValueError(
            f"x must be non-empty tensors with the same number of rows, got shapes {[tuple(a.shape) for a in args]}"
        )
    return sizes.pop()
