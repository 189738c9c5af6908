"""GAN lab speed: training steps per second of the 2-D MLP GAN (ring8, generator and critic MLPs
of width 128, batch 256, Adam, one seed) for each game, and the overhead of tracking the
divergences (w1, js, kl_pq, kl_qp, mmd, their standard errors and the order parameters) at
log_every 10 relative to logging at the first and last step only, at 1 and 2 threads, with where
a tracked log's time goes; then the exact W1 of the lab's logged samples by POT's network simplex
(what the logs use) beside scipy's linear_sum_assignment and a warm-started network simplex.

    python benchmarks/lab_step.py [--steps 1200] [--repeats 5] [--threads 1 2] [--every 10]
                                  [--no-games] [--device cpu|cuda] [--diagnose]

The worker measures its logs ``loop.LOG_BATCH`` to a pass (their members stacked), by default in a
forked process (``loop.LogProcess``) where divergences are tracked; the overhead is printed with
that, with the same passes computed on the worker thread itself (before the process) and with one
log a pass on the thread (before the batching), interleaved.

``--diagnose`` (1 thread, log_every 10, logs on the worker thread, one to a pass unless named)
separates what the worker's overhead can come from: the real log, one and 8 to a pass; a stand-in that sleeps as long as a window's share (no GIL,
no core); one that spins in Python as long (the GIL); one that makes a single GIL-free C call as
long (numpy's sort: a core, no GIL); one that makes small torch ops as long (each hands the GIL
back and forth with the run's thread); the real log in a worker *process* (no GIL shared); and the bare run beside a busy second core (a C loop, a numpy GEMM, a memory stream), i.e.
whether the hardware slows the step when the other core works. With the time of one log measured
alone against the 10 steps' window.

Every ratio is taken within this process with its two sides interleaved (bare, tracked, bare, ...),
best of ``--repeats``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import functools
import math
import multiprocessing
import platform
import subprocess
import sys
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from unittest import mock

import numpy as np
import torch

import gandy
from gandy.core.metrics import divergences
from gandy.core.metrics.order import order_parameters, w1_from_cost
from gandy.core.step import advance, points, start
from gandy.runs import loop, tracking
from gandy.runs.build import build
from gandy.runs.loop import simulate
from gandy.studies.many_paths.experiment import GAMES_RUN

BASE = ["target={name: ring8}", "generator={name: mlp, latent_dim: 2, widths: [128, 128]}",
        "critic={name: mlp, widths: [128, 128]}", "optim.generator={name: adam, lr: 0.0005}",
        "batch_size=256", "particles.n=256", "seeds=[0]"]


def _machine() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


class Parts:
    """Exclusive wall time per named part (a part's time excludes the parts called inside it)."""

    def __init__(self) -> None:
        self.time: dict = defaultdict(float)
        self.calls: dict = defaultdict(int)
        self._stack: list = []

    @contextlib.contextmanager
    def __call__(self, name: str):
        t0 = time.perf_counter()
        self._stack.append(0.0)
        try:
            yield
        finally:
            spent = time.perf_counter() - t0
            inner = self._stack.pop()
            self.time[name] += spent - inner
            self.calls[name] += 1
            if self._stack:
                self._stack[-1] += spent

    def wrap(self, name: str, fn):
        @functools.wraps(fn)
        def timed(*args, **kwargs):
            with self(name):
                return fn(*args, **kwargs)
        return timed

    def wrap_generator(self, name: str, fn):
        @functools.wraps(fn)
        def timed(*args, **kwargs):
            it = fn(*args, **kwargs)
            while True:
                with self(name):
                    try:
                        item = next(it)
                    except StopIteration:
                        return
                yield item
        return timed


# (module, attribute, part): the functions a tracked log calls, each timed as one part
PARTS = [
    (loop, "order_parameters", "order parameters (no W1: it comes from the pooled matrix)"),
    (loop, "tracked", "tracked(): per-member Python, conversions"),
    (tracking, "sample_divergences_batch", "sample_divergences_batch rest: MMD kernel, concatenations"),
    (divergences, "_pooled_blocks", "pooled distance matrix (cdist)"),
    (divergences, "_median_distance", "MMD bandwidth (pairwise distances, median)"),
    (divergences, "_nearest", "k-NN candidates (sorted keys)"),
    (divergences, "_kth_among", "jackknife halves: k-th member search"),
    (divergences, "_knn_values", "k-NN estimates (whole and 20 halves)"),
    (tracking, "density_kl_qp_batch", "KL(Q||P) with the density, rest"),
    (tracking, "_log_p", "target log-density"),
    (tracking, "w1_from_cost", "W1, exact (POT network simplex)"),
]


def _timed_run(sim) -> tuple[float, Parts]:
    """One ``simulate`` with every part of :data:`PARTS` timed: (wall seconds, parts)."""
    parts = Parts()
    with contextlib.ExitStack() as stack:
        for module, attr, name in PARTS:
            fn = getattr(module, attr)
            timed = parts.wrap_generator(name, fn) if attr == "_pooled_blocks" else parts.wrap(name, fn)
            stack.enter_context(mock.patch.object(module, attr, timed))
        t0 = time.perf_counter()
        simulate(sim, [0])
        return time.perf_counter() - t0, parts


def _default_mode(sim) -> str:
    """Where a tracked run measures its logs by default at this thread count: "in place", "worker
    thread" or "worker process" (loop.background_helps, loop.log_process_helps)."""
    if not loop.background_helps():
        return "in place"
    return "worker process" if loop.log_process_helps(sim, True) else "worker thread"


def overhead(args, threads: int) -> None:
    """The tracking overhead at each ``--every`` at ``threads`` threads, with its breakdown."""
    torch.set_num_threads(threads)
    runs = [("bare", args.steps), *((f"every {k}", k) for k in args.every)]
    # the baseline logs only at the first and last step, with tracking on: an untracked log is not
    # cheaper (it measures W1 against metrics.max_points = 1,024 reference points, a tracked one
    # against as many as were generated), so "no tracking" would not be a fair zero
    sims = {name: build(gandy.load_config(None, BASE + ["objective=ns", f"steps={args.steps}", f"log_every={every}",
                                                       "metrics.divergences=true", f"device={args.device}"]))
            for name, every in runs}
    # each log_every measured with the logs in place and on the worker thread (loop.Background;
    # what a run does by default: loop.background_helps)
    # (BACKGROUND_LOGS, LOG_BATCH, LOG_PROCESS); the worker's logs computed in a forked process
    # (loop.LogProcess, the default where divergences are tracked at 1 thread) or on the thread
    modes = {"in place": (False, loop.LOG_BATCH, False), "worker process": (True, loop.LOG_BATCH, True),
             "worker thread": (True, loop.LOG_BATCH, False),
             "worker, 1 log a pass": (True, 1, False)}  # the last: before the logs were batched (loop.LOG_BATCH)
    variants = [("bare", "in place"), *((name, mode) for name, _ in runs[1:] for mode in modes)]
    for sim in sims.values():  # warm-up: first-call costs (lazy imports, allocator) out of the timings
        simulate(sim, [0])
    times = {v: [] for v in variants}
    every = args.every[0]
    timed = (math.inf, None)  # the fastest run of log_every = every with its parts timed
    for _ in range(args.repeats):  # interleaved, so that a slow spell of a shared machine hits every variant
        for name, mode in variants:
            loop.BACKGROUND_LOGS, loop.LOG_BATCH, loop.LOG_PROCESS = modes[mode]
            t0 = time.perf_counter()
            simulate(sims[name], [0])
            times[name, mode].append(time.perf_counter() - t0)
        loop.BACKGROUND_LOGS, loop.LOG_BATCH, loop.LOG_PROCESS = modes["in place"]
        timed = min(timed, _timed_run(sims[f"every {every}"]), key=lambda r: r[0])
    loop.BACKGROUND_LOGS = loop.LOG_PROCESS = None
    bare = min(times["bare", "in place"])
    print(f"\n## {threads} thread(s): ns, {args.steps} steps, best of {args.repeats}: logged at the first and last "
          f"step only {bare:.3f} s ({1000 * bare / args.steps:.2f} ms per step); a run's default here: logs "
          f"{_default_mode(sims['bare'])}")
    for name, every in runs[1:]:
        for mode in modes:
            t = min(times[name, mode])
            logs = len(range(0, args.steps + 1, every)) + (args.steps % every != 0) - 2  # beyond the baseline's two
            print(f"  every column logged {name} steps, {mode:<20}: {t:.3f} s, overhead {100 * (t / bare - 1):.1f}% "
                  f"(goal <= 10%), {1000 * (t - bare) / logs:.1f} ms per extra log")
    wall, parts = timed
    logs = parts.calls["tracked(): per-member Python, conversions"]
    extra = (wall - bare) / (logs - 2)  # the timed run's extra time per log (timers included)
    step_budget = bare / args.steps * every  # one log's share of a bare run is measured against this
    print(f"  where one tracked log's time goes (log_every {every}, in place: the fastest of {args.repeats} runs with each "
          f"part timed, interleaved with the above, {logs} logs; % = share of {every} bare steps):")
    total = 0.0
    for _, _, name in PARTS:
        ms = 1000 * parts.time[name] / logs
        total += ms
        print(f"    {name:<58} {ms:7.2f} ms  {100 * ms / 1000 / step_budget:5.1f}%")
    rest = 1000 * extra - total
    print(f"    {'rest of the log (target sample, rows, timers), by difference':<58} {rest:7.2f} ms  "
          f"{100 * rest / 1000 / step_budget:5.1f}%")
    print(f"    {'total (extra time per log of the timed run)':<58} {1000 * extra:7.2f} ms  "
          f"{100 * extra / step_budget:5.1f}%")


def w1_solvers(args) -> None:
    """Exact W1 of the lab's logged samples (256 generated points against 256 fresh ring8 points,
    after 100 and 290 training steps) by POT's network simplex, scipy's linear_sum_assignment,
    and the network simplex warm-started from the previous log's potentials (the generated side's
    kept, the fresh target sample's by the c-transform): ms per solve, interleaved, best of
    ``--repeats``, and their largest relative difference."""
    from scipy.optimize import linear_sum_assignment

    from gandy.core.lazy import LazyModule

    ot = LazyModule("ot")
    torch.set_num_threads(1)
    sim = build(gandy.load_config(None, BASE + ["objective=ns", "metrics.divergences=true", f"device={args.device}"]))
    st = start(sim, [0, 1])

    def cost():
        y = sim.target.sample(st.streams["metrics"], 256)[0].double().cpu()
        x = st.x[0, :256].detach().double().cpu()
        return torch.cdist(y, x).numpy()  # as tracked(): target rows, generated columns

    print("\n## exact W1, 256 generated vs 256 target points (2-D, 1 thread), ms per solve:")
    for at in (100, 290):
        while st.t < at - 10:
            advance(sim, st)
        before = cost()
        for _ in range(10):
            advance(sim, st)
        now = cost()
        u = np.full(256, 1 / 256)
        _, log = ot.emd2(u, u, before, log=True)
        beta = log["v"]  # the generated points' potentials at the previous log
        alpha = (now - beta[None, :]).min(1)  # the fresh target sample's, by the c-transform
        solvers = {
            "POT network simplex (the logs')": lambda c=now: w1_from_cost(c),
            "scipy linear_sum_assignment": lambda c=now: float(c[linear_sum_assignment(c)].mean()),
            "POT warm-started (previous log)": lambda c=now: float(ot.emd2(u, u, c, numItermax=1_000_000,
                                                                            potentials_init=(alpha, beta))),
        }
        best, vals = {k: np.inf for k in solvers}, {}
        for _ in range(args.repeats):
            for name, fn in solvers.items():
                t0 = time.perf_counter()
                vals[name] = fn()
                best[name] = min(best[name], time.perf_counter() - t0)
        ref = vals["POT network simplex (the logs')"]
        spread = max(abs(v - ref) for v in vals.values()) / ref
        print(f"  step {at}: " + ", ".join(f"{k} {1000 * t:.2f}" for k, t in best.items())
              + f"; W1 {ref:.6f}, largest relative difference {spread:.1e}")


_ORIGINAL_TRACKED = loop.tracked  # diagnose() patches loop.tracked with stand-ins
_CHILD = {}  # the worker process's simulation (inherited by fork)


def _child_tracked(view, ref, b, vals):
    torch.set_num_threads(1)
    return _ORIGINAL_TRACKED(_CHILD["sim"], view, ref, b, vals)


def diagnose(args) -> None:
    """Where the worker thread's overhead comes from (see the module's docstring): 1 thread."""
    torch.set_num_threads(1)
    loop.LOG_PROCESS = False  # the worker thread's overhead (the "worker process" row forks its own)
    steps, every = args.steps, args.every[0]
    cfg = BASE + ["objective=ns", f"steps={steps}", "metrics.divergences=true", f"device={args.device}"]
    bare = build(gandy.load_config(None, cfg + [f"log_every={steps}"]))
    tr = build(gandy.load_config(None, cfg + [f"log_every={every}"]))
    # one log alone, against the window of `every` bare steps
    st = start(tr, [0, 1])
    for _ in range(50):
        advance(tr, st)
    ref, view, x = tr.target.sample(st.streams["metrics"], 256), tracking.seen(tr, st, 1), points(tr, st)[:1]

    def one():
        return _ORIGINAL_TRACKED(tr, view, ref, 1, order_parameters(x, tr.target, None, 1024, st.x0[:1]))

    for _ in range(3):
        one()
    log_s = min(_wall(one) for _ in range(15))
    _CHILD["sim"] = tr
    pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork"))
    pool.submit(_child_tracked, view, ref, 1, {"on_mode": [0.0]}).result()  # started and warm before the timings

    def sleep(*_):
        time.sleep(log_s)
        return {}, {}

    def spin(*_):
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < log_s:
            pass
        return {}, {}

    probe = np.random.default_rng(0).random((256, 512))
    per_row = min(_wall(lambda: np.sort(probe, 1)) for _ in range(5)) / 256
    gil_free = np.random.default_rng(0).random((max(1, round(log_s / per_row)), 512))
    small = [torch.rand(96, 96, dtype=torch.float64) for _ in range(2)]

    def one_c_call(*_):  # one GIL-free C call (numpy's sort) as long as the log
        np.sort(gil_free, 1)
        return {}, {}

    def small_ops(*_):  # as long in small torch ops, each releasing and retaking the GIL
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < log_s:
            small[0].add(small[1]).mul_(0.5).sum()
        return {}, {}

    def in_process(sim, view, ref, b, vals):
        return pool.submit(_child_tracked, view, ref, b, {k: v for k, v in vals.items() if k == "on_mode"}).result()

    busy = {"a C loop (yes)": ["yes"],
            "a numpy GEMM": [sys.executable, "-c", "import numpy as np\na = np.random.rand(500, 500)\nwhile True: a @ a"],
            "a memory stream": [sys.executable, "-c", "import numpy as np\na = np.random.rand(8_000_000)\nwhile True: a.sum()"]}
    one_thread = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    batch = loop.LOG_BATCH
    # (simulation, stand-in for the log or None, a busy process beside or None, logs to a pass: a
    # stand-in stands for one log)
    variants = {"bare": (bare, None, None, 1), "the real log": (tr, None, None, 1),
                f"the real log, {batch} to a pass": (tr, None, None, batch),
                f"a {1000 * log_s:.0f} ms sleep": (tr, sleep, None, 1), f"a {1000 * log_s:.0f} ms Python spin": (tr, spin, None, 1),
                "one GIL-free C call as long": (tr, one_c_call, None, 1), "small torch ops as long": (tr, small_ops, None, 1),
                "the real log in a worker process": (tr, in_process, None, 1),
                **{f"bare beside {k}": (bare, None, v, 1) for k, v in busy.items()}}
    simulate(bare, [0])
    times = defaultdict(list)
    for _ in range(args.repeats):
        for name, (sim, stand_in, other, per_pass) in variants.items():
            proc = subprocess.Popen(other, stdout=subprocess.DEVNULL, env=one_thread) if other else None
            if proc:
                time.sleep(0.3)
            loop.BACKGROUND_LOGS, loop.LOG_BATCH = True, per_pass
            with mock.patch.object(loop, "tracked", stand_in or _ORIGINAL_TRACKED):
                times[name].append(_wall(lambda: simulate(sim, [0])))
            if proc:
                proc.kill()
                proc.wait()
    loop.BACKGROUND_LOGS, loop.LOG_BATCH, loop.LOG_PROCESS = None, batch, None
    pool.shutdown()
    b = min(times["bare"])
    print(f"\n## diagnose, 1 thread, ns, {steps} steps, logs every {every} on the worker thread, best of {args.repeats}:")
    print(f"  one log alone: {1000 * log_s:.1f} ms; the window of {every} bare steps: {1000 * b / steps * every:.1f} ms")
    for name, t in times.items():
        print(f"  {name:<40} {min(t):.3f} s  {100 * (min(t) / b - 1):+6.1f}%")


def _wall(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=1200, help="steps per run (the end of a run waits for its last "
                    "batch of logs: a few hundred steps overstate what a run of thousands pays)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch intra-op threads, each in turn")
    ap.add_argument("--every", type=int, nargs="+", default=[10], help="log_every values to measure (the first "
                    "gets the breakdown)")
    ap.add_argument("--no-games", action="store_true", help="skip the steps/s of each game")
    ap.add_argument("--diagnose", action="store_true", help="only where the worker's overhead comes from (1 thread)")
    args = ap.parse_args()
    if args.diagnose:
        return diagnose(args)
    sync = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)
    print(f"# {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, torch {torch.__version__}, "
          f"{_machine()} ({platform.machine()}), device {args.device}")
    if not args.no_games:
        torch.set_num_threads(args.threads[0])
        print(f"\n## steps/s, {args.threads[0]} thread(s)\n{'game':>10} {'steps/s':>9}")
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
    for threads in args.threads:
        overhead(args, threads)
    if args.device == "cpu":
        w1_solvers(args)


if __name__ == "__main__":
    main()
