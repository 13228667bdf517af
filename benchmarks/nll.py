"""Test NLL of a VAE on dynamically binarized MNIST: the literature protocol, several seeds.

For each seed: train with the README's command (``pyrovae train --dataset mnist ...``; an existing run in
``--runs`` is resumed or reused), then estimate log p(x) of all 10,000 test images (binarized once with
seed 0) with 5,000 importance samples each, timing the estimate and sampling the process's resident
memory while it runs. Prints a table and writes JSON (per seed and mean +- std) next to Burda et al.'s
86.76 nats (VAE, 1 stochastic layer, k=1).

    python benchmarks/nll.py --data-dir ../shared/data --epochs 100 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch

import pyrovae
from pyrovae.checkpoint import save_json
from pyrovae.data.binarize import EVAL_SEED
from pyrovae.device import resolve_device

HERE = Path(__file__).resolve().parent
#: Burda, Grosse & Salakhutdinov (2016), Table 1: MNIST test NLL, 5000 importance samples
REFERENCE = {"vae_1_layer_k1": 86.76, "iwae_1_layer_k50": 84.78, "iwae_2_layers_k50": 82.90}


def rss_bytes() -> int:
    """Resident memory of this process now (Linux)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


class PeakMemory:
    """Samples the resident memory every ``interval`` seconds on a thread while the block runs."""

    def __init__(self, interval: float = 0.05) -> None:
        self.interval, self.peak, self._stop = interval, 0, threading.Event()

    def _poll(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, rss_bytes())

    def __enter__(self) -> PeakMemory:
        self.before = self.peak = rss_bytes()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())


def train(args: argparse.Namespace, seed: int, out: Path) -> float:
    """Run the README's training command (resuming an existing run); returns its wall time."""
    command = [
        sys.executable, "-m", "pyrovae", "train", "--dataset", "mnist", "--data-dir", args.data_dir,
        "--epochs", str(args.epochs), "--z-dim", str(args.z_dim), "--hidden", *map(str, args.hidden),
        "--activation", args.activation, "--seed", str(seed), "--device", args.device, "--out", str(out), "--quiet",
    ]
    if (out / "checkpoint.pt").exists():
        command.append("--resume")
    print("$", " ".join(command[1:]), flush=True)
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def evaluate(args: argparse.Namespace, checkpoint: Path, test_x: torch.Tensor) -> dict:
    device = resolve_device(args.device)
    vae, state = pyrovae.load_vae(checkpoint, map_location=device)
    x = test_x[: args.limit].to(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        torch.cuda.synchronize(device)
    with PeakMemory() as memory:
        start = time.perf_counter()
        estimate = pyrovae.log_marginal_likelihood(
            vae.model, vae.guide, x, args.num_samples, max_memory=int(args.max_memory * 2**20), progress=True
        )
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - start
    row = {
        **estimate.summary(),
        "epochs": state["epoch"],
        "test_elbo_training_metric": state["history"][-1]["test_elbo"],
        "eval_seconds": seconds,
        "rss_before_mib": memory.before / 2**20,
        "rss_peak_mib": memory.peak / 2**20,
        "estimator_mib": (memory.peak - memory.before) / 2**20,
    }
    if device.type == "cuda":
        row["cuda_peak_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
    return row


def summarize(rows: list[dict]) -> dict:
    out = {}
    for key in ("nll", "elbo", "iwae", "gap", "eval_seconds", "estimator_mib"):
        values = [r[key] for r in rows]
        out[key] = {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default="../shared/data", help="torchvision root holding MNIST/raw/*.gz")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--z-dim", type=int, default=50)
    parser.add_argument("--hidden", type=int, nargs="+", default=[400])
    parser.add_argument("--activation", default="relu")
    parser.add_argument("--num-samples", type=int, default=5000)
    parser.add_argument("--limit", type=int, default=None, help="evaluate only the first N test images")
    parser.add_argument("--max-memory", type=float, default=pyrovae.importance.MAX_MEMORY / 2**20,
                        help="estimator memory budget in MiB")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--runs", default="runs/nll", help="folder of the training runs (one per seed)")
    parser.add_argument("--out", default=str(HERE / "results" / "nll.json"))
    parser.add_argument("--fresh", action="store_true",
                        help="re-evaluate every seed (default: keep seeds already in --out with the same protocol)")
    args = parser.parse_args(argv)

    test_x = pyrovae.load_dataset("mnist", args.data_dir).test.x
    results = {
        "protocol": {
            "dataset": "mnist, dynamic binarization for training; test set binarized once with seed "
            f"{EVAL_SEED}",
            "architecture": f"784-{'-'.join(map(str, args.hidden))}-{args.z_dim}, {args.activation}",
            "epochs": args.epochs,
            "num_samples": args.num_samples,
            "num_test_points": len(test_x[: args.limit]),
        },
        "reference_burda2016": REFERENCE,
        "machine": {
            "device": str(resolve_device(args.device)),
            "cpu_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
        "seeds": [],
    }
    previous = json.loads(Path(args.out).read_text()) if Path(args.out).exists() and not args.fresh else {}
    if previous.get("protocol") == results["protocol"]:
        results["seeds"] = [row for row in previous["seeds"] if row["seed"] in args.seeds]
    for seed in args.seeds:
        if any(row["seed"] == seed for row in results["seeds"]):
            continue
        out = Path(args.runs) / f"seed{seed}"
        train_seconds = train(args, seed, out)
        row = {"seed": seed, "train_seconds": train_seconds, **evaluate(args, out / "checkpoint.pt", test_x)}
        results["seeds"].append(row)
        print(json.dumps(row, indent=2), flush=True)
        save_json(args.out, {**results, "summary": summarize(results["seeds"])})  # an interrupted run keeps it
    s = results["summary"] = summarize(results["seeds"])
    save_json(args.out, results)
    print(f"\nNLL {s['nll']['mean']:.2f} +- {s['nll']['std']:.2f} nats over {len(args.seeds)} seeds "
          f"(ELBO {s['elbo']['mean']:.2f}); Burda et al. VAE 1 layer: {REFERENCE['vae_1_layer_k1']}")
    print(f"estimate of {results['protocol']['num_test_points']} x {args.num_samples}: "
          f"{s['eval_seconds']['mean']:.0f} s, {s['estimator_mib']['mean']:.0f} MiB above the process's baseline")
    return results


if __name__ == "__main__":
    main()
