"""Checkpoints: written atomically, loaded with ``torch.load(weights_only=True)``.

A checkpoint is a dict of tensors and plain Python values (no pickled objects), so that loading one
never runs code. It holds the unconstrained values of every parameter in Pyro's param store (by
name), the optimizer state, the RNG states, the metrics so far and the configuration.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, BinaryIO

import pyro
import torch

#: written into every checkpoint; a file without it is not a pyrovae checkpoint
FORMAT = "pyrovae-checkpoint-1"


class CheckpointError(ValueError):
    """A checkpoint file is corrupt, of another format, or does not fit the model."""


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> None:
    """Call ``write(f)`` on a temporary file in ``path``'s folder, flush it to disk, then rename it over
    ``path``, so that a crash never leaves a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically (see :func:`atomic_write`)."""
    atomic_write(path, lambda f: torch.save({"format": FORMAT, **state}, f))


def save_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically (see :func:`atomic_write`)."""
    atomic_write(path, lambda f: f.write((json.dumps(obj, indent=2) + "\n").encode()))


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` (``weights_only=True``: no code runs).

    :raises FileNotFoundError: if there is no file at ``path``.
    :raises CheckpointError: if the file is corrupt or not a pyrovae checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"no checkpoint at {path}: train first (pyrovae train --out {path.parent}) or give the path "
            "of an existing checkpoint.pt"
        )
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:
        raise CheckpointError(
            f"{path} is not a readable checkpoint (truncated or corrupt?): {e}. "
            "Delete it and train again, or resume from another copy."
        ) from e
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a pyrovae checkpoint (expected format {FORMAT!r})")
    return state


def check_resumable(
    path: str | os.PathLike, saved: dict[str, Any], config: Any, may_change: Sequence[str] = ("epochs", "device")
) -> None:
    """Check that a run saved with settings ``saved`` (a plain dict) may continue with ``config`` (a dataclass
    instance such as :class:`pyrovae.TrainConfig`): only the settings named in ``may_change`` may differ.
    Settings added to the dataclass since the checkpoint was written take their defaults.

    :raises CheckpointError: naming both settings.
    """
    current = asdict(config)
    saved = {**asdict(type(config)()), **saved}
    if saved | {name: current[name] for name in may_change} != current:
        raise CheckpointError(
            f"{path} was trained with other settings ({saved}) than {current}: only {', '.join(may_change)} may "
            "change on resume"
        )


def param_state() -> dict[str, torch.Tensor]:
    """The unconstrained value of every parameter in Pyro's param store, by name (detached copies)."""
    return {name: p.detach().clone() for name, p in pyro.get_param_store().named_parameters()}


def restore_params(params: dict[str, torch.Tensor]) -> None:
    """Copy saved unconstrained values into the existing parameters of the param store, in place.

    :raises CheckpointError: if a parameter is missing on either side or has another shape.
    """
    store = dict(pyro.get_param_store().named_parameters())
    missing, extra = sorted(set(store) - set(params)), sorted(set(params) - set(store))
    if missing or extra:
        raise CheckpointError(
            f"the checkpoint does not fit the model: parameters only in the model {missing[:5]}, "
            f"only in the checkpoint {extra[:5]}. Build the model with the checkpoint's settings."
        )
    with torch.no_grad():
        for name, value in params.items():
            if store[name].shape != value.shape:
                raise CheckpointError(
                    f"parameter {name!r} has shape {tuple(value.shape)} in the checkpoint but "
                    f"{tuple(store[name].shape)} in the model: build the model with the checkpoint's settings"
                )
            store[name].copy_(value)


def rng_state() -> dict[str, Any]:
    """torch's CPU (and, if present, CUDA) RNG states."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the states saved by :func:`rng_state`."""
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def vae_from_config(config: dict[str, Any]):
    """Build the model that ``config`` (a :attr:`pyrovae.VAE.config`) describes: a :class:`pyrovae.VAE`, or
    the :class:`pyrovae.Autoencoder` (``config["model"] == "autoencoder"``), the IAF-guided
    :class:`pyrovae.flows.IAFVAE` (``"iaf"``) or the :class:`pyrovae.TwoLayerVAE` (``"two-layer"``); the key
    defaults to ``"vae"``.

    :raises ValueError: for an unknown ``config["model"]``.
    """
    from .autoencoder import Autoencoder
    from .flows import IAFVAE
    from .two_layer import TwoLayerVAE
    from .vae import VAE

    models = {cls.kind: cls for cls in (VAE, Autoencoder, IAFVAE, TwoLayerVAE)}
    config = dict(config)
    kind = config.pop("model", VAE.kind)
    if kind not in models:
        raise ValueError(f"unknown model {kind!r}: choose one of {sorted(models)}")
    return models[kind](**config)


def load_vae(path: str | os.PathLike, map_location: str | torch.device = "cpu"):
    """Rebuild the :class:`pyrovae.VAE` (or any model :func:`vae_from_config` builds) saved by ``pyrovae train``
    (or by :func:`pyrovae.fit` with ``extra={"vae": vae.config}``) with its trained weights. The param store is
    not touched. Each child module of the model must be registered with ``pyro.module`` under the name
    ``vae.site(child_name)`` (``"encoder"``, ``"decoder"``; ``"encoder1"``, ... of a two-layer model).

    :returns: ``(vae, checkpoint)``, the checkpoint dict holding ``history``, ``extra`` and the rest.
    :raises CheckpointError: if the checkpoint holds no VAE settings or its weights do not fit.
    """
    state = load_checkpoint(path, map_location)
    config = state.get("extra", {}).get("vae")
    if not config:
        raise CheckpointError(f"{path} holds no VAE settings (extra['vae']): it was not written by pyrovae train")
    try:
        vae = vae_from_config(config)
    except ValueError as e:
        raise CheckpointError(f"{path}: {e}") from e
    weights = {}
    for part, _ in vae.named_children():  # encoder(s), decoder(s) and a learned Gaussian scale: each a pyro.module
        head = pyro.params.param_with_module_name(vae.site(part), "")
        weights.update({f"{part}.{k[len(head):]}": v for k, v in state["params"].items() if k.startswith(head)})
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
