r"""Log-densities per data point, read from a guide trace and the model replayed against it.

The estimators of :mod:`pyrovae.infer` all start from the same two traces: the guide's, which draws
:math:`z \sim q(z | x)`, and the model's, replayed so that its latent sites take the guide's values. Each
sample site :math:`s` of a trace has a log-density :math:`\ell_s` of its batch shape. Inside a data plate
(one entry per data point :math:`n`), optionally under a vectorized particle plate (one entry per sample
:math:`k`), a trace's log-density of data point :math:`n` and sample :math:`k` is

.. math:: \ell_{kn} = \sum_s \; \sum_{\text{batch dims } d \,\ne\, \text{particles, data}} \ell_s[k, \dots, n, \dots],

so that for the model :math:`\ell_{kn} = \log p(x_n, z_{kn})`, for the guide
:math:`\ell_{kn} = \log q(z_{kn} | x_n)`, and their difference is the log importance weight
:math:`\log w_{kn}` (:func:`per_datapoint_log_prob`). A program may also index its rows by several data plates
of the same size, e.g. two prefixed VAEs modelling two views :math:`x_n = (x^a_n, x^b_n)` of each row, each in
its own plate: every site then lies in exactly one of them and :math:`\ell_{kn}` sums the sites of all of them
(:func:`data_plate_frames`). Observed sites outside every data plate are global values the model is conditioned
on, :math:`\theta_0`; their log-density :math:`\log p(\theta_0)` is the same for every data point and belongs to
none, so they are taken out of the model's trace first (:func:`remove_global_observations`), and then
:math:`\ell_{kn} = \log p(x_n, z_{kn} | \theta_0)`. A site's :math:`\ell_s` carries its mask and, unless
asked for unscaled, its scale: that of ``poutine.scale`` and the data plate's subsample scale
:math:`N / |B|` (:func:`subsample_scale`).

Pyro's own machinery does the tracing (``poutine.trace``, ``poutine.replay``), the log-densities
(:meth:`pyro.poutine.Trace.compute_log_prob`, :meth:`~pyro.poutine.Trace.log_prob_sum`) and the plate stacks
(:func:`pyro.infer.util.get_plate_stacks`). The sum over the other batch dims is written out here:
:func:`pyro.infer.util.plate_log_prob_sum` keeps a single plate (not particles and data points), and
:class:`pyro.infer.util.MultiFrameTensor` sums plate dims only, leaving batch dims outside any plate.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence

import torch
from pyro import poutine
from pyro.distributions import Unit
from pyro.distributions.util import scale_and_mask
from pyro.infer.util import get_plate_stacks
from pyro.poutine.indep_messenger import CondIndepStackFrame
from pyro.poutine.util import site_is_subsample


def replay_model(model: Callable, guide_trace: poutine.Trace, *args, **kwargs) -> poutine.Trace:
    """The trace of ``model(*args, **kwargs)`` replayed against ``guide_trace``: each latent site the guide
    sampled takes the guide's value, so the trace holds :math:`\\log p(x, z)` at :math:`z \\sim q(z | x)`."""
    return poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*args, **kwargs)


def model_and_guide_traces(model: Callable, guide: Callable, *args, **kwargs) -> tuple[poutine.Trace, poutine.Trace]:
    """Trace ``guide(*args, **kwargs)``, then replay the model against it (:func:`replay_model`).

    :returns: ``(model_trace, guide_trace)``, in the order of :func:`pyro.infer.enum.get_importance_trace`.
    """
    guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
    return replay_model(model, guide_trace, *args, **kwargs), guide_trace


def site_names(trace: poutine.Trace, *, observed: bool | None = None) -> list[str]:
    """Names of the trace's sample sites in trace order, plates' subsample sites left out: all of them, or only
    the observed (``observed=True``) or the latent (``observed=False``) ones."""
    return [
        name
        for name, site in trace.nodes.items()
        if site["type"] == "sample" and not site_is_subsample(site) and observed in (None, site["is_observed"])
    ]


