r"""What the model objects share: one object that takes data, builds a pyrovae model, trains it, evaluates it in
the data's own units, saves it and loads it back (the model objects of scvi-tools and pythae), thin over the
library: :func:`pyrovae.fit` / :func:`pyrovae.fit_semisupervised` train, :func:`pyrovae.load_model` rebuilds,
:func:`~pyrovae.viz.latent.posterior_means` and :func:`~pyrovae.log_marginal_likelihood` evaluate. The Pyro model
and guide stay what they are (``m.model``, ``m.guide``).

**Data** (:func:`intake`): a :class:`~pyrovae.data.Dataset`, an ``(N, D)`` tensor or NumPy array, or the path of a
file (:func:`pyrovae.data.files.load_file`). ``likelihood="auto"`` takes the one the values call for
(:func:`~pyrovae.models.likelihoods.likelihood_for`: binary, grey levels in [0, 1], real values); a likelihood
that cannot model the values (a Bernoulli of grey levels without ``binarize``, a Bernoulli of real values) is an
error. Real-valued data are standardized by the training split (:meth:`Dataset.standardized`,
:mod:`pyrovae.data.standardize`), and every method then takes and returns the data's own units: inputs are
standardized, outputs mapped back, log-densities get the Jacobian
:math:`\log|\det \partial s/\partial x| = -\sum_d \log \sigma_d`.

**Training** (:meth:`ModelObject.train`): ``epochs`` is the total, as everywhere in pyrovae. A later call with more
epochs trains the difference: in memory from the trained weights (Adam's moments start afresh and the noise is
seeded with ``seed`` plus the epochs done, so that new minibatches are drawn), or, when the earlier calls trained
in the run folder ``out_dir`` and this one names it again, resumed from ``out_dir/checkpoint.pt`` exactly as an
uninterrupted run.

**Saving**: :meth:`ModelObject.save` writes ``checkpoint.pt`` (atomically) with the model's settings in
``extra["vae"]`` (``extra["ssvae"]``) and its parameters as training saves them, so that
:func:`pyrovae.load_model` reads it too, plus ``extra["data"]``: the likelihood and why, the image shape, the
binarization and the standardization (tensors and plain values only: it loads with ``weights_only=True``). The
``checkpoint.pt`` of a run folder written by :meth:`~ModelObject.train` is such a file as well.
:meth:`ModelObject.load` rebuilds the object without its training data; what needs them (training) says so.
"""

from __future__ import annotations

import os
from dataclasses import fields
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from pyro.params import param_with_module_name

from pyrovae.checkpoint import CheckpointError, malformed, save_checkpoint
from pyrovae.data.datasets import Dataset
from pyrovae.data.files import load_file
from pyrovae.data.record import DataRecord
from pyrovae.data.standardize import Standardization
from pyrovae.data.validation import parameter_dtype
from pyrovae.device import device_of
from pyrovae.infer.importance import log_marginal_likelihood
from pyrovae.models.base import ObservedModel
from pyrovae.models.likelihoods import LIKELIHOODS, choose_likelihood, likelihood_for
from pyrovae.models.registry import load_model
from pyrovae.seeding import seeded
from pyrovae.train.loop import LoopConfig
from pyrovae.train.rundir import CHECKPOINT
from pyrovae.viz.plots import prior_samples

#: what a model object takes as data
DataLike = Dataset | torch.Tensor | np.ndarray | str | os.PathLike
#: rows per batch of the evaluation methods
BATCH_SIZE = 1000


