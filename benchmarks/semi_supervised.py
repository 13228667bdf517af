"""Semi-supervised MNIST: test accuracy of q(y|x) for several label counts and seeds, M2 and M1+M2.

Every run is the README's command, ``pyrovae train-ss --dataset mnist --labels L --label-seed S --seed S``
(with ``--m1 RUNS/nll/seedS/checkpoint.pt`` for M1+M2, the VAE of ``benchmarks/nll.py``, trained with
the README's ``pyrovae train`` command here if it is missing; ``--m1-runs NAME --m1-args "..."`` take the M1
VAEs from ``RUNS/../NAME/seedS`` instead, trained with those further options, e.g. a convolutional M1:
``--m1-runs m1-conv --m1-epochs 11 --m1-args="--net conv --jit" --tag m1conv``). Runs already in ``--runs``
are resumed or reused, and the JSON is rewritten after every run, so an interrupted benchmark continues where
it stopped. Prints a table of mean +- std over seeds of the last epoch's test accuracy (and of the test accuracy at
the epoch of best validation accuracy) next to Pyro's tutorial and Kingma et al. (2014).

    python benchmarks/semi_supervised.py --data-dir ../shared/data --model m1m2 --epochs 20 --labels 100
    python benchmarks/semi_supervised.py --data-dir ../shared/data --model m1m2 --epochs 10 --labels 600 1000 3000
    python benchmarks/semi_supervised.py --data-dir ../shared/data --model m2 --epochs 8 --labels 100

``--z-dim Z`` passes ``--z-dim Z`` on (the style latent of M2; default: ``train-ss``'s) and names the runs and the
JSON after it (``m1m2-z10-100-seed0``, ``results/semi_supervised_m1m2_z10.json``). ``--train-args "..."`` passes
further ``train-ss`` options on and ``--tag T`` names the runs and the JSON after them, e.g. Kingma et al.'s
schedule: ``--tag joint --train-args="--schedule joint --batch-size 500 --labelled-batch-size 1 --jit"`` (with ``=``, as
the value starts with a dash), or the auxiliary-variable model: ``--tag adgm100 --train-args="--a-dim 100"``. On a
resume, ``train-ss`` takes only the learning-rate milestones of them (``--lr-milestones``, ``--lr-gamma``), so a
copy of finished runs renamed to a new tag can go on with a smaller rate.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from nll import TRAINING_DEFAULTS  # benchmarks/nll.py, beside this script
from nll import train as train_vae

from pyrovae.checkpoint import save_json

HERE = Path(__file__).resolve().parent
#: test accuracy (%) at 100 / 600 / 1000 / 3000 labels
REFERENCE = {
    "pyro_tutorial_m2": {"100": 93.19, "600": 94.37, "1000": 94.87, "3000": 95.82},
    "kingma2014_m2": {"100": 88.03, "600": 95.06, "1000": 96.40, "3000": 96.08},
    "kingma2014_m1_m2": {"100": 96.67, "600": 97.41, "1000": 97.60, "3000": 97.82},
}


def name(args: argparse.Namespace) -> str:
    """The configuration's name: the model, ``z`` with ``--z-dim`` and the ``--tag`` (``"m1m2_z10_joint"``)."""
    return args.model + ("" if args.z_dim is None else f"_z{args.z_dim}") + (f"_{args.tag}" if args.tag else "")


def run(args: argparse.Namespace, labels: int, seed: int) -> dict:
    out = Path(args.runs) / f"{name(args).replace('_', '-')}-{labels}-seed{seed}"
    command = [
        sys.executable, "-m", "pyrovae", "train-ss", "--dataset", "mnist", "--data-dir", args.data_dir,
        "--labels", str(labels), "--label-seed", str(seed), "--seed", str(seed), "--epochs", str(args.epochs),
        "--device", args.device, "--out", str(out), "--quiet",
    ]  # fmt: skip
    if (out / "checkpoint.pt").exists():
        command.append("--resume")
    elif args.model == "m1m2":
        m1 = Path(args.runs).parent / args.m1_runs / f"seed{seed}"
        if not (m1 / "checkpoint.pt").exists():
            vae = argparse.Namespace(**TRAINING_DEFAULTS, model="vae", data_dir=args.data_dir, z_dim=50, hidden=[400],
                                     activation="relu", device=args.device)  # fmt: skip
            train_vae(vae, seed, m1, args.m1_epochs, shlex.split(args.m1_args))
        command += ["--m1", str(m1 / "checkpoint.pt")]
    if "--resume" not in command:
        command += [] if args.z_dim is None else ["--z-dim", str(args.z_dim)]
    command += shlex.split(args.train_args)  # on --resume, train-ss takes only --lr-milestones / --lr-gamma of them
    print("$", " ".join(command[1:]), flush=True)
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    best = max(history, key=lambda row: row["valid_accuracy"])
    return {
        "labels": labels, "seed": seed, "epochs": history[-1]["epoch"],
        "test_accuracy": history[-1]["test_accuracy"], "valid_accuracy": history[-1]["valid_accuracy"],
        "best_valid_epoch": best["epoch"], "test_accuracy_at_best_valid": best["test_accuracy"],
        "seconds_per_epoch": statistics.fmean(row["seconds"] for row in history), "wall_seconds": seconds,
        "curve": [row["test_accuracy"] for row in history],
    }  # fmt: skip


