"""GAN lab speed: training steps per second of the 2-D MLP GAN (ring8, generator and critic MLPs
of width 128, batch 256, Adam, one seed) for each game, and the overhead of tracking the
divergences (w1, js, kl_pq, kl_qp, mmd, their standard errors and the order parameters) at
log_every 10, 20, 50 and 100 relative to logging at the first and last step only.

    python benchmarks/lab_step.py [--steps 300] [--repeats 5] [--threads N] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

import gandy
from gandy.core.step import advance, start
from gandy.runs.build import build
from gandy.runs.loop import simulate
from gandy.studies.many_paths.experiment import GAMES_RUN

BASE = ["target={name: ring8}", "generator={name: mlp, latent_dim: 2, widths: [128, 128]}",
        "critic={name: mlp, widths: [128, 128]}", "optim.generator={name: adam, lr: 0.0005}",
        "batch_size=256", "particles.n=256", "seeds=[0]"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
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
    # divergence tracking overhead: the same run with no logging and logged every 10, 20, 50 steps
    # with every tracked column (order parameters, w1, js, kl_pq, kl_qp (with the target's density),
    # mmd and their standard errors)
    # the baseline logs only at the first and last step, with tracking on: an untracked log is not
    # cheaper (it measures W1 against metrics.max_points = 1,024 reference points, a tracked one
    # against as many as were generated), so "no tracking" would not be a fair zero
    runs = [("bare", args.steps, "true"), *((f"every {k}", k, "true") for k in (10, 20, 50, 100))]
    sims = {name: build(gandy.load_config(None, BASE + ["objective=ns", f"steps={args.steps}", f"log_every={log_every}",
                                                       f"metrics.divergences={track}", f"device={args.device}"]))
            for name, log_every, track in runs}
    for sim in sims.values():  # warm-up: first-call costs (lazy imports, allocator) out of the timings
        simulate(sim, [0])
    times = {name: [] for name in sims}
    for _ in range(args.repeats):  # interleaved, so that a slow spell of a shared machine hits every variant
        for name, sim in sims.items():
            t0 = time.perf_counter()
            simulate(sim, [0])
            times[name].append(time.perf_counter() - t0)
    bare = min(times["bare"])
    print(f"ns, {args.steps} steps, best of {args.repeats}: logged at the first and last step only {bare:.3f} s")
    for name, log_every, _ in runs[1:]:
        t = min(times[name])
        logs = args.steps // log_every - 1  # beyond the baseline's two
        print(f"  every column logged {name} steps: {t:.3f} s, overhead {100 * (t / bare - 1):.1f}% (goal <= 10%), "
              f"{1000 * (t - bare) / logs:.1f} ms per extra log")

if __name__ == "__main__":
    main()
