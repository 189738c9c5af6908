"""GAN lab speed: training steps per second of the 2-D MLP GAN (ring8, generator and critic MLPs
of width 128, batch 256, Adam, one seed) for each game, and the overhead of tracking the
divergences (js, kl_pq, kl_qp, mmd) at log_every 10 relative to tracking the order parameters only.

    python benchmarks/lab_step.py [--steps 300] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

import gandy
from gandy.game import advance, build, simulate, start
from gandy.experiments.many_paths import GAMES_RUN

BASE = ["target={name: ring8}", "generator={name: mlp, latent_dim: 2, widths: [128, 128]}",
        "critic={name: mlp, widths: [128, 128]}", "optim.generator={name: adam, lr: 0.0005}",
        "batch_size=256", "particles.n=256", "seeds=[0]"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    sync = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)
    print(f"# torch {torch.__version__}, {platform.machine()}, {torch.get_num_threads()} threads, device {args.device}")
    print(f"{'game':>10} {'steps/s':>9}")
    for game in GAMES_RUN:
        sim = build(gandy.load_config(None, BASE + [f"objective={game}", f"device={args.device}"]))
        st = start(sim, [0])
        for _ in range(5):
            advance(sim, st)
        sync()
        t0 = time.perf_counter()
        for _ in range(args.steps):
            advance(sim, st)
        sync()
        print(f"{game:>10} {args.steps / (time.perf_counter() - t0):>9.1f}")
    # divergence tracking overhead: the same run logged every 10 steps with and without it
    times = {}
    for name, log_every, track in (("bare", args.steps, "false"), ("order", 10, "false"), ("all", 10, "true")):
        sim = build(gandy.load_config(None, BASE + ["objective=ns", f"steps={args.steps}", f"log_every={log_every}",
                                                   f"metrics.divergences={track}", f"device={args.device}"]))
        best = float("inf")
        for _ in range(3):  # warm caches once, keep the best of the rest
            t0 = time.perf_counter()
            simulate(sim, [0])
            best = min(best, time.perf_counter() - t0)
        times[name] = best
    print(f"ns, {args.steps} steps: no logging {times['bare']:.2f} s; log_every 10 with order parameters "
          f"(incl. exact W1) {times['order']:.2f} s; plus js/kl/mmd {times['all']:.2f} s")
    print(f"overhead of js/kl/mmd over the order parameters: {100 * (times['all'] / times['order'] - 1):.1f}%; "
          f"of all tracking over no logging: {100 * (times['all'] / times['bare'] - 1):.1f}%")


if __name__ == "__main__":
    main()