def summarize(rows: list[dict]) -> list[dict]:
    """Mean and std over seeds (in %) for each (labels, epochs)."""
    out = []
    for labels, epochs in sorted({(r["labels"], r["epochs"]) for r in rows}):
        mine = [r for r in rows if (r["labels"], r["epochs"]) == (labels, epochs)]
        row = {"labels": labels, "epochs": epochs, "seeds": len(mine)}
        for key in ("test_accuracy", "test_accuracy_at_best_valid"):
            values = [100 * r[key] for r in mine]
            row[key] = {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}
        out.append(row)
    return out


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default="../shared/data", help="torchvision root holding MNIST/raw/*.gz")
    parser.add_argument("--model", default="m1m2", choices=("m2", "m1m2"))
    parser.add_argument("--labels", type=int, nargs="+", default=[100, 600, 1000, 3000])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--m1-epochs", type=int, default=100, help="epochs of a missing M1 VAE")
    parser.add_argument("--m1-runs", default="nll", help="folder of the M1 VAEs, a sibling of --runs")
    parser.add_argument("--m1-args", default="", help="further pyrovae train options of a missing M1 VAE")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--runs", default="runs/ss", help="folder of the runs (M1 VAEs in its sibling nll/)")
    parser.add_argument("--z-dim", type=int, default=None, help="pyrovae train-ss --z-dim (default: its default)")
    parser.add_argument("--train-args", default="", help="further pyrovae train-ss options, e.g. '--schedule joint'")
    parser.add_argument("--tag", default=None, help="name of the --train-args setting, in the run and JSON names")
    parser.add_argument("--out", default=None, help="JSON (default: results/semi_supervised_NAME.json)")
    args = parser.parse_args(argv)
    if args.train_args and not args.tag:
        parser.error("--train-args needs a --tag to name its runs apart from the default setting's")
    if args.m1_runs != "nll" and not args.tag:
        parser.error("--m1-runs needs a --tag to name its runs apart from those on the default M1")
    if args.m1_args and args.m1_runs == "nll":
        parser.error("--m1-args needs an --m1-runs folder of its own: nll/ holds the default M1 VAEs")
    out = Path(args.out or HERE / "results" / f"semi_supervised_{name(args)}.json")

    rows = json.loads(out.read_text())["runs"] if out.exists() else []  # runs of other settings are kept
    results = {
        "protocol": {
            "dataset": "mnist: 50k train (labelled subset class-balanced, label seed = run seed; the rest unlabelled), "
            "10k validation, 10k test; dynamic binarization, test binarized once with seed 0",
            "model": args.model,
            "command": "pyrovae train-ss --dataset mnist --labels L --label-seed S --seed S --epochs E"
            + (f" --m1 runs/{args.m1_runs}/seedS/checkpoint.pt" if args.model == "m1m2" else "")
            + ("" if args.z_dim is None else f" --z-dim {args.z_dim}")
            + (f" {args.train_args}" if args.train_args else ""),
        },
        "reference": REFERENCE,
        "machine": {"device": args.device, "cpu_threads": torch.get_num_threads(), "torch": torch.__version__,
                    "python": platform.python_version()},
    }  # fmt: skip
    for labels in args.labels:
        for seed in args.seeds:
            if any((r["labels"], r["seed"], r["epochs"]) == (labels, seed, args.epochs) for r in rows):
                continue
            rows.append(run(args, labels, seed))
            print(json.dumps({k: v for k, v in rows[-1].items() if k != "curve"}), flush=True)
            save_json(out, {**results, "runs": rows, "summary": summarize(rows)})
    summary = summarize(rows)
    save_json(out, {**results, "runs": rows, "summary": summary})
    print(f"\n{name(args)}: test accuracy (%) over seeds, last epoch | at the best validation epoch")
    for row in summary:
        last, best, labels = row["test_accuracy"], row["test_accuracy_at_best_valid"], str(row["labels"])
        refs = " / ".join(f"{name} {ref[labels]}" for name, ref in REFERENCE.items() if labels in ref)
        print(f"{labels:>5} labels, {row['epochs']} epochs ({row['seeds']} seeds): {last['mean']:.2f} +- "
              f"{last['std']:.2f} | {best['mean']:.2f} +- {best['std']:.2f}   [{refs}]")  # fmt: skip
    return summary


if __name__ == "__main__":
    main()