def intake(
    data: DataLike,
    likelihood: str = "auto",
    *,
    binarize: str = "none",
    standardize: bool = True,
    image_shape: tuple[int, int, int] | None = None,
    data_options: dict[str, Any] | None = None,
) -> tuple[Dataset, str, str]:
    """The data as a :class:`~pyrovae.data.Dataset`, the likelihood to model them with and why (see the module
    docstring).

    :param data: a Dataset; an ``(N, D)`` tensor or NumPy array (:meth:`Dataset.from_tensors`, real-valued when
        values lie outside [0, 1], as :func:`pyrovae.data.files.load_file` has it); or a path, read by ``load_file``
        with ``data_options``.
    :param str likelihood: ``"auto"`` or one of :data:`~pyrovae.models.likelihoods.LIKELIHOODS`.
    :param str binarize: of a tensor or a file: ``"none"`` (default), ``"dynamic"`` or ``"static"`` (see
        :class:`Dataset`).
    :param bool standardize: standardize real-valued data (``Dataset.real``) by the training split (for a path,
        ``load_file``'s ``standardize``, unless ``data_options`` give one).
    :param image_shape: of a tensor: ``(C, H, W)`` of its rows.
    :param dict data_options: keyword arguments of ``load_file``, for a path only.
    :returns: ``(dataset, likelihood, reason)``.
    :raises ValueError: for an unknown likelihood, or one that cannot model the values (saying which can).
    :raises TypeError: for data of another type, or options that do not apply to it.
    """
    if likelihood != "auto" and likelihood not in LIKELIHOODS:
        choices = ", ".join(map(repr, LIKELIHOODS))
        raise ValueError(f"unknown likelihood {likelihood!r}: choose 'auto' or one of {choices}")
    if data_options and not isinstance(data, (str, os.PathLike)):
        raise TypeError("data_options are the options of reading a file: give them with a path only")
    if isinstance(data, (str, os.PathLike)):
        if image_shape is not None:
            raise TypeError("image_shape is a setting of a tensor's rows: a file's image shape is read from it")
        data = load_file(data, **{"standardize": standardize, "binarize": binarize, **(data_options or {})})
    elif not isinstance(data, Dataset):
        x = as_tensor(data, "data")
        real = binarize == "none" and likelihood_for(x)[0] == "normal"  # values outside [0, 1], as load_file says
        data = Dataset.from_tensors(x, binarize=binarize, real=real, image_shape=image_shape)
    elif binarize != "none" or image_shape is not None:
        raise TypeError("binarize and image_shape are settings of a tensor's Dataset: set them on the Dataset")
    if standardize and data.real and data.standardization is None:
        data = data.standardized()
    found = choose_likelihood(data)
    chosen = found if likelihood == "auto" else (likelihood, "given")
    if LIKELIHOODS.index(chosen[0]) < LIKELIHOODS.index(found[0]):  # each likelihood models a subset of the next's
        hint = " (or binarize='dynamic' for a Bernoulli of grey levels)" if chosen[0] == "bernoulli" else ""
        raise ValueError(
            f"likelihood={chosen[0]!r} cannot model these data: {found[1]}; use likelihood={found[0]!r} or 'auto'{hint}"
        )
    return data, *chosen


def as_tensor(x: Any, name: str = "x") -> torch.Tensor:
    """``x`` (a tensor or NumPy array) as a floating tensor (``float32`` unless it is floating already).

    :raises TypeError: for anything else."""
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch tensor or a NumPy array, got {type(x).__name__}")
    return x if x.is_floating_point() else x.float()


def module_params(module: ObservedModel) -> dict[str, torch.Tensor]:
    """The parameters of ``module``'s children by the names Pyro's param store gives them (``"encoder$$$..."``),
    as training saves them (``state["params"]``), detached CPU copies."""
    return {param_with_module_name(module.site(part), name): p.detach().cpu().clone()
            for part, child in module.named_children() for name, p in child.named_parameters()}  # fmt: skip


