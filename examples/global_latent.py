"""A VAE inside a bigger Pyro model: a global latent, the caller's plate, Pyro's param store.

On the embedded 8x8 digits, a VAE whose decoder logits share one **global** temperature :math:`T`:

    T ~ LogNormal(0, 0.5),   z_n ~ N(0, I),   x_n | z_n, T ~ Bernoulli(logits = f(z_n) / T)

1. **The caller's plate.** The model opens the data plate itself (``vae.data_plate``, named like the VAE's own),
   puts the VAE's sites in it, and pyrovae's guide runs in the same plate (:mod:`pyrovae.models.plate`). An
   unchanged ``vae.model`` in a caller's plate has exactly its plain ELBO.
2. **Global and local latents**: Pyro's ``AutoGuideList`` with ``AutoNormal`` for :math:`T` and the VAE's amortized
   q(z|x) (:class:`pyrovae.infer.autoguide.AmortizedGuide`), trained by ``pyrovae.fit`` (which passes each
   minibatch's rows, ``create_plates=vae.data_plate``).
3. **Pyro's param store** saved, then loaded in a new process into a freshly built model and guide: the same
   figures.
4. **log p(x | T)** per test digit by importance sampling with :math:`T` fixed at its posterior median
   (``log_marginal_likelihood(..., fixed=...)``).

Run: ``python examples/global_latent.py --epochs 50``
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import torch
from pyro.infer import Trace_ELBO
from pyro.infer.autoguide import AutoGuideList, AutoNormal

import pyrovae
from pyrovae.infer.autoguide import AmortizedGuide


def build(args):
    """The VAE, the tempered model and its guide (the same in every process)."""
    vae = pyrovae.VAE(64, z_dim=args.z_dim, hidden=(args.hidden,), seed=args.seed)

    def model(x, num_data=None, subsample=None):
        vae.register("decoder")   # pyro.module, taking weights loaded into the store, never another model's
        temperature = pyro.sample("temperature", dist.LogNormal(0.0, 0.5))
        with vae.data_plate(x, num_data, subsample=subsample):   # the caller's plate, named "data"
            z = pyro.sample("z", vae.prior(len(x), x.device))
            pyro.sample("x", dist.Bernoulli(logits=vae.decoder(z) / temperature).to_event(1), obs=x)

    guide = AutoGuideList(model, create_plates=vae.data_plate)
    guide.append(AutoNormal(poutine.block(model, expose=["temperature"])))
    guide.append(AmortizedGuide(model, vae.guide))   # q(z|x) in the list's "data" plate
    return vae, model, guide


def figures(args, model, guide, x):
    """What the parent and the reloaded child both compute: T's median and log p(x | T = median) per digit."""
    median = guide.median(x)["temperature"].detach()
    estimate = pyrovae.log_marginal_likelihood(model, guide, x, num_samples=args.num_samples, seed=0,
                                               fixed={"temperature": median})  # fmt: skip
    return {"temperature": median.item(), "log_px": estimate.log_px.tolist()}


def main(args):
    pyro.set_rng_seed(args.seed)
    pyro.clear_param_store()
    data = pyrovae.load_dataset("digits", binarize="static")
    x = data.test.x[: args.test_points]
    if args.reload:   # the child process: a fresh model, the stored weights
        vae, model, guide = build(args)
        pyro.get_param_store().load(args.reload)
        guide(x)   # an autoguide sets itself up in its first call; its parameters are then the stored ones
        print(json.dumps(figures(args, model, guide, x)))
        return None

    # 1. an unchanged vae.model in the caller's plate has its plain ELBO
    vae, model, guide = build(args)

    def in_my_plate(fn):
        def wrapped(x):
            with pyro.plate("data", len(data.train), subsample=torch.arange(len(x))):
                return fn(x)

        return wrapped

    def elbo(model, guide, *args, **kwargs):
        pyro.set_rng_seed(0)   # the same noise for both
        return -Trace_ELBO().loss(model, guide, *args, **kwargs)

    elbos = [elbo(vae.model, vae.guide, x, num_data=len(data.train)),
             elbo(in_my_plate(vae.model), in_my_plate(vae.guide), x)]  # fmt: skip
    print(f"ELBO of the training set, plain {elbos[0]:.1f}, in the caller's plate {elbos[1]:.1f}")

    # 2. train the global temperature and the VAE together
    config = pyrovae.TrainConfig(epochs=args.epochs, batch_size=128, lr=args.lr, seed=args.seed, device="cpu")
    history = pyrovae.fit(model, guide, data, config, verbose=False)
    print(f"after {args.epochs} epochs: test ELBO {history[-1]['test_elbo']:.2f} nats per digit")

    # 3. Pyro's param store, saved and loaded in a new process
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    pyro.get_param_store().save(out / "params.pt")
    here = figures(args, model, guide, x)
    argv = [sys.executable, __file__, "--reload", str(out / "params.pt"), *sys_args(args)]
    there = json.loads(subprocess.run(argv, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
    same = max(abs(a - b) for a, b in zip(here["log_px"], there["log_px"], strict=True))
    print(f"reloaded in a new process: temperature {there['temperature']:.4f} (here {here['temperature']:.4f}), "
          f"log p(x | T) differs by at most {same:.1e} nats")  # fmt: skip

    # 4. log p(x | T fixed at its median)
    log_px = torch.tensor(here["log_px"])
    print(f"log p(x | T = {here['temperature']:.3f}) = {log_px.mean():.2f} nats per test digit "
          f"({args.num_samples} importance samples)")  # fmt: skip
    return {"elbos": elbos, "history": history, "here": here, "there": there}


def sys_args(args):
    """The settings that build the same model in the child process."""
    return ["--z-dim", str(args.z_dim), "--hidden", str(args.hidden), "--seed", str(args.seed),
            "--num-samples", str(args.num_samples), "--test-points", str(args.test_points)]  # fmt: skip


def parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--epochs", type=int, default=50)
    p.add_argument("--z-dim", type=int, default=8)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--num-samples", type=int, default=500, help="importance samples per test digit")
    p.add_argument("--test-points", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/global-latent")
    p.add_argument("--reload", help=argparse.SUPPRESS)
    return p


if __name__ == "__main__":
    main(parser().parse_args())
