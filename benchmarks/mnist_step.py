"""784-D, the mnist-collapse setting (issue 27): gandy's particle step against a hand-written loop
and against the machine, in one process, rounds interleaved.

    python benchmarks/mnist_step.py [--threads 1 2] [--steps 3] [--rounds 3] [--members 4 8]
                                    [--engines auto compiled closed_form eager] [--member-engines auto]
                                    [--matmul float32 bfloat16]
                                    [--quick] [--device cuda]

The setting (src/gandy/studies/mnist_collapse/config.yaml, docs/bridge.md "the authors'
conventions"): N = 100 particles against 100 MNIST digits (every digit in every critic batch), critic
MLP 784 -> 64 -> 1024 -> 64 -> 1, ReLU, dropout 0.2 after the 1024 layer in the critic's steps,
IPM + batch-mean Sobolev penalty (lambda = 1.25), 20 critic steps per particle step (200 at the
first) of Adam(amsgrad, weight decay 1e-4) created afresh at every particle step, the two-number
kernel. Printed, per thread count:

* **peer**: the fastest idiomatic hand-written loop of the same physics (``peer_step``: nn.Sequential,
  torch.optim.Adam re-created per particle step, autograd.grad(create_graph=True) for the penalty,
  (g1 - g2) F + g2 sum F), in ms per particle step, with Adam's foreach and fused variants both
  timed (the faster is the peer);
* **gandy, one member** (``advance`` on a batch of one, as ``simulate`` runs a lone member: the
  eager engine pads it to two) under each engine, ``auto`` naming what it picked; then 4- and
  8-member batches (a sweep's chunks), in ms per member-step, and the speed-ups over the peer;
* **the machine**: float32 GEMM rates (torch.mm) at the critic's shapes (forward, backward,
  weight-gradient products, 100 and 200 rows) and of a big square product; the floor (the least
  FLOPs a particle step's products can take, ``minimum_flops``, at the best critic-shape rate);
  each case's time as a multiple of the floor, its useful rate (the least FLOPs over its time)
  and its own rate (its FLOPs, counted by torch.utils.flop_counter on eager code: the peer's,
  gandy's closed form where the engine is or compiles it, autograd's otherwise), as fractions of
  the GEMM rates;
* **bf16**: gandy's cases again with ``matmul: bfloat16`` (``--matmul``; the closed form's products
  in bfloat16, where the engine runs the closed form), the peer's critic step under
  torch.autocast("cpu", bfloat16) against float32 (interleaved), and the bf16 GEMM rate at the
  critic's shapes (the floor and the fractions below stay float32's);
* the MNIST-100 member time per 1,000 particle steps (1,000 steps + the 180 extra start-up critic
  steps: x 1.009) of the peer and of gandy.
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import gandy
from gandy.core import closed_form
from gandy.core.step import advance, start
from gandy.runs.build import ENGINES, build, choose_engine

CONFIG = Path(gandy.__file__).parent / "studies" / "mnist_collapse" / "config.yaml"
DEVICE = torch.device("cpu")
"""Where every case runs (``--device``); timings synchronise a CUDA device before reading the clock."""
PER_1000 = 1.009
"""A 1,000-step run in particle steps of 20 critic steps: 999 x 20 + 200 = 20,180 critic steps."""


# ----------------------------------------------------------------------------- the peer
class Peer:
    """The hand-written loop, one member: its state (critic, particles) and one particle step."""

    def __init__(self, data: torch.Tensor, adam: dict, seed: int = 0, g1: float = 1.0, g2: float = 0.1,
                 lr: float = 1e-3, gen_lr: float = 1e-4, weight: float = 1.25, steps: int = 20):
        torch.manual_seed(seed)
        self.critic = nn.Sequential(nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 1024), nn.ReLU(), nn.Dropout(0.2),
                                    nn.Linear(1024, 64), nn.ReLU(), nn.Linear(64, 1)).to(data.device)
        self.x = torch.randn(data.shape[0], 784, device=data.device)
        self.data, self.adam, self.g1, self.g2, self.lr, self.gen_lr = data, adam, g1, g2, lr, gen_lr
        self.weight, self.steps = weight, steps

    def critic_step(self, opt, xq: torch.Tensor) -> None:
        """One Adam step on E_Q f - E_P f + lambda (E_Q |grad_x mean_Q f|^2 - 1)."""
        f_fake = self.critic(xq)
        (g,) = torch.autograd.grad(f_fake.mean(), xq, create_graph=True)  # the batch-mean penalty's gradient
        loss = f_fake.mean() - self.critic(self.data).mean() + self.weight * (g.pow(2).sum(-1).mean() - 1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def step(self) -> None:
        """One particle step: a fresh Adam, ``steps`` critic steps in train mode, the force in eval
        mode, the two-number kernel."""
        opt = torch.optim.Adam(self.critic.parameters(), lr=self.lr, weight_decay=1e-4, amsgrad=True, **self.adam)
        xq = self.x.detach().requires_grad_(True)
        self.critic.train()
        for _ in range(self.steps):
            self.critic_step(opt, xq)
        self.critic.eval()
        (force,) = torch.autograd.grad(self.critic(xq).sum(), xq)
        self.x = self.x + self.gen_lr * ((self.g1 - self.g2) * force + self.g2 * force.sum(0, keepdim=True))


# ----------------------------------------------------------------------------- the machine
def gemm_shapes(rows: int) -> list[tuple[int, int, int]]:
    """(m, k, n) of the critic's products for ``rows`` points: forward, backward, weight gradient."""
    return [(rows, 784, 64), (rows, 64, 1024), (rows, 1024, 64),  # forward (and the penalty's tangent)
            (rows, 64, 784),  # grad_x at the input layer
            (784, rows, 64), (64, rows, 1024), (1024, rows, 64)]  # weight gradients


