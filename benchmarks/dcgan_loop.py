"""The image GAN step against the hand-written PyTorch loop a user would write instead (issue 29,
item 4): training images per second of one DCGAN member on Color MNIST, gandy's whole
``gandy.run`` call against the loop, at 1 and 2 torch threads, in one process with the two sides
interleaved (peer, gandy, peer, gandy, ...; the best and the median of ``--rounds``).

The setting is the robustness study's: generator ``dcgan`` (latent 64, width 64, batch norm),
critic ``dcgan`` (width 64, layer norm = GroupNorm with one group), batch 64, Adam(2e-4, betas
(0.5, 0.999)) on both sides, one critic step per generator step, ``--game`` ns (softplus losses)
or gan_gp (ns + lambda E(|grad f(x_hat)| - 1)^2 on interpolates, lambda 10). gandy runs with its
end-of-run image metrics off (``metrics.images.enabled=false``) and logs at the first and last
step only; its fixed cost (build, data, the two logs) is measured by a run of one step and taken
off, so both sides count training steps only.

The peer: ``nn.Sequential`` generator (Linear, Unflatten, BatchNorm2d, ReLU, ConvTranspose2d,
BatchNorm2d, ReLU, ConvTranspose2d, Tanh) and critic (Conv2d, LeakyReLU(0.2), Conv2d,
GroupNorm(1), LeakyReLU(0.2), Flatten, Linear), ``torch.optim.Adam`` (``fused=True``: one kernel for all
parameters, the faster of the two in benchmarks/single_run.py), ``zero_grad(set_to_none=True)``, the generated batch for the
critic under ``no_grad``, real batches by ``torch.randint`` into the same 10,000 Color MNIST
images gandy trains on (a tensor in memory), the penalty by ``autograd.grad(create_graph=True)``.

    python benchmarks/dcgan_loop.py [--steps 40] [--rounds 3] [--threads 1 2] [--games ns gan_gp]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import time

import numpy as np
import torch
from torch import nn
from torch.nn import functional as Fn

import gandy
from gandy.core.images.data import color_mnist

WIDTH, LATENT, BATCH, LAMBDA = 64, 64, 64, 10.0


def peer(steps: int, data: torch.Tensor, game: str) -> None:
    """``steps`` training steps of the hand-written loop on ``data: (n, 3, 28, 28)`` in [-1, 1]."""
    torch.manual_seed(0)
    w = WIDTH
    gen = nn.Sequential(nn.Linear(LATENT, 2 * w * 49), nn.Unflatten(1, (2 * w, 7, 7)), nn.BatchNorm2d(2 * w), nn.ReLU(),
                        nn.ConvTranspose2d(2 * w, w, 4, 2, 1), nn.BatchNorm2d(w), nn.ReLU(),
                        nn.ConvTranspose2d(w, 3, 4, 2, 1), nn.Tanh())
    critic = nn.Sequential(nn.Conv2d(3, w, 4, 2, 1), nn.LeakyReLU(0.2), nn.Conv2d(w, 2 * w, 4, 2, 1),
                           nn.GroupNorm(1, 2 * w), nn.LeakyReLU(0.2), nn.Flatten(), nn.Linear(2 * w * 49, 1))
    opt_g = torch.optim.Adam(gen.parameters(), 2e-4, betas=(0.5, 0.999), fused=True)
    opt_d = torch.optim.Adam(critic.parameters(), 2e-4, betas=(0.5, 0.999), fused=True)
    n = data.shape[0]
    for _ in range(steps):
        real = data[torch.randint(0, n, (BATCH,))]
        with torch.no_grad():
            fake = gen(torch.randn(BATCH, LATENT))
        loss_d = Fn.softplus(-critic(real)).mean() + Fn.softplus(critic(fake)).mean()
        if game == "gan_gp":
            eps = torch.rand(BATCH, 1, 1, 1)
            x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
            (g,) = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
            loss_d = loss_d + LAMBDA * ((g.flatten(1).norm(dim=1) - 1) ** 2).mean()
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        loss_g = Fn.softplus(-critic(gen(torch.randn(BATCH, LATENT)))).mean()
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()


def gandy_seconds(steps: int, game: str) -> float:
    """Wall seconds of ``gandy.run`` of ``steps`` steps of the same setting (one member)."""
    over = ["target={name: color_mnist}", f"generator={{name: dcgan, latent_dim: {LATENT}, width: {WIDTH}, norm: batch}}",
            f"critic={{name: dcgan, width: {WIDTH}, norm: layer}}",
            "optim.critic={name: adam, lr: 0.0002, betas: [0.5, 0.999]}",
            "optim.generator={name: adam, lr: 0.0002, betas: [0.5, 0.999]}", f"objective={game}",
            f"batch_size={BATCH}", f"particles.n={BATCH}", "seeds=[0]", "metrics.images.enabled=false",
            f"steps={steps}", f"log_every={steps}"]
    cfg = gandy.load_config(None, over)
    t0 = time.perf_counter()
    gandy.run(cfg, figures=False)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--games", nargs="+", default=["ns", "gan_gp"])
    args = ap.parse_args()
    print(f"# dcgan_loop.py {datetime.date.today()}, {platform.machine()} {os.cpu_count()} cores, torch "
          f"{torch.__version__}, load average {os.getloadavg()[0]:.2f} at start")
    data = torch.from_numpy(color_mnist(np.arange(10_000), "train", seed=0)[0]).float().reshape(-1, 3, 28, 28)
    for game in args.games:
        for threads in args.threads:
            torch.set_num_threads(threads)
            os.environ["GANDY_THREADS"] = str(threads)
            peer(2, data, game), gandy_seconds(2, game)  # warm-up
            peer_s, gandy_s = [], []
            for _ in range(args.rounds):
                t0 = time.perf_counter()
                peer(args.steps, data, game)
                peer_s.append(time.perf_counter() - t0)
                fixed = gandy_seconds(1, game)  # build, data, logs: everything but the training steps
                gandy_s.append(max(gandy_seconds(args.steps + 1, game) - fixed, 1e-9))
            rate = {k: [BATCH * args.steps / s for s in v] for k, v in (("peer", peer_s), ("gandy", gandy_s))}
            best = {k: max(v) for k, v in rate.items()}
            med = {k: statistics.median(v) for k, v in rate.items()}
            print(f"{game}, {threads} thread(s), {args.steps} steps x {args.rounds} rounds: images/s peer best "
                  f"{best['peer']:.0f} median {med['peer']:.0f}; gandy best {best['gandy']:.0f} median "
                  f"{med['gandy']:.0f}; gandy / peer {best['gandy'] / best['peer']:.2f}x (best), "
                  f"{med['gandy'] / med['peer']:.2f}x (median)")


if __name__ == "__main__":
    main()
