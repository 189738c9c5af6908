"""A 256-member sweep (16 g2/g1 x 16 critic learning rates; N = 64, d = 1, ReLU MLP critic of
width 128, Sobolev penalty, Adam) run batched vs a sequential loop over members with the same
code (``gandy.core.step.start`` / ``advance``), plus the critic step's achieved GFLOP/s beside this
machine's measured float32 matmul peak, and the peak host memory of a 4,096-member sweep.

    python benchmarks/sweep_batched.py [--steps 2000] [--seq-members 8] [--device cpu|cuda] [--memory]

The sequential loop (gandy at B = 1) and the peer loop (benchmarks/peer_loop.py: what a user would
write by hand, one grid point at a time) are timed on ``--seq-members`` members for the full
number of steps and scaled to 256 (their cost is linear in the number of members); the batched run
is timed whole. Run with one torch thread (``torch.set_num_threads(1)`` here) unless stated.
"""

from __future__ import annotations

import argparse
import platform
import resource
import subprocess
import sys
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

import gandy
from gandy.core.step import advance, critic_update, start
from gandy.runs.build import build
from gandy.runs.members import member_values
from peer_loop import peer_run  # benchmarks/peer_loop.py, beside this script

OVERRIDES = ["particles.n=64", "critic.widths=[128]", "critic.activation=relu", "optim.generator.lr=0.004"]


def members_grid(sim, n_side: int = 16):
    cfgs = []
    for g2 in torch.logspace(-3, -0.3, n_side).tolist():
        for lr in torch.logspace(-4, -1.5, n_side).tolist():
            cfgs.append(sim.cfg.model_copy(update={
                "kernel": sim.cfg.kernel.model_copy(update={"g2": g2}),
                "optim": sim.cfg.optim.model_copy(update={"critic": sim.cfg.optim.critic.model_copy(update={"lr": lr})}),
            }))
    return cfgs


def matmul_peak(device: str, n: int = 2048, seconds: float = 2.0) -> float:
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    a @ b
    sync()
    k, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        k += 1
    sync()
    return 2 * n**3 * k / (time.perf_counter() - t0) / 1e9


def memory_run(members: int, steps: int) -> None:
    """Child process: a ``members``-member sweep through the store, then print the peak RSS."""
    import tempfile

    from gandy.runs.sweep import run_sweep

    side = int(members**0.5)
    cfg = gandy.load_config(None, OVERRIDES + [f"steps={steps}", f"log_every={steps}", "seeds=[0]",
                                               f"sweep={{kernel.g2: {{logspace: [0.001, 0.5], num: {side}}}, "
                                               f"optim.critic.lr: {{logspace: [0.0001, 0.03], num: {side}}}}}"])
    with tempfile.TemporaryDirectory() as d:
        _, _, s = run_sweep(cfg, f"{d}/out")
    print(f"{side * side} members in {s['sweep']['chunks']} chunks of {s['sweep']['chunk_sizes']}: "
          f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2:.2f} GB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--seq-members", type=int, default=8)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--engine", default="eager", choices=["eager", "compiled", "closed_form"], help="the batched run's engine")
    ap.add_argument("--memory", action="store_true", help="also measure a 4,096-member sweep's peak memory")
    ap.add_argument("--_memory-child", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._memory_child:
        memory_run(args._memory_child, 20)
        return
    sync = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)
    cfg = gandy.load_config(None, OVERRIDES + [f"device={args.device}", "seeds=[0]"])
    sim = build(cfg)
    fast = build(cfg.model_copy(update={"engine": args.engine}))
    cfgs = members_grid(sim)
    b = len(cfgs)
    print(f"# torch {torch.__version__}, {platform.machine()}, {torch.get_num_threads()} threads, device {args.device}")

    st = start(fast, [0] * b, member_values(cfgs, sim.device))
    t0 = time.perf_counter()
    advance(fast, st)  # warm-up (the compiled engine compiles here), not timed
    sync()
    warm = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(args.steps):
        advance(fast, st)
    sync()
    t_batched = time.perf_counter() - t0

    t0 = time.perf_counter()
    for c in cfgs[:: b // args.seq_members][: args.seq_members]:
        s1 = start(sim, [0], member_values([c], sim.device))
        for _ in range(args.steps):
            advance(sim, s1)
    sync()
    t_seq = (time.perf_counter() - t0) / args.seq_members * b

    # what a user would write instead: benchmarks/peer_loop.py, one grid point at a time
    t_peer = None
    if args.device == "cpu":
        t0 = time.perf_counter()
        for c in cfgs[:: b // args.seq_members][: args.seq_members]:
            peer_run(c.kernel.g2, c.optim.critic.lr, args.steps, seed=0, width=128, log_every=args.steps)
        t_peer = (time.perf_counter() - t0) / args.seq_members * b

    # the critic step alone: counted FLOPs (matmuls and convolutions) over measured time
    real_x = st.x
    with FlopCounterMode(display=False) as fc:
        critic_update(sim, st, st.params, real_x)
    flops = fc.get_total_flops()
    k, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < 2.0:
        critic_update(sim, st, st.params, real_x)
        k += 1
    sync()
    t_critic = (time.perf_counter() - t0) / k
    peak = matmul_peak(args.device)

    per = args.steps * b
    print(f"members {b}, steps {args.steps}, N 64, d 1, MLP width 128")
    print(f"batched ({args.engine}): {t_batched:8.1f} s  {t_batched / per * 1e6:8.1f} us per member-step "
          f"(first step, not timed: {warm:.1f} s)")
    print(f"sequential: {t_seq:8.1f} s  {t_seq / per * 1e6:8.1f} us per member-step "
          f"(timed on {args.seq_members} members, scaled to {b})")
    print(f"ratio sequential / batched: {t_seq / t_batched:.1f}x")
    if t_peer is not None:
        print(f"peer loop:  {t_peer:8.1f} s  {t_peer / per * 1e6:8.1f} us per member-step (benchmarks/peer_loop.py, "
              f"timed on {args.seq_members} members, scaled to {b})")
        print(f"ratio peer loop / batched: {t_peer / t_batched:.1f}x;  peer loop / gandy at B = 1: {t_peer / t_seq:.2f}x")
    print(f"critic step (B={b}): {flops / 1e6:.1f} MFLOP counted in {t_critic * 1e3:.2f} ms = "
          f"{flops / t_critic / 1e9:.2f} GFLOP/s; float32 matmul peak {peak:.1f} GFLOP/s "
          f"({100 * flops / t_critic / 1e9 / peak:.1f}% of peak)")
    if args.memory:
        out = subprocess.run([sys.executable, __file__, "--_memory-child", "4096"], capture_output=True, text=True)
        print(out.stdout.strip() or out.stderr.strip())


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
