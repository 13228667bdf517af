"""Time one SVI step of pyrovae's VAE against a plain-PyTorch VAE of the same network, in one process.

Both use the same encoder/decoder classes, the same minibatch and Adam; the plain step computes the same
single-sample ELBO by hand (reparameterized z, Bernoulli log-likelihood, Gaussian log-densities). Further rows:
the loss as a module stepped by ``torch.optim.Adam`` (the route of distributed training), and Kingma et al.'s
M2 (``SSVAE``, 784-400-50, 10 classes) on an unlabelled batch with the label enumerated in parallel, whose
ratio is to the same plain VAE step.
Prints a table and writes JSON (default ``benchmarks/results/step_time.json``).

Run: ``python benchmarks/step_time.py --steps 200``
"""

import argparse
import platform
import time
from pathlib import Path

import pyro
import torch
import torch.distributions as td
from pyro.infer import SVI, JitTrace_ELBO, JitTraceEnum_ELBO, Trace_ELBO, TraceEnum_ELBO

from pyrovae import SSVAE, VAE
from pyrovae.checkpoint import save_json
from pyrovae.device import resolve_device
from pyrovae.distributed import ELBOLoss


def plain_step_fn(vae, num_data):
    """A hand-written VAE step on ``vae``'s networks: returns ``step(x) -> loss``."""
    optim = torch.optim.Adam(vae.parameters(), lr=1e-3)

    def step(x):
        loc, scale = vae.encoder(x)
        z = loc + scale * torch.randn_like(loc)
        log_lik = td.Bernoulli(logits=vae.decoder(z)).log_prob(x).sum(-1)
        log_prior = td.Normal(0.0, 1.0).log_prob(z).sum(-1)
        log_q = td.Normal(loc, scale).log_prob(z).sum(-1)
        loss = -(log_lik + log_prior - log_q).sum() * num_data / len(x)
        optim.zero_grad()
        loss.backward()
        optim.step()
        return loss.item()

    return step


def timed(step, x, steps, warmup):
    for _ in range(warmup):
        step(x)
    if x.is_cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step(x)
    if x.is_cuda:
        torch.cuda.synchronize()
    return 1000 * (time.perf_counter() - start) / steps


def svi_step_fn(model, guide, elbo, num_data):
    svi = SVI(model, guide, pyro.optim.Adam({"lr": 1e-3}), elbo)
    return lambda x: svi.step(x, num_data=num_data)


def module_step_fn(vae, elbo, num_data, foreach):
    """The loss as a module (:class:`pyrovae.distributed.ELBOLoss`, like Pyro's ``ELBOModule``) stepped by
    ``torch.optim.Adam`` (``foreach``: one multi-tensor kernel per update instead of one per parameter)."""
    loss_module = ELBOLoss([vae], vae.model, vae.guide, elbo)
    optim = torch.optim.Adam(loss_module.parameters(), lr=1e-3, foreach=foreach)

    def step(x):
        loss = loss_module(x, num_data=num_data)
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
        return loss.item()

    return step


#: configuration -> builder of ``step(x)`` from (vae, ssvae, num_data)
CONFIGS = {
    "plain-pytorch": lambda vae, ssvae, n: plain_step_fn(vae, n),
    "Trace_ELBO": lambda vae, ssvae, n: svi_step_fn(vae.model, vae.guide, Trace_ELBO(), n),
    "JitTrace_ELBO": lambda vae, ssvae, n: svi_step_fn(
        vae.model, vae.guide, JitTrace_ELBO(ignore_jit_warnings=True), n
    ),
    "Trace_ELBO, loss module + torch Adam": lambda vae, ssvae, n: module_step_fn(vae, Trace_ELBO(), n, False),
    "Trace_ELBO, loss module + foreach Adam": lambda vae, ssvae, n: module_step_fn(vae, Trace_ELBO(), n, True),
    "JitTrace_ELBO, loss module + foreach Adam": lambda vae, ssvae, n: module_step_fn(
        vae, JitTrace_ELBO(ignore_jit_warnings=True), n, True
    ),
    "M2 unlabelled, TraceEnum_ELBO": lambda vae, ssvae, n: svi_step_fn(
        ssvae.model, ssvae.guide, TraceEnum_ELBO(max_plate_nesting=1), n
    ),
    "M2 unlabelled, JitTraceEnum_ELBO": lambda vae, ssvae, n: svi_step_fn(
        ssvae.model, ssvae.guide, JitTraceEnum_ELBO(max_plate_nesting=1, ignore_jit_warnings=True), n
    ),
}


def main(args):
    device = resolve_device(args.device)
    torch.manual_seed(0)
    x = torch.bernoulli(torch.rand(args.batch_size, 784, device=device))
    rows = []
    for name, build in CONFIGS.items():
        pyro.clear_param_store()
        vae = VAE(784, z_dim=50, hidden=(400,)).to(device)
        ssvae = SSVAE(784, 10, z_dim=50, hidden=(400,), activation="relu").to(device)
        step = build(vae, ssvae, args.num_data)
        rows.append({"config": name, "ms_per_step": timed(step, x, args.steps, args.warmup)})
    base = rows[0]["ms_per_step"]
    for row in rows:
        row["ratio_to_plain"] = row["ms_per_step"] / base
        print(f"{row['config']:>42s}  {row['ms_per_step']:7.2f} ms/step  {row['ratio_to_plain']:.2f}x")
    result = {
        "network": "784-400-50 MLP, ReLU, Bernoulli",
        "batch_size": args.batch_size,
        "device": str(device),
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads",
        "torch": torch.__version__,
        "pyro": pyro.__version__,
        "rows": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    save_json(args.out, result)
    return result


def parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--num-data", type=int, default=60000)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default="benchmarks/results/step_time.json")
    return p


if __name__ == "__main__":
    main(parser().parse_args())
