"""Semi-supervised classification with Kingma et al.'s M2 (:class:`pyrovae.SSVAE`), one run per label count.

For each ``--labels`` count: a class-balanced labelled subset of the training split (the rest unlabelled),
SVI with ``TraceEnum_ELBO`` (missing labels summed out), then the test accuracy of the classifier q(y|x),
an "analogies" picture (each test image's style drawn as every class, as in Kingma et al. Fig. 1) and
log p(x) of some test images with the label summed out (importance sampling). Prints a table.

With ``--a-dim A`` the model is Maaløe et al.'s auxiliary deep generative model (ADGM) instead. ``--shift S``
translates the labelled images by up to ``S`` pixels at each labelled step and ``--consistency B`` adds the
consistency term of :mod:`pyrovae.train.consistency` with weight ``B``; ``--lr-milestones E`` trains the epochs after
the first ``E`` with a tenth of the learning rate.

Run: ``python examples/semi_supervised.py``                       (embedded 8x8 digits, a minute)
     ``python examples/semi_supervised.py --dataset mnist --data-dir ../shared/data --labels 100 600 1000 3000``
"""

import argparse
from pathlib import Path

import pyro

import pyrovae
from pyrovae.device import device_of
from pyrovae.viz.plots import save_analogies


def run(data, num_labels, args):
    pyro.clear_param_store()
    model = pyrovae.ADGM if args.a_dim else pyrovae.SSVAE  # the ADGM: M2 with an auxiliary latent a
    ssvae = model(data.x_dim, data.num_classes, z_dim=args.z_dim, hidden=args.hidden, a_dim=args.a_dim, seed=args.seed)
    config = pyrovae.SemiSupervisedConfig(
        num_labels=num_labels, epochs=args.epochs, seed=args.seed, label_seed=args.seed, device=args.device,
        shift=args.shift, consistency=args.consistency, lr_milestones=args.lr_milestones,
    )
    out = Path(args.out) / f"labels-{num_labels}"
    history = pyrovae.fit_semisupervised(ssvae, data, config, out_dir=out, verbose=False)
    x = data.test.x[:20].to(device_of(ssvae))
    save_analogies(x, ssvae.analogies(x), out / "analogies.png", data.image_shape)
    log_px = pyrovae.log_marginal_likelihood(ssvae.model, ssvae.guide, x, args.num_samples, progress=False)
    return {"labels": num_labels, "test_accuracy": history[-1]["test_accuracy"], "log_px": float(log_px.log_px.mean())}


def main(args):
    data = pyrovae.load_dataset(args.dataset, args.data_dir)
    rows = [run(data, n, args) for n in args.labels]
    print(f"{'labels':>6}  {'test accuracy':>13}  {'log p(x), 20 test images':>24}")
    for row in rows:
        print(f"{row['labels']:>6}  {100 * row['test_accuracy']:>12.2f}%  {row['log_px']:>24.2f}")
    print(f"({args.epochs} epochs; pictures in {args.out}/labels-*/analogies.png)")
    return rows


def parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="digits", choices=pyrovae.data.DATASETS)
    p.add_argument("--data-dir", default="data")
    p.add_argument("--labels", type=int, nargs="+", default=[50, 100, 300], help="labelled points per run")
    p.add_argument("--z-dim", type=int, default=16)
    p.add_argument("--hidden", type=int, nargs="+", default=[256])
    p.add_argument("--a-dim", type=int, default=0, help="auxiliary latent a (Maaloe et al.'s ADGM); 0: plain M2")
    p.add_argument("--shift", type=int, default=0, help="translate labelled images by up to this many pixels")
    p.add_argument("--consistency", type=float, default=0.0, help="weight of the consistency term; 0: none")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--lr-milestones", type=int, nargs="*", default=[], help="epochs after which the lr drops x0.1")
    p.add_argument("--num-samples", type=int, default=1000, help="importance samples for log p(x)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default="runs/semi_supervised")
    return p


if __name__ == "__main__":
    main(parser().parse_args())
