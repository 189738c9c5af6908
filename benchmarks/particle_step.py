"""Particle steps per second: N in {64, 1024, 16384}, d = 2, MLP critic of width 256,
two_number kernel (structured, O(N d)) vs the same kernel as a dense N x N matrix.

One "particle step" is what the loop does per step: one critic optimiser step (Adam, Sobolev
penalty, so a double backward) and one particle update X <- X + lr K F. The kernel product alone
is timed too, since that is where the two kernels differ.

    python benchmarks/particle_step.py [--rounds 3] [--device cpu|cuda] [--sizes 64,1024,16384]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

import gandy
from gandy.core.kernels import Dense
from gandy.core.step import advance, start
from gandy.runs.build import build


def timed(fn, min_time: float = 1.0, sync=lambda: None) -> float:
    """Seconds per call: warm up, then repeat until ``min_time`` has passed."""
    fn()
    sync()
    n, t0 = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        sync()
        el = time.perf_counter() - t0
        if el >= min_time:
            return el / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", default="64,1024,16384")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--min-time", type=float, default=0.5)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    sync = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)
    print(f"# torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} threads, device {args.device}")
    print(f"{'N':>6} {'kernel':>10} {'steps/s':>10} {'K@F us':>10} {'step ratio':>11} {'K@F ratio':>10}")
    for n in map(int, args.sizes.split(",")):
        cfg = gandy.load_config(None, [
            "target={name: ring8}", f"particles.n={n}", "particles.init={name: gaussian, mean: [0, 0], std: 0.1}",
            "critic.widths=[256]", "seeds=[0]", f"device={args.device}", "kernel.g2=0.1",
        ])
        sim = build(cfg)
        kernels = {"two_number": sim.kernel, "matrix": Dense(sim.kernel.dense().to(sim.device), "kernel", check=False)}
        times = {name: ([], []) for name in kernels}
        f = torch.randn(1, n, 2, device=sim.device)
        for _ in range(args.rounds):  # interleaved rounds, median: robust to drift on a shared machine
            for name, kern in kernels.items():
                sim.kernel = kern
                st = start(sim, cfg.seeds)
                times[name][0].append(timed(lambda: advance(sim, st), args.min_time, sync))
                times[name][1].append(timed(lambda: kern.apply(f), 0.2, sync))
        rows = {name: (statistics.median(a), statistics.median(b)) for name, (a, b) in times.items()}
        for name, (step_s, kf_s) in rows.items():
            r1 = rows["matrix"][0] / step_s
            r2 = rows["matrix"][1] / kf_s
            print(f"{n:>6} {name:>10} {1 / step_s:>10.1f} {kf_s * 1e6:>10.1f} {r1:>10.2f}x {r2:>9.1f}x")


if __name__ == "__main__":
    main()
