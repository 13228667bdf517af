"""Time pyrovae's importance-sampled log p(x) against a plain-PyTorch estimator of the same network, in one run.

Both evaluate the same 784-400-50 VAE on the same binary images with the same number of samples and the
same chunks (``--data-chunk`` points x all samples at once). The plain estimator is what one writes by hand:
``z = loc + scale * randn``, ``-binary_cross_entropy_with_logits(...).sum(-1)`` and Gaussian log-densities,
then ``logsumexp``. Also times the Bernoulli log-likelihood alone: Pyro's ``Bernoulli(logits).to_event(1)``
against :class:`pyrovae.models.distributions.IndependentBernoulli`. Prints a table and writes JSON.

    python benchmarks/estimator_speed.py --points 200 --num-samples 5000
"""

from __future__ import annotations

import argparse
import math
import platform
import time
from pathlib import Path

import pyro.distributions as dist
import torch
import torch.nn.functional as F

import pyrovae
from pyrovae.checkpoint import save_json
from pyrovae.device import resolve_device
from pyrovae.models.distributions import IndependentBernoulli

HERE = Path(__file__).resolve().parent


def plain_log_px(vae: pyrovae.VAE, x: torch.Tensor, num_samples: int, data_chunk: int) -> torch.Tensor:
    """log p(x) per row by importance sampling, written directly in torch."""
    out = []
    for chunk in x.split(data_chunk):
        loc, scale = vae.encoder(chunk)
        z = loc + scale * torch.randn(num_samples, *loc.shape, device=x.device)
        log_lik = -F.binary_cross_entropy_with_logits(
            vae.decoder(z), chunk.expand(num_samples, -1, -1), reduction="none"
        ).sum(-1)
        log_prior = -0.5 * (z**2).sum(-1) - 0.5 * z.shape[-1] * math.log(2 * math.pi)
        log_q = torch.distributions.Normal(loc, scale).log_prob(z).sum(-1)
        out.append((log_lik + log_prior - log_q).logsumexp(0) - math.log(num_samples))
    return torch.cat(out)


def timed(fn, device: torch.device, repeats: int) -> float:
    """Best wall time of ``repeats`` calls, in seconds (after one warm-up call)."""
    fn()
    best = math.inf
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - start)
    return best


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=200)
    parser.add_argument("--num-samples", type=int, default=5000)
    parser.add_argument("--data-chunk", type=int, default=10, help="data points per chunk, for both estimators")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", default=str(HERE / "results" / "estimator_speed.json"))
    args = parser.parse_args(argv)

    device = resolve_device(args.device)
    torch.manual_seed(0)
    vae = pyrovae.VAE(784, z_dim=50, hidden=(400,)).to(device)
    x = torch.bernoulli(torch.full((args.points, 784), 0.2, device=device))
    with torch.no_grad():
        seconds = {
            "plain-pytorch": timed(lambda: plain_log_px(vae, x, args.num_samples, args.data_chunk), device,
                                   args.repeats),
            "pyrovae": timed(
                lambda: pyrovae.log_marginal_likelihood(
                    vae.model, vae.guide, x, args.num_samples, data_chunk=args.data_chunk,
                    sample_chunk=args.num_samples,
                ),
                device,
                args.repeats,
            ),
        }
        logits = torch.randn(500, 100, 784, device=device)
        pixels = torch.bernoulli(torch.full((100, 784), 0.2, device=device))
        log_prob_ns = {
            name: 1e9 * timed(lambda d=d: d(logits).log_prob(pixels), device, args.repeats) / logits.numel()
            for name, d in (
                ("pyro Bernoulli(logits).to_event(1)", lambda logits: dist.Bernoulli(logits=logits).to_event(1)),
                ("IndependentBernoulli", IndependentBernoulli),
            )
        }
    pairs = args.points * args.num_samples
    base = seconds["plain-pytorch"]
    rows = [
        {"estimator": name, "seconds": s, "us_per_sample": 1e6 * s / pairs, "ratio_to_plain": s / base}
        for name, s in seconds.items()
    ]
    for row in rows:
        print(f"{row['estimator']:>14s}  {row['seconds']:7.2f} s  {row['us_per_sample']:6.2f} us/sample  "
              f"{row['ratio_to_plain']:.2f}x")
    for name, ns in log_prob_ns.items():
        print(f"{name:>35s}  {ns:5.2f} ns/pixel")
    result = {
        "network": "784-400-50 MLP, ReLU, Bernoulli",
        "points": args.points,
        "num_samples": args.num_samples,
        "data_chunk": args.data_chunk,
        "estimators": rows,
        "bernoulli_log_prob_ns_per_pixel": log_prob_ns,
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        "cpu_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    save_json(args.out, result)
    return result


if __name__ == "__main__":
    main()