class ModelObject:
    """The base class of :class:`~pyrovae.objects.vae.VAEModel` and :class:`~pyrovae.objects.ssvae.SSVAEModel`
    (see the module docstring).

    :ivar module: the pyrovae model (an ``nn.Module``: :class:`pyrovae.VAE`, :class:`pyrovae.SSVAE`).
    :ivar data: the training :class:`~pyrovae.data.Dataset` as the model sees it (standardized when real-valued);
        ``None`` after :meth:`load`.
    :ivar str likelihood: the observation model p(x|·).
    :ivar str likelihood_reason: why: what ``likelihood="auto"`` found in the values, or ``"given"``.
    :ivar standardization: the :class:`~pyrovae.data.standardize.Standardization` between the data's units and the
        model's, or ``None``.
    :ivar list history: one row per epoch trained, as :func:`pyrovae.fit` returns them.
    """

    #: the checkpoint section of the model's settings, and the settings class of :meth:`train`
    section: ClassVar[str]
    config_class: ClassVar[type[LoopConfig]]
    #: the model class the object wraps
    module_class: ClassVar[type[ObservedModel]]

    def __init__(self, module: ObservedModel, data: Dataset | None, likelihood_reason: str, seed: int = 0) -> None:
        self.module, self.data, self.seed = module, data, int(seed)
        self.likelihood, self.likelihood_reason = module.likelihood, likelihood_reason
        self.standardization: Standardization | None = None if data is None else data.standardization
        self.image_shape = None if data is None else tuple(data.image_shape)
        #: how the training data were made binary (:class:`~pyrovae.data.Dataset`'s ``binarize``), which
        #: ``pyrovae encode --data`` repeats on new rows
        self.binarize = "none" if data is None else data.binarize
        self.history: list[dict[str, Any]] = []
        #: training settings the object gives :meth:`train` unless the call does (e.g. the SSVAE's ``num_labels``)
        self.train_defaults: dict[str, Any] = {}
        self._run_dir: Path | None = None  # the run folder that holds every epoch trained so far, if one does

    @property
    def model(self):
        """The Pyro model, ``module.model``."""
        return self.module.model

    @property
    def guide(self):
        """The Pyro guide, ``module.guide``."""
        return self.module.guide

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.module.kind}, x_dim={self.module.x_dim}, likelihood={self.likelihood!r}, "
                f"standardized={self.standardization is not None}, epochs={len(self.history)})")  # fmt: skip

    # ------------------------------------------------------------------ training

    def train(
        self,
        epochs: int,
        *,
        out_dir: str | os.PathLike | None = None,
        overwrite: bool = False,
        verbose: bool = True,
        progress: bool | None = None,
        callback=None,
        **settings: Any,
    ) -> list[dict[str, Any]]:
        """Train the model to ``epochs`` epochs in all (see the module docstring for a later call).

        :param int epochs: the total number of epochs, those trained by earlier calls included.
        :param out_dir: a run folder for this training (:func:`pyrovae.fit`'s); ``None`` writes nothing. Once the
            model has trained, only the folder that holds all its epochs may be named again (the run resumes).
        :param bool overwrite: a new run may replace one in ``out_dir``.
        :param bool verbose: print one line per epoch.
        :param bool progress: show a progress bar (default: only when stderr is a terminal).
        :param callback: called with each epoch's row (see :func:`pyrovae.fit`).
        :param settings: the other fields of the settings class (:class:`pyrovae.TrainConfig`,
            :class:`pyrovae.SemiSupervisedConfig`): ``batch_size``, ``lr``, ``seed`` (default the object's), ...
        :returns: the whole history, one row per epoch.
        :raises ValueError: without training data (a loaded object), for fewer epochs than trained already, or an
            ``out_dir`` that does not hold the epochs trained so far.
        :raises TypeError: for a setting the settings class does not have.
        """
        data = self._needs_data("train")
        settings = {**self.train_defaults, **settings}
        names = {f.name for f in fields(self.config_class)} - {"epochs"}
        unknown = sorted(set(settings) - names)
        if unknown:
            raise TypeError(f"unknown training settings {unknown}: choose among {sorted(names)}")
        done = len(self.history)
        if epochs < done:
            raise ValueError(
                f"the model has trained {done} epochs and epochs={epochs} is the total to reach, not a number to add: "
                f"give more than {done} (epochs={done + epochs} trains {epochs} more)"
            )
        if epochs == done:
            return self.history
        resume = out_dir is not None and done > 0
        if resume and (self._run_dir is None or Path(out_dir).resolve() != self._run_dir):
            where = f"is {self._run_dir}" if self._run_dir else "is none: they trained in memory"
            raise ValueError(
                f"out_dir={str(out_dir)!r} would not hold the {done} epochs trained so far (their run folder {where}): "
                "name that folder to resume the run, or leave out_dir out to go on in memory"
            )
        seed = settings.pop("seed", self.seed)
        config = self.config_class(**settings, epochs=epochs if resume else epochs - done,
                                   seed=seed if resume else seed + done)  # fmt: skip
        rows = self._fit(data, config, out_dir=out_dir, resume=resume, overwrite=overwrite, verbose=verbose,
                         progress=progress, callback=callback, extra={"data": self._data_state()})  # fmt: skip
        self.history = rows if resume else self.history + [{**row, "epoch": row["epoch"] + done} for row in rows]
        self._run_dir = None if out_dir is None else Path(out_dir).resolve()
        return self.history

    def _fit(self, data: Dataset, config: LoopConfig, **options: Any) -> list[dict[str, Any]]:
        """Train on ``data`` with ``config`` (:func:`pyrovae.fit` or :func:`pyrovae.fit_semisupervised`)."""
        raise NotImplementedError

    def _needs_data(self, what: str) -> Dataset:
        if self.data is None:
            raise ValueError(
                f"{what} needs the training data, and this {type(self).__name__} was loaded without them: build a new "
                f"one with the data ({type(self).__name__}(data, ...)) to train"
            )
        return self.data

    # ------------------------------------------------------------------ evaluation, in the data's units

    def inputs(self, x: Any) -> torch.Tensor:
        """Rows ``x`` in the data's units (an ``(N, D)`` tensor or array) as the model takes them: checked,
        standardized when the data were, on the model's device in its dtype.

        :raises ValueError: for another shape than ``(N, x_dim)``."""
        x = as_tensor(x)
        x_dim = self.module.x_dim
        if x.dim() != 2 or x.shape[-1] != x_dim or not len(x):
            hint = ": add a batch dimension, x[None]" if x.shape == (x_dim,) else ""
            raise ValueError(f"x must hold rows of the data, a non-empty (N, {x_dim}) tensor or array, got shape "
                             f"{tuple(x.shape)}{hint}")  # fmt: skip
        x = x.to(device_of(self.module), parameter_dtype(self.module))
        return x if self.standardization is None else self.standardization(x)

    def outputs(self, x: torch.Tensor) -> torch.Tensor:
        """Rows as the model gives them, in the data's units (mapped back when the data were standardized)."""
        return x if self.standardization is None else self.standardization.inverse(x)

    def log_px(self, x: Any, num_samples: int = 1000, *, seed: int = 0, **options: Any) -> torch.Tensor:
        r""":math:`\log p(x_n)` of every row, in the data's units, ``(N,)`` ``float64`` on the CPU: the importance
        sampled estimate of :func:`pyrovae.log_marginal_likelihood` (``num_samples`` draws of the guide per row,
        noise seeded by ``seed``: the same seed gives the same figures on the CPU), plus the standardization's
        Jacobian when the data were standardized.

        :param options: further options of :func:`pyrovae.log_marginal_likelihood` (``max_memory``, ``progress``, ...).
        """
        with seeded(seed):  # the draws IndexedNoise leaves to torch's generator (the SSVAE's label) are seeded too
            estimate = log_marginal_likelihood(self.model, self.guide, self.inputs(x), num_samples, seed=seed,
                                               **options)  # fmt: skip
        jacobian = 0.0 if self.standardization is None else self.standardization.log_abs_det_jacobian
        return estimate.log_px + jacobian

    def sample(self, n: int, *, seed: int | None = None, mean: bool = True) -> torch.Tensor:
        r"""``n`` new rows from the model, in the data's units, ``(n, x_dim)``: the mean of :math:`p(x|\cdot)` at
        latents drawn from the prior (``mean=True``), or draws of :math:`p(x|\cdot)` itself
        (:func:`~pyrovae.viz.plots.prior_samples`).

        :param int seed: seeds the draws (:func:`pyrovae.seeding.seeded`); ``None`` draws from torch's generator."""
        if int(n) < 1:
            raise ValueError(f"n must be a positive number of rows, got {n}")
        with seeded(seed):
            return self.outputs(prior_samples(self.model, int(n), self.module.site("x"), mean=mean))

    # ------------------------------------------------------------------ saving and loading

    def _data_state(self) -> dict[str, Any]:
        """``extra["data"]`` of a checkpoint: what the object needs besides the model (plain values and tensors)."""
        return {
            "likelihood": self.likelihood,
            "likelihood_reason": self.likelihood_reason,
            **DataRecord(self.image_shape, self.binarize, self.standardization).state(),
            "seed": self.seed,
        }

    def save(self, folder: str | os.PathLike) -> Path:
        """Write the model to ``folder/checkpoint.pt`` atomically (see the module docstring), readable by
        :meth:`load` and :func:`pyrovae.load_model`.

        :returns: the path written.
        :raises ValueError: for a model with custom networks, which has no settings to rebuild it from."""
        if self.module.config is None:
            raise ValueError("the model has custom networks, whose settings a checkpoint cannot hold: save the "
                             "weights yourself (module.state_dict())")  # fmt: skip
        path = Path(folder) / CHECKPOINT
        save_checkpoint(path, {
            "epoch": len(self.history),
            "params": module_params(self.module),
            "history": self.history,
            "extra": {self.section: self.module.config, "data": self._data_state()},
        })  # fmt: skip
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, map_location: str | torch.device = "cpu"):
        """The object saved by :meth:`save` (or trained with ``out_dir``) in ``path`` (the folder or its
        ``checkpoint.pt``), without training data; :meth:`train` is then an error. A checkpoint of ``pyrovae train``
        loads too, with the standardization its run recorded (``pyrovae train --data``); one of :func:`pyrovae.fit`
        without a record of its data (``extra["data"]``) takes and gives the data as the model saw them.

        :raises CheckpointError: if the checkpoint holds another kind of model (load it with the model object of its
            kind, or :func:`pyrovae.load_model`), or its record of the data is damaged."""
        path = Path(path)
        file = path / CHECKPOINT if path.is_dir() else path
        module, state, _ = load_model(file, map_location)
        if not isinstance(module, cls.module_class):
            raise CheckpointError(f"{file} holds a {module.kind!r} model, not one of {cls.__name__}: load it with "
                                  "the model object of its kind, or pyrovae.load_model")  # fmt: skip
        saved, record = state.get("extra", {}).get("data") or {}, DataRecord.read(state, file)
        with malformed(file):
            obj = cls.__new__(cls)
            reason = saved.get("likelihood_reason", "recorded in the checkpoint")
            ModelObject.__init__(obj, module, None, reason, saved.get("seed", state.get("config", {}).get("seed", 0)))
            obj.standardization, obj.image_shape = record.standardization, record.image_shape
            obj.binarize = record.binarize
            obj.history = list(state.get("history", []))
        return obj
