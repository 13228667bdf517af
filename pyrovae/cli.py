"""The ``pyrovae`` command line: a thin layer over :func:`pyrovae.load_dataset`, :class:`pyrovae.VAE`,
:func:`pyrovae.fit` and :mod:`pyrovae.plots`.

Example::

    pyrovae train                                   # embedded 8x8 digits, CPU, well under a minute
    pyrovae train --dataset mnist --data-dir ../shared/data --epochs 50 --z-dim 50
    pyrovae train --out runs/mnist --resume --epochs 100   # continue a run with its saved settings
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

import pyro

from .checkpoint import load_checkpoint
from .data import BINARIZATIONS, DATASETS, load_dataset
from .nets import ACTIVATIONS
from .plots import save_figures
from .train import CHECKPOINT, ELBOS, TrainConfig, fit
from .vae import VAE

DEFAULTS = TrainConfig()


def _add_train_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a VAE with SVI and write checkpoint, metrics and pictures",
        description="Train a VAE (Bernoulli likelihood, MLP encoder/decoder) by SVI. Writes into --out: "
        "checkpoint.pt (every epoch), metrics.jsonl, samples.png, reconstructions.png and elbo.png.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    data = p.add_argument_group("data")
    data.add_argument("--dataset", default="digits", choices=DATASETS,
                      help="'digits' is embedded (scikit-learn's 8x8 digits, no files needed); the others "
                      "come through torchvision from --data-dir")
    data.add_argument("--data-dir", default="data",
                      help="torchvision root holding e.g. MNIST/raw/*.gz; present files are used offline")
    data.add_argument("--no-download", action="store_true", help="never try to download missing files")
    data.add_argument("--valid-size", type=int, default=None,
                      help="training images held out for validation (default: 200 for digits, 10000 for the "
                      "28x28 sets; 0 trains on the whole official training set)")
    data.add_argument("--binarize", default="dynamic", choices=BINARIZATIONS,
                      help="dynamic: fresh Bernoulli draw per minibatch; static: one fixed draw; test sets "
                      "are binarized once with a fixed seed")
    model = p.add_argument_group("model")
    model.add_argument("--z-dim", type=int, default=16, help="latent dimension")
    model.add_argument("--hidden", type=int, nargs="+", default=[400],
                       help="hidden layer sizes of the encoder (the decoder mirrors them), e.g. --hidden 200 200")
    model.add_argument("--activation", default="relu", choices=sorted(ACTIVATIONS), help="hidden activation")
    train = p.add_argument_group("training")
    train.add_argument("--epochs", type=int, default=100, help="passes over the training set")
    train.add_argument("--batch-size", type=int, default=DEFAULTS.batch_size, help="minibatch size")
    train.add_argument("--lr", type=float, default=DEFAULTS.lr, help="Adam learning rate")
    train.add_argument("--elbo", default=DEFAULTS.elbo, choices=sorted(ELBOS),
                       help="trace: Trace_ELBO; meanfield: TraceMeanField_ELBO (analytic KL)")
    train.add_argument("--jit", action="store_true", help="use the JIT-compiled ELBO")
    train.add_argument("--particles", type=int, default=DEFAULTS.num_particles, help="samples of z per data point")
    train.add_argument("--seed", type=int, default=DEFAULTS.seed, help="random seed")
    train.add_argument("--device", default=DEFAULTS.device, help="auto (CUDA if available), cpu, cuda or cuda:N")
    out = p.add_argument_group("output")
    out.add_argument("--out", default=None, help="output folder (default: runs/DATASET)")
    out.add_argument("--resume", action="store_true",
                     help="continue the run in --out with its saved settings; only --epochs and --device "
                     "are taken from this command line")
    out.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    p.set_defaults(func=train_command)


def train_command(args: argparse.Namespace) -> dict:
    """``pyrovae train``: returns a summary (last metrics and written files) that is also printed."""
    out = Path(args.out or Path("runs") / args.dataset)
    if args.resume:
        saved = load_checkpoint(out / CHECKPOINT)["extra"]
        settings, vae_config = saved["data"], saved["vae"]
        config = TrainConfig(**{**saved["train"], "epochs": args.epochs, "device": args.device})
    else:
        settings = {"name": args.dataset, "binarize": args.binarize, "valid_size": args.valid_size}
        vae_config = {"z_dim": args.z_dim, "hidden": args.hidden, "activation": args.activation}
        config = TrainConfig(
            epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, elbo=args.elbo, jit=args.jit,
            num_particles=args.particles, seed=args.seed, device=args.device,
        )
    data = load_dataset(
        settings["name"], args.data_dir, binarize=settings["binarize"], valid_size=settings["valid_size"],
        download=not args.no_download,
    )
    pyro.clear_param_store()
    vae = VAE(data.x_dim, **{k: v for k, v in vae_config.items() if k != "x_dim"})
    extra = {"data": settings, "vae": vae.config, "train": asdict(config)}
    history = fit(
        vae.model, vae.guide, data, config, out_dir=out, resume=args.resume, extra=extra, verbose=not args.quiet
    )
    files = save_figures(vae.model, vae.guide, data, history, out)
    summary = {**history[-1], "checkpoint": str(out / CHECKPOINT), **files}
    print(json.dumps(summary, indent=2))
    return summary


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pyrovae", description="Variational autoencoders written the Pyro way.")
    subparsers = parser.add_subparsers(dest="command", required=True)
    _add_train_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
