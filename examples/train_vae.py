"""Train a VAE with the library API and look at it: the script form of ``pyrovae train``.

Loads a dataset (the embedded digits unless ``--dataset`` says otherwise), builds :class:`pyrovae.VAE`,
trains it with :func:`pyrovae.fit` (SVI + Trace_ELBO, checkpoint every epoch) and writes prior samples,
reconstructions and the ELBO curve.

Run: ``python examples/train_vae.py --epochs 100 --out runs/example``
     ``python examples/train_vae.py --dataset mnist --data-dir ../shared/data --z-dim 50 --epochs 50``
"""

import argparse

import pyro

import pyrovae
from pyrovae.viz.plots import save_figures


def main(args):
    pyro.clear_param_store()
    data = pyrovae.load_dataset(args.dataset, args.data_dir)
    vae = pyrovae.VAE(data.x_dim, z_dim=args.z_dim, hidden=args.hidden, seed=args.seed)  # the initial weights
    config = pyrovae.TrainConfig(epochs=args.epochs, seed=args.seed, device=args.device)  # the training noise
    # the dataset settings let `pyrovae evaluate` and `pyrovae plot` reload the data from the checkpoint
    settings = {"name": data.name, "binarize": data.binarize, "valid_size": len(data.valid)}
    history = pyrovae.fit(vae.model, vae.guide, data, config, out_dir=args.out,
                          extra={"vae": vae.config, "data": settings})  # fmt: skip
    print(f"test ELBO after {len(history)} epochs: {history[-1]['test_elbo']:.2f} nats per image")
    print("wrote", ", ".join(save_figures(vae.model, vae.guide, data, history, args.out).values()))
    return history


def parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="digits", choices=pyrovae.data.DATASETS)
    p.add_argument("--data-dir", default="data")
    p.add_argument("--z-dim", type=int, default=16)
    p.add_argument("--hidden", type=int, nargs="+", default=[400])
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default="runs/example")
    return p


if __name__ == "__main__":
    main(parser().parse_args())
