"""Rebuilding a model from its settings or from its checkpoint: one table of the model classes by ``kind``, one
factory (:func:`model_from_config`) and one loader (:func:`load_model`).

A model's :attr:`~pyrovae.models.base.ObservedModel.config` names its class (``config["model"]``, the class's
``kind``) and holds its constructor's arguments. A checkpoint of ``pyrovae train`` / :func:`pyrovae.fit` holds the
settings in ``extra["vae"]``, one of ``pyrovae train-ss`` / :func:`pyrovae.fit_semisupervised` in ``extra["ssvae"]``
(and ``extra["m1"]`` for M1+M2); both hold the trained weights as ``state["params"]``, the Pyro parameters by
``pyro.module`` name (:mod:`pyrovae.train.loop`). SSVAE checkpoints of pyrovae 0.1 held the model's
``state_dict`` as ``state["weights"]`` instead; they load too.

``extra["m1"]`` holds the M1 VAE's settings (``"vae"``) and the state of its
:class:`~pyrovae.models.features.LatentFeatures` (``"weights"``), the map from images to the codes the SSVAE models.

Settings without ``"model"`` (checkpoints written before the key) are a :class:`pyrovae.VAE` in ``extra["vae"]``
and an SSVAE in ``extra["ssvae"]``; SSVAE settings with ``a_dim > 0`` (as checkpoints written before the ADGM had
its own class record it, and as ``pyrovae train-ss --a-dim`` gives it) build the :class:`pyrovae.ADGM`.
"""

from __future__ import annotations

import os
from typing import Any, NamedTuple

import pyro
import torch

from pyrovae.checkpoint import CheckpointError, check_finite, load_checkpoint, malformed
from pyrovae.models.adgm import ADGM
from pyrovae.models.autoencoder import Autoencoder
from pyrovae.models.base import ObservedModel
from pyrovae.models.baseline import Baseline
from pyrovae.models.cvae import CVAE
from pyrovae.models.features import LatentFeatures
from pyrovae.models.iaf import IAFVAE
from pyrovae.models.ssvae import SSVAE
from pyrovae.models.store import forget
from pyrovae.models.two_layer import TwoLayerVAE
from pyrovae.models.vae import VAE
from pyrovae.models.vamp import VampVAE

#: the model classes by ``kind`` (``config["model"]``)
MODELS: dict[str, type[ObservedModel]] = {
    cls.kind: cls for cls in (VAE, Autoencoder, IAFVAE, VampVAE, TwoLayerVAE, SSVAE, ADGM, Baseline, CVAE)
}
#: the checkpoint sections that hold a model's settings (``extra[...]``), each with the kind of settings without
#: ``"model"``
SECTIONS = {"ssvae": SSVAE.kind, "vae": VAE.kind}


class LoadedModel(NamedTuple):
    """What :func:`load_model` returns."""

    #: the model, with its trained weights, on ``map_location``, in evaluation mode
    model: ObservedModel
    #: the checkpoint's dict (``history``, ``extra``, ``epoch``, ...)
    checkpoint: dict[str, Any]
    #: the M1 :class:`~pyrovae.models.features.LatentFeatures` of an M1+M2 SSVAE (in evaluation mode: posterior
    #: means), which map images to its inputs; ``None`` for every other model
    features: LatentFeatures | None = None


def model_from_config(config: dict[str, Any], seed: int | None = None) -> ObservedModel:
    """Build the model that ``config`` (a model's :attr:`~pyrovae.models.base.ObservedModel.config`) describes: the
    class of :data:`MODELS` named by ``config["model"]`` (default ``"vae"``), given the other entries. SSVAE
    settings (``"ssvae"``) with ``a_dim > 0`` build the :class:`pyrovae.ADGM`.

    :param int seed: seeds the initial weights (see :class:`pyrovae.VAE`).
    :raises ValueError: for an unknown ``config["model"]``, listing the kinds (and the constructor's errors).
    """
    config = dict(config)
    kind = config.pop("model", VAE.kind)
    if kind == SSVAE.kind and config.get("a_dim"):
        kind = ADGM.kind
    elif kind == SSVAE.kind:
        config.pop("predict_samples", None)  # an ADGM setting, which SSVAE settings held before the ADGM's class
    if kind not in MODELS:
        raise ValueError(f"unknown model {kind!r}: choose one of {sorted(MODELS)}")
    return MODELS[kind](**config, seed=seed)


