"""One config, one seed: `gandy.run` against the fastest idiomatic hand-written PyTorch loop a user
would write instead (issue 27), in two settings, at 1 and 2 torch threads, in one process with the
two sides interleaved (peer, gandy, peer, gandy, ...; the median of ``--rounds``).

* ``1d``: collapse-1d's setting: N = 64 particles on the two-mode 1-D target (+-2, std 0.1), ReLU
  MLP critic of width 128, IPM + Sobolev penalty (weight 1), Adam lr 1e-3, the two-number kernel
  (g1 = 1, g2 = 0.1), particle step 0.004, ``--steps`` steps (default 2,000).
* ``lab``: the GAN lab's ring: ring8 (std 0.05), MLP generator (latent 2, [128, 128]) and critic
  ([128, 128]), both ReLU and Adam (critic lr 1e-3, generator 5e-4), the non-saturating game,
  batch 256, ``--lab-steps`` steps (default 1,000); gandy logs as the lab does by default (every
  100 steps, divergences tracked), untracked, and only at the first and last step.

The peers: ``nn.Sequential`` networks, ``torch.optim.Adam`` (``fused=True`` and the default are both
timed and the faster kept), ``zero_grad(set_to_none=True)``, the Sobolev penalty by
``autograd.grad(create_graph=True)`` with the fake points' forward pass shared between the loss
and the penalty, the kernel as (g1 - g2) F + g2 sum_j F_j, target samples by ``torch.randint`` /
``torch.randn``; no logging. gandy: the whole ``gandy.run`` call (build, the steps, its order
parameters every ``log_every`` = 100 steps, the results tables; figures off), with ``engine: auto`` (the engine it picked is printed) and,
for comparison, the other engines that run the setting. The compiled engine's time includes its
compilation, the first run in a process counting the C++ build unless torch's on-disk cache holds it.

    python benchmarks/single_run.py [--steps 2000] [--lab-steps 1000] [--rounds 3] [--threads 1 2]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import time

import torch
from torch import nn
from torch.nn import functional as Fn

import gandy

ONE_D = {"target": {"name": "two_modes_1d", "separation": 4.0, "std": 0.1},
         "particles": {"n": 64, "init": {"name": "gaussian", "std": 0.1}},
         "kernel": {"name": "two_number", "g1": 1.0, "g2": 0.1},
         "critic": {"name": "mlp", "widths": [128], "activation": "relu"}, "objective": "ipm",
         "penalty": {"name": "sobolev", "weight": 1.0},
         "optim": {"critic": {"name": "adam", "lr": 0.001}, "generator": {"lr": 0.004}},
         "log_every": 100, "seeds": [0]}
LAB = ["target={name: ring8}", "generator={name: mlp, latent_dim: 2, widths: [128, 128]}",
       "critic={name: mlp, widths: [128, 128]}", "optim.generator={name: adam, lr: 0.0005}",
       "objective=ns", "batch_size=256", "particles.n=256", "seeds=[0]", "log_every=100"]


def peer_1d(steps: int, fused: bool, n: int = 64, width: int = 128, g1: float = 1.0, g2: float = 0.1,
            lr: float = 1e-3, gen_lr: float = 0.004, weight: float = 1.0) -> torch.Tensor:
    """The 1-D setting by hand; returns the final particles ``(n, 1)``."""
    torch.manual_seed(0)
    critic = nn.Sequential(nn.Linear(1, width), nn.ReLU(), nn.Linear(width, 1))
    opt = torch.optim.Adam(critic.parameters(), lr=lr, fused=fused or None)
    x = 0.1 * torch.randn(n, 1)
    for _ in range(steps):
        y = 2.0 * (2 * torch.randint(0, 2, (n, 1)) - 1) + 0.1 * torch.randn(n, 1)
        xq = x.requires_grad_(True)
        f_fake = critic(xq)  # one forward of the particles for the loss and the penalty
        (g,) = torch.autograd.grad(f_fake.sum(), xq, create_graph=True)
        loss = f_fake.mean() - critic(y).mean() + weight * (g.pow(2).sum(-1).mean() - 1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        xf = x.detach().requires_grad_(True)
        (force,) = torch.autograd.grad(critic(xf).sum(), xf)
        with torch.no_grad():
            x = x.detach() + gen_lr * ((g1 - g2) * force + g2 * force.sum(0, keepdim=True))
    return x.detach()


def _mlp(i: int, o: int, width: int = 128) -> nn.Module:
    return nn.Sequential(nn.Linear(i, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, o))


def peer_lab(steps: int, fused: bool, batch: int = 256) -> torch.Tensor:
    """The lab's ring by hand (non-saturating GAN); returns a final generated batch ``(batch, 2)``."""
    torch.manual_seed(0)
    angles = torch.arange(8) * (2 * torch.pi / 8)
    modes = 2.0 * torch.stack([angles.cos(), angles.sin()], 1)
    gen, critic = _mlp(2, 2), _mlp(2, 1)
    opt_g = torch.optim.Adam(gen.parameters(), lr=5e-4, fused=fused or None)
    opt_d = torch.optim.Adam(critic.parameters(), lr=1e-3, fused=fused or None)
    for _ in range(steps):
        real = modes[torch.randint(0, 8, (batch,))] + 0.05 * torch.randn(batch, 2)
        with torch.no_grad():
            fake = gen(torch.randn(batch, 2))
        loss_d = Fn.softplus(-critic(real)).mean() + Fn.softplus(critic(fake)).mean()
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        loss_g = Fn.softplus(-critic(gen(torch.randn(batch, 2)))).mean()
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()  # the critic's .grad is left set; zero_grad clears it before its next step
        opt_g.step()
    with torch.no_grad():
        return gen(torch.randn(batch, 2))


