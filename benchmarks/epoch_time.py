"""One MNIST training epoch (60,000 images, batch 128) with pyrovae against plain PyTorch, and where its time goes.

Part 1 times whole epochs: :func:`pyrovae.fit` on the full MNIST training set (``valid_size=0``, dynamic
binarization, data on the training device, no test split so that an epoch is training only) for two epochs —
the first runs Pyro's validation (and compiles, with ``--jit``), the second is the steady state — against a
plain-PyTorch loop over the same network, data and permutations (:func:`step_time.plain_step_fn`, fused Adam),
run once before and once after pyrovae's (the ratio uses their mean, the machine's speed drifting).

Part 2 profiles ``--profile-steps`` steps of the steady-state step with ``torch.profiler`` and splits each
step into its phases, the ELBO's forward pass (Pyro's tracing and bookkeeping plus the operators it runs), the
backward pass and Adam, and the forward pass into time inside ``aten`` operators against the rest (Python:
Pyro's effect handlers, traces, log-prob bookkeeping). On a GPU it also reports the device time of the
kernels each phase launches.

Without ``--data-dir`` (no MNIST files) it uses 60,000 random binary images of the same size, which take the
same time per step. Prints and writes JSON (default ``benchmarks/results/epoch_time.json``).

Run: ``python benchmarks/epoch_time.py --data-dir ../shared/data [--jit] [--device cuda]``
"""

import argparse
import functools
import platform
import time
from pathlib import Path

import pyro
import torch
from pyro.infer import JitTrace_ELBO, Trace_ELBO
from step_time import plain_step_fn
from torch.profiler import ProfilerActivity, profile, record_function

import pyrovae
from pyrovae.checkpoint import save_json
from pyrovae.device import resolve_device
from pyrovae.train.loop import epoch_generator, minibatches
from pyrovae.train.step import AdamStep

PHASES = ("forward (ELBO)", "backward", "optimizer")


def mnist_train(data_dir):
    """The 60,000 MNIST training images as a :class:`pyrovae.Dataset` without test split, or random ones."""
    if data_dir is None:
        x = torch.rand(60000, 784, generator=torch.Generator().manual_seed(0))
        return pyrovae.Dataset.from_tensors(x, binarize="dynamic"), "random [0, 1] images (no --data-dir)"
    train = pyrovae.load_dataset("mnist", data_dir, valid_size=0).train
    return pyrovae.Dataset.from_tensors(train.x, binarize="dynamic"), "MNIST training set"


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def plain_epoch_seconds(data, device, batch_size, epochs):
    """Seconds per epoch of the plain-PyTorch loop: the same permutations and dynamic binarization as ``fit``."""
    vae = pyrovae.VAE(784, z_dim=50, hidden=(400,), prefix="plain").to(device)
    x_all = data.train.x.to(device)
    step = plain_step_fn(vae, fused=True)
    seconds = []
    for epoch in range(epochs):
        sync(device)
        start = time.perf_counter()
        for idx in minibatches(len(x_all), batch_size, device, epoch_generator(0, epoch)):
            step(torch.bernoulli(x_all[idx]))
        sync(device)
        seconds.append(time.perf_counter() - start)
    return seconds


def fit_epoch_seconds(data, device, batch_size, epochs, jit):
    pyro.clear_param_store()
    vae = pyrovae.VAE(784, z_dim=50, hidden=(400,))
    config = pyrovae.TrainConfig(epochs=epochs, batch_size=batch_size, device=str(device), jit=jit)
    return [row["seconds"] for row in pyrovae.fit(vae.model, vae.guide, data, config, verbose=False)]