def sync() -> None:
    """Wait for the device's queued work (a no-op on the CPU)."""
    if DEVICE.type == "cuda":
        torch.cuda.synchronize(DEVICE)


def rate(m: int, k: int, n: int, dtype=torch.float32, seconds: float = 0.25) -> float:
    """GFLOP/s of torch.mm (m x k) @ (k x n), best of a few timed batches."""
    a, b = torch.randn(m, k, device=DEVICE).to(dtype), torch.randn(k, n, device=DEVICE).to(dtype)
    reps = max(1, int((2e7 if DEVICE.type == "cpu" else 2e10) / (m * k * n)))
    best, t_end = float("inf"), time.perf_counter() + seconds
    torch.mm(a, b)
    sync()
    while time.perf_counter() < t_end or best == float("inf"):
        t0 = time.perf_counter()
        for _ in range(reps):
            torch.mm(a, b)
        sync()
        best = min(best, (time.perf_counter() - t0) / reps)
    return 2 * m * k * n / best / 1e9


def minimum_flops(dims: list[int], m: int, n: int, steps: int = 20) -> int:
    """The fewest FLOPs one particle step's matrix products can take (the layer-by-layer closed
    form, gandy.core.closed_form), for an MLP critic of ``dims`` (input, hidden..., 1), ``m`` data
    and ``n`` penalised particles per critic step, ``steps`` critic steps and the force. With W the
    hidden weights (all layers but the last) and W_0 the input layer's, per critic step
    (m + n) W (forward) + (m + n) (W - W_0) (backward) + n W_0 (grad_x) + n W (the penalty's tangent)
    + (m + n) W (dL/dW) multiply-adds; the force adds n (2 W) (forward and backward)."""
    w = sum(a * b for a, b in zip(dims[:-2], dims[1:-1]))
    w0 = dims[0] * dims[1]
    critic = (m + n) * w + (m + n) * (w - w0) + n * w0 + n * w + (m + n) * w
    return 2 * (steps * critic + 2 * n * w)