def gandy_run(setting: str, steps: int, engine: str) -> tuple[float, str]:
    """Wall seconds of the whole ``gandy.run`` call and the engine it ran with. The lab logs by
    default every 100 steps with its divergences tracked (W1 from the pooled 256 x 256 matrix);
    ``engine`` ending in "untracked": ``metrics.divergences: false`` (the order parameters, with the
    exact W1 to 1,024 target points); in "logs at 0 and end": ``log_every`` = the steps (the peer
    logs nothing)."""
    bare, untracked = engine.endswith("logs at 0 and end"), engine.endswith("untracked")
    over = [f"steps={steps}", f"engine={engine.split(',')[0]}", *([f"log_every={steps}"] if bare else []),
            *(["metrics.divergences=false"] if untracked else [])]
    cfg = gandy.load_config(ONE_D, over) if setting == "1d" else gandy.load_config(None, [*LAB, *over])
    t0 = time.perf_counter()
    res = gandy.run(cfg, figures=False)
    return time.perf_counter() - t0, res.summary["engine"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--lab-steps", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--settings", nargs="+", default=["1d", "lab"])
    args = ap.parse_args()
    print(f"# single_run.py {datetime.date.today()}, {platform.machine()} {os.cpu_count()} cores, "
          f"torch {torch.__version__}, load average {os.getloadavg()[0]:.2f} at start")
    peers = {"1d": peer_1d, "lab": peer_lab}
    engines = {"1d": ["auto", "eager", "closed_form", "compiled"],
               "lab": ["auto", "auto, untracked", "auto, logs at 0 and end"]}
    for setting in args.settings:
        steps = args.steps if setting == "1d" else args.lab_steps
        for threads in args.threads:
            torch.set_num_threads(threads)
            os.environ["GANDY_THREADS"] = str(threads)
            peers[setting](20, False), peers[setting](20, True)  # warm-up
            times: dict[str, list[float]] = {}
            chosen = ""
            for _ in range(args.rounds):
                for fused in (False, True):
                    t0 = time.perf_counter()
                    peers[setting](steps, fused)
                    times.setdefault(f"peer (Adam fused={fused})", []).append(time.perf_counter() - t0)
                for engine in engines[setting]:
                    seconds, ran = gandy_run(setting, steps, engine)
                    times.setdefault(f"gandy engine={engine}", []).append(seconds)
                    chosen = ran if engine == "auto" else chosen
            med = {k: statistics.median(v) for k, v in times.items()}
            peer = min(v for k, v in med.items() if k.startswith("peer"))
            print(f"\n{setting}, {steps} steps, {threads} thread(s); median of {args.rounds} rounds "
                  f"(auto ran {chosen}); us per step and speed relative to the faster peer:")
            for k, v in med.items():
                print(f"  {k:<30} {v / steps * 1e6:9.0f} us/step  {peer / v:5.2f}x   "
                      f"[{', '.join(f'{x / steps * 1e6:.0f}' for x in times[k])}]")


if __name__ == "__main__":
    main()