def phase_split(data, device, batch_size, steps, jit):
    """Per-step milliseconds of each phase (wall, inside ``aten`` operators, and on the device) over ``steps``
    profiled steps of the steady-state step."""
    pyro.clear_param_store()
    vae = pyrovae.VAE(784, z_dim=50, hidden=(400,), prefix="profiled").to(device)
    elbo = JitTrace_ELBO(ignore_jit_warnings=True) if jit else Trace_ELBO()
    step = AdamStep(dict(vae.named_parameters()), functools.partial(elbo.differentiable_loss, vae.model, vae.guide),
                    1e-3)  # fmt: skip
    x_all, n = data.train.x.to(device), len(data.train)
    batches = [torch.bernoulli(x_all[i : i + batch_size]) for i in range(0, steps * batch_size, batch_size)]

    def run(x):  # AdamStep.__call__, phase by phase
        with record_function(PHASES[0]):
            loss = step.loss(x, num_data=n)
        step.optim.zero_grad(set_to_none=True)
        with record_function(PHASES[1]):
            loss.backward()
        with record_function(PHASES[2]):
            step.optim.step()

    with pyro.validation_enabled(False):
        for x in batches[:10]:  # warm-up (and JIT compilation)
            run(x)
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
        sync(device)
        start = time.perf_counter()
        with profile(activities=activities) as prof:
            for x in batches:
                run(x)
            sync(device)
        wall = time.perf_counter() - start
    events = prof.events()
    # outermost operators: an aten op not called by another one (on any thread: backward runs in the engine)
    operators = [e for e in events if e.name.startswith("aten::") and not _inside_operator(e)]
    split = {name: {"wall_ms": 0.0, "aten_ms": 0.0, "device_ms": 0.0} for name in PHASES}
    for event in events:
        if event.name in split:
            row, start, end = split[event.name], event.time_range.start, event.time_range.end
            aten = sum(op.cpu_time_total for op in operators if start <= op.time_range.start <= end)
            row["wall_ms"] += event.cpu_time_total / 1000 / steps
            row["aten_ms"] += aten / 1000 / steps
            row["device_ms"] += getattr(event, "device_time_total", 0.0) / 1000 / steps
    for row in split.values():
        row["python_ms"] = row["wall_ms"] - row["aten_ms"]
    return {"profiled_ms_per_step": 1000 * wall / steps, "phases": split}


def _inside_operator(event) -> bool:
    parent = event.cpu_parent
    while parent is not None:
        if parent.name.startswith("aten::"):
            return True
        parent = parent.cpu_parent
    return False


def main(args):
    device = resolve_device(args.device)
    data, source = mnist_train(args.data_dir)
    torch.manual_seed(0)
    # plain before and after: the machine's speed drifts, and the two runs bracket pyrovae's
    before = plain_epoch_seconds(data, device, args.batch_size, args.epochs)
    ours = fit_epoch_seconds(data, device, args.batch_size, args.epochs, args.jit)
    after = plain_epoch_seconds(data, device, args.batch_size, args.epochs)
    plain = [(a + b) / 2 for a, b in zip(before, after, strict=True)]
    result = {
        "data": source,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads",
        "torch": torch.__version__,
        "pyro": pyro.__version__,
        "batch_size": args.batch_size,
        "jit": args.jit,
        "plain_epoch_seconds_before_and_after": [before, after],
        "plain_epoch_seconds": plain,
        "pyrovae_epoch_seconds": ours,
        "steady_state_ratio": ours[-1] / plain[-1],
        **phase_split(data, device, args.batch_size, args.profile_steps, args.jit),
    }
    print(f"{source} on {device}{' (' + result['device_name'] + ')' if result['device_name'] else ''}, "
          f"batch {args.batch_size}{', --jit' if args.jit else ''}")  # fmt: skip
    print("epoch seconds, plain PyTorch: " + ", ".join(f"{s:.2f}" for s in plain) + " (mean of runs before and after: "
          + "; ".join(", ".join(f"{s:.2f}" for s in run) for run in (before, after)) + ")")  # fmt: skip
    print("epoch seconds, pyrovae fit:   " + ", ".join(f"{s:.2f}" for s in ours)
          + f"   (last epoch {result['steady_state_ratio']:.2f}x plain)")  # fmt: skip
    print(f"profiled step: {result['profiled_ms_per_step']:.2f} ms")
    for name, row in result["phases"].items():
        print(f"  {name:>15s}: {row['wall_ms']:6.2f} ms wall = {row['aten_ms']:6.2f} in aten operators + "
              f"{row['python_ms']:6.2f} Python/Pyro; device {row['device_ms']:6.2f} ms")  # fmt: skip
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    save_json(args.out, result)
    return result


def parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", default=None, help="torchvision root holding MNIST/raw (default: random images)")
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--epochs", type=int, default=2, help="epochs timed (the first includes validation/compilation)")
    p.add_argument("--jit", action="store_true", help="pyrovae fit --jit (JitTrace_ELBO)")
    p.add_argument("--profile-steps", type=int, default=50)
    p.add_argument("--out", default="benchmarks/results/epoch_time.json")
    return p


if __name__ == "__main__":
    main(parser().parse_args())
