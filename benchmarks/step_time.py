"""Time one training step of pyrovae's VAE against a plain-PyTorch VAE of the same network, in one process.

Every configuration trains the same 784-400-50 network (batch 128, Adam 1e-3) on the same minibatch. The plain
steps compute the single-sample ELBO by hand (reparameterized z, Bernoulli log-likelihood, Gaussian
log-densities), with ``torch.optim.Adam``'s default implementation or the fused one. The Pyro rows run
``VAE.model``/``guide``: under ``pyro.infer.SVI`` with ``pyro.optim.Adam`` (Pyro's textbook route, one
optimizer per parameter), and as :func:`pyrovae.fit` steps them (:class:`pyrovae.train.step.AdamStep`: the ELBO's
differentiable loss and one fused Adam) with Pyro's validation on (the first epoch), off (later epochs), and
with ``JitTrace_ELBO`` (``--jit``: :class:`pyrovae.infer.jit.JitTrace_ELBO`, no host read per step), and compiled
with ``torch.compile`` (``--compile``: :class:`pyrovae.infer.compiled.CompiledTrace_ELBO`, inductor). Last, Kingma et
al.'s M2 (``SSVAE``, 784-400-50, 10 classes) on an
unlabelled batch with the label enumerated in parallel, as ``fit_semisupervised`` steps it, eager and JIT.

The M2 rows have their own reference, M2 written out in plain PyTorch on the same networks
(``benchmarks/plain_m2.py``: the enumerated unlabelled bound, the labelled bound with the classification term, one
fused Adam), since one VAE step is a tenth of an unlabelled M2 step's arithmetic: ``ratio_to_m2_plain`` compares
``fit_semisupervised``'s steps after the first epoch (validation off) with it, for an unlabelled minibatch, a labelled
one, and the two in turn, as the default ``"alternate"`` schedule takes them (minibatch sums, labels the classes in
turn).

The configurations run **interleaved**: each round times ``--steps`` steps of every configuration in turn, and
the ratios are medians over ``--rounds`` rounds of the per-round ratio, so that a machine whose speed drifts
(shared cores, frequency scaling) moves numerator and denominator together. Each row also has the seconds its first
step took (``first_step_s``: tracing and compiling, for the JIT and compiled rows; torch.compile's cache is wherever
``TORCHINDUCTOR_CACHE_DIR`` points, so give it an empty folder to time a cold compile), and the compiled rows the
number of steps after which compiling has paid for itself against the eager step of epochs 2+
(``break_even_steps``). Prints a table and writes JSON (default ``benchmarks/results/step_time.json``).

Run: ``python benchmarks/step_time.py`` (``--device cuda`` on a GPU)
"""

import argparse
import functools
import platform
import statistics
import time
from pathlib import Path

import pyro
import torch
import torch.distributions as td
from plain_m2 import plain_m2_step_fn
from pyro.infer import SVI, JitTrace_ELBO, Trace_ELBO, TraceEnum_ELBO

from pyrovae import SSVAE, VAE
from pyrovae.checkpoint import save_json
from pyrovae.device import resolve_device
from pyrovae.infer import compiled, jit
from pyrovae.train.semisupervised import semisupervised_loss, step_elbos
from pyrovae.train.step import AdamStep, adam

NUM_DATA = 60000


def plain_step_fn(vae, fused):
    """A hand-written VAE step on ``vae``'s networks: returns ``step(x) -> loss``."""
    optim = adam(vae.parameters(), 1e-3) if fused else torch.optim.Adam(vae.parameters(), lr=1e-3)

    def step(x):
        loc, scale = vae.encoder(x)
        z = loc + scale * torch.randn_like(loc)
        log_lik = td.Bernoulli(logits=vae.decoder(z)).log_prob(x).sum(-1)
        log_prior = td.Normal(0.0, 1.0).log_prob(z).sum(-1)
        log_q = td.Normal(loc, scale).log_prob(z).sum(-1)
        loss = -(log_lik + log_prior - log_q).sum() * NUM_DATA / len(x)
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
        return loss.detach()

    return step


def svi_step_fn(model, guide, elbo):
    svi = SVI(model, guide, pyro.optim.Adam({"lr": 1e-3}), elbo)
    return lambda x: svi.step(x, num_data=NUM_DATA)


def pyrovae_step_fn(module, elbo, validate=True):
    """The step :func:`pyrovae.fit` (and ``fit_semisupervised``) takes on ``module.model``/``guide``, with Pyro's
    validation on or off around it."""
    step = AdamStep(dict(module.named_parameters()), functools.partial(elbo.differentiable_loss, module.model,
                                                                       module.guide), 1e-3)  # fmt: skip

    def run(x):
        with pyro.validation_enabled(validate):
            return step(x, num_data=NUM_DATA)

    return run


