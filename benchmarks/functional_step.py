"""How fast can the step be? One member's step written once with torch.func (grad, the penalty's
nested grad, vmap over members) and compiled with torch.compile, in the sweep benchmark's setting
(N = 64, d = 1, ReLU MLP critic of width 128, IPM + Sobolev penalty of weight 1, Adam, the
two-number kernel), against gandy's batched engine on the same members. A measurement for issue
15's functional engine, not yet part of gandy; it also checks the physics (split at g2/g1 = 0.01,
collapsed at 0.9 on the demo's target).

    python benchmarks/functional_step.py [--members 256] [--steps 1000]
"""

from __future__ import annotations

import argparse
import math
import platform
import time

import torch
from torch.func import grad, vmap

import gandy
from gandy.core.step import advance, start
from gandy.runs.build import build
from gandy.runs.members import member_values

B1, B2, EPS = 0.9, 0.999, 1e-8


def critic(p: dict, x: torch.Tensor) -> torch.Tensor:
    """One member's ReLU MLP, ``x: (M, 1) -> (M,)``."""
    return (torch.relu(x @ p["w0"] + p["b0"]) @ p["w1"]).squeeze(-1) + p["b1"]


def critic_loss(p: dict, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    g = grad(lambda xx: critic(p, xx).sum())(x)  # (N, 1): the penalty's gradient at the particles
    return critic(p, x).mean() - critic(p, y).mean() + ((g * g).sum(-1).mean() - 1.0)


def member_step(p, m, v, x, y, bc1, bc2, lr_c, g2, lr_g):
    """One step of one member: an Adam step of the critic (``bc1, bc2``: Adam's bias corrections
    1 - beta^t, 0-d tensors so that one compiled graph serves every step), then X <- X + lr_G K F."""
    gp = grad(critic_loss)(p, x, y)
    new_p, new_m, new_v = {}, {}, {}
    for k in p:
        new_m[k] = B1 * m[k] + (1 - B1) * gp[k]
        new_v[k] = B2 * v[k] + (1 - B2) * gp[k] * gp[k]
        mh = new_m[k] / bc1
        vh = new_v[k] / bc2
        new_p[k] = p[k] - lr_c * mh / (vh.sqrt() + EPS)
    f = grad(lambda xx: critic(new_p, xx).sum())(x)  # IPM: F = grad f
    x = x + lr_g * ((1 - g2) * f + g2 * f.sum(0, keepdim=True))
    return new_p, new_m, new_v, x


def init(b: int, width: int, gen: torch.Generator) -> dict:
    """PyTorch's default uniform init of nn.Linear(1, width), nn.Linear(width, 1), per member."""
    def u(*shape, fan_in):
        return (2 * torch.rand(b, *shape, generator=gen) - 1) / math.sqrt(fan_in)

    return {"w0": u(1, width, fan_in=1), "b0": u(width, fan_in=1), "w1": u(width, 1, fan_in=width), "b1": u(fan_in=width)}


def run(step, b: int, steps: int, g2: torch.Tensor, lr_c: torch.Tensor, n: int = 64, width: int = 128,
        lr_g: float = 0.004, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    p = init(b, width, gen)
    m = {k: torch.zeros_like(t) for k, t in p.items()}
    v = {k: torch.zeros_like(t) for k, t in p.items()}
    x = 0.1 * torch.randn(b, n, 1, generator=gen)
    modes = torch.tensor([-2.0, 2.0])
    for t in range(1, steps + 1):
        y = (modes[torch.randint(0, 2, (b, n), generator=gen)] + 0.1 * torch.randn(b, n, generator=gen))[..., None]
        bc1, bc2 = torch.tensor(1 - B1**t), torch.tensor(1 - B2**t)
        p, m, v, x = step(p, m, v, x, y, bc1, bc2, lr_c, g2, lr_g)
    return x


def coverage_kl(x: torch.Tensor) -> torch.Tensor:
    """Per member, KL(p || uniform) of the two modes' occupation (x: (B, N, 1))."""
    p = (x[..., 0] > 0).double().mean(-1)
    ent = torch.where(p > 0, p * p.log(), 0.0) + torch.where(p < 1, (1 - p) * (1 - p).log(), 0.0)
    return math.log(2) + ent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--members", type=int, default=256)
    ap.add_argument("--steps", type=int, default=1000)
    args = ap.parse_args()
    b, steps = args.members, args.steps
    print(f"# functional step: {platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} thread(s)")
    g2 = torch.logspace(-3, -0.3, 16).repeat_interleave(b // 16)[:b]
    lr_c = torch.logspace(-4, -1.5, 16).repeat(b // 16)[:b]
    batched = vmap(member_step, in_dims=(0, 0, 0, 0, 0, None, None, 0, 0, None))

    short = min(steps, 50)  # eager vmap is slow: timed on fewer steps
    t0 = time.perf_counter()
    run(batched, b, short, g2, lr_c)
    t_vmap = time.perf_counter() - t0
    print(f"vmap (eager):    {t_vmap / (b * short) * 1e6:8.1f} us per member-step ({short} steps)")

    compiled = torch.compile(batched, dynamic=False)
    t0 = time.perf_counter()
    run(compiled, b, 2, g2, lr_c)
    warm = time.perf_counter() - t0
    t0 = time.perf_counter()
    run(compiled, b, steps, g2, lr_c)
    t_comp = time.perf_counter() - t0
    print(f"vmap + compile:  {t_comp / (b * steps) * 1e6:8.1f} us per member-step (compile warm-up {warm:.0f} s)")

    cfg = gandy.load_config(None, ["particles.n=64", "critic.widths=[128]", "critic.activation=relu",
                                   "optim.generator.lr=0.004", "seeds=[0]"])
    sim = build(cfg)
    cfgs = [cfg.model_copy(update={"kernel": cfg.kernel.model_copy(update={"g2": float(a)}),
                                   "optim": cfg.optim.model_copy(update={"critic": cfg.optim.critic.model_copy(
                                       update={"lr": float(c)})})}) for a, c in zip(g2, lr_c)]
    st = start(sim, [0] * b, member_values(cfgs, sim.device))
    t0 = time.perf_counter()
    for _ in range(steps):
        advance(sim, st)
    t_gandy = time.perf_counter() - t0
    print(f"gandy batched:   {t_gandy / (b * steps) * 1e6:8.1f} us per member-step")
    print(f"ratio gandy / compiled: {t_gandy / t_comp:.1f}x")

    # physics: the demo's two values of g2/g1 (critic lr 1e-3, width 256), 2,500 steps, 4 members each
    two = torch.tensor([0.01] * 4 + [0.9] * 4)
    x = run(compiled, 8, 2500, two, torch.full((8,), 1e-3), width=256, seed=1)
    kl = coverage_kl(x)
    print(f"physics (compiled step): coverage KL at g2/g1 = 0.01: {[round(float(k), 3) for k in kl[:4]]}; "
          f"at 0.9: {[round(float(k), 3) for k in kl[4:]]}")


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
