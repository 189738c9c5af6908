"""What a user would write instead of gandy: an idiomatic hand-written PyTorch loop, one grid point
(one g2/g1, one critic learning rate, one seed) at a time. The reference for gandy's speed
(issue 15): ``nn.Sequential`` critic, ``torch.optim.Adam``, autograd with ``create_graph`` for the
Sobolev penalty, the two-number kernel applied as (g1 - g2) F + g2 sum_j F_j.

    python benchmarks/peer_loop.py [--steps 2500] [--seeds 2]     # the physics check and a timing

The physics check runs the demo's setting (two modes at +-2, std 0.1, 64 particles from N(0, 0.1^2),
ReLU critic of width 256, IPM + Sobolev penalty of weight 1, Adam lr 1e-3, particle step 0.004)
at g2/g1 = 0.01 and 0.9 and prints the late coverage KL (0: both modes evenly covered, log 2 =
0.69: everything on one mode) beside gandy's own run of the same config.
"""

from __future__ import annotations

import argparse
import math
import platform
import time

import torch
from torch import nn

import gandy
from gandy.studies.demo.experiment import demo_config


def peer_run(g2: float, critic_lr: float, steps: int, seed: int, n: int = 64, width: int = 256,
             gen_lr: float = 0.004, weight: float = 1.0, g1: float = 1.0, log_every: int = 100) -> list[float]:
    """One member, written by hand; returns its coverage KL every ``log_every`` steps."""
    torch.manual_seed(seed)
    critic = nn.Sequential(nn.Linear(1, width), nn.ReLU(), nn.Linear(width, 1))
    opt = torch.optim.Adam(critic.parameters(), lr=critic_lr)
    modes = torch.tensor([[-2.0], [2.0]])
    x = 0.1 * torch.randn(n, 1)
    kls = []
    for t in range(steps + 1):
        if t % log_every == 0:
            kls.append(coverage_kl(x, modes))
        if t == steps:
            break
        y = modes[torch.randint(0, 2, (n,))] + 0.1 * torch.randn(n, 1)
        # critic: minimise E_Q f - E_P f + weight (E_Q |grad f|^2 - 1)
        xq = x.detach().requires_grad_(True)
        f_fake = critic(xq)
        (g,) = torch.autograd.grad(f_fake.sum(), xq, create_graph=True)
        loss = f_fake.mean() - critic(y).mean() + weight * (g.pow(2).sum(-1).mean() - 1)
        opt.zero_grad()
        loss.backward()
        opt.step()
        # particles: X <- X + lr K F with F = grad f at each particle (IPM: l_G = -f)
        xf = x.detach().requires_grad_(True)
        (force,) = torch.autograd.grad(critic(xf).sum(), xf)
        x = x + gen_lr * ((g1 - g2) * force + g2 * force.sum(0, keepdim=True))
    return kls


def coverage_kl(x: torch.Tensor, modes: torch.Tensor) -> float:
    """KL(p || uniform) of the particles' nearest-mode histogram."""
    p = torch.bincount(torch.cdist(x, modes).argmin(1), minlength=len(modes)).double() / len(x)
    return math.log(len(modes)) + float((p[p > 0] * p[p > 0].log()).sum())


def per_member_step_us(steps: int = 300, width: int = 128, members: int = 4) -> float:
    """Microseconds per member-step of the peer loop in the sweep benchmark's setting (N = 64,
    width 128), over ``members`` grid points run one after the other."""
    t0 = time.perf_counter()
    for k in range(members):
        peer_run(0.001 * 10**k, 1e-3, steps, seed=k, width=width, log_every=steps)
    return (time.perf_counter() - t0) / (members * steps) * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=2500)
    ap.add_argument("--seeds", type=int, default=2)
    args = ap.parse_args()
    print(f"# peer loop: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} torch thread(s)")
    for g2 in (0.01, 0.9):
        late = slice(-6, None)  # the last 500 steps
        peer = [sum(peer_run(g2, 1e-3, args.steps, s)[late]) / 6 for s in range(args.seeds)]
        cfg = gandy.load_config(demo_config(), [f"kernel.g2={g2}", f"steps={args.steps}", f"seeds={list(range(args.seeds))}"])
        res = gandy.run(cfg, figures=False)
        m = res.metrics
        ours = [float(m[(m.seed == s) & (m.step >= args.steps - 500)].coverage_kl.mean()) for s in range(args.seeds)]
        print(f"g2/g1 = {g2}: late coverage KL, peer loop {['%.3f' % v for v in peer]}, gandy {['%.3f' % v for v in ours]}"
              f" (gandy phases {list(res.results.phase)})")
    print(f"peer loop, sweep setting (N = 64, width 128): {per_member_step_us():.0f} us per member-step")


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