def _vae(name, device):
    return VAE(784, z_dim=50, hidden=(400,), prefix=name).to(device)


def _m2(name, device):
    return SSVAE(784, 10, z_dim=50, hidden=(400,), activation="relu", prefix=name).to(device)


def pyro_route(net, route, elbo, validate=True):
    """Builder of a step of ``net``'s model/guide: ``route`` ``"svi"`` or ``"pyrovae"``, ``elbo()`` the ELBO."""

    def build(name, device):
        m = net(name, device)
        if route == "svi":
            return svi_step_fn(m.model, m.guide, elbo())
        return pyrovae_step_fn(m, elbo(), validate)

    return build


def m2_steps(what, step):
    """``run(x)``: ``step(elbos, x, y)`` on ``x`` unlabelled (``y`` ``None``, ``elbos[0]``), labelled (``y`` the classes
    in turn, ``elbos[1]``), or both in turn (``what`` ``"unlabelled"``, ``"labelled"``, ``"alternate"``)."""

    def run(x):
        if what != "labelled":
            loss = step(0, x, None)
        if what != "unlabelled":
            loss = step(1, x, torch.arange(len(x), device=x.device) % 10)
        return loss

    return run


def plain_m2_route(what):
    """Builder of the hand-written M2's steps (``benchmarks/plain_m2.py``), as :func:`m2_steps` takes them."""

    def build(name, device):
        step = plain_m2_step_fn(_m2(name, device))
        return m2_steps(what, lambda _, x, y: step(x, y))

    return build


def fit_m2_route(what, jit=False):
    """Builder of ``fit_semisupervised``'s M2 steps after the first epoch (validation off), as :func:`m2_steps` takes
    them: :func:`~pyrovae.train.semisupervised.semisupervised_loss` with the ELBOs of
    :func:`~pyrovae.train.semisupervised.step_elbos`, one fused Adam, minibatch sums."""

    def build(name, device):
        m = _m2(name, device)
        model, guide, elbos = m.model, m.guide, step_elbos(jit)  # bound once, as Pyro's JIT needs

        def loss(which, x, y):
            batches = (None, x) if y is None else ((x, y), None)
            return semisupervised_loss(model, guide, elbos[which], *batches)

        step = AdamStep(dict(m.named_parameters()), loss, 1e-3)

        def run(which, x, y):
            with pyro.validation_enabled(False):
                return step(which, x, y)

        return m2_steps(what, run)

    return build


JIT = functools.partial(JitTrace_ELBO, ignore_jit_warnings=True)
FIT_JIT = functools.partial(jit.JitTrace_ELBO, ignore_jit_warnings=True)  # what fit --jit compiles
FIT_COMPILE = compiled.CompiledTrace_ELBO  # what fit --compile compiles
ENUM = functools.partial(TraceEnum_ELBO, max_plate_nesting=1)
JIT_ENUM = functools.partial(jit.JitTraceEnum_ELBO, max_plate_nesting=1, ignore_jit_warnings=True)

#: configuration -> builder of ``step(x)`` from (prefix, device)
CONFIGS = {
    "plain PyTorch, torch Adam": lambda n, d: plain_step_fn(_vae(n, d), fused=False),
    "plain PyTorch, fused Adam": lambda n, d: plain_step_fn(_vae(n, d), fused=True),
    "SVI, Trace_ELBO, pyro.optim.Adam": pyro_route(_vae, "svi", Trace_ELBO),
    "SVI, JitTrace_ELBO, pyro.optim.Adam": pyro_route(_vae, "svi", JIT),
    "pyrovae fit, Trace_ELBO, validation on (epoch 1)": pyro_route(_vae, "pyrovae", Trace_ELBO),
    "pyrovae fit, Trace_ELBO (epochs 2+)": pyro_route(_vae, "pyrovae", Trace_ELBO, validate=False),
    "pyrovae fit --jit, JitTrace_ELBO": pyro_route(_vae, "pyrovae", FIT_JIT, validate=False),
    "pyrovae fit --compile, CompiledTrace_ELBO": pyro_route(_vae, "pyrovae", FIT_COMPILE, validate=False),
    "M2 unlabelled, TraceEnum_ELBO": pyro_route(_m2, "pyrovae", ENUM),
    "M2 unlabelled, JitTraceEnum_ELBO": pyro_route(_m2, "pyrovae", JIT_ENUM, validate=False),
}
#: the reference of each ratio column
REFERENCES = {"ratio_to_plain": "plain PyTorch, torch Adam", "ratio_to_plain_fused": "plain PyTorch, fused Adam"}
#: the eager step a compiled one is weighed against: (compiled configuration, eager configuration)
BREAK_EVEN = {"pyrovae fit --compile, CompiledTrace_ELBO": "pyrovae fit, Trace_ELBO (epochs 2+)"}
#: the M2 steps of :func:`m2_steps`, by what they are called in the table
M2_STEPS = {"unlabelled": "unlabelled step", "labelled": "labelled step", "alternate": "unlabelled + labelled step"}
#: the M2 routes with their own reference, by name (``{}``: the step) -> builder for a kind of step
M2_ROUTES = {
    "M2 plain PyTorch, {}": plain_m2_route,
    "M2 fit_semisupervised, {} (epochs 2+)": fit_m2_route,
    "M2 fit_semisupervised --jit, {}": functools.partial(fit_m2_route, jit=True),
}
CONFIGS.update(
    {route.format(step): build(what) for route, build in M2_ROUTES.items() for what, step in M2_STEPS.items()}
)
#: the reference of each M2 row's ``ratio_to_m2_plain``: the hand-written M2 step on the same minibatches
M2_REFERENCES = {
    "M2 unlabelled, TraceEnum_ELBO": "M2 plain PyTorch, unlabelled step",
    "M2 unlabelled, JitTraceEnum_ELBO": "M2 plain PyTorch, unlabelled step",
    **{route.format(step): f"M2 plain PyTorch, {step}" for route in M2_ROUTES for step in M2_STEPS.values()},
}


