"""What the latent space looks like: maps, the 2-D manifold, interpolations, traversals and an attribute vector.

Trains one :class:`pyrovae.VAE` (the embedded digits and ``--z-dim 2`` by default, so that the latent space
can be drawn directly), or loads a trained one with ``--checkpoint`` (from ``pyrovae train``,
``examples/train_vae.py`` or ``examples/vae_vs_ae.py``; its dataset settings are read from the checkpoint, or
taken from ``--dataset`` where it records none, as ``examples/train_vae.py``'s do),
and draws it with :mod:`pyrovae.viz.latent` on test images (binarized once with the evaluation seed):

- ``latent_map.png``: the posterior means :math:`\\mathbb{E}_{q(z|x)}[z]` coloured by label (t-SNE when
  ``z_dim > 2``);
- ``manifold.png``: decoded quantiles of :math:`\\mathcal{N}(0, I)` (Kingma & Welling 2014, Fig. 4; ``z_dim = 2``
  only, otherwise skipped);
- ``interpolation.png`` and ``interpolation_spherical.png``: decoded linear and spherical (White 2016) paths
  between the codes of pairs of test images, one pair per row;
- ``traversal.png``: one test image's code with each of its most variable units swept over +-2 std;
- ``attribute.png``: the "thickness" vector (mean code of the images with more ink than the median minus that
  of the others) added with weights 0, 0.5, ..., 2 to 8 thin images (first column: the input image).

The measured number is the mean ink (mean pixel probability) of the decoded attribute images at each weight:
it should rise with the weight if the vector means "thicker strokes". It is printed beside its scale, the
mean ink of the thin and thick halves of the test images and of their reconstructions: on the 8x8 digits the
decoded pixel probabilities are blurry, so the reconstructions of both halves carry almost the same ink, and
the rise along the thickness vector is of the order of that gap.

Run: ``python examples/latent_space.py``          (embedded 8x8 digits, under a minute on CPU)
     ``python examples/latent_space.py --dataset mnist --data-dir ../shared/data --epochs 20``
     ``python examples/latent_space.py --checkpoint runs/vae_vs_ae/vae/checkpoint.pt --out runs/latent_vae16``
"""

import argparse
from dataclasses import asdict
from pathlib import Path

import pyro
import torch

import pyrovae
from pyrovae.data import EVAL_SEED, binarize
from pyrovae.device import device_of, resolve_device
from pyrovae.viz.latent import (
    attribute_images,
    embed_2d,
    ink,
    interpolation_images,
    manifold_images,
    posterior_means,
    traversal_images,
)
from pyrovae.viz.plots import plot_latent_map, save_grid

#: weights of the attribute vector, one column of attribute.png each
WEIGHTS = (0.0, 0.5, 1.0, 1.5, 2.0)


def trained_vae(args):
    """``(vae, data)``: the VAE in ``--checkpoint`` with the dataset it was trained on, or a new one trained
    on ``--dataset`` (checkpoint in ``--out``)."""
    if args.checkpoint:
        vae, state = pyrovae.load_vae(args.checkpoint, map_location=resolve_device(args.device))
        settings = state["extra"].get("data")
        if settings is None:  # a checkpoint of pyrovae.fit without extra["data"]: take --dataset
            settings = {"name": args.dataset, "binarize": "dynamic", "valid_size": None}
            print(f"{args.checkpoint} records no dataset: drawing it on --dataset {args.dataset}")
        data = pyrovae.load_dataset(
            settings["name"], args.data_dir, binarize=settings["binarize"], valid_size=settings["valid_size"]
        )
        print(f"loaded {args.checkpoint}: z_dim {vae.z_dim}, trained {state['epoch']} epochs on {data.name}")
        return vae, data
    pyro.clear_param_store()
    settings = {"name": args.dataset, "binarize": "dynamic", "valid_size": None}
    data = pyrovae.load_dataset(args.dataset, args.data_dir, binarize=settings["binarize"])
    vae = pyrovae.VAE(data.x_dim, z_dim=args.z_dim, hidden=args.hidden, seed=args.seed)
    config = pyrovae.TrainConfig(epochs=args.epochs, seed=args.seed, device=args.device)
    extra = {"vae": vae.config, "data": settings, "train": asdict(config)}
    history = pyrovae.fit(vae.model, vae.guide, data, config, out_dir=args.out, extra=extra, verbose=False)
    print(f"trained {len(history)} epochs: test ELBO {history[-1]['test_elbo']:.2f} nats per image")
    return vae, data