def outside_plate(trace: poutine.Trace, plate: str | Collection[str]) -> list[str]:
    """Sorted names of the trace's sample sites that lie in none of the vectorized plates named ``plate`` (one name or
    several)."""
    plates = {plate} if isinstance(plate, str) else set(plate)
    return sorted(name for name, stack in get_plate_stacks(trace).items() if not plates & {f.name for f in stack})


def remove_global_observations(trace: poutine.Trace, plate: str | Collection[str]) -> list[str]:
    """Remove from ``trace`` its observed sample sites that lie in none of the data plates named ``plate``: the
    global values :math:`\\theta_0` the model is conditioned on, whose :math:`\\log p(\\theta_0)` is the same for
    every data point (see :mod:`pyrovae.infer.traces`). Latent sites stay, wherever they are.

    :returns: the names of the removed sites, sorted.
    :raises ValueError: for an observed site outside the data plates with batch dims of its own (not a plate's):
        observations of several data points left out of the data plate, which must not be dropped.
    """
    removed = [name for name in outside_plate(trace, plate) if trace.nodes[name]["is_observed"]]
    for name in removed:
        site = trace.nodes[name]
        plate_dims = {f.dim for f in site["cond_indep_stack"] if f.vectorized}
        shape = site["fn"].batch_shape
        own = [size for dim, size in zip(range(-len(shape), 0), shape, strict=True) if dim not in plate_dims]
        if any(size > 1 for size in own):
            raise ValueError(
                f"the observed site {name!r} is outside the data plate but has batch shape {tuple(shape)}: "
                "observations of the data points belong in the data plate (a global value the model is "
                "conditioned on has one value for all points)"
            )
    for name in removed:
        trace.remove_node(name)
    return removed


def describe_data_plates(plates: str | Sequence[str]) -> str:
    """``"data plate 'data'"`` or ``"data plates ['a/data', 'b/data']"``, for messages."""
    plates = [plates] if isinstance(plates, str) else list(plates)
    return f"data plate {plates[0]!r}" if len(plates) == 1 else f"data plates {plates}"


def data_plate_frames(plates: str | Sequence[str], *traces: poutine.Trace) -> tuple[CondIndepStackFrame, ...]:
    """The frames of the vectorized data plates named ``plates`` (one name or several), which index the same data
    points: every sample site of ``traces`` lies in exactly one of them.

    :returns: one frame per plate, in the order of ``plates``, that of the plate's first site; every site's frame
        of every plate has the same ``size`` (points in the batch) and ``full_size`` (points in the data set).
    :raises ValueError: if a site lies in none or several of the plates, if a plate has no sample site, or if the
        sites disagree on the sizes.
    """
    plates = [plates] if isinstance(plates, str) else list(plates)
    where = describe_data_plates(plates)
    outside = sorted({name for trace in traces for name in outside_plate(trace, plates)})
    if outside:
        raise ValueError(f"sites {outside} are not in the vectorized {where}")
    stacks = [(name, stack) for trace in traces for name, stack in get_plate_stacks(trace).items()]
    several = sorted({name for name, stack in stacks if len({f.name for f in stack} & set(plates)) > 1})
    if several:
        raise ValueError(f"sites {several} lie in more than one of the {where}: each must lie in exactly one")
    frames = {plate: [f for _, stack in stacks for f in stack if f.name == plate] for plate in plates}
    empty = [plate for plate, found in frames.items() if not found]
    if empty:
        raise ValueError(f"the data plate {empty[0]!r} has no sample site")
    sizes = {plate: sorted({(f.size, f.full_size) for f in found}) for plate, found in frames.items()}
    if len({size for found in sizes.values() for size in found}) != 1:
        raise ValueError(
            f"the {where} must have the same (size, full_size) at every site, one entry per data point; found "
            + ", ".join(f"{plate!r}: {found}" for plate, found in sizes.items())
        )
    return tuple(found[0] for found in frames.values())


def data_plate_frame(plate: str, *traces: poutine.Trace) -> CondIndepStackFrame:
    """The frame of the vectorized data plate named ``plate``, in which every sample site of ``traces`` lies
    (:func:`data_plate_frames` with one plate).

    :raises ValueError: if no sample site or not every one lies in the plate, or if sites disagree on its sizes.
    """
    return data_plate_frames(plate, *traces)[0]


