"""VAE versus a deterministic autoencoder: which one can generate by decoding N(0, I) draws?

Trains a :class:`pyrovae.VAE` and a :class:`pyrovae.models.autoencoder.Autoencoder` with the same networks, the same
initial weights, the same data and the same optimizer (:func:`pyrovae.fit`); only the objective differs
(the autoencoder's point-mass guide and masked prior turn the ELBO into the reconstruction log-likelihood).
Then both are asked to generate the same way, by decoding :math:`z \\sim \\mathcal{N}(0, I)`, and
:func:`pyrovae.viz.compare.compare_generators` measures the samples against real test images: the share a digit
classifier is confident about, the entropy of its predicted classes, the distance to the nearest training
image and a Fréchet distance on the classifier's features. The comparison uses the grey-level images (the
classifier is fitted to the grey training images, the real row shows grey test images), since the samples
are decoded pixel probabilities, not binary draws.

Prints a table (rows: real, VAE, autoencoder), writes ``OUT/vae_vs_ae.png`` (64 real test images beside 64
decoded prior draws of each model, the same draws for both), ``OUT/vae_vs_ae.json`` (the numbers and the
settings) and each model's checkpoint (``OUT/vae/checkpoint.pt``, ``OUT/autoencoder/checkpoint.pt``, which
``pyrovae plot KIND CHECKPOINT`` and ``examples/latent_space.py --checkpoint`` read).

Run: ``python examples/vae_vs_ae.py``             (embedded 8x8 digits, under a minute on CPU)
     ``python examples/vae_vs_ae.py --dataset mnist --data-dir ../shared/data --epochs 20``
"""

import argparse
from dataclasses import asdict
from pathlib import Path

import pyro

import pyrovae
from pyrovae.checkpoint import save_json
from pyrovae.models.autoencoder import Autoencoder
from pyrovae.viz.compare import compare_generators, digit_classifier
from pyrovae.viz.plots import plot_panels, prior_means

#: columns of the printed table: result key -> header
COLUMNS = {
    "confident_share": "confident",
    "class_entropy": "class entropy",
    "nearest_distance": "nearest train",
    "frechet_distance": "Frechet",
    "train_elbo": "train ELBO",
    "test_elbo": "test ELBO",
}


def train(cls, data, settings, args, out):
    """A fresh ``cls`` (VAE or Autoencoder) trained on ``data``; returns ``(model, history)``.

    The param store is cleared first, so that the new model registers its own parameters under the shared
    names ``"encoder$$$..."`` and ``"decoder$$$..."``. The trained weights stay in the model's ``nn.Module``s
    (``pyro.module`` puts the module's own tensors into the store, and never copies store values back into
    a module), so both models keep decoding with their own weights after the store has moved on.
    """
    pyro.clear_param_store()
    model = cls(data.x_dim, z_dim=args.z_dim, hidden=args.hidden, seed=args.seed)  # both start from the same weights
    config = pyrovae.TrainConfig(epochs=args.epochs, seed=args.seed, device=args.device)
    extra = {"vae": model.config, "data": settings, "train": asdict(config)}
    history = pyrovae.fit(model.model, model.guide, data, config, out_dir=out, extra=extra, verbose=False)
    print(f"{cls.__name__}: {len(history)} epochs, train ELBO {history[-1]['train_elbo']:.2f}, "
          f"test ELBO {history[-1]['test_elbo']:.2f} nats per image")  # fmt: skip
    return model, history


def main(args):
    out = Path(args.out)
    settings = {"name": args.dataset, "binarize": "dynamic", "valid_size": None}
    data = pyrovae.load_dataset(args.dataset, args.data_dir, binarize=settings["binarize"])
    grey = pyrovae.load_dataset(args.dataset, args.data_dir, binarize="none")  # same split, grey levels
    models, histories = {}, {}
    for name, cls, folder in (("VAE", pyrovae.VAE, "vae"), ("autoencoder", Autoencoder, "autoencoder")):
        models[name], histories[name] = train(cls, data, settings, args, out / folder)
    for model in models.values():
        model.eval()

    generators = {name: model.model for name, model in models.items()}
    classifier = digit_classifier(grey.train.x, grey.train.y, seed=args.seed, max_iter=args.classifier_iters)
    results = compare_generators(
        generators, grey.train.x, grey.train.y, grey.test.x, args.num_samples, args.seed, classifier=classifier
    )
    for name, history in histories.items():
        results[name].update({key: history[-1][key] for key in ("train_elbo", "test_elbo")})

    num_real = min(args.num_samples, len(grey.test))
    print(f"\n{args.num_samples} decoded N(0, I) draws per model, {num_real} real test images")
    print(f"{'':>12}" + "".join(f"{header:>15}" for header in COLUMNS.values()))
    for name, row in results.items():
        cells = (f"{row[key]:>15.3f}" if key in row else f"{'-':>15}" for key in COLUMNS)
        print(f"{name:>12}" + "".join(cells))
    print("(the autoencoder's 'ELBO' is its reconstruction log-likelihood: its prior is masked out)")

    panels = {"real test images": grey.test.x[:64]}
    for name, model in generators.items():
        pyro.set_rng_seed(args.seed)  # the same 64 codes for both models
        panels[f"{name}: decoded N(0, I) draws"] = prior_means(model, 64).cpu()
    files = {"figure": str(out / "vae_vs_ae.png"), "json": str(out / "vae_vs_ae.json")}
    plot_panels(panels, files["figure"], data.image_shape)
    save_json(files["json"], {**results, "settings": vars(args)})
    print("wrote", ", ".join(files.values()))
    return {**results, "settings": vars(args), "files": files, "models": models}


def parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="digits", choices=pyrovae.data.DATASETS)
    p.add_argument("--data-dir", default="data")
    p.add_argument("--epochs", type=int, default=100, help="per model (100 for digits; 20 is enough for MNIST)")
    p.add_argument("--z-dim", type=int, default=16)
    p.add_argument("--hidden", type=int, nargs="+", default=[400])
    p.add_argument("--num-samples", type=int, default=1000, help="decoded prior draws per model (and real images)")
    p.add_argument("--classifier-iters", type=int, default=200, help="passes of the judging digit classifier")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default="runs/vae_vs_ae")
    return p


if __name__ == "__main__":
    main(parser().parse_args())