def main(args):
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    vae, data = trained_vae(args)
    vae.eval()
    model, guide, shape, device = vae.model, vae.guide, data.image_shape, device_of(vae)
    pyro.set_rng_seed(args.seed)
    order = torch.randperm(len(data.test))
    x, labels = data.test.x[order].to(device), data.test.y[order]
    if data.binarize != "none":
        x = binarize(x, seed=EVAL_SEED)  # the guide reads binary images (a no-op on the binarized test split)
    names = ("latent_map", "manifold", "interpolation", "interpolation_spherical", "traversal", "attribute")
    paths = {name: str(out / f"{name}.png") for name in names}

    points = embed_2d(posterior_means(guide, x[: args.num_points]), seed=args.seed)
    method = "posterior means" if vae.z_dim == 2 else f"t-SNE of {vae.z_dim}-D posterior means"
    plot_latent_map(points, labels[: args.num_points], paths["latent_map"], title=f"{data.name}: {method}")

    if vae.z_dim == 2:
        save_grid(manifold_images(model, args.grid), paths["manifold"], shape)
    else:
        print(f"manifold.png skipped: the 2-D manifold needs z_dim = 2, this model has z_dim = {vae.z_dim}")
        paths["manifold"] = None

    pairs = x[: 2 * args.pairs].reshape(2, -1, x.shape[-1])
    for name, method in (("interpolation", "linear"), ("interpolation_spherical", "spherical")):
        save_grid(interpolation_images(model, guide, pairs[0], pairs[1], args.steps, method), paths[name], shape)

    images, units = traversal_images(model, guide, x[0], x[:1000], num_units=args.units, steps=args.steps)
    save_grid(images, paths["traversal"], shape)

    amount = ink(x)
    thick = amount > amount.median()
    targets = x[~thick][:8]
    decoded = attribute_images(model, guide, x, thick, targets, WEIGHTS)
    save_grid(torch.cat([targets[:, None], decoded], 1), paths["attribute"], shape)
    attribute_ink = ink(decoded).mean(0).tolist()  # (len(WEIGHTS),): mean over the targets

    recon = ink(vae.reconstruct(x))  # the scale: how much ink the decoder reproduces

    print(f"traversal units (most variable first): {units}")
    print(f"thickness vector: mean ink of the {len(targets)} thin images decoded at each weight")
    print("  weight " + "".join(f"{w:>8.1f}" for w in WEIGHTS))
    print("  ink    " + "".join(f"{v:>8.4f}" for v in attribute_ink))
    print(f"  scale: mean ink of the thin / thick halves of the test images {amount[~thick].mean():.4f} / "
          f"{amount[thick].mean():.4f}, of their reconstructions {recon[~thick].mean():.4f} / "
          f"{recon[thick].mean():.4f}")  # fmt: skip
    print("wrote", ", ".join(p for p in paths.values() if p))
    return {
        "paths": paths,
        "traversal_units": units,
        "attribute_weights": list(WEIGHTS),
        "attribute_ink": attribute_ink,
    }


def parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", default=None, help="draw this trained VAE instead of training one")
    p.add_argument("--dataset", default="digits", choices=pyrovae.data.DATASETS)
    p.add_argument("--data-dir", default="data")
    p.add_argument("--z-dim", type=int, default=2, help="2 draws the latent space directly (and the manifold)")
    p.add_argument("--hidden", type=int, nargs="+", default=[400])
    p.add_argument("--epochs", type=int, default=100, help="100 for digits; 20 is enough for MNIST")
    p.add_argument("--num-points", type=int, default=2000, help="test images in the latent map")
    p.add_argument("--grid", type=int, default=20, help="manifold: images per side")
    p.add_argument("--steps", type=int, default=10, help="interpolation/traversal: images per row")
    p.add_argument("--pairs", type=int, default=8, help="interpolation: rows (pairs of test images)")
    p.add_argument("--units", type=int, default=8, help="traversal: rows (most variable units first)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default="runs/latent_space")
    return p


if __name__ == "__main__":
    main(parser().parse_args())