def timed(step, x, steps):
    """Milliseconds per step over ``steps`` steps (device synchronised)."""
    if x.is_cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step(x)
    if x.is_cuda:
        torch.cuda.synchronize()
    return 1000 * (time.perf_counter() - start) / steps


def break_even(first_s, ms, eager_first_s, eager_ms):
    """The number of steps after which a step that costs ``first_s`` seconds the first time and ``ms`` after has
    taken less time than the eager one (``eager_first_s``, ``eager_ms``); ``None`` if it never does."""
    saved_ms = eager_ms - ms
    return 1 + (first_s - eager_first_s) * 1000 / saved_ms if saved_ms > 0 else None


def main(args):
    device = resolve_device(args.device)
    torch.manual_seed(0)
    pyro.clear_param_store()
    x = torch.bernoulli(torch.rand(args.batch_size, 784, device=device))
    names = [name for name in CONFIGS if args.only is None or any(o in name for o in args.only)]
    m2_references = [M2_REFERENCES[name] for name in names if name in M2_REFERENCES]
    names = list(dict.fromkeys([*REFERENCES.values(), *m2_references, *names,
                                *(BREAK_EVEN[n] for n in names if n in BREAK_EVEN)]))
    steps = {name: CONFIGS[name](f"c{i}", device) for i, name in enumerate(names)}
    first = {name: timed(steps[name], x, 1) / 1000 for name in names}  # seconds: tracing, compiling
    for name in names:
        timed(steps[name], x, args.warmup)
    times = {name: [] for name in names}
    for _ in range(args.rounds):
        for name in names:
            times[name].append(timed(steps[name], x, args.steps))
    rows = []
    for name in names:
        row = {"config": name, "ms_per_step": statistics.median(times[name]), "first_step_s": first[name]}
        for column, ref in REFERENCES.items():
            row[column] = statistics.median(a / b for a, b in zip(times[name], times[ref], strict=True))
        if name in BREAK_EVEN and BREAK_EVEN[name] in times:
            row["break_even_steps"] = break_even(first[name], row["ms_per_step"], first[BREAK_EVEN[name]],
                                                 statistics.median(times[BREAK_EVEN[name]]))  # fmt: skip
        if name in M2_REFERENCES:
            ref = row["m2_reference"] = M2_REFERENCES[name]
            row["ratio_to_m2_plain"] = statistics.median(a / b for a, b in zip(times[name], times[ref], strict=True))
        rows.append(row)
        m2 = f"  {row['ratio_to_m2_plain']:.2f}x plain M2" if name in M2_REFERENCES else ""
        print(f"{name:>62s}  {row['ms_per_step']:7.2f} ms/step  {row['ratio_to_plain']:.2f}x plain  "
              f"{row['ratio_to_plain_fused']:.2f}x plain fused{m2}  first step {first[name]:.2f} s")  # fmt: skip
    result = {
        "network": "784-400-50 MLP, ReLU, Bernoulli",
        "batch_size": args.batch_size,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads",
        "torch": torch.__version__,
        "pyro": pyro.__version__,
        "rounds": args.rounds,
        "steps_per_round": args.steps,
        "break_even": [f"{c} against {e}" for c, e in BREAK_EVEN.items()],
        "rows": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    save_json(args.out, result)
    return result


def parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=20, help="steps per configuration and round")
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--only", nargs="+", help="run only the configurations whose names contain one of these")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default="benchmarks/results/step_time.json")
    return p


if __name__ == "__main__":
    main(parser().parse_args())
