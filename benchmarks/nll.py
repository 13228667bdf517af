"""Test NLL of a VAE on dynamically binarized MNIST: the literature protocol, several seeds.

For each seed: train with the README's command (``pyrovae train --dataset mnist ...``; an existing run in
``--runs`` is resumed or reused), then estimate log p(x) of all 10,000 test images (binarized once with
seed 0) with 5,000 importance samples each, timing the estimate and sampling the process's resident
memory while it runs. Prints a table and writes JSON (per seed and mean +- std) next to Burda et al.'s
86.76 nats (VAE, 1 stochastic layer, k=1).

    python benchmarks/nll.py --data-dir ../shared/data --epochs 100 --seeds 0 1 2

Other training objectives, guides and priors are forwarded to ``pyrovae train`` (``--objective iwae --particles K``,
``--flow iaf --flow-depth D``, ``--kl-warmup-epochs W``, ``--prior vamp --pseudo-inputs K``); ``--curve E1 E2 ...``
trains to E1 epochs,
evaluates, resumes to E2 (``pyrovae train --resume --epochs E2``), evaluates, and so on, one row per
(seed, epoch); calling it again with a longer ``--curve`` or other ``--seeds`` keeps the rows it has
(``--fresh`` drops them). A non-default configuration
writes ``results/nll_NAME.json`` and trains in ``runs/nll_NAME`` (``--name``; derived from the options when
not given):

    python benchmarks/nll.py --name iwae5 --objective iwae --particles 5 --curve 10 20 30 --seeds 0 \\
        --limit 2000 --runs runs/nll-objectives/iwae5
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
from collections.abc import Sequence
from pathlib import Path

import torch

import pyrovae
from pyrovae.checkpoint import load_checkpoint, save_json
from pyrovae.cli import MODEL_DEFAULTS, VAMP_PSEUDO_INPUTS
from pyrovae.data.binarize import EVAL_SEED
from pyrovae.device import resolve_device

HERE = Path(__file__).resolve().parent
#: Burda, Grosse & Salakhutdinov (2016), Table 1: MNIST test NLL, 5000 importance samples
REFERENCE = {"vae_1_layer_k1": 86.76, "iwae_1_layer_k50": 84.78, "iwae_2_layers_k50": 82.90}


def rss_bytes() -> int:
    """Resident memory of this process now (Linux)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


class PeakRSS:
    """Samples the resident memory every ``interval`` seconds on a thread while the block runs."""

    def __init__(self, interval: float = 0.05) -> None:
        self.interval, self.peak, self._stop = interval, 0, threading.Event()

    def _poll(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, rss_bytes())

    def __enter__(self) -> PeakRSS:
        self.before = self.peak = rss_bytes()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())


#: ``pyrovae train`` options forwarded by this script, with the values that keep the README's command
_TRAIN = pyrovae.TrainConfig()
TRAINING_DEFAULTS = {
    "objective": _TRAIN.elbo, "particles": _TRAIN.num_particles, "flow": "none", "flow_depth": 2,
    "kl_warmup_epochs": _TRAIN.kl_warmup_epochs, "lr": _TRAIN.lr, "lr_decay": _TRAIN.lr_decay,
    "batch_size": _TRAIN.batch_size,
}  # fmt: skip
#: Burda et al.'s activation, the default of ``pyrovae train --model two-layer``
TWO_LAYER_ACTIVATION = MODEL_DEFAULTS["two-layer"]["activation"]


def training_settings(args: argparse.Namespace) -> dict:
    """The forwarded training options; ``flow_depth`` only matters with a flow, ``model`` is there when it is
    not the VAE and ``prior`` with ``pseudo_inputs`` when it is not the standard prior (so that the runs' protocol
    stays what it was before the options existed)."""
    settings = {key: getattr(args, key) for key in TRAINING_DEFAULTS}
    if settings["flow"] == "none":
        settings["flow_depth"] = TRAINING_DEFAULTS["flow_depth"]
    if args.model != "vae":
        settings["model"] = args.model
    if args.prior != "standard":
        settings.update(prior=args.prior, pseudo_inputs=args.pseudo_inputs)
    return settings


def default_name(args: argparse.Namespace) -> str:
    """A name for the configuration ('' for the README's VAE trained to --epochs), e.g. 'iwae5_iaf2_curve'."""
    t, parts = training_settings(args), []
    if "model" in t:
        parts.append(t["model"] + ("" if args.activation == TWO_LAYER_ACTIVATION else f"-{args.activation}"))
    if "prior" in t:
        parts.append(f"{t['prior']}{t['pseudo_inputs']}")
    if t["objective"] != "trace" or t["particles"] != 1:
        parts.append(f"{t['objective']}{t['particles'] if t['particles'] != 1 else ''}")
    if t["flow"] != "none":
        parts.append(f"{t['flow']}{t['flow_depth']}")
    if t["kl_warmup_epochs"]:
        parts.append(f"warmup{t['kl_warmup_epochs']}")
    if t["batch_size"] != TRAINING_DEFAULTS["batch_size"]:
        parts.append(f"b{t['batch_size']}")
    if t["lr"] != TRAINING_DEFAULTS["lr"] or t["lr_decay"] != 1:
        parts.append(f"lr{t['lr']:g}" + (f"x{t['lr_decay']:g}" if t["lr_decay"] != 1 else ""))
    if args.curve:
        parts.append("curve")
    return "_".join(parts)


