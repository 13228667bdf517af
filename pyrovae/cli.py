"""The ``pyrovae`` command line: a thin layer over :func:`pyrovae.load_dataset`, :class:`pyrovae.VAE`,
:func:`pyrovae.fit` and :mod:`pyrovae.viz.plots`.

Example::

    pyrovae train                                   # embedded 8x8 digits, CPU, well under a minute
    pyrovae train --dataset mnist --data-dir ../shared/data --epochs 50 --z-dim 50
    pyrovae train --out runs/mnist --resume --epochs 100   # continue a run with its saved settings
    pyrovae train --data table.csv --label-column kind   # your own data; the likelihood chosen from the values
    pyrovae evaluate runs/mnist/checkpoint.pt --data-dir ../shared/data   # test NLL, 5000 samples
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import pyro
import torch

from pyrovae.checkpoint import atomic_write, load_checkpoint, malformed, save_json, section
from pyrovae.data import BINARIZATIONS, DATASETS, Dataset, Split, load_dataset
from pyrovae.data.binarize import EVAL_SEED, binarize
from pyrovae.data.files import load_file
from pyrovae.data.placement import parse_size
from pyrovae.data.record import DataRecord
from pyrovae.data.standardize import Standardization
from pyrovae.device import device_of, resolve_device
from pyrovae.errors import PyrovaeError
from pyrovae.infer.importance import MAX_MEMORY, log_marginal_likelihood
from pyrovae.models.autoencoder import Autoencoder
from pyrovae.models.baseline import Baseline
from pyrovae.models.cvae import CVAE
from pyrovae.models.features import ACTIVE_THRESHOLD, LatentFeatures, active_units
from pyrovae.models.likelihoods import LIKELIHOODS, choose_likelihood
from pyrovae.models.nets import ACTIVATIONS, NETS
from pyrovae.models.quadrants import QUADRANTS, QuadrantModel
from pyrovae.models.registry import load_model, load_vae, model_from_config
from pyrovae.models.ssvae import DEFAULT_ALPHA, SSVAE
from pyrovae.models.two_layer import TwoLayerVAE
from pyrovae.models.vamp import PRIORS, VampVAE
from pyrovae.seeding import set_seed
from pyrovae.train.distributed import init_distributed, rank_and_world
from pyrovae.train.loop import VALIDATE
from pyrovae.train.rundir import CHECKPOINT, RunFolder, free_folder, numbered
from pyrovae.train.semisupervised import (
    SCHEDULES,
    SemiSupervisedConfig,
    analogies,
    fit_semisupervised,
    kingma_alpha,
)
from pyrovae.train.svi import ELBOS, TrainConfig, fit
from pyrovae.viz.latent import (
    INTERPOLATIONS,
    attribute_images,
    embed_2d,
    ink,
    interpolation_images,
    manifold_images,
    posterior_means,
    traversal_images,
)
from pyrovae.viz.plots import (
    are_images,
    plot_curves,
    plot_latent_map,
    prior_samples,
    save_analogies,
    save_completions,
    save_figures,
    save_grid,
    save_reconstructions,
    save_rows,
    save_samples,
)
from pyrovae.viz.tensorboard import TensorBoardLogger

DEFAULTS = TrainConfig()
RESUME_HELP = ("continue the run in --out with its saved settings; only --epochs (the total, epochs already trained "
               "included), --device, --device-data-limit and where the data are (--data-dir, --no-download; by default "
               "the folder the run was trained from) are taken from this command line")
OVERWRITE_HELP = ("replace the run already in --out (its checkpoints, metrics and TensorBoard logs are deleted); "
                  "without it, a new run refuses a folder that holds one")
#: ``--data-dir`` of a new run when not given
DATA_DIR = "data"
#: the environment variable that, like --debug, shows the traceback of an error
DEBUG_ENV = "PYROVAE_DEBUG"
#: the errors the command line reports as ``pyrovae: error: <message>`` without a traceback: pyrovae's own, and the
#: built-in ones its checks raise for bad settings, data and files
USER_ERRORS = (PyrovaeError, ValueError, TypeError, OSError, ImportError)


def _add_source_args(p) -> None:
    """``--data-dir`` and ``--no-download``: where the dataset files are (on a parser or argument group)."""
    p.add_argument("--data-dir", default=None,
                   help="folder holding the IDX files (gzipped or not), or its torchvision root (e.g. with "
                   "MNIST/raw/*.gz); files there are read offline (default: "
                   "'data' for a new run; for --resume, evaluate and plot, the folder the run was trained from)")
    p.add_argument("--no-download", action="store_true", help="never try to download missing files")


def rows_or_fraction(text: str) -> int | float:
    """``argparse`` type of a split size: a number of rows (an integer >= 0) or a fraction in [0, 1)."""
    try:
        value = float(text) if "." in text or "e" in text.lower() else int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither a number of rows nor a fraction") from None
    if value < 0 or (isinstance(value, float) and value >= 1):
        raise argparse.ArgumentTypeError(f"give a number of rows >= 0 or a fraction in [0, 1), got {text}")
    return value


def image_size(text: str) -> tuple[int, int]:
    """``argparse`` type of ``--image-size``: ``S`` (square) or ``HxW``, in pixels."""
    try:
        sides = tuple(int(side) for side in text.lower().split("x"))
    except ValueError:
        sides = ()
    if len(sides) not in (1, 2) or min(sides) < 1:
        raise argparse.ArgumentTypeError(f"give the image size as S or HxW in pixels, e.g. 28 or 32x48, got {text!r}")
    return (sides[0], sides[-1])


def _add_data_args(p: argparse.ArgumentParser, auto_binarize: bool = False, own_data: bool = False) -> None:
    """The data group; with ``auto_binarize``, ``--binarize auto`` (the default) follows ``--likelihood``; with
    ``own_data``, ``--data FILE`` (instead of ``--dataset``) and its options."""
    data = p.add_argument_group("data")
    source = data.add_mutually_exclusive_group() if own_data else data
    source.add_argument("--dataset", default="digits", choices=DATASETS,
                        help="'digits' is embedded (scikit-learn's 8x8 digits, no files needed); the others "
                        "are read from --data-dir")
    if own_data:
        source.add_argument("--data", default=None, metavar="FILE",
                            help="your own data instead of --dataset: an .npy, .npz (x, y, x_test, y_test), .csv or "
                            ".parquet file (pandas; numeric columns), or a folder of PNG/JPEG images (class "
                            "sub-folders give labels); see pyrovae.data.files")  # fmt: skip
        data.add_argument("--label-column", default=None, metavar="NAME",
                          help="--data .csv/.parquet: the column holding the labels (classes sorted, 0..C-1)")
        data.add_argument("--image-size", type=image_size, default=None, metavar="S|HxW",
                          help="--data folder: resize every image to S x S or H x W (default: the first image's "
                          "size, which all must have)")  # fmt: skip
        data.add_argument("--test-size", type=rows_or_fraction, default=None,
                          help="--data: test rows carved out at random (a count or a fraction; default 0.1) unless "
                          "the file has x_test")  # fmt: skip
    _add_source_args(data)
    data.add_argument("--split-seed", type=int, default=0,
                      help="seed of the random carving of the validation rows (and, for --data, the test rows; for "
                      "digits, of its test set)")  # fmt: skip
    data.add_argument("--valid-size", type=rows_or_fraction, default=None,
                      help="training images held out for validation (default: 200 for digits, 10000 for the "
                      "28x28 sets, 0.1 of the rows for --data (a count or a fraction); 0 trains on the whole "
                      "training set)")
    auto = "auto: dynamic for --likelihood bernoulli, none for the continuous likelihoods; " if auto_binarize else ""
    data.add_argument("--binarize", default="auto" if auto_binarize else "dynamic",
                      choices=("auto", *BINARIZATIONS) if auto_binarize else BINARIZATIONS,
                      help=f"{auto}dynamic: fresh Bernoulli draw per minibatch; static: one fixed draw; test sets "
                      "are binarized once with a fixed seed; none: grey levels in [0, 1]")


def _add_train_parser(command: Callable[..., argparse.ArgumentParser]) -> None:
    p = command(
        "train",
        help="train a VAE with SVI and write checkpoint, metrics and pictures",
        description="Train a VAE (MLP encoder/decoder; Bernoulli likelihood on binarized data, or with --likelihood "
        "continuous-bernoulli or normal on grey levels) by SVI, or with --model autoencoder a deterministic "
        "autoencoder with the same nets. Writes into --out: checkpoint.pt (every epoch), best.pt (the best "
        "validation ELBO), metrics.jsonl, samples.png, reconstructions.png and elbo.png (and with --tensorboard, "
        "event files in tensorboard/).",
    )
    _add_data_args(p, auto_binarize=True, own_data=True)
    model = p.add_argument_group("model")
    model.add_argument("--z-dim", type=int, default=None,
                       help="latent dimension; None: 16, or with --model two-layer 50 (the top layer z2; z1 is "
                       "always twice as wide)")
    model.add_argument("--hidden", type=int, nargs="+", default=None,
                       help="hidden layer sizes of the encoder (the decoder mirrors them), e.g. --hidden 200 200; "
                       "None: 400, or with --model two-layer 200 200 (the layers between x and z1; those between z1 "
                       "and z2 are half as wide)")
    model.add_argument("--activation", default=None, choices=sorted(ACTIVATIONS),
                       help="hidden activation; None: relu, or tanh with --model two-layer")
    model.add_argument("--model", default="vae", choices=("vae", "autoencoder", "two-layer"),
                       help="vae, a deterministic autoencoder with the same nets (pyrovae.Autoencoder), or a VAE with "
                       "two stochastic layers z1, z2 (pyrovae.TwoLayerVAE; the defaults are Burda et al.'s MNIST "
                       "model, 784-200-200-100-100-100-50, tanh)")
    model.add_argument("--likelihood", default="auto", choices=("auto", *LIKELIHOODS),
                       help="p(x|z): bernoulli (binary data), continuous-bernoulli (grey levels in [0, 1]) or normal "
                       "(Gaussian, mean = decoder output); see pyrovae.models.likelihoods. auto: bernoulli for "
                       "--dataset (binarized), for --data the one the values call for (printed)")
    model.add_argument("--scale", type=float, default=None,
                       help="--likelihood normal only: fixed standard deviation of every pixel; None learns one "
                       "per pixel")
    model.add_argument("--flow", default="none", choices=("none", "iaf"),
                       help="iaf: the guide's Gaussian pushed through inverse autoregressive flow steps "
                       "(pyrovae.models.iaf.IAFVAE)")
    model.add_argument("--flow-depth", type=int, default=2, help="--flow iaf: number of IAF steps")
    model.add_argument("--prior", default="standard", choices=tuple(PRIORS),
                       help="p(z) of a VAE: standard, N(0, I); or vamp, the VampPrior, the mixture of q(z|u_k) at "
                       "--pseudo-inputs learned pseudo-inputs u_k (pyrovae.models.vamp.VampVAE)")
    model.add_argument("--pseudo-inputs", type=int, default=None,
                       help="--prior vamp: the number K of pseudo-inputs; None: 500 (Tomczak & Welling on MNIST)")
    model.add_argument("--net", default="mlp", choices=NETS,
                       help="mlp, or conv: two stride-2 convolutions (32, 64 channels) before the --hidden MLP, "
                       "mirrored by transposed convolutions in the decoder (images with H, W divisible by 4)")
    train = p.add_argument_group("training")
    train.add_argument("--epochs", type=int, default=100, help="passes over the training set")
    train.add_argument("--batch-size", type=int, default=DEFAULTS.batch_size, help="minibatch size")
    train.add_argument("--lr", type=float, default=DEFAULTS.lr, help="Adam learning rate")
    train.add_argument("--lr-decay", type=float, default=DEFAULTS.lr_decay,
                       help="multiply the learning rate by this after every epoch (1: constant)")
    train.add_argument("--objective", "--elbo", dest="elbo", default=DEFAULTS.elbo, choices=sorted(ELBOS),
                       help="trace: Trace_ELBO; meanfield: TraceMeanField_ELBO (analytic KL); iwae: the "
                       "importance-weighted bound with --particles K samples per data point (--objective iwae "
                       "--particles K; no --jit)")
    train.add_argument("--jit", action="store_true",
                       help="JIT-compiled ELBO (torch.jit.trace: the fastest step on a CPU; drops incomplete batches)")
    train.add_argument("--compile", action="store_true",
                       help="compile the ELBO with torch.compile (--objective trace; not with --jit): the first steps "
                       "take seconds to a minute to compile, then each step is faster than eager; the same losses as "
                       "without; also taken on --resume")
    train.add_argument("--validate", default=DEFAULTS.validate, choices=VALIDATE,
                       help="Pyro's validation (data, distribution arguments): first epoch only, or always")
    train.add_argument("--particles", type=int, default=DEFAULTS.num_particles, help="samples of z per data point")
    train.add_argument("--dreg", action="store_true",
                       help="--objective iwae: doubly reparameterized guide gradient (Tucker et al. 2019)")
    train.add_argument("--beta", type=float, default=DEFAULTS.beta, help="weight of the KL term (beta-VAE)")
    train.add_argument("--kl-warmup-epochs", type=int, default=DEFAULTS.kl_warmup_epochs,
                       help="raise the KL weight linearly from 0 to --beta over this many epochs")
    train.add_argument("--seed", type=int, default=DEFAULTS.seed, help="random seed")
    train.add_argument("--device", default=DEFAULTS.device, help="auto (CUDA if available), cpu, cuda or cuda:N")
    _add_device_data_limit_arg(train)
    out = p.add_argument_group("output")
    out.add_argument("--out", default=None,
                     help="output folder (default: runs/DATASET, or for a new run the first of runs/DATASET-2, -3, ... "
                     "that holds no run)")
    out.add_argument("--resume", action="store_true", help=f"{RESUME_HELP}, and --compile")
    out.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    out.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    _add_distributed_arg(train)
    out.add_argument("--tensorboard", action="store_true",
                     help="log scalars and image grids each epoch to OUT/tensorboard (needs pyrovae[tensorboard])")
    p.set_defaults(func=train_command)


def _data_settings(args: argparse.Namespace, binarize: str) -> dict:
    """What a new run records of its data (``extra["data"]`` of the checkpoint): the dataset, its binarization, the
    validation size and, for the datasets read from files, the absolute data folder; for ``--data``, the absolute
    file and the options it is read with (:func:`_data_record` adds what it gave)."""
    if getattr(args, "data", None) is not None:
        return {"name": Path(args.data).name, "file": str(Path(args.data).resolve()), "binarize": binarize,
                "valid_size": args.valid_size, "test_size": args.test_size, "split_seed": args.split_seed,
                "label_column": args.label_column, "image_size": args.image_size}  # fmt: skip
    if isinstance(args.valid_size, float):
        raise ValueError(f"--valid-size {args.valid_size} is a fraction, which only --data takes: give a number of "
                         "images")  # fmt: skip
    for flag in ("label_column", "image_size", "test_size"):
        if getattr(args, flag, None) is not None:
            raise ValueError(f"--{flag.replace('_', '-')} is an option of --data FILE, not of --dataset")
    files = args.dataset != "digits"
    return {"name": args.dataset, "binarize": binarize, "valid_size": args.valid_size,
            "split_seed": getattr(args, "split_seed", 0),
            "data_dir": str(Path(args.data_dir or DATA_DIR).resolve()) if files else None}  # fmt: skip


def _data_record(data: Dataset) -> dict:
    """What a ``--data`` run records of the data it read, beside :func:`_data_settings`: how the model sees them
    (:class:`pyrovae.data.record.DataRecord`: image shape, binarization, standardization) and the class names."""
    return {**DataRecord.of(data).state(),
            "class_names": None if data.class_names is None else list(data.class_names)}  # fmt: skip


def _saved_data(state: dict, path: str | os.PathLike) -> dict:
    """A checkpoint's ``extra["data"]`` (:func:`_data_settings`), with the entries :func:`_load_data` reads."""
    for key in ("name", "binarize", "valid_size"):
        section(state, path, "extra", "data", key)
    return state["extra"]["data"]