#: the name of :func:`model_from_config` from before the SSVAEs joined the registry
vae_from_config = model_from_config


def load_model(
    path: str | os.PathLike, map_location: str | torch.device = "cpu", *, model: ObservedModel | None = None
) -> LoadedModel:
    """Rebuild any pyrovae model from a checkpoint written by ``pyrovae train`` / :func:`pyrovae.fit` (with
    ``extra={"vae": model.config}``) or ``pyrovae train-ss`` / :func:`pyrovae.fit_semisupervised` (with
    ``extra={"ssvae": model.config}``; both add them), with its trained weights (see the module docstring). Values
    that Pyro's param store held under the model's names are dropped, so that the model runs with the loaded
    weights (:mod:`pyrovae.models.store`).

    ``model, checkpoint, features = load_model(path)``; ``features`` is ``None`` except for an M1+M2 model, whose
    images are classified with ``model.predict(features(x))``.

    :param model: a model built by the caller to load the checkpoint's weights into, in place of one built from
        its settings: the route for a model with custom networks (whose settings the checkpoint cannot hold),
        ``load_model(path, model=VAE(784, encoder=MyEncoder(), decoder=MyDecoder()))``.
    :returns: a :class:`LoadedModel` ``(model, checkpoint, features)``, the model in evaluation mode.
    :raises CheckpointError: if the checkpoint holds no model settings, describes a model that cannot be built,
        or its weights do not fit that model.
    """
    return _load(path, map_location, model=model)


def load_vae(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> tuple[ObservedModel, dict]:
    """:func:`load_model` of a checkpoint of the VAE family (``pyrovae train``, :func:`pyrovae.fit`).

    :returns: ``(vae, checkpoint)``.
    :raises CheckpointError: as :func:`load_model`, and if the checkpoint holds no VAE settings (``extra["vae"]``).
    """
    model, state, _ = _load(path, map_location, "vae")
    return model, state


def load_ssvae(
    path: str | os.PathLike, map_location: str | torch.device = "cpu"
) -> tuple[SSVAE, LatentFeatures | None, dict[str, Any]]:
    """:func:`load_model` of a checkpoint of ``pyrovae train-ss`` (:func:`pyrovae.fit_semisupervised`).

    :returns: ``(ssvae, features, checkpoint)``; classify images with ``ssvae.predict(features(x))``, or
        ``ssvae.predict(x)`` when ``features`` is ``None``.
    :raises CheckpointError: as :func:`load_model`, and if the checkpoint holds no SSVAE (``extra["ssvae"]``).
    """
    model, state, features = _load(path, map_location, "ssvae")
    return model, features, state


def _load(
    path: str | os.PathLike,
    map_location: str | torch.device,
    section: str | None = None,
    model: ObservedModel | None = None,
) -> LoadedModel:
    """:func:`load_model`, of the settings in ``extra[section]`` when ``section`` is given, into ``model`` when
    given."""
    state = load_checkpoint(path, map_location)
    extra = state.get("extra") if isinstance(state.get("extra"), dict) else {}
    if model is None:
        model = _build(path, extra, section)
    if "weights" in state and "params" not in state:  # an SSVAE as pyrovae 0.1 saved it: its state_dict
        _load_weights(model, state, path)
    else:
        _load_params(model, state, path)
    forget([model.site(part) for part, _ in model.named_children()])  # the loaded weights, not the store's
    features = _m1_features(extra["m1"], path).to(map_location).eval() if extra.get("m1") else None
    return LoadedModel(model.to(map_location).eval(), state, features)


def _build(path: str | os.PathLike, extra: dict[str, Any], section: str | None) -> ObservedModel:
    """The model that the checkpoint's settings (``extra[section]``, or the first section found) describe."""
    found = [name for name in SECTIONS if extra.get(name)]
    if section == "vae" and "vae" not in found:
        raise CheckpointError(f"{path} holds no VAE settings (extra['vae']): it was not written by pyrovae train")
    if section == "ssvae" and "ssvae" not in found:
        raise CheckpointError(f"{path} holds no SSVAE (extra['ssvae']): it was not written by pyrovae train-ss")
    if not found:
        raise CheckpointError(
            f"{path} holds no model settings, neither extra['vae'] (pyrovae train, fit) nor extra['ssvae'] "
            "(pyrovae train-ss, fit_semisupervised): it was written by another program, for a model with custom "
            "networks (load it with load_model(path, model=...) into a model built the same way), or damaged"
        )
    section = section or found[0]
    with malformed(path):
        config = {"model": SECTIONS[section], **extra[section]}
    try:
        model = model_from_config(config)
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"{path} describes a model that cannot be built: {e}") from e
    if isinstance(model, SSVAE) != (section == "ssvae"):
        raise CheckpointError(f"{path} is malformed: extra[{section!r}] describes a {model.kind!r} model")
    return model