def count_flops(fn) -> int:
    """Floating-point operations of one call of ``fn`` (matrix products; torch's counter)."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


# ----------------------------------------------------------------------------- gandy
def gandy_case(engine: str, members: int, matmul: str = "float32"):
    """(label, sim, state) for ``members`` members under ``engine`` (with ``matmul``'s products) as
    simulate runs them (the eager engine pads a lone member to two), past the first (start-up)
    particle step."""
    cfg = gandy.load_config(str(CONFIG), ["sweep=null", f"engine={engine}", f"device={DEVICE.type}", f"matmul={matmul}"])
    sim = build(cfg, members=members)
    picked = choose_engine(sim, members, single=members == 1)
    if engine == "auto" and picked != "eager":
        sim = dataclasses.replace(sim, engine=ENGINES[picked](sim))
    label = (f"auto -> {picked}" if engine == "auto" else engine) + (", bf16 products" if matmul == "bfloat16" else "")
    seeds = list(range(members)) if members > 1 or sim.engine is not None else [0, 1]
    st = start(sim, seeds)
    st.t = 1  # steady state: 20 critic steps
    return label, sim, st


def step_flops(sim, st) -> int:
    """FLOPs of one particle step of the batch ``st`` (all its members) as ``sim``'s engine does the
    arithmetic, counted on an eager twin: the closed form where the engine is or compiles it,
    autograd (the eager engine; torch.func's vmap(grad) does the same products) otherwise."""
    compiled_closed = sim.engine is not None and "critic_grads" in vars(sim.engine)
    twin_engine = closed_form.ClosedForm(sim) if sim.engine is not None and (
        sim.engine.name == "closed_form" or compiled_closed) else None
    twin = dataclasses.replace(sim, engine=twin_engine)
    tst = start(twin, list(range(st.x.shape[0])))
    tst.t = 1
    return count_flops(lambda: advance(twin, tst))


def timed(fn, steps: int) -> float:
    """Seconds per call of ``fn``, over ``steps`` calls."""
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        fn()
    sync()
    return (time.perf_counter() - t0) / steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--steps", type=int, default=3, help="particle steps per timing")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--members", type=int, nargs="+", default=[4, 8])
    ap.add_argument("--engines", nargs="+", default=["auto", "compiled", "closed_form", "eager"],
                    help="engines of the lone member")
    ap.add_argument("--member-engines", nargs="+", default=["auto"], help="engines of the --members batches")
    ap.add_argument("--matmul", nargs="+", default=["float32", "bfloat16"],
                    help="gandy's products (matmul: bfloat16 only where the closed form runs: engines auto, "
                         "closed_form, compiled)")
    ap.add_argument("--quick", action="store_true", help="one thread count, engines auto and eager, 2 rounds")
    ap.add_argument("--device", default="cpu", help="cpu or cuda: where the peer, gandy and the GEMMs run")
    args = ap.parse_args()
    global DEVICE
    DEVICE = torch.device(args.device)
    if args.quick:
        args.threads, args.engines, args.rounds = args.threads[:1], ["auto", "eager"], 2
    where = torch.cuda.get_device_name(DEVICE) if DEVICE.type == "cuda" else torch.backends.cpu.get_cpu_capability()
    print(f"# benchmarks/mnist_step.py, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, torch {torch.__version__}, "
          f"{platform.processor() or platform.machine()}, {where}")
    data = build(gandy.load_config(str(CONFIG), ["sweep=null", "engine=eager"])).target.data.to(DEVICE)
    for threads in args.threads:
        torch.set_num_threads(threads)
        print(f"\n## {torch.get_num_threads()} thread(s); ms per particle step (member-step), "
              f"best [median] of {args.rounds} rounds x {args.steps} steps, interleaved")
        cases = {"peer (Adam foreach)": (Peer(data, {}), 1), "peer (Adam fused)": (Peer(data, {"fused": True}), 1)}
        matmuls = {e: ["float32", *(["bfloat16"] if "bfloat16" in args.matmul and e != "eager" else [])]
                   for e in {*args.engines, *args.member_engines}}  # eager computes in float32 only
        for engine in args.engines:
            for matmul in matmuls[engine]:
                label, sim, st = gandy_case(engine, 1, matmul)
                cases[f"gandy 1 member, {label}"] = ((sim, st), 1)
        for b in args.members:
            for engine in args.member_engines:
                for matmul in matmuls[engine]:
                    label, sim, st = gandy_case(engine, b, matmul)
                    cases[f"gandy {b} members, {label}"] = ((sim, st), b)

        def run(case):
            obj, _ = case
            return obj.step if isinstance(obj, Peer) else (lambda: advance(*obj))

        for name, case in cases.items():  # warm-up: compiles here
            t0 = time.perf_counter()
            run(case)()
            sync()
            print(f"#   warm-up {name}: {time.perf_counter() - t0:.1f} s")
        times = {name: [] for name in cases}
        for _ in range(args.rounds):
            for name, case in cases.items():
                times[name].append(timed(run(case), args.steps) * 1e3 / case[1])
        best = {name: min(t) for name, t in times.items()}
        peer = min(v for k, v in best.items() if k.startswith("peer"))
        for name, t in times.items():
            print(f"{name:52s} {best[name]:8.1f} [{statistics.median(t):7.1f}]   {peer / best[name]:5.2f}x the peer   "
                  f"{best[name] * PER_1000:6.0f} s per 1,000 steps")

        # the machine: GEMM rates at the critic's shapes and the achieved rates
        peer_case = cases["peer (Adam foreach)"][0]
        xq = peer_case.x.detach().requires_grad_(True)
        opt = torch.optim.Adam(peer_case.critic.parameters(), lr=1e-3, weight_decay=1e-4, amsgrad=True)
        # (a non-leaf input: the counter's module hooks refuse autograd.grad w.r.t. a leaf)
        peer_flops = count_flops(lambda: peer_case.critic_step(opt, xq.clone()))
        gandy_flops = {name: step_flops(*case[0]) / case[1] for name, case in cases.items() if name.startswith("gandy")}
        shapes = sorted(set(gemm_shapes(100) + gemm_shapes(200)))
        rates = {s: rate(*s) for s in shapes}
        square = rate(*(3 * [2048 if DEVICE.type == "cpu" else 8192]), seconds=1.0)
        print(f"float32 GEMM (torch.mm) GFLOP/s: square {square:.1f}; at the critic's shapes (m x k x n): "
              + ", ".join(f"{m}x{k}x{n} {r:.1f}" for (m, k, n), r in rates.items()))
        shape_peak = max(rates.values())
        least = minimum_flops([784, 64, 1024, 64, 1], 100, 100)  # = the closed form's count (flop_counter)
        floor = least / shape_peak / 1e6
        print(f"the floor: {least / 1e9:.2f} GFLOP per member-step at the least (the closed form's count) / "
              f"{shape_peak:.1f} GFLOP/s = {floor:.1f} ms; each case's time as a multiple of it, and its useful rate "
              "(that least count / its time) as a fraction of the GEMM rates:")
        for name, t in best.items():
            flops = 20 * peer_flops if name.startswith("peer") else gandy_flops[name]
            achieved, useful = flops / (t / 1e3) / 1e9, least / (t / 1e3) / 1e9
            print(f"  {name:52s} {t / floor:5.2f}x the floor; useful {useful:5.1f} GFLOP/s = {useful / shape_peak:4.0%} "
                  f"of the best critic-shape rate, {useful / square:4.0%} of the square; its own FLOPs "
                  f"({flops / 1e9:.2f} G) at {achieved:5.1f} GFLOP/s = {achieved / shape_peak:4.0%}")

        # bf16 autocast: the peer's critic step, interleaved with float32
        xq = peer_case.x.detach().requires_grad_(True)
        peer_case.critic.train()

        def bf16_step():
            with torch.autocast(DEVICE.type, dtype=torch.bfloat16):
                peer_case.critic_step(opt, xq)

        bf16_step()
        fp, bf = [], []
        for _ in range(args.rounds):
            fp.append(timed(lambda: peer_case.critic_step(opt, xq), 10))
            bf.append(timed(bf16_step, 10))
        bf_rates = {s: rate(*s, dtype=torch.bfloat16) for s in gemm_shapes(200)[:3]}
        print(f"bf16 autocast, the peer's critic step: float32 {min(fp) * 1e3:.2f} ms, bf16 {min(bf) * 1e3:.2f} ms "
              f"({min(bf) / min(fp):.2f}x the time); bf16 GEMM GFLOP/s: "
              + ", ".join(f"{m}x{k}x{n} {r:.1f} (float32 {rates[(m, k, n)]:.1f})" for (m, k, n), r in bf_rates.items()))


if __name__ == "__main__":
    main()
