"""Time one SVI step of pyrovae's VAE against a plain-PyTorch VAE of the same network, in one process.

Both use the same encoder/decoder classes, the same minibatch and Adam; the plain step computes the same
single-sample ELBO by hand (reparameterized z, Bernoulli log-likelihood, Gaussian log-densities).
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
from pyro.infer import SVI, JitTrace_ELBO, Trace_ELBO

from pyrovae import VAE
from pyrovae.checkpoint import save_json
from pyrovae.device import resolve_device


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


def main(args):
    device = resolve_device(args.device)
    torch.manual_seed(0)
    x = torch.bernoulli(torch.rand(args.batch_size, 784, device=device))
    rows = []
    for name in ("plain-pytorch", "Trace_ELBO", "JitTrace_ELBO"):
        pyro.clear_param_store()
        vae = VAE(784, z_dim=50, hidden=(400,)).to(device)
        if name == "plain-pytorch":
            step = plain_step_fn(vae, args.num_data)
        else:
            elbo = Trace_ELBO() if name == "Trace_ELBO" else JitTrace_ELBO(ignore_jit_warnings=True)
            svi = SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 1e-3}), elbo)

            def step(x, svi=svi):
                return svi.step(x, num_data=args.num_data)

        rows.append({"config": name, "ms_per_step": timed(step, x, args.steps, args.warmup)})
    base = rows[0]["ms_per_step"]
    for row in rows:
        row["ratio_to_plain"] = row["ms_per_step"] / base
        print(f"{row['config']:>15s}  {row['ms_per_step']:7.2f} ms/step  {row['ratio_to_plain']:.2f}x")
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