def subsample_scale(frame: CondIndepStackFrame) -> float:
    """:math:`N / |B|`, the scale a subsampled plate gives its sites (``full_size / size``; 1 without
    subsampling)."""
    return frame.full_size / frame.size if frame.full_size is not None else 1.0


def compute_log_probs(*traces: poutine.Trace) -> None:
    """:meth:`~pyro.poutine.Trace.compute_log_prob` on each trace's sample sites but the plates' subsample sites
    (which :func:`pyro.poutine.util.prune_subsample_sites` would remove); memoized, so a second call is free."""
    for trace in traces:
        trace.compute_log_prob(lambda name, site: not site_is_subsample(site))


def per_datapoint_log_prob(
    trace: poutine.Trace,
    frame: CondIndepStackFrame | Sequence[CondIndepStackFrame],
    num_particles: int = 1,
    particle_dim: int | None = None,
    *,
    scaled: bool = True,
) -> torch.Tensor:
    """The ``(num_particles, size)`` matrix :math:`\\ell_{kn}` of the trace's log-density per sample and
    data point: each sample site's log-density summed over every batch dim but the particle plate's and its
    data plate's (see :mod:`pyrovae.infer.traces`), then summed over the sites. Log-densities are computed
    (:func:`compute_log_probs`) where the trace lacks them.

    :param frame: the data plate's frame, from :func:`data_plate_frame`, or the frames of several data plates of
        the same size, from :func:`data_plate_frames` (every sample site must lie in exactly one).
    :param int num_particles: the size of the particle plate (1 without one).
    :param int particle_dim: the (negative) dim of the vectorized particle plate, or ``None`` without one.
    :param bool scaled: with each site's scale (``poutine.scale``, subsample scale), as Pyro's ELBOs weigh the
        sites; ``False``: the unscaled densities of single points. Masks apply either way.
    """
    frames = [frame] if isinstance(frame, CondIndepStackFrame) else list(frame)
    plates = {f.name for f in frames}
    compute_log_probs(trace)
    total = torch.zeros(())
    for name, stack in get_plate_stacks(trace).items():
        site = trace.nodes[name]
        log_p = site["log_prob"] if scaled else scale_and_mask(site["unscaled_log_prob"], mask=site["mask"])
        data_dim = next(f.dim for f in stack if f.name in plates)
        keep = [data_dim] if particle_dim is None else [particle_dim, data_dim]
        total = total + _sum_except(torch.as_tensor(log_p), keep)
    return total.expand(num_particles, frames[0].size)


def log_prob_sum(trace: poutine.Trace, *, observed: bool) -> torch.Tensor | float:
    """:math:`\\sum_s \\sum \\ell_s` over the trace's observed (``observed=True``) or latent sample sites, with
    their scales and masks (:meth:`~pyro.poutine.Trace.log_prob_sum`); 0.0 if there are none.

    ``pyro.factor`` sites (observed, with a ``Unit`` distribution or marked ``is_auxiliary``) are left out:
    they are terms of a training objective, not of the density. Latent auxiliary sites, as in autoguides, are
    real samples and count."""
    names = set(site_names(trace, observed=observed))
    return trace.log_prob_sum(lambda name, site: name in names and not _is_factor(site))


def _sum_except(value: torch.Tensor, dims: Sequence[int]) -> torch.Tensor:
    """Sum ``value`` over every dim but ``dims`` (negative, from the right; left-padded with singleton dims to
    reach them), keeping those in order."""
    depth = max(-d for d in dims)
    value = value.reshape((1,) * max(0, depth - value.dim()) + value.shape)
    other = [d for d in range(value.dim()) if d - value.dim() not in dims]
    return value.sum(other) if other else value


def _is_factor(site: dict) -> bool:
    """Whether a sample site is a ``pyro.factor`` statement: observed, with a ``Unit`` distribution or marked
    ``is_auxiliary``."""
    return site["is_observed"] and (isinstance(site["fn"], Unit) or bool(site["infer"].get("is_auxiliary")))
