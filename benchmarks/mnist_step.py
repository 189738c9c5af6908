"""784-D, the mnist-collapse setting (N = 100 particles, 100 digits, ReLU MLP critic of width 512,
Sobolev penalty, Adam with weight decay, one critic step): cost per member-step of each engine, in
one process, rounds interleaved, plus the matrix-product floor of the step on this machine.

    python benchmarks/mnist_step.py [--members 8] [--steps 4] [--rounds 3] [--device cpu|cuda]
                                    [--engines eager closed_form compiled] [--threads 1]

The floor: one member-step needs 2 d H (2 M + 7 N) multiply-adds at least (gandy.core.closed_form),
divided by this machine's measured float32 batched-matmul rate at the same shapes.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch

import gandy
from gandy.core.step import advance, start
from gandy.runs.build import build

CONFIG = Path(gandy.__file__).parent / "studies" / "mnist_collapse" / "config.yaml"


def bmm_rate(b: int, device: str, seconds: float = 2.0) -> float:
    """GFLOP/s of (b, 100, 784) @ (b, 784, 512), the step's typical product."""
    x, w = torch.randn(b, 100, 784, device=device), torch.randn(b, 784, 512, device=device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    torch.bmm(x, w)
    sync()
    k, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        torch.bmm(x, w)
        k += 1
    sync()
    return 2 * b * 100 * 784 * 512 * k / (time.perf_counter() - t0) / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--members", type=int, default=8)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--engines", nargs="+", default=["eager", "closed_form", "compiled"])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    sync = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)
    print(f"# torch {torch.__version__}, {platform.machine()}, {torch.get_num_threads()} threads, device {args.device}, "
          f"B = {args.members}")
    sims, states, warm = {}, {}, {}
    for e in args.engines:
        sims[e] = build(gandy.load_config(str(CONFIG), ["sweep=null", f"engine={e}", f"device={args.device}"]))
        states[e] = start(sims[e], list(range(args.members)))
        t0 = time.perf_counter()
        advance(sims[e], states[e])  # compiles here (compiled), not timed
        advance(sims[e], states[e])
        sync()
        warm[e] = time.perf_counter() - t0
    times = {e: [] for e in args.engines}
    for _ in range(args.rounds):
        for e in args.engines:
            t0 = time.perf_counter()
            for _ in range(args.steps):
                advance(sims[e], states[e])
            sync()
            times[e].append((time.perf_counter() - t0) / args.steps / args.members * 1e3)
    sim = sims[args.engines[0]]
    width = sim.cfg.critic.widths[0]
    flops = 2 * sim.d * width * (2 * sim.critic_batch + 7 * sim.n)
    rate = bmm_rate(args.members, args.device)
    floor = flops / rate / 1e6
    print(f"floor: {flops / 1e6:.0f} MFLOP per member-step at {rate:.1f} GFLOP/s (bmm) = {floor:.2f} ms")
    base = min(times[args.engines[0]])
    for e in args.engines:
        best = min(times[e])
        print(f"{e:12s} " + " ".join(f"{t:7.2f}" for t in times[e]) + f"  ms per member-step; best {best:.2f} "
              f"({base / best:.2f}x {args.engines[0]}, {best / floor:.2f}x the floor; first two steps {warm[e]:.1f} s)")


if __name__ == "__main__":
    main()
