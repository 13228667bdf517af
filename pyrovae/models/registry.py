"""Rebuilding a trained model from its checkpoint: the model classes by name, and the loaders."""

from __future__ import annotations

import os
from typing import Any

import pyro
import torch
from torch import nn

from pyrovae.checkpoint import CheckpointError, check_finite, load_checkpoint, malformed
from pyrovae.models.autoencoder import Autoencoder
from pyrovae.models.features import LatentFeatures
from pyrovae.models.iaf import IAFVAE
from pyrovae.models.ssvae import SSVAE
from pyrovae.models.two_layer import TwoLayerVAE
from pyrovae.models.vae import VAE


def vae_from_config(config: dict[str, Any], seed: int | None = None):
    """Build the model that ``config`` (a :attr:`pyrovae.VAE.config`) describes: a :class:`pyrovae.VAE`, or
    the :class:`pyrovae.Autoencoder` (``config["model"] == "autoencoder"``), the IAF-guided
    :class:`pyrovae.models.iaf.IAFVAE` (``"iaf"``) or the :class:`pyrovae.TwoLayerVAE` (``"two-layer"``); the key
    defaults to ``"vae"``. ``seed`` seeds its initial weights (see :class:`pyrovae.VAE`).

    :raises ValueError: for an unknown ``config["model"]``.
    """
    models = {cls.kind: cls for cls in (VAE, Autoencoder, IAFVAE, TwoLayerVAE)}
    config = dict(config)
    kind = config.pop("model", VAE.kind)
    if kind not in models:
        raise ValueError(f"unknown model {kind!r}: choose one of {sorted(models)}")
    return models[kind](**config, seed=seed)


def load_vae(path: str | os.PathLike, map_location: str | torch.device = "cpu"):
    """Rebuild the :class:`pyrovae.VAE` (or any model :func:`vae_from_config` builds) saved by ``pyrovae train``
    (or by :func:`pyrovae.fit` with ``extra={"vae": vae.config}``) with its trained weights. The param store is
    not touched. Each child module of the model must be registered with ``pyro.module`` under the name
    ``vae.site(child_name)`` (``"encoder"``, ``"decoder"``; ``"encoder1"``, ... of a two-layer model).

    :returns: ``(vae, checkpoint)``, the checkpoint dict holding ``history``, ``extra`` and the rest.
    :raises CheckpointError: if the checkpoint holds no VAE settings or its weights do not fit.
    """
    state = load_checkpoint(path, map_location, require=("params",))
    config = state.get("extra", {}).get("vae") if isinstance(state.get("extra"), dict) else None
    if not config:
        raise CheckpointError(f"{path} holds no VAE settings (extra['vae']): it was not written by pyrovae train")
    params = state["params"]
    if not isinstance(params, dict) or not all(isinstance(v, torch.Tensor) for v in params.values()):
        raise CheckpointError(f"{path} is malformed: its 'params' are not a dict of tensors")
    check_finite(params, path)
    try:
        vae = vae_from_config(config)
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"{path} describes a model that cannot be built: {e}") from e
    weights = module_weights(vae, params)
    # the checkpoint holds parameters (the param store); buffers, such as a flow's masks, are rebuilt by the
    # constructor from the settings
    try:
        missing, unexpected = vae.load_state_dict(weights, strict=False)
    except RuntimeError as e:
        raise CheckpointError(f"the weights in {path} do not fit the VAE it describes: {e}") from e
    missing = [name for name in missing if name in dict(vae.named_parameters())]
    if missing or unexpected:
        raise CheckpointError(
            f"the weights in {path} do not fit the VAE it describes: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    return vae.to(map_location), state


def module_weights(model: nn.Module, params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The ``state_dict`` entries of ``model`` among the Pyro parameters ``params`` (by param-store name): each
    child module is a ``pyro.module`` named ``model.site(child_name)``."""
    weights = {}
    for part, _ in model.named_children():
        head = pyro.params.param_with_module_name(model.site(part), "")
        weights.update({f"{part}.{k[len(head) :]}": v for k, v in params.items() if k.startswith(head)})
    return weights


def load_ssvae(
    path: str | os.PathLike, map_location: str | torch.device = "cpu"
) -> tuple[SSVAE, nn.Module | None, dict[str, Any]]:
    """Rebuild the model saved by ``pyrovae train-ss``: ``(ssvae, features, checkpoint)``, where
    ``features`` is the M1 :class:`~pyrovae.models.features.LatentFeatures` (or ``None``) that maps images to
    the SSVAE's inputs; classify images with ``ssvae.predict(features(x))``.

    :raises CheckpointError: if the checkpoint holds no SSVAE or its weights do not fit.
    """
    state = load_checkpoint(path, map_location)
    extra = state.get("extra", {})
    if not isinstance(extra, dict) or "ssvae" not in extra or not {"params", "weights"} & set(state):
        raise CheckpointError(f"{path} holds no SSVAE (extra['ssvae']): it was not written by pyrovae train-ss")
    with malformed(path):  # "weights": a state_dict, as pyrovae 0.1 saved an SSVAE
        check_finite(state.get("params", state.get("weights")), path)
    try:
        ssvae = SSVAE(**extra["ssvae"])
        ssvae.load_state_dict(state["weights"] if "weights" in state else module_weights(ssvae, state["params"]))
        features = None
        if extra.get("m1"):
            vae = vae_from_config(extra["m1"]["vae"])
            features = LatentFeatures(vae.encoder, vae.decoder, extra["m1"]["weights"]["active"], vae.likelihood)
            features.load_state_dict(extra["m1"]["weights"])
    except (RuntimeError, KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"the weights in {path} do not fit the SSVAE it describes: {e}") from e
    return ssvae.to(map_location).eval(), None if features is None else features.to(map_location).eval(), state