def _load_data(settings: dict, args: argparse.Namespace) -> Dataset:
    """The dataset described by a run's ``settings``, from ``--data-dir`` or else the folder they record; for a
    ``--data`` run, the file they record (or ``--data`` of a resumed run) read as it was, with the standardization
    recorded, and checked to give the image shape and classes recorded."""
    if settings.get("file") is not None:
        path = getattr(args, "data", None) or settings["file"]
        stored = settings.get("standardization")
        data = load_file(path, label_column=settings.get("label_column"), image_size=settings.get("image_size"),
                         valid_size=settings["valid_size"], test_size=settings.get("test_size"),
                         split_seed=settings.get("split_seed", 0), binarize=settings["binarize"],
                         standardize=True if stored is None else Standardization.from_state(stored))  # fmt: skip
        now = _data_record(data)
        # the stored standardization was applied again; whether there is one says whether the values are real
        changed = [key for key, value in now.items() if key in settings and (
            (settings[key] is None) != (value is None) if key == "standardization" else settings[key] != value)]
        if changed:
            raise ValueError(f"{path} is not the data this run was trained on (its {', '.join(changed)} differ): "
                             "give the file it was trained on")  # fmt: skip
        return data
    data_dir = args.data_dir or settings.get("data_dir") or DATA_DIR
    return load_dataset(settings["name"], data_dir, binarize=settings["binarize"], valid_size=settings["valid_size"],
                        split_seed=settings.get("split_seed", 0), download=not args.no_download)  # fmt: skip


