"""Use pyrovae's VAE model and guide inside a bigger Pyro program.

Three patterns, on the embedded 8x8 digits:

1. **Two VAEs in one program.** The top and bottom halves of each digit get a VAE each (``prefix="top"``
   and ``prefix="bottom"``, so their sites and parameters do not collide). One joint model/guide pair
   calls both, wrapped in ``poutine.scale(..., 1/N)`` so that plain ``SVI(..., Trace_ELBO())`` reports
   the negative ELBO in nats per digit.
2. **``poutine.condition`` on a documented site.** Fixing ``"top/z"`` decodes chosen latent codes: here a
   straight line between two test digits' codes.
3. **``pyro.infer.Predictive``.** Prior samples, and posterior-predictive reconstructions by feeding the
   guide's ``z`` samples to the model as ``posterior_samples``.

Run: ``python examples/compose.py --epochs 100``
"""

import argparse

import pyro
import pyro.poutine as poutine
import torch
from pyro.infer import SVI, Predictive, Trace_ELBO
from pyro.optim import Adam

from pyrovae import VAE, load_dataset


def split(x):
    """(N, 64) digits -> top and bottom halves, (N, 32) each."""
    return x[:, :32], x[:, 32:]


def main(args):
    pyro.set_rng_seed(args.seed)
    pyro.clear_param_store()
    data = load_dataset("digits", binarize="static")
    top = VAE(32, z_dim=args.z_dim, hidden=(128,), prefix="top")
    bottom = VAE(32, z_dim=args.z_dim, hidden=(128,), prefix="bottom")
    num_data = len(data.train)

    # 1. one program, two VAEs, scaled to nats per data point
    def model(x, num_data=None):
        x_top, x_bottom = split(x)
        top.model(x_top, num_data=num_data)
        bottom.model(x_bottom, num_data=num_data)

    def guide(x, num_data=None):
        x_top, x_bottom = split(x)
        top.guide(x_top, num_data=num_data)
        bottom.guide(x_bottom, num_data=num_data)

    per_point = 1.0 / num_data
    svi = SVI(poutine.scale(model, per_point), poutine.scale(guide, per_point), Adam({"lr": 1e-3}), Trace_ELBO())
    for epoch in range(args.epochs):
        losses = [svi.step(data.train.x[idx], num_data=num_data) for idx in torch.randperm(num_data).split(128)]
        if (epoch + 1) % max(1, args.epochs // 5) == 0 or epoch == 0:
            print(f"epoch {epoch + 1:4d}  train ELBO {-sum(losses) / len(losses):7.2f} nats per digit")
    test_elbo = -Trace_ELBO().loss(model, guide, data.test.x) / len(data.test)
    print(f"test ELBO {test_elbo:.2f} nats per digit (sum of both halves' ELBOs)")

    # 2. condition the top VAE on chosen codes: decode a line between two test digits' codes
    with torch.no_grad():
        (z_a, z_b), _ = top.encoder(data.test.x[:2, :32])
    steps = torch.linspace(0, 1, args.steps).unsqueeze(-1)
    codes = (1 - steps) * z_a + steps * z_b
    conditioned = poutine.condition(top.model, data={"top/z": codes})
    line = Predictive(conditioned, num_samples=1, return_sites=["top/x"])(None, num_data=len(codes))["top/x"]
    print(f"decoded interpolation: {tuple(line.shape)} (samples, steps, pixels)")

    # 3. Predictive: prior samples of both halves, and reconstructions from the guide's codes
    prior = Predictive(model=lambda n: (top.model(None, n), bottom.model(None, n)), num_samples=4)(8)
    print("prior samples:", {k: tuple(v.shape) for k, v in prior.items()})
    x = data.test.x[:8, :32]
    codes = Predictive(top.guide, num_samples=16)(x)["top/z"]
    recon = Predictive(top.model, posterior_samples={"top/z": codes})(None, num_data=len(x))["top/x"]
    agreement = (recon == x).float().mean().item()
    print(f"reconstructions: {tuple(recon.shape)}, pixel agreement with the inputs {agreement:.1%}")
    return {"test_elbo": test_elbo, "line": line, "prior": prior, "reconstructions": recon}


def parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--z-dim", type=int, default=8)
    p.add_argument("--steps", type=int, default=8, help="points on the interpolation line")
    p.add_argument("--seed", type=int, default=0)
    return p


if __name__ == "__main__":
    main(parser().parse_args())