def _load_params(model: ObservedModel, state: dict[str, Any], path: str | os.PathLike) -> None:
    """Load the Pyro parameters that training saved (``state["params"]``, by param-store name) into ``model``. Each
    child module of the model must be registered with ``pyro.module`` under the name ``model.site(child_name)``
    (``"encoder"``, ``"decoder"``; ``"encoder1"``, ... of a two-layer model; ``"scale"``; ``"classifier"``, ... of
    an SSVAE)."""
    if "params" not in state:
        raise CheckpointError(f"{path} holds model settings but no 'params': it was damaged")
    params = state["params"]
    if not isinstance(params, dict) or not all(isinstance(v, torch.Tensor) for v in params.values()):
        raise CheckpointError(f"{path} is malformed: its 'params' are not a dict of tensors")
    check_finite(params, path)
    weights = {}
    for part, _ in model.named_children():
        head = pyro.params.param_with_module_name(model.site(part), "")
        weights.update({f"{part}.{k[len(head) :]}": v for k, v in params.items() if k.startswith(head)})
    # the checkpoint holds parameters (the param store); buffers, such as a flow's masks, are rebuilt by the
    # constructor from the settings
    try:
        missing, unexpected = model.load_state_dict(weights, strict=False)
    except RuntimeError as e:
        raise CheckpointError(f"the weights in {path} do not fit the {model.kind!r} model it describes: {e}") from e
    missing = [name for name in missing if name in dict(model.named_parameters())]
    if missing or unexpected:
        raise CheckpointError(
            f"the weights in {path} do not fit the {model.kind!r} model it describes: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}"
        )


def _load_weights(model: ObservedModel, state: dict[str, Any], path: str | os.PathLike) -> None:
    """Load the ``state_dict`` (``state["weights"]``) of a ``pyrovae train-ss`` checkpoint of pyrovae 0.1 into
    ``model``."""
    with malformed(path):
        check_finite(state["weights"], path)
    try:
        model.load_state_dict(state["weights"])
    except (RuntimeError, TypeError) as e:
        raise CheckpointError(f"the weights in {path} do not fit the {model.kind!r} model it describes: {e}") from e


def _m1_features(m1: dict[str, Any], path: str | os.PathLike) -> LatentFeatures:
    """The M1 feature map saved in ``extra["m1"]`` of an M1+M2 checkpoint."""
    try:
        vae = model_from_config(m1["vae"])
        features = LatentFeatures(vae.encoder, vae.decoder, m1["weights"]["active"], vae.likelihood)
        features.load_state_dict(m1["weights"])
    except (RuntimeError, KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"the M1 VAE of {path} (extra['m1']) cannot be rebuilt or does not fit: {e}") from e
    return features