def _binarization(binarize: str, likelihood: str) -> str:
    """The binarization of a ``pyrovae train`` run: ``auto`` is ``dynamic`` for the Bernoulli likelihood and
    ``none`` (grey levels) for the continuous ones and for ``--data --likelihood auto`` (the likelihood is chosen to
    fit the values as they are); grey levels under a Bernoulli likelihood are an error."""
    if binarize == "auto":
        return "dynamic" if likelihood == "bernoulli" else "none"
    if binarize == "none" and likelihood == "bernoulli":
        raise ValueError(
            "--binarize none keeps grey levels, but --likelihood bernoulli needs binary data: use --likelihood "
            "continuous-bernoulli or normal for grey levels, or --binarize dynamic/static"
        )
    return binarize


#: ``--z-dim``, ``--hidden`` and ``--activation`` when not given, by ``--model``
MODEL_DEFAULTS = {
    "vae": {"z_dim": 16, "hidden": [400], "activation": "relu"},
    "two-layer": {"z_dim": 50, "hidden": [200, 200], "activation": "tanh"},  # Burda et al.'s two-layer model
}
#: ``pyrovae train-ss --z-dim`` when not given: Kingma et al.'s 50 on pixels; 10 on M1 codes (MNIST, 100 labels,
#: seed 0, 6 epochs: validation accuracy 84.7 / 86.0 / 85.1 % for z = 50 / 10 / 5; see benchmarks/README.md)
SS_Z_DIM = {"pixels": 50, "m1": 10}