def train(args: argparse.Namespace, seed: int, out: Path, epochs: int, extra: Sequence[str] = ()) -> float:
    """Run the README's training command (resuming an existing run), with ``extra`` options of ``pyrovae train``
    appended; returns its wall time."""
    command = [
        sys.executable, "-m", "pyrovae", "train", "--dataset", "mnist", "--data-dir", args.data_dir,
        "--epochs", str(epochs), "--seed", str(seed), "--device", args.device, "--out", str(out), "--quiet",
    ]  # fmt: skip
    if args.model == "vae":  # the two-layer model keeps Burda et al.'s sizes (pyrovae.TwoLayerVAE's defaults)
        command += ["--z-dim", str(args.z_dim), "--hidden", *map(str, args.hidden), "--activation", args.activation]
    elif args.activation != TWO_LAYER_ACTIVATION:
        command += ["--activation", args.activation]
    flags = {"model": "--model", "objective": "--objective", "particles": "--particles", "flow": "--flow",
             "flow_depth": "--flow-depth", "kl_warmup_epochs": "--kl-warmup-epochs", "lr": "--lr",
             "lr_decay": "--lr-decay", "batch_size": "--batch-size", "prior": "--prior",
             "pseudo_inputs": "--pseudo-inputs"}  # fmt: skip
    settings = training_settings(args)
    for key, value in settings.items():  # only what differs (and a flow's depth): the default stays the README's
        if value != TRAINING_DEFAULTS.get(key) or (key == "flow_depth" and settings["flow"] != "none"):
            command += [flags[key], str(value)]
    command += extra
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
    with PeakRSS() as memory:
        start = time.perf_counter()
        estimate = pyrovae.log_marginal_likelihood(
            vae.model, vae.guide, x, args.num_samples, max_memory=int(args.max_memory * 2**20), progress=True
        )
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - start
    last = state["history"][-1]
    row = {
        **estimate.summary(),
        "epochs": state["epoch"],
        "test_elbo_training_metric": last["test_elbo"],
        **({"test_iwae_training_metric": last["test_iwae"]} if "test_iwae" in last else {}),
        "train_elbo_training_metric": last["train_elbo"],
        "eval_seconds": seconds,
        "rss_before_mib": memory.before / 2**20,
        "rss_peak_mib": memory.peak / 2**20,
        "estimator_mib": (memory.peak - memory.before) / 2**20,
    }
    if device.type == "cuda":
        row["cuda_peak_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
    return row


def epoch_seconds(checkpoint: Path, start: int, stop: int) -> float | None:
    """Mean seconds per epoch over epochs start+1..stop, from the run's history."""
    history = load_checkpoint(checkpoint)["history"]
    seconds = [h["seconds"] for h in history if start < h["epoch"] <= stop and "seconds" in h]
    return statistics.fmean(seconds) if seconds else None


def checkpoint_epoch(out: Path) -> int:
    path = out / "checkpoint.pt"
    return load_checkpoint(path)["epoch"] if path.exists() else 0


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
    parser.add_argument(
        "--curve",
        type=int,
        nargs="+",
        default=None,
        metavar="E",
        help="evaluate after each of these epoch counts (ascending; resumes between them) "
        "instead of once after --epochs",
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--z-dim", type=int, default=50)
    parser.add_argument("--hidden", type=int, nargs="+", default=[400])
    parser.add_argument("--activation", default=None, help="default: relu (vae), tanh (two-layer, as Burda et al.)")
    parser.add_argument("--model", choices=["vae", "two-layer"], default="vae", help="pyrovae train --model")
    parser.add_argument(
        "--objective", choices=["trace", "meanfield", "iwae"], help="pyrovae train --objective"
    )
    parser.add_argument("--particles", type=int, help="pyrovae train --particles (IWAE's K)")
    parser.add_argument("--flow", choices=["none", "iaf"], help="pyrovae train --flow")
    parser.add_argument("--flow-depth", type=int, help="pyrovae train --flow-depth")
    parser.add_argument("--kl-warmup-epochs", type=int, help="pyrovae train --kl-warmup-epochs")
    parser.add_argument("--lr", type=float, help="pyrovae train --lr")
    parser.add_argument("--lr-decay", type=float, help="pyrovae train --lr-decay")
    parser.add_argument("--batch-size", type=int, help="pyrovae train --batch-size")
    parser.add_argument("--prior", choices=["standard", "vamp"], default="standard", help="pyrovae train --prior")
    parser.add_argument("--pseudo-inputs", type=int, default=VAMP_PSEUDO_INPUTS,
                        help="pyrovae train --pseudo-inputs (--prior vamp)")
    parser.set_defaults(**TRAINING_DEFAULTS)
    parser.add_argument(
        "--name",
        default=None,
        help="configuration name: output results/nll_NAME.json, runs in runs/nll_NAME "
        "(default: derived from the options; none for the README's VAE)",
    )
    parser.add_argument("--num-samples", type=int, default=5000)
    parser.add_argument("--limit", type=int, default=None, help="evaluate only the first N test images")
    parser.add_argument(
        "--max-memory", type=float, default=pyrovae.infer.importance.MAX_MEMORY / 2**20,
        help="estimator memory budget in MiB"
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--runs", default=None, help="folder of the training runs, one per seed (default: runs/nll or runs/nll_NAME)"
    )
    parser.add_argument("--out", default=None, help="JSON (default: results/nll.json or results/nll_NAME.json)")
    parser.add_argument(
        "--fresh",
        action="store_true",
        help="re-evaluate every seed (default: keep seeds already in --out with the same protocol)",
    )
    args = parser.parse_args(argv)
    if args.activation is None:
        args.activation = "relu" if args.model == "vae" else TWO_LAYER_ACTIVATION
    if args.curve is not None and (args.curve != sorted(set(args.curve)) or args.curve[0] < 1):
        parser.error("--curve takes positive epoch counts in ascending order")
    name = default_name(args) if args.name is None else args.name
    suffix = f"_{name}" if name else ""
    args.runs = args.runs or f"runs/nll{suffix}"
    args.out = args.out or str(HERE / "results" / f"nll{suffix}.json")
    schedule = args.curve or [args.epochs]

    test_x = pyrovae.load_dataset("mnist", args.data_dir).test.x
    results = {
        "protocol": {
            "dataset": f"mnist, dynamic binarization for training; test set binarized once with seed {EVAL_SEED}",
            "architecture": f"784-{'-'.join(map(str, args.hidden))}-{args.z_dim}, {args.activation}"
            if args.model == "vae"
            else f"784-200-200-100(z1)-100-100-50(z2), {args.activation} (Burda et al.: tanh)",
            "epochs": "per row (--curve)" if args.curve else args.epochs,
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
    training = training_settings(args)
    if training != TRAINING_DEFAULTS:  # absent for the README's VAE, so that nll.json keeps its protocol
        results["protocol"]["training"] = training
    if name:
        results["name"] = name
    previous = json.loads(Path(args.out).read_text()) if Path(args.out).exists() and not args.fresh else {}
    if previous.get("protocol") == results["protocol"]:
        # every row stays (other seeds, epochs outside this --curve): later calls extend the seeds or the curve
        results["seeds"] = list(previous["seeds"])

    def summary() -> dict:
        if args.curve is None:
            return summarize(results["seeds"])
        epochs = sorted({r["epochs"] for r in results["seeds"]})
        return {str(e): summarize([r for r in results["seeds"] if r["epochs"] == e]) for e in epochs}

    for seed in args.seeds:
        out = Path(args.runs) / f"seed{seed}"
        for epochs in schedule:
            if any(row["seed"] == seed and row["epochs"] == epochs for row in results["seeds"]):
                continue
            start = checkpoint_epoch(out)
            if start > epochs:
                raise SystemExit(f"{out} is already at epoch {start}, past {epochs}: use a fresh --runs folder")
            train_seconds = train(args, seed, out, epochs)
            row = {"seed": seed, "train_seconds": train_seconds,
                   "seconds_per_epoch": epoch_seconds(out / "checkpoint.pt", start, epochs),
                   **evaluate(args, out / "checkpoint.pt", test_x)}  # fmt: skip
            results["seeds"].append(row)
            print(json.dumps(row, indent=2), flush=True)
            save_json(args.out, {**results, "summary": summary()})  # an interrupted run keeps it
    results["seeds"].sort(key=lambda r: (r["seed"], r["epochs"]))
    results["summary"] = summary()
    save_json(args.out, results)
    for epochs in schedule:
        rows = [r for r in results["seeds"] if r["epochs"] == epochs and r["seed"] in args.seeds]
        s = summarize(rows)
        print(
            f"\n{name or 'vae'}, {epochs} epochs: NLL {s['nll']['mean']:.2f} +- {s['nll']['std']:.2f} nats over "
            f"{len(rows)} seeds (ELBO {s['elbo']['mean']:.2f}); Burda et al. VAE 1 layer: "
            f"{REFERENCE['vae_1_layer_k1']}, IWAE k=50: {REFERENCE['iwae_1_layer_k50']}"
        )
        print(
            f"estimate of {results['protocol']['num_test_points']} x {args.num_samples}: "
            f"{s['eval_seconds']['mean']:.0f} s, {s['estimator_mib']['mean']:.0f} MiB above the process's baseline"
        )
    return results


if __name__ == "__main__":
    main()
