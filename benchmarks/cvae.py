"""The conditional VAE on MNIST quadrants (Sohn et al. 2015; Pyro's CVAE tutorial): for 1, 2 and 3 observed quadrants,
train the baseline network, then the CVAE on it, and report the negative conditional log-likelihood
-log p(y | x) per test image, next to the tutorial's table.

    OMP_NUM_THREADS=1 python benchmarks/cvae.py --data-dir ../shared/data --baseline-epochs 4 --epochs 8

The protocol is the tutorial's (``--protocol tutorial``): grey-level MNIST (no binarization), the Bernoulli
cross-entropy of the grey levels as the "log-likelihood" (as the tutorial's ``MaskedBCELoss`` and its
``Bernoulli(...).to_event(1)`` with grey ``obs``; not a normalised density of grey levels, so Pyro's validation,
which refuses non-binary Bernoulli values, is switched off here), the networks 784-500-500 with z = 200, Adam 1e-3,
batches of 128, training on the 60,000 training images and measuring on the test set. The tutorial trains up to
50 epochs with early stopping on the test set (patience 3); here a fixed number of epochs. ``--protocol binarized``
is pyrovae's own: dynamic binarization for training, the test set binarized once, a proper Bernoulli likelihood.

Three figures per setting: the baseline's exact -log p(y | x) (the tutorial's "NN (baseline)" row); the CVAE's
-ELBO with 10 particles, Trace_ELBO with the recognition network as guide (what the tutorial's ``generate_table``
computes for its "CVAE (Monte Carlo)" row: an upper bound on -log p(y | x)); and the CVAE's importance-sampled
-log p(y | x) with ``--num-samples`` samples from the recognition network (:func:`pyrovae.log_marginal_likelihood`),
tighter. Writes ``results/cvae.json`` (after every setting) and the figure of the first setting to
``--figure`` (default ``docs/images/mnist_cvae.png``).
"""

from __future__ import annotations

import argparse
import platform
import time
from dataclasses import replace
from pathlib import Path

import pyro
import torch
from pyro.infer import Trace_ELBO

import pyrovae
from pyrovae.checkpoint import save_json
from pyrovae.data.binarize import EVAL_SEED
from pyrovae.models.baseline import Baseline
from pyrovae.models.cvae import CVAE
from pyrovae.seeding import set_seed
from pyrovae.viz.plots import save_completions

HERE = Path(__file__).resolve().parent
#: the tutorial's table: negative conditional log-likelihood per test image, by observed quadrants
REFERENCE = {
    "pyro_tutorial_baseline": {"1": 100.4, "2": 61.9, "3": 25.4},
    "pyro_tutorial_cvae_monte_carlo": {"1": 71.8, "2": 51.0, "3": 24.2},
}


def measure(args: argparse.Namespace, data: pyrovae.Dataset, quadrants: int) -> dict:
    """Train the baseline and the CVAE for ``quadrants`` observed quadrants; their figures on the test set."""
    config = pyrovae.TrainConfig(batch_size=args.batch_size, lr=args.lr, seed=args.seed, device="cpu")
    pyro.clear_param_store()
    baseline = Baseline(data.image_shape, quadrants, seed=args.seed)
    start = time.perf_counter()
    pyrovae.fit(baseline.model, baseline.guide, data, replace(config, epochs=args.baseline_epochs))
    baseline_seconds = time.perf_counter() - start
    pyro.clear_param_store()
    cvae = CVAE(data.image_shape, quadrants, baseline=baseline, seed=args.seed)
    start = time.perf_counter()
    history = pyrovae.fit(cvae.model, cvae.guide, data, replace(config, epochs=args.epochs))
    cvae_seconds = time.perf_counter() - start
    x = data.fixed_x("test")[: args.limit]
    set_seed(args.seed)
    monte_carlo = pyrovae.elbo_per_datapoint(
        cvae.model, cvae.guide, x, elbo=Trace_ELBO(num_particles=args.particles, vectorize_particles=True)
    )
    estimate = pyrovae.log_marginal_likelihood(cvae.model, cvae.guide, x, args.num_samples, seed=args.seed)
    if quadrants == args.quadrants[0]:
        set_seed(args.seed)
        save_completions(cvae, x[:10], args.figure, data.image_shape, num_samples=4)
    return {
        "quadrants": quadrants,
        "baseline_nll": -baseline.log_prob(x).mean().item(),  # exact: no latent
        "cvae_neg_elbo": -monte_carlo,
        "cvae_nll": estimate.summary()["nll"],
        "cvae_nll_stderr": estimate.summary()["nll_stderr"],
        "cvae_test_elbo_curve": [row["test_elbo"] for row in history],
        "baseline_seconds": baseline_seconds,
        "cvae_seconds": cvae_seconds,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=str(HERE.parents[1] / "shared" / "data"))
    parser.add_argument("--quadrants", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--protocol", default="tutorial", choices=("tutorial", "binarized"))
    parser.add_argument("--baseline-epochs", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=8, help="CVAE epochs")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--particles", type=int, default=10, help="particles of the tutorial's -ELBO")
    parser.add_argument("--num-samples", type=int, default=100, help="importance samples of -log p(y|x)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N test images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--figure", default=str(HERE.parent / "docs" / "images" / "mnist_cvae.png"))
    parser.add_argument("--out", default=None, help="JSON (default: results/cvae.json, or cvae_binarized.json)")
    args = parser.parse_args(argv)
    tutorial = args.protocol == "tutorial"
    out = Path(args.out or HERE / "results" / ("cvae.json" if tutorial else "cvae_binarized.json"))
    if tutorial:
        pyro.enable_validation(False)  # the tutorial's Bernoulli cross-entropy of grey levels
    data = pyrovae.load_dataset("mnist", args.data_dir, binarize="none" if tutorial else "dynamic", valid_size=0,
                                download=False)  # fmt: skip
    results = {
        "protocol": {
            "dataset": "mnist, grey levels, Bernoulli cross-entropy (the tutorial's)"
            if tutorial
            else f"mnist, dynamic binarization for training; test set binarized once with seed {EVAL_SEED}",
            "architecture": "baseline 784-500-500-y; CVAE prior/recognition 784-500-500-200, generation 200-500-500-y",
            "baseline_epochs": args.baseline_epochs,
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "lr": args.lr,
            "particles": args.particles,
            "num_samples": args.num_samples,
            "num_test_points": len(data.test.x[: args.limit]),
        },
        "reference": REFERENCE,
        "machine": {
            "cpu_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "python": platform.python_version(),
        },  # fmt: skip
        "rows": [],
    }
    for quadrants in args.quadrants:
        results["rows"].append(measure(args, data, quadrants))
        save_json(out, results)
    print(
        f"{'quadrants':>9}  {'baseline':>9}  {'CVAE -ELBO':>10}  {'CVAE IS':>8}  {'tutorial NN':>11}  "
        f"{'tutorial CVAE':>13}"
    )
    for row in results["rows"]:
        q = str(row["quadrants"])
        print(
            f"{q:>9}  {row['baseline_nll']:9.1f}  {row['cvae_neg_elbo']:10.1f}  {row['cvae_nll']:8.1f}  "
            f"{REFERENCE['pyro_tutorial_baseline'][q]:11.1f}  {REFERENCE['pyro_tutorial_cvae_monte_carlo'][q]:13.1f}"
        )
    return results


if __name__ == "__main__":
    main()