def two_layer_config(args: argparse.Namespace) -> dict:
    """The :class:`pyrovae.TwoLayerVAE` settings of ``pyrovae train --model two-layer``: ``--z-dim`` is the top
    layer z2 and z1 twice as wide; ``--hidden`` are the layers between x and z1 and those between z1 and z2 half
    as wide, so that the defaults give Burda et al.'s 784-200-200-100-100-100-50."""
    return {"model": "two-layer", "z1_dim": 2 * args.z_dim, "z2_dim": args.z_dim, "hidden1": args.hidden,
            "hidden2": [max(1, h // 2) for h in args.hidden], "activation": args.activation,
            "likelihood": args.likelihood, "scale": args.scale}  # fmt: skip


#: ``pyrovae train --prior vamp --pseudo-inputs`` when not given: the paper's K on MNIST
VAMP_PSEUDO_INPUTS = 500


def vamp_config(args: argparse.Namespace) -> dict:
    """The :class:`pyrovae.models.vamp.VampVAE` settings that ``pyrovae train --prior vamp`` adds to a VAE's.

    :raises ValueError: for ``--pseudo-inputs`` without ``--prior vamp``, a model other than the VAE with a
        Gaussian guide, or fewer than one pseudo-input.
    """
    if args.prior != "vamp":
        raise ValueError("--pseudo-inputs are those of the VampPrior: add --prior vamp")
    if args.model != "vae" or args.flow != "none":
        other = f"--flow {args.flow}" if args.model == "vae" else f"--model {args.model}"
        raise ValueError(f"--prior vamp is the prior of a VAE with a Gaussian guide (--model vae --flow none), not of "
                         f"{other}")  # fmt: skip
    pseudo_inputs = VAMP_PSEUDO_INPUTS if args.pseudo_inputs is None else args.pseudo_inputs
    if pseudo_inputs < 1:
        raise ValueError(f"--pseudo-inputs must be at least 1, got {pseudo_inputs}")
    return {"model": "vamp", "pseudo_inputs": pseudo_inputs}


def model_defaults(args: argparse.Namespace) -> argparse.Namespace:
    """Fill ``--z-dim``, ``--hidden`` and ``--activation`` left out of the command line with the defaults of
    ``--model`` (:data:`MODEL_DEFAULTS`), and ``--likelihood auto`` of a ``--dataset`` with ``bernoulli``, in place;
    returns ``args``."""
    for key, value in MODEL_DEFAULTS.get(args.model, MODEL_DEFAULTS["vae"]).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.likelihood == "auto" and getattr(args, "data", None) is None:
        args.likelihood = "bernoulli"  # the named datasets' choice: binarized images (--data: chosen once loaded)
    return args


def _out(args: argparse.Namespace, default: Path) -> Path:
    """The run folder of a training command: ``--out``; without it ``default``, or for a new run that would replace
    one there the next free ``default-N`` (:func:`pyrovae.train.rundir.free_folder`), said on stderr."""
    if args.out is not None:
        return Path(args.out)
    if args.resume or args.overwrite:
        return default
    out = free_folder(default)
    if out != default:
        print(f"pyrovae: {default} holds an earlier run (--resume continues it): this one writes {out}",
              file=sys.stderr)  # fmt: skip
    return out


def _run_folder(out: Path, args: argparse.Namespace, rank: int = 0):
    """The run folder of a training command, locked and checked (:class:`pyrovae.train.rundir.RunFolder`) on rank 0."""
    if rank != 0:
        return nullcontext()
    if args.overwrite and args.resume:
        raise ValueError("--resume continues the run in --out and --overwrite replaces it: give one of them")
    return RunFolder(out, resume=args.resume, overwrite=args.overwrite)


def _saved(out: Path, *keys: str) -> list:
    """The entries ``extra[key]`` of the checkpoint of the run in ``out`` that ``--resume`` continues."""
    path = out / CHECKPOINT
    state = load_checkpoint(path)
    return [_saved_data(state, path) if key == "data" else section(state, path, "extra", key) for key in keys]


def _training(args: argparse.Namespace, out: Path, train: Callable[[argparse.Namespace, Path, str, int], dict]
              ) -> dict:  # fmt: skip
    """``train(args, out, device, rank)`` in the locked run folder ``out``, inside the process group that ``torchrun``
    describes with ``--distributed``."""
    device = init_distributed(args.device) if args.distributed else args.device
    rank = rank_and_world()[0]
    try:
        with _run_folder(out, args, rank):
            return train(args, out, device, rank)
    finally:
        if args.distributed:
            torch.distributed.destroy_process_group()


def train_command(args: argparse.Namespace) -> dict:
    """``pyrovae train``: returns a summary (last metrics and written files) that is also printed."""
    out = _out(args, Path("runs") / (args.dataset if args.data is None else Path(args.data).stem))
    model_defaults(args)
    return _training(args, out, _train)


def _train(args: argparse.Namespace, out: Path, device: str, rank: int) -> dict:
    """:func:`train_command` in its locked run folder ``out``."""
    if args.resume:
        settings, vae_config, train = _saved(out, "data", "vae", "train")
        with malformed(out / CHECKPOINT):
            config = TrainConfig(**_resumed(train, args, device, compile=args.compile))
    else:
        settings = _data_settings(args, _binarization(args.binarize, args.likelihood))
        vae_config = {"model": args.model, "z_dim": args.z_dim, "hidden": args.hidden, "activation": args.activation,
                      "likelihood": args.likelihood, "scale": args.scale}  # fmt: skip
        if args.flow == "iaf":
            if args.model != "vae":
                raise ValueError(f"--flow iaf is a guide for a VAE, not for --model {args.model}")
            vae_config.update(model="iaf", flow_depth=args.flow_depth)
        if args.prior == "vamp" or args.pseudo_inputs is not None:
            vae_config.update(vamp_config(args))
        if args.net != "mlp":
            vae_config["net"] = args.net
        if args.model == "two-layer":
            if getattr(args, "net", "mlp") != "mlp":
                raise ValueError(f"--net {args.net} builds a VAE's nets; --model two-layer has MLPs only")
            vae_config = two_layer_config(args)
        config = TrainConfig(
            epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, lr_decay=args.lr_decay, elbo=args.elbo,
            jit=args.jit, compile=args.compile, num_particles=args.particles, seed=args.seed, device=device,
            beta=args.beta, kl_warmup_epochs=args.kl_warmup_epochs, validate=args.validate, dreg=args.dreg,
            **_device_data_limit(args),
        )
        if args.overwrite:
            shutil.rmtree(out / "tensorboard", ignore_errors=True)  # the replaced run's event files
    data = _load_data(settings, args)
    if not args.resume and settings.get("file") is not None:
        settings = {**settings, **_data_record(data)}
    if vae_config.get("likelihood") == "auto":
        vae_config = {**vae_config, "likelihood": _chosen_likelihood(data)}
    pyro.clear_param_store()
    if vae_config.get("net", "mlp") != "mlp":
        vae_config = {"image_shape": data.image_shape, **vae_config}
    vae = model_from_config({**vae_config, "x_dim": data.x_dim}, seed=config.seed)  # the --seed's initial weights
    extra = {"data": settings, "vae": vae.config, "train": asdict(config)}
    logger = None
    if args.tensorboard and rank == 0:
        logger = TensorBoardLogger(out / "tensorboard", vae.model, vae.guide, data)
    try:
        history = fit(vae.model, vae.guide, data, config, out_dir=out, resume=args.resume, extra=extra,
                      verbose=not args.quiet, callback=logger)  # fmt: skip
    finally:
        if logger is not None:
            logger.close()
    if rank != 0:  # rank 0 draws and reports
        return history[-1]
    files = save_figures(vae.model, vae.guide, data, history, out)
    summary = {**history[-1], "checkpoint": str(out / CHECKPOINT), **files}
    print(json.dumps(summary, indent=2))
    return summary


def _chosen_likelihood(data: Dataset) -> str:
    """The likelihood of ``--likelihood auto`` (:func:`pyrovae.models.likelihoods.choose_likelihood`), said on
    stderr."""
    name, reason = choose_likelihood(data)
    standardized = ", on the values standardized per column" if data.standardization is not None else ""
    print(f"pyrovae: likelihood {name} ({reason}){standardized}; override with --likelihood", file=sys.stderr)
    return name


def _add_evaluate_parser(command: Callable[..., argparse.ArgumentParser]) -> None:
    p = command(
        "evaluate",
        help="importance-sampled log p(x) (test NLL) of a trained VAE or SSVAE",
        description=f"Estimate log p(x) of every point of a split by importance sampling with the guide as "
        "proposal (Burda et al. 2016), and report NLL = -mean log p(x) with its Monte-Carlo standard error, "
        "the ELBO, an IWAE bound, the gap and the number of active units (Burda et al.: variance of the posterior "
        "mean across the split above 0.01). The dataset and its binarization are those the checkpoint was "
        f"trained with; evaluation splits are binarized once with seed {EVAL_SEED}. For an SSVAE (pyrovae "
        "train-ss) the label is summed out: log p(x) = log sum_y p(x, y), y proposed by the classifier q(y|x). For a "
        "CVAE (pyrovae train-cvae) it is the conditional log p(y|x) of the hidden quadrants y given the observed x, "
        "proposed by its recognition network q(z|x, y). "
        "Prints the summary and writes it as JSON.",
    )
    p.add_argument("checkpoint", help="checkpoint.pt written by pyrovae train")
    p.add_argument("--num-samples", type=positive_int, default=5000, help="importance samples per data point")
    p.add_argument("--split", default="test", choices=("test", "valid", "train"), help="which split to evaluate")
    p.add_argument("--limit", type=positive_int, default=None, help="evaluate only the first N points of the split")
    _add_source_args(p)
    p.add_argument("--iwae-k", type=int, default=None,
                   help="samples per group of the reported IWAE bound (default: min(50, --num-samples))")
    p.add_argument("--seed", type=int, default=0, help="seed of the importance samples")
    p.add_argument("--max-memory", type=float, default=MAX_MEMORY / 2**20,
                   help="approximate memory budget of one chunk, in MiB")
    p.add_argument("--data-chunk", type=int, default=None, help="data points per chunk (default: from the budget)")
    p.add_argument("--sample-chunk", type=int, default=None, help="samples per chunk (default: from the budget)")
    p.add_argument("--khat", action="store_true", help="also compute the Pareto k-hat diagnostic per point")
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda or cuda:N")
    p.add_argument("--out", default=None, help="JSON file to write (default: nll_SPLIT.json beside the checkpoint)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=evaluate_command)


def _load_model(path: str, device) -> tuple:
    """``(model, guide, checkpoint)`` of a VAE (``pyrovae train``) or an SSVAE (``pyrovae train-ss``; its
    model sums the label out of log p(x))."""
    model, state, features = load_model(path, map_location=device)
    if isinstance(model, Autoencoder):
        raise ValueError(f"{path} is a deterministic autoencoder: it has no density p(x) to estimate")
    if features is not None:
        raise ValueError(
            f"{path} is an M1+M2 model: its log p(x) is a density of the M1 codes, not of images. "
            f"Evaluate the M1 VAE ({state['extra']['m1']['checkpoint']}) instead"
        )
    return model.model, model.guide, state


def evaluate_command(args: argparse.Namespace) -> dict:
    """``pyrovae evaluate``: returns the summary that is also printed and written as JSON (printed first, so that a
    file that cannot be written costs nothing but the file)."""
    device = resolve_device(args.device)
    model, guide, state = _load_model(args.checkpoint, device)
    settings = _saved_data(state, args.checkpoint)
    data = _load_data(settings, args)
    x = data.fixed_x(args.split)[: args.limit]  # a dynamically binarized training split: one fixed draw
    if len(x) == 0:
        raise ValueError(f"the {args.split} split of {settings['name']} is empty: choose another --split")
    start = time.perf_counter()
    estimate = log_marginal_likelihood(
        model, guide, x.to(device), args.num_samples, iwae_k=args.iwae_k, seed=args.seed,
        max_memory=int(args.max_memory * 2**20), data_chunk=args.data_chunk, sample_chunk=args.sample_chunk,
        khat=args.khat, progress=False if args.quiet else None,
    )
    seconds = time.perf_counter() - start
    # Burda et al.'s active units (variance of the posterior mean across the split > 0.01): posterior collapse
    # shows as few; an SSVAE's z depends on the label, so it gets none. A two-layer model reports each layer, z2's
    # from the mean of q(z2|z1) at a draw of z1 (as Burda et al.'s code does), and the total
    sites = () if "ssvae" in state["extra"] else getattr(getattr(guide, "__self__", None), "latent_sites", ("z",))
    pyro.set_rng_seed(args.seed)  # draws of lower layers (and of flow guides' means) are reproducible
    means = {site: posterior_means(guide, x.to(device), site=site) for site in sites}
    units = {site: int((m.var(0) > ACTIVE_THRESHOLD).sum()) for site, m in means.items()}
    summary = {
        **_in_data_units(estimate.summary(), data),
        "active_units": sum(units.values()) if means else None,
        "latent_dim": sum(m.shape[-1] for m in means.values()) if means else None,
        **({"active_units_per_layer": units} if len(units) > 1 else {}),
        "seconds": seconds,
        "dataset": settings["name"],
        "split": args.split,
        "binarize": settings["binarize"],
        "eval_binarization_seed": EVAL_SEED if settings["binarize"] != "none" else None,
        "seed": args.seed,
        "epoch": state.get("epoch"),
        "device": str(device),
        "checkpoint": str(args.checkpoint),
    }
    print(json.dumps(summary, indent=2), flush=True)
    out = Path(args.out) if args.out else Path(args.checkpoint).parent / f"nll_{args.split}.json"
    try:
        save_json(out, summary)
    except OSError as e:  # atomic_write's message names the file and the cause
        raise OSError(e.errno, f"{e.strerror}; the figures printed above were not saved: pass --out FILE to write "
                      "them elsewhere") from e  # fmt: skip
    return summary


def _in_data_units(summary: dict, data: Dataset) -> dict:
    """The log-densities of an evaluation ``summary`` in the data's own units: for standardized data, plus the
    standardization's ``log_abs_det_jacobian`` (``nll`` minus it), which is recorded, and said on stderr."""
    if data.standardization is None:
        return summary
    jacobian = data.standardization.log_abs_det_jacobian
    print(f"pyrovae: log p(x) in the data's own units: the model's log-density of the standardized values plus the "
          f"standardization's log|det J| = {jacobian:.4f} nats per point", file=sys.stderr)  # fmt: skip
    shifted = {"nll": summary["nll"] - jacobian, "elbo": summary["elbo"] + jacobian, "iwae": summary["iwae"] + jacobian}
    return {**summary, **shifted, "log_abs_det_jacobian": jacobian}


def _add_train_ss_parser(command: Callable[..., argparse.ArgumentParser]) -> None:
    p = command(
        "train-ss",
        help="train the semi-supervised VAE (M2, M1+M2, or the ADGM) with a few labels",
        description="Train Kingma et al.'s M2 by SVI with TraceEnum_ELBO: --labels class-balanced labelled "
        "training points (chosen with --label-seed), the rest of the training split unlabelled, missing labels "
        "summed out by enumeration, alpha * log q(y|x) on labelled points. With --m1 CHECKPOINT (a VAE from "
        "pyrovae train on the same dataset), M2 models that VAE's codes instead of pixels (M1+M2). Writes into "
        "--out: checkpoint.pt (every epoch), best.pt (the best validation accuracy), metrics.jsonl, accuracy.png "
        "and analogies.png. --a-dim adds Maaloe et al.'s auxiliary variable (ADGM).",
    )
    _add_data_args(p, auto_binarize=True)
    labels = p.add_argument_group("labels")
    labels.add_argument("--labels", type=int, default=100, help="labelled training points (a multiple of the classes)")
    labels.add_argument("--label-seed", type=int, default=0, help="seed of the choice of labelled points")
    model = p.add_argument_group("model")
    model.add_argument("--z-dim", type=int, default=None,
                       help=f"dimension of the style latent z (default: {SS_Z_DIM['pixels']} on pixels, "
                       f"{SS_Z_DIM['m1']} on --m1 codes)")  # fmt: skip
    model.add_argument("--hidden", type=int, nargs="+", default=[500], help="hidden layer sizes")
    model.add_argument("--activation", default="softplus", choices=sorted(ACTIVATIONS), help="hidden activation")
    model.add_argument("--alpha", type=float, default=None,
                       help=f"weight of the classification term per labelled point (default: {DEFAULT_ALPHA} with "
                       "--schedule alternate; Kingma et al.'s 0.1 * N / labels, N the training points, with joint)")
    model.add_argument("--a-dim", type=int, default=0,
                       help="dimension of an auxiliary latent a (Maaloe et al.'s ADGM: q(a|x) q(y|a,x) q(z|a,x,y), "
                       "p(a|x,y,z)); 0 is plain M2")  # fmt: skip
    model.add_argument("--m1", default=None, metavar="CHECKPOINT",
                       help="VAE checkpoint whose codes M2 models (M1+M2); its active units only")  # fmt: skip
    model.add_argument("--likelihood", default="bernoulli", choices=LIKELIHOODS,
                       help="p(x|y,z) of the pixels (continuous ones for grey levels); with --m1 the codes are "
                       "modelled as normal")  # fmt: skip
    train = p.add_argument_group("training")
    train.add_argument("--epochs", type=int, default=50, help="passes over the unlabelled training data")
    train.add_argument("--batch-size", type=int, default=128, help="unlabelled rows per step")
    train.add_argument("--labelled-batch-size", type=int, default=128, help="labelled rows per step")
    train.add_argument("--labelled-every", type=int, default=1, help="a labelled step after every N unlabelled steps")
    train.add_argument("--schedule", default="alternate", choices=SCHEDULES,
                       help="alternate: separate labelled and unlabelled steps, losses summed over each minibatch "
                       "(labels oversampled); joint: one step per unlabelled minibatch on the unbiased estimate of "
                       "the whole objective (both parts scaled to their sets), as Kingma et al.")  # fmt: skip
    train.add_argument("--jit", action="store_true",
                       help="compile the steps with JitTraceEnum_ELBO (drops incomplete batches)")  # fmt: skip
    train.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    train.add_argument("--lr-decay", type=float, default=1.0,
                       help="multiply the learning rate by this after every epoch (1: constant)")
    train.add_argument("--lr-milestones", type=int, nargs="+", default=None, metavar="EPOCH",
                       help="multiply the learning rate by --lr-gamma after each of these numbers of epochs (as "
                       "torch's MultiStepLR); also taken on --resume, for the epochs still to train (default: "
                       "none)")  # fmt: skip
    train.add_argument("--lr-gamma", type=float, default=None,
                       help="factor of the learning rate at each milestone; also taken on --resume (default: 0.1)")
    train.add_argument("--shift", type=int, default=0,
                       help="translate each labelled image by up to this many pixels per axis at every labelled "
                       "step, and the second view of --consistency (data augmentation; 0: none)")  # fmt: skip
    train.add_argument("--consistency", type=float, default=0.0,
                       help="weight per unlabelled image of the consistency term: the squared distance between the "
                       "classifier's q(y|.) on two random views of the image, the second shifted by up to --shift "
                       "pixels (pyrovae.train.consistency; 0: none, plain M2)")  # fmt: skip
    train.add_argument("--seed", type=int, default=0, help="random seed of the training")
    train.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda or cuda:N")
    _add_device_data_limit_arg(train)
    out = p.add_argument_group("output")
    out.add_argument("--out", default=None,
                     help="output folder (default: runs/ss-DATASET-LABELS, or for a new run the first of "
                     "runs/ss-DATASET-LABELS-2, -3, ... that holds no run)")
    out.add_argument("--resume", action="store_true", help=f"{RESUME_HELP}, and --lr-milestones / --lr-gamma")
    out.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    out.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    _add_distributed_arg(train)
    p.set_defaults(func=train_ss_command)


def _add_device_data_limit_arg(group: Any) -> None:
    """``--device-data-limit``: above it, the data stay in host memory and minibatches are copied to the device."""
    group.add_argument("--device-data-limit", type=byte_size, default=None, metavar="SIZE",
                       help="the most bytes of data moved to the device, e.g. 2GB, 500MB, 1.5GiB; larger data stay in "
                            "host memory and each minibatch is copied to the device; 0 always streams (default: 2GiB, "
                            "or on --resume the run's)")  # fmt: skip


def _resumed(train: dict, args: argparse.Namespace, device: str, **changed: Any) -> dict:
    """The saved training settings ``train`` of a run that ``--resume`` continues, with what a resumed run may
    change: ``--epochs`` (the total), the device, ``--device-data-limit`` when given, and ``changed``."""
    return {**train, "epochs": args.epochs, "device": device, **_device_data_limit(args), **changed}


def _device_data_limit(args: argparse.Namespace) -> dict:
    """``{"device_data_limit": ...}`` when ``--device-data-limit`` is given, else nothing (the default or the run's)."""
    return {} if args.device_data_limit is None else {"device_data_limit": args.device_data_limit}


def _add_distributed_arg(group: Any) -> None:
    """``--distributed`` in the argument group ``group`` of a training command."""
    group.add_argument("--distributed", action="store_true",
                       help="data-parallel over the processes started by torchrun (DistributedDataParallel; NCCL on "
                       "GPUs, gloo on CPUs); --batch-size is the global batch, divided among the ranks")  # fmt: skip


def m1_features(path: str, data: Dataset) -> tuple[LatentFeatures, dict]:
    """The M1 feature map of the VAE checkpoint at ``path``, and what to save of it."""
    vae, state = load_vae(path)
    if isinstance(vae, Autoencoder):
        raise ValueError(f"--m1 {path} is a deterministic autoencoder: M1 features come from a VAE's q(z|x)")
    if isinstance(vae, TwoLayerVAE):
        raise ValueError(f"--m1 {path} is a two-layer VAE: M1 features come from the single z of a VAE's q(z|x)")
    trained_on = state["extra"].get("data", {}).get("name")
    if trained_on != data.name or vae.x_dim != data.x_dim:
        raise ValueError(f"--m1 {path} is a VAE of {trained_on!r} data, not of {data.name!r}: train it on {data.name}")
    active = active_units(vae.encoder, data.fixed_x("train"))
    features = LatentFeatures(vae.encoder, vae.decoder, active, vae.likelihood)
    return features, {"vae": vae.config, "checkpoint": str(path), "weights": features.state_dict()}


def train_ss_command(args: argparse.Namespace) -> dict:
    """``pyrovae train-ss``: returns a summary (last metrics, best-validation epoch, files), also printed."""
    out = _out(args, Path("runs") / f"ss-{args.dataset}-{args.labels}")
    return _training(args, out, _train_ss)


def _train_ss(args: argparse.Namespace, out: Path, device: str, rank: int) -> dict:
    """:func:`train_ss_command` in its locked run folder ``out``."""
    schedule = {name: value for name, value in (("lr_milestones", args.lr_milestones), ("lr_gamma", args.lr_gamma))
                if value is not None}  # fmt: skip
    if args.resume:
        settings, model_config, train, m1 = _saved(out, "data", "ssvae", "train", "m1")
        with malformed(out / CHECKPOINT):
            m1_path = (m1 or {}).get("checkpoint")
            config = SemiSupervisedConfig(**_resumed(train, args, device, **schedule))
    else:
        if args.m1 and args.likelihood != "bernoulli":
            raise ValueError(f"--likelihood {args.likelihood} is for pixels: with --m1, M2 models the VAE's codes "
                             "with a normal likelihood")  # fmt: skip
        settings = _data_settings(args, _binarization(args.binarize, "bernoulli" if args.m1 else args.likelihood))
        z_dim = args.z_dim if args.z_dim is not None else SS_Z_DIM["m1" if args.m1 else "pixels"]
        model_config = {"z_dim": z_dim, "hidden": args.hidden, "activation": args.activation, "alpha": args.alpha,
                        "likelihood": "normal" if args.m1 else args.likelihood, "a_dim": args.a_dim}  # fmt: skip
        m1_path = args.m1
        config = SemiSupervisedConfig(
            num_labels=args.labels, epochs=args.epochs, batch_size=args.batch_size,
            labelled_batch_size=args.labelled_batch_size, labelled_every=args.labelled_every, lr=args.lr,
            seed=args.seed, label_seed=args.label_seed, device=device, jit=args.jit, schedule=args.schedule,
            lr_decay=args.lr_decay, shift=args.shift, consistency=args.consistency, **schedule,
            **_device_data_limit(args),
        )  # fmt: skip
    data = _load_data(settings, args)
    if model_config["alpha"] is None:
        joint = config.schedule == "joint"
        model_config["alpha"] = kingma_alpha(len(data.train), config.num_labels) if joint else DEFAULT_ALPHA
    features, m1 = m1_features(m1_path, data) if m1_path else (None, None)
    x_dim = features.dim if features is not None else data.x_dim
    model_config = {**model_config, "x_dim": x_dim, "num_classes": data.num_classes}
    pyro.clear_param_store()
    # an SSVAE, or with a_dim > 0 the ADGM; the --seed's initial weights
    ssvae = model_from_config({"model": SSVAE.kind, **model_config}, seed=config.seed)
    extra = {"data": settings, "ssvae": ssvae.config, "train": asdict(config), "m1": m1}
    history = fit_semisupervised(ssvae, data, config, out_dir=out, resume=args.resume, extra=extra,
                                 features=features, verbose=not args.quiet)  # fmt: skip
    if rank != 0:  # rank 0 draws and reports
        return history[-1]
    files = {"accuracy": str(out / "accuracy.png"), "analogies": str(out / "analogies.png")}
    plot_curves(history, files["accuracy"], {"valid_accuracy": "valid", "test_accuracy": "test"}, "accuracy of q(y|x)")
    test = data.test if len(data.test) else data.train
    x = test.x[: 2 * data.num_classes].to(device_of(ssvae))
    save_analogies(x, analogies(ssvae, x, features), files["analogies"], data.image_shape)
    summary = {**history[-1], "checkpoint": str(out / CHECKPOINT), **files}
    if "valid_accuracy" in history[0]:
        best = max(history, key=lambda row: row["valid_accuracy"])
        summary["best_valid_epoch"], summary["test_accuracy_at_best_valid"] = best["epoch"], best.get("test_accuracy")
    print(json.dumps(summary, indent=2))
    return summary


#: ``pyrovae train-cvae --z-dim`` when not given: the tutorial's for images of at least :data:`CVAE_FULL_SIZE` pixels,
#: :data:`CVAE_SMALL_Z_DIM` for smaller ones (on the 8x8 digits, one quadrant, 50 epochs, test -log p(y|x) with 1000
#: importance samples: z = 8 18.08 nats, 16 19.38, 32 20.64, 200 20.65, the baseline 18.83)
CVAE_Z_DIM, CVAE_SMALL_Z_DIM, CVAE_FULL_SIZE = 200, 8, 28 * 28


def _add_train_cvae_parser(command: Callable[..., argparse.ArgumentParser]) -> None:
    p = command(
        "train-cvae",
        help="train the conditional VAE that completes images from 1, 2 or 3 observed quadrants",
        description="Sohn et al.'s structured-output task, as Pyro's CVAE tutorial: cut every image into four "
        "quadrants, observe --quadrants of them (1: bottom left; 2: the left half; 3: all but the bottom right) and "
        "predict the rest. Trains the baseline network (pyrovae.models.baseline.Baseline) by SVI, then the "
        "conditional VAE (pyrovae.models.cvae.CVAE) whose prior network reads the baseline's prediction, and "
        "reports the test set's negative conditional log-likelihood -log p(y|x) of both, the CVAE's by importance "
        "sampling. Writes into --out: baseline/ (the baseline's run), checkpoint.pt (the CVAE, every epoch), "
        "best.pt, metrics.jsonl, cvae.png (rows: inputs with the hidden quadrants grey, the images, the baseline's "
        "prediction, completions drawn by the CVAE) and nll_test.json. pyrovae evaluate on checkpoint.pt "
        "estimates -log p(y|x) too.",
    )
    _add_data_args(p, auto_binarize=True)
    model = p.add_argument_group("model")
    model.add_argument("--quadrants", type=int, default=1, choices=QUADRANTS, help="observed quadrants")
    model.add_argument("--z-dim", type=int, default=None,
                       help=f"latent dimension; None: the tutorial's {CVAE_Z_DIM} for images of {CVAE_FULL_SIZE} "
                       f"pixels or more (MNIST), {CVAE_SMALL_Z_DIM} for smaller ones (the embedded 8x8 digits, where a "
                       "200-dimensional code does not train in the few steps of the set and the CVAE fell behind its "
                       "baseline)")  # fmt: skip
    model.add_argument("--hidden", type=int, nargs="+", default=[500, 500],
                       help="hidden layer sizes of the baseline, prior and recognition networks (the generation "
                       "network mirrors them)")  # fmt: skip
    model.add_argument("--activation", default="relu", choices=sorted(ACTIVATIONS), help="hidden activation")
    model.add_argument("--likelihood", default="bernoulli", choices=("bernoulli", "continuous-bernoulli"),
                       help="p(y|x, z) of the hidden pixels: bernoulli (binarized images) or continuous-bernoulli "
                       "(grey levels)")  # fmt: skip
    train = p.add_argument_group("training")
    train.add_argument("--epochs", type=int, default=50, help="passes of the CVAE over the training set")
    train.add_argument("--baseline-epochs", type=int, default=None,
                       help="passes of the baseline over the training set (default: --epochs)")  # fmt: skip
    train.add_argument("--batch-size", type=int, default=128, help="minibatch size (the tutorial's 128)")
    train.add_argument("--lr", type=float, default=DEFAULTS.lr, help="Adam learning rate")
    train.add_argument("--validate", default=DEFAULTS.validate, choices=VALIDATE,
                       help="Pyro's validation (data, distribution arguments): first epoch only, or always")
    train.add_argument("--seed", type=int, default=DEFAULTS.seed, help="random seed")
    train.add_argument("--device", default=DEFAULTS.device, help="auto (CUDA if available), cpu, cuda or cuda:N")
    _add_device_data_limit_arg(train)
    train.add_argument("--num-samples", type=positive_int, default=100,
                       help="importance samples per test image of the CVAE's -log p(y|x)")  # fmt: skip
    out = p.add_argument_group("output")
    out.add_argument("--out", default=None,
                     help="output folder (default: runs/cvae-DATASET-qQUADRANTS, or for a new run the first of "
                     "runs/cvae-DATASET-qQUADRANTS-2, -3, ... that holds no run)")  # fmt: skip
    out.add_argument("--resume", action="store_true",
                     help=f"{RESUME_HELP}; the baseline is the one trained in OUT/baseline (a run stopped before "
                     "the CVAE's first epoch cannot be resumed: start it again with --overwrite)")  # fmt: skip
    out.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    out.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    p.set_defaults(func=train_cvae_command, distributed=False)


def train_cvae_command(args: argparse.Namespace) -> dict:
    """``pyrovae train-cvae``: returns a summary (last metrics, test NLLs, files), also printed."""
    out = _out(args, Path("runs") / f"cvae-{args.dataset}-q{args.quadrants}")
    return _training(args, out, _train_cvae)


def _train_cvae(args: argparse.Namespace, out: Path, device: str, rank: int) -> dict:
    """:func:`train_cvae_command` in its locked run folder ``out``: the baseline (in ``out/baseline``, unless
    resumed), then the CVAE."""
    if args.resume:
        settings, cvae_config, train = _saved(out, "data", "vae", "train")
        with malformed(out / CHECKPOINT):
            config = TrainConfig(**_resumed(train, args, device))
    else:
        settings = _data_settings(args, _binarization(args.binarize, args.likelihood))
        config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed, device=device,
                             validate=args.validate, **_device_data_limit(args))  # fmt: skip
    data = _load_data(settings, args)
    pyro.clear_param_store()
    if args.resume:  # the checkpoint holds the baseline's weights with the CVAE's
        cvae = model_from_config(cvae_config, seed=config.seed)
    else:
        nets = {"hidden": args.hidden, "activation": args.activation, "likelihood": args.likelihood}
        baseline = Baseline(data.image_shape, args.quadrants, **nets, seed=config.seed)
        baseline_epochs = args.epochs if args.baseline_epochs is None else args.baseline_epochs
        baseline_config = replace(config, epochs=baseline_epochs)
        fit(baseline.model, baseline.guide, data, baseline_config, out_dir=out / "baseline", overwrite=args.overwrite,
            extra={"data": settings, "train": asdict(baseline_config)}, verbose=not args.quiet)  # fmt: skip
        pyro.clear_param_store()
        z_dim = args.z_dim or (CVAE_Z_DIM if data.x_dim >= CVAE_FULL_SIZE else CVAE_SMALL_Z_DIM)
        cvae = CVAE(data.image_shape, args.quadrants, z_dim, baseline=baseline, **nets, seed=config.seed)
    extra = {"data": settings, "vae": cvae.config, "train": asdict(config)}
    history = fit(cvae.model, cvae.guide, data, config, out_dir=out, resume=args.resume, extra=extra,
                  verbose=not args.quiet)  # fmt: skip
    split = "test" if len(data.test) else "train"
    x = data.fixed_x(split).to(device_of(cvae))
    estimate = log_marginal_likelihood(cvae.model, cvae.guide, x, args.num_samples, seed=args.seed, progress=False)
    nll = {"split": split, "num_samples": args.num_samples, "nll": estimate.summary()["nll"],
           "baseline_nll": -cvae.baseline.log_prob(x).mean().item()}  # fmt: skip
    files = {"figure": str(out / "cvae.png"), "nll": str(out / f"nll_{split}.json")}
    save_json(files["nll"], nll)
    set_seed(args.seed)
    save_completions(cvae, x[:10], files["figure"], data.image_shape)
    summary = {**history[-1], f"{split}_nll": nll["nll"], f"baseline_{split}_nll": nll["baseline_nll"],
               "checkpoint": str(out / CHECKPOINT), **files}  # fmt: skip
    print(json.dumps(summary, indent=2))
    return summary


PLOTS = ("latent-map", "manifold", "interpolation", "traversal", "attribute", "samples", "reconstructions")


def _add_plot_parser(command: Callable[..., argparse.ArgumentParser]) -> None:
    p = command(
        "plot",
        help="draw a picture of a trained VAE or autoencoder: latent map, manifold, interpolations, ...",
        description="Write one picture of the model in CHECKPOINT (from pyrovae train) as a PNG. latent-map: "
        "posterior means of --num-points images of --split coloured by label (t-SNE unless z is 2-D); manifold: "
        "decoded grid of quantiles of N(0, I) (z_dim = 2 only); interpolation: --pairs rows of --steps decoded "
        "codes between two images' means (--method linear or spherical); traversal: the --units most active "
        "units of one image's mean varied over +-2 std; attribute: the attribute vector (--attribute thickness: "
        "images with more ink than the median minus the others; class:K: class K minus the others) added with "
        "weights 0..2 to images without the attribute; samples and reconstructions as in pyrovae train.",
    )
    p.add_argument("kind", choices=PLOTS, help="which picture")
    p.add_argument("checkpoint", help="checkpoint.pt written by pyrovae train")
    p.add_argument("--out", default=None,
                   help="PNG to write, replaced if it exists (default: KIND.png beside the checkpoint, or KIND-2.png, "
                   "... when that exists: a picture of training is never replaced)")  # fmt: skip
    _add_source_args(p)
    p.add_argument("--split", default="test", choices=("test", "valid", "train"), help="images to draw from")
    p.add_argument("--num-points", type=int, default=2000, help="latent-map: points plotted")
    p.add_argument("--grid", type=int, default=20, help="manifold: images per side")
    p.add_argument("--steps", type=int, default=10, help="interpolation/traversal: images per row")
    p.add_argument("--pairs", type=int, default=8, help="interpolation: rows (pairs of images)")
    p.add_argument("--method", default="linear", choices=INTERPOLATIONS, help="interpolation: path between codes")
    p.add_argument("--units", type=int, default=8, help="traversal: rows (most active units first)")
    p.add_argument("--attribute", default="thickness", help="attribute: 'thickness' or 'class:K'")
    p.add_argument("--seed", type=int, default=0, help="seed of the image choice, samples and t-SNE")
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda or cuda:N")
    p.set_defaults(func=plot_command)


def _attribute_mask(name: str, x, labels):
    """The boolean mask of the images ``x`` that have the attribute ``name`` (see ``pyrovae plot -h``)."""
    if name == "thickness":
        amount = ink(x)
        return amount > amount.median()
    kind, _, value = name.partition(":")
    if kind != "class" or not value.isdigit():
        raise ValueError(f"unknown attribute {name!r}: use 'thickness' or 'class:K' with K a class index")
    if labels is None:
        raise ValueError(f"attribute {name!r} needs labels, and this split has none: use 'thickness'")
    return labels == int(value)


def _free_picture(path: Path) -> Path:
    """``path``, or when a file is there (e.g. the ``samples.png`` that training wrote) the first free ``KIND-N.png``
    beside it, said on stderr: a picture named by no ``--out`` never replaces another."""
    free = numbered(path, Path.exists)
    if free != path:
        print(f"pyrovae: {path} exists (--out replaces a file): this picture goes to {free}", file=sys.stderr)
    return free


def plot_command(args: argparse.Namespace) -> str:
    """``pyrovae plot``: writes the picture and returns (and prints) its path."""
    device = resolve_device(args.device)
    if "vae" not in section(load_checkpoint(args.checkpoint), args.checkpoint, "extra"):
        raise ValueError(f"{args.checkpoint} is not a VAE or autoencoder checkpoint: plot works on pyrovae train "
                         "runs (train-ss writes its own analogies.png)")  # fmt: skip
    vae, state = load_vae(args.checkpoint, map_location=device)
    _unconditional(vae, args.checkpoint)
    if isinstance(vae, TwoLayerVAE) and args.kind not in ("samples", "reconstructions"):
        raise ValueError(
            f"plot {args.kind} walks the single latent space z of a VAE, and {args.checkpoint} is a two-layer VAE "
            "(z1, z2): only samples and reconstructions are drawn for it (for its codes, call "
            "pyrovae.viz.latent.posterior_means(vae.guide, x, site='z1') or site='z2')"
        )
    if isinstance(vae, VampVAE) and args.kind == "manifold":
        raise ValueError(
            f"plot manifold lays its grid at the quantiles of the N(0, I) prior, and {args.checkpoint} has a "
            "VampPrior (a mixture): draw plot samples or plot latent-map instead"
        )
    vae.eval()
    settings = state["extra"].get("data")
    if settings is None:
        raise ValueError(
            f"{args.checkpoint} does not record its dataset: train with pyrovae train, or pass "
            "extra={'data': {'name': ..., 'binarize': ..., 'valid_size': ...}} to pyrovae.fit"
        )
    settings = _saved_data(state, args.checkpoint)
    data = _load_data({**settings, "binarize": "none"}, args)  # grey levels: ink is measured on them
    if args.kind != "latent-map" and not are_images(data.image_shape):
        raise ValueError(f"plot {args.kind} draws images, and {data.name} holds rows of {data.x_dim} numbers, not "
                         "images: plot latent-map, or write samples with pyrovae sample --out FILE.npy")  # fmt: skip
    split = getattr(data, args.split)
    if not len(split):
        raise ValueError(f"the {args.split} split of {data.name} is empty: choose another --split")
    pyro.set_rng_seed(args.seed)
    order = torch.randperm(len(split))
    grey = split.x.to(device)
    # the model sees what it was trained on: the split binarized once with the evaluation seed
    x = (grey if settings["binarize"] == "none" else binarize(grey, seed=EVAL_SEED))[order]
    grey, labels = grey[order], None if split.y is None else split.y[order].to(device)
    out = Path(args.out) if args.out else _free_picture(Path(args.checkpoint).parent / f"{args.kind}.png")
    shape, model, guide = data.image_shape, vae.model, vae.guide
    if args.kind == "latent-map":
        x, labels = x[: args.num_points], None if labels is None else labels[: args.num_points]
        points = embed_2d(posterior_means(guide, x), seed=args.seed)
        method = "posterior means" if vae.z_dim == 2 else f"t-SNE of {vae.z_dim}-D posterior means"
        plot_latent_map(points, labels, out, title=f"{data.name}: {method}")
    elif args.kind == "manifold":
        save_grid(manifold_images(model, args.grid), out, shape)
    elif args.kind == "interpolation":
        pairs = x[: 2 * args.pairs].reshape(2, -1, x.shape[-1])
        save_grid(interpolation_images(model, guide, pairs[0], pairs[1], args.steps, args.method), out, shape)
    elif args.kind == "traversal":
        images, _ = traversal_images(model, guide, x[0], x[:1000], args.units, args.steps)
        save_grid(images, out, shape)
    elif args.kind == "attribute":
        mask = _attribute_mask(args.attribute, grey, labels)
        targets = x[~mask][:8]
        save_grid(torch.cat([targets[:, None], attribute_images(model, guide, x, mask, targets)], 1), out, shape)
    elif args.kind == "samples":
        save_samples(model, out, shape)
    else:
        save_reconstructions(model, guide, x[:16], out, shape)
    print(out)
    return str(out)


def _add_sample_parser(command: Callable[..., argparse.ArgumentParser]) -> None:
    p = command(
        "sample",
        help="write data generated by a trained VAE (decoded prior samples) as .npy and/or a PNG grid",
        description="Draw N codes from the prior p(z) of the VAE in CHECKPOINT (pyrovae train) and decode them: the "
        "means E[x|z] (default: grey levels for a Bernoulli likelihood), or with --draw one draw x ~ p(x|z) each "
        "(binary images for a Bernoulli likelihood). Writes each --out: .npy, an (N, D) float32 array in the data's "
        "own units, or .png, a grid of pictures.",
    )
    p.add_argument("checkpoint", help="checkpoint.pt written by pyrovae train")
    p.add_argument("-n", "--num-samples", type=positive_int, default=64, help="samples to generate")
    p.add_argument("--out", action="append", required=True,
                   help="file to write: FILE.npy or FILE.png; give --out twice for both")  # fmt: skip
    p.add_argument("--draw", action="store_true", help="draws x ~ p(x|z) instead of the means E[x|z]")
    p.add_argument("--seed", type=int, default=0, help="seed of the codes (and draws)")
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda or cuda:N")
    p.set_defaults(func=sample_command)


def _outputs(paths: list[str], suffixes: tuple[str, ...]) -> list[Path]:
    """The ``--out`` files of a command that writes ``suffixes``, checked before any work is done."""
    for path in paths:
        if Path(path).suffix.lower() not in suffixes:
            raise ValueError(f"--out {path}: give a file name ending in {' or '.join(suffixes)}")
    return [Path(path) for path in paths]


def _save_array(path: Path, **arrays: torch.Tensor) -> None:
    """Write ``arrays`` to ``path`` atomically: the one array as ``.npy``, or all by name as ``.npz``."""
    import numpy as np

    values = {name: a.detach().cpu().numpy() for name, a in arrays.items()}
    if path.suffix.lower() == ".npy":
        atomic_write(path, lambda f: np.save(f, next(iter(values.values()))))
    else:
        atomic_write(path, lambda f: np.savez(f, **values))


def _generative(path: str, device: torch.device) -> tuple:
    """``(vae, checkpoint)`` of a checkpoint of a model with a prior (``pyrovae train``, a model object's ``save``)."""
    vae, state = load_vae(path, map_location=device)
    if isinstance(vae, Autoencoder):
        raise ValueError(f"{path} is a deterministic autoencoder: it has no prior p(z) to generate data from")
    _unconditional(vae, path)
    return vae, state


def _unconditional(vae: torch.nn.Module, path: str) -> None:
    """Refuse the models of ``pyrovae train-cvae``, which have no prior over whole images.

    :raises ValueError: for a :class:`~pyrovae.models.cvae.CVAE` or its :class:`~pyrovae.models.baseline.Baseline`.
    """
    if isinstance(vae, QuadrantModel):
        raise ValueError(
            f"{path} is a {type(vae).__name__} of pyrovae train-cvae: it models an image's hidden quadrants given the "
            "others, with no prior over whole images to sample, encode or plot; its picture is cvae.png in its run "
            "folder, and pyrovae.models.cvae.CVAE.complete(x) draws completions"
        )


def sample_command(args: argparse.Namespace) -> list[str]:
    """``pyrovae sample``: writes the samples and returns (and prints) the files written."""
    outputs = _outputs(args.out, (".npy", ".png"))
    device = resolve_device(args.device)
    vae, state = _generative(args.checkpoint, device)
    record = DataRecord.read(state, args.checkpoint)
    if any(out.suffix.lower() == ".png" for out in outputs) and not are_images(record.image_shape):
        raise ValueError(f"{args.checkpoint} is a model of data that are not images (no image shape recorded, or "
                         "rows of 1 x D): write the samples as .npy")  # fmt: skip
    set_seed(args.seed)
    x = prior_samples(vae.model, args.num_samples, vae.site("x"), mean=not args.draw)
    scale = record.standardization
    x = x if scale is None else scale.inverse(x)  # in the data's own units
    for out in outputs:
        if out.suffix.lower() == ".npy":
            _save_array(out, x=x.float())
        else:
            out.parent.mkdir(parents=True, exist_ok=True)
            save_rows(x, out, record.image_shape)
        print(out)
    return [str(out) for out in outputs]


def _add_encode_parser(command: Callable[..., argparse.ArgumentParser]) -> None:
    p = command(
        "encode",
        help="write the posterior means E[z|x] of data under a trained VAE as .npy / .npz",
        description="Encode data into the posterior means E_q[z|x] of the VAE in CHECKPOINT (for a two-layer VAE, "
        "of --site): every point of --split of the data the run was trained on, or with --data every row of a file "
        "(the formats of pyrovae train --data; x of an .npz), as the model sees them: standardized as the run's data "
        "were, and binarized once with the evaluation seed when it trained on binary data. Writes --out: .npy, an "
        "(N, z_dim) float32 array, or .npz with the arrays 'z' and, where the data have labels, 'y'; rows in the "
        "data's order.",
    )
    p.add_argument("checkpoint", help="checkpoint.pt written by pyrovae train (or a model object's save)")
    p.add_argument("--out", required=True, help="FILE.npy (codes) or FILE.npz (codes 'z' and labels 'y')")
    p.add_argument("--split", default="test", choices=("test", "valid", "train"), help="which split to encode")
    p.add_argument("--data", default=None, metavar="FILE", help="encode the rows of this file instead of --split")
    p.add_argument("--label-column", default=None, metavar="NAME", help="--data .csv/.parquet: the labels' column")
    _add_source_args(p)
    p.add_argument("--site", default=None, help="the latent site (default: z; z1 or z2 of a two-layer VAE: z1)")
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda or cuda:N")
    p.set_defaults(func=encode_command)


def _new_data(path: str, state: dict, checkpoint: str, label_column: str | None) -> Split:
    """The rows of the file ``path`` as the model of ``checkpoint`` sees its data: standardized as the run's data were,
    binarized once with the evaluation seed if it trained on binary data."""
    record = DataRecord.read(state, checkpoint)
    data = load_file(path, label_column=label_column, valid_size=0, test_size=0,
                     binarize="none" if record.binarize == "none" else "static",
                     standardize=record.standardization or False)  # fmt: skip
    return data.train


def encode_command(args: argparse.Namespace) -> str:
    """``pyrovae encode``: writes the codes and returns (and prints) the file written."""
    (out,) = _outputs([args.out], (".npy", ".npz"))
    device = resolve_device(args.device)
    vae, state = _generative(args.checkpoint, device)
    sites = getattr(vae, "latent_sites", (vae.site("z"),))
    site = sites[0] if args.site is None else vae.site(args.site)
    if site not in sites:
        raise ValueError(f"--site {args.site}: the model's latent sites are {', '.join(sites)}")
    if args.data is not None:
        split = _new_data(args.data, state, args.checkpoint, args.label_column)
    else:
        data = _load_data(_saved_data(state, args.checkpoint), args)
        split = replace(getattr(data, args.split), x=data.fixed_x(args.split))
        if not len(split):
            raise ValueError(f"the {args.split} split of {data.name} is empty: choose another --split")
    z = posterior_means(vae.guide, split.x, site=site)  # a chunk at a time on the device
    _save_array(out, z=z.float(), **({} if split.y is None else {"y": split.y}))
    print(out)
    return str(out)


def byte_size(text: str) -> int:
    """``argparse`` type of a size in bytes, e.g. ``2GB`` (:func:`pyrovae.data.placement.parse_size`)."""
    try:
        return parse_size(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def positive_int(text: str) -> int:
    """``argparse`` type of a count: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    debug = argparse.ArgumentParser(add_help=False)
    debug.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help=f"show the traceback of an error (or set {DEBUG_ENV}=1)")  # fmt: skip
    parser = argparse.ArgumentParser(prog="pyrovae", description="Variational autoencoders written the Pyro way.",
                                     parents=[debug])  # fmt: skip
    subparsers = parser.add_subparsers(dest="command", required=True)

    def command(name: str, **kwargs) -> argparse.ArgumentParser:
        """A subcommand's parser: ``--debug``, and the defaults in its help."""
        return subparsers.add_parser(name, parents=[debug], formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                                     **kwargs)  # fmt: skip

    for add in (_add_train_parser, _add_evaluate_parser, _add_train_ss_parser, _add_train_cvae_parser, _add_plot_parser,
                _add_sample_parser, _add_encode_parser):
        add(command)
    return parser


def main(argv: list[str] | None = None) -> None:
    """The ``pyrovae`` command. A user's mistake or a failed run (:data:`USER_ERRORS`) ends it with
    ``pyrovae: error: <message>`` on stderr and exit status 1; ``--debug`` or ``PYROVAE_DEBUG=1`` raise the error
    with its traceback instead."""
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except USER_ERRORS as e:
        if getattr(args, "debug", False) or os.environ.get(DEBUG_ENV, "") not in ("", "0"):
            raise
        own = isinstance(e, OSError) and e.strerror and e.filename is None  # a message, not "[Errno N] ..."
        sys.stderr.write(f"pyrovae: error: {e.strerror if own else e}\n")
        sys.exit(1)


if __name__ == "__main__":
    main()
