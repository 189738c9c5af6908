"""Issue 27's numbers in one process: a single run against the hand-written loop (1-D and the lab,
at 1 and 2 threads), the 784-D step against the loop and the machine's GEMM rates (with the bf16
verdict), and the tracking overhead at log_every 10; then the verdicts, each against its goal.

It runs the three benchmarks that measure them, in this order and in this process, with their own
options, and reads the verdicts off what they printed:

    python benchmarks/issue27.py [--rounds 3] [--quick]

* ``benchmarks/single_run.py`` (``gandy.run`` of one config against the fastest idiomatic loop);
* ``benchmarks/mnist_step.py`` (the 784-D step, the GEMM rates at the critic's shapes, bf16);
* ``benchmarks/lab_step.py --no-games`` (the tracking overhead, in place and on the worker: its
  compute in a forked process, the default at 1 thread, or on the thread).

``--quick`` (a smoke test of minutes, not a measurement): one round, fewer steps, 1 thread.
The "before" of the 784-D step (the MNIST-100 member time and the fraction of the GEMM rate at
the start of the issue) is not re-measurable here (it was the code of that day); the script prints
the recorded numbers beside it (benchmarks/RESULTS.md).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import os
import re
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BEFORE = ("before the issue (RESULTS.md, 2026-12-04, 1 thread): one MNIST-100 member 287 s per 1,000 steps "
          "(the loop 249 s), 234 s per member in a sweep; useful rate ~20 % of the best critic-shape GEMM rate")


class Tee(io.TextIOBase):
    """Writes to the real stdout and keeps a copy."""

    def __init__(self, out):
        self.out, self.kept = out, io.StringIO()

    def write(self, s):
        self.out.write(s)
        self.out.flush()
        self.kept.write(s)
        return len(s)


def run_script(name: str, argv: list[str]) -> str:
    """``benchmarks/NAME.py``'s main() with ``argv``, in this process; returns what it printed."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", HERE / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    tee = Tee(sys.stdout)
    saved = sys.argv
    sys.argv = [f"{name}.py", *argv]
    print(f"\n#### {name}.py {' '.join(argv)}")
    t0 = time.perf_counter()
    try:
        with contextlib.redirect_stdout(tee):
            mod.main()
    finally:
        sys.argv = saved
    print(f"#### {name}.py: {time.perf_counter() - t0:.0f} s")
    return tee.kept.getvalue()


def verdicts(single: str, mnist: str, lab: str) -> list[str]:
    """The issue's goals, each with the measured number that decides it (from the printed tables)."""
    out = []
    for block in re.split(r"\n(?=\w+, \d+ steps, \d thread)", single):
        head = re.match(r"(\w+), (\d+) steps, (\d) thread", block)
        auto = re.search(r"gandy engine=auto\s+(\d+) us/step\s+([\d.]+)x", block)
        if head and auto:
            speed = float(auto.group(2))
            out.append(f"single run, {head.group(1)}, {head.group(3)} thread(s): {speed:.2f}x the loop "
                       f"(goal >= 1x: {'met' if speed >= 1 else 'NOT met'})")
    for block in re.split(r"\n(?=## \d thread)", mnist):
        head = re.match(r"## (\d) thread", block)
        float32 = r"(?:(?!bf16)[^\n])*?"  # a float32 case's line (matmul: bfloat16's say "bf16 products")
        lone = re.search(rf"gandy 1 member, auto{float32}([\d.]+)x the peer\s+(\d+) s per 1,000", block)
        sweep = re.findall(rf"gandy (\d+) members, auto{float32}([\d.]+)x the peer", block)
        frac = re.search(rf"gandy 1 member, auto{float32}useful\s+[\d.]+ GFLOP/s =\s+(\d+)%", block)
        low = dict(re.findall(r"gandy (\d+) members?, auto[^\n]*?bf16 products\s+([\d.]+) \[", block))
        full = dict(re.findall(rf"gandy (\d+) members?, auto{float32}\s+([\d.]+) \[", block))
        bf16 = re.search(r"bf16 autocast[^\n]*?float32 ([\d.]+) ms, bf16 ([\d.]+) ms", block)
        if not head:
            continue
        if lone:
            out.append(f"784-D step, {head.group(1)} thread(s), one member: {float(lone.group(1)):.2f}x the loop "
                       f"(goal >= 1x: {'met' if float(lone.group(1)) >= 1 else 'NOT met'}); "
                       f"{lone.group(2)} s per 1,000 steps")
        for b, s in sweep:
            out.append(f"784-D step, {head.group(1)} thread(s), {b}-member sweep: {float(s):.2f}x per member-step "
                       f"(goal >= 1.5x: {'met' if float(s) >= 1.5 else 'NOT met'})")
        if frac:
            out.append(f"784-D step, {head.group(1)} thread(s), one member: useful rate {frac.group(1)} % of the "
                       f"best critic-shape GEMM rate; {BEFORE}")
        if bf16:
            ratio = float(bf16.group(2)) / float(bf16.group(1))
            out.append(f"bf16 autocast, the loop's critic step, {head.group(1)} thread(s): {ratio:.2f}x float32's time")
        for b in sorted(set(low) & set(full), key=int):
            ratio = float(low[b]) / float(full[b])
            out.append(f"matmul: bfloat16, {head.group(1)} thread(s), {b} member(s): {ratio:.2f}x float32's time "
                       f"({'faster: the option pays on this machine' if ratio < 1 else 'slower: no bf16 units'}; "
                       "its accuracy at 5 calibration points: docs/bridge.md, 'bfloat16 products')")
    for block in re.split(r"\n(?=## \d thread)", lab):
        head = re.match(r"## (\d) thread.*?a run's default here: logs ([^\n]+)", block, re.S)
        for mode in ("in place", "worker process", "worker thread"):
            m = re.search(rf"every 10 steps, {mode}\s*: [\d.]+ s, overhead ([-\d.]+)%", block)
            if head and m:
                pct = float(m.group(1))
                out.append(f"tracking overhead at log_every 10, {head.group(1)} thread(s), {mode}"
                           f"{' (the default here)' if head.group(2).strip().endswith(mode) else ''}: {pct:.1f} % "
                           f"(goal <= 10 %: {'met' if pct <= 10 else 'NOT met'})")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="a smoke test: one round, fewer steps, 1 thread")
    a = ap.parse_args()
    r = str(1 if a.quick else a.rounds)
    threads = ["1"] if a.quick else ["1", "2"]
    print(f"# issue27.py, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.2f} at start")
    single = run_script("single_run", ["--rounds", r, "--threads", *threads]
                        + (["--steps", "200", "--lab-steps", "100"] if a.quick else []))
    mnist = run_script("mnist_step", ["--rounds", r, "--threads", *threads]
                       + (["--steps", "1", "--members", "2", "--engines", "auto"] if a.quick else []))
    lab = run_script("lab_step", ["--no-games", "--repeats", "2" if a.quick else "5", "--threads", *threads]
                     + (["--steps", "60"] if a.quick else []))
    print("\n# verdicts (issue 27's goals), load average now " f"{os.getloadavg()[0]:.2f}")
    for line in verdicts(single, mnist, lab):
        print(f"- {line}")


if __name__ == "__main__":
    main()
