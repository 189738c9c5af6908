"""The up-front memory estimate (gandy.runs.budget) against the measured peak of real runs.

Each case runs in a fresh interpreter (Linux): the resident set after ``build`` is the baseline
(the peak is reset there through /proc/self/clear_refs), the peak resident set (VmHWM) after
``simulate`` minus that baseline is the measured working memory,
and ``sum(memory_parts(sim, members))`` is gandy's estimate made before the run. A run is refused
up front when the estimate exceeds the available memory, so the estimate must bound the
measurement from above without refusing runs that would fit (ratio estimate / measured a few x).

    python benchmarks/memory_estimate.py            # 1 torch thread
"""

from __future__ import annotations

import json
import subprocess
import sys

CASES = {
    "1-D, 64 members x 512 particles, MLP [256, 256]": ["particles.n=512", "critic.widths=[256, 256]", "steps=10",
                                                        "log_every=5", "seeds=" + str(list(range(64)))],
    "1-D, 256 members x 64 particles, MLP [128] (collapse-1d chunk)": ["particles.n=64", "critic.widths=[128]", "steps=10",
                                                                       "log_every=5", "seeds=" + str(list(range(256)))],
    "784-D MNIST-100, 8 members x 100 particles, MLP [512] (mnist-collapse)": [
        "target={name: mnist, n: 100, order: interleaved, pixels: standardized}",
        "particles.init={name: gaussian, std: 0.1}", "particles.n=100", "critic.widths=[512]", "steps=5",
        "log_every=5", "seeds=" + str(list(range(8)))],
    "GAN lab, ring8 MLP generator, 16 members, divergences tracked": [
        "target={name: ring8}", "generator={name: mlp}", "objective=ns", "penalty=none", "particles.n=256",
        "particles.init={name: gaussian, mean: [0, 0], std: 0.1}", "optim.generator={name: adam, lr: 0.0002}",
        "steps=10", "log_every=5", "seeds=" + str(list(range(16)))],
    "DCGAN on MNIST, 4 members, batch 64 (robustness)": [
        "target={name: mnist, split: train}", "generator={name: dcgan}", "critic={name: dcgan}", "objective=ns",
        "penalty=none", "particles.n=64", "batch_size=64", "optim.generator={name: adam, lr: 0.0002}",
        "metrics.images.enabled=false", "steps=5", "log_every=5", "seeds=[0, 1, 2, 3]"],
}

PROBE = """
import json, sys, torch
torch.set_num_threads(1)
from gandy.runs.config import load_config
from gandy.runs.build import build
from gandy.runs.loop import simulate
from gandy.runs.budget import memory_parts


def status(key):
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) * 1024 for line in fh if line.startswith(key))


cfg = load_config(None, json.loads(sys.argv[1]))
sim = build(cfg)
with open("/proc/self/clear_refs", "w") as fh:
    fh.write("5")  # reset the peak (VmHWM) to the current resident set
base = status("VmRSS:")
simulate(sim, cfg.seeds)
print(json.dumps({"measured": status("VmHWM:") - base, "estimate": int(sum(memory_parts(sim, len(cfg.seeds)).values()))}))
"""


def measure(overrides: list[str]) -> dict:
    """``{"measured": bytes, "estimate": bytes}`` for one config, in a fresh interpreter."""
    r = subprocess.run([sys.executable, "-c", PROBE, json.dumps(overrides)], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(r.stderr.strip().splitlines()[-1])
    return json.loads(r.stdout)


def main() -> None:
    print("torch threads: 1 (each case in a fresh interpreter)")
    print(f"{'case':75s} {'measured MB':>12s} {'estimate MB':>12s} {'ratio':>6s}")
    for name, overrides in CASES.items():
        d = measure(overrides)
        print(f"{name:75s} {d['measured'] / 1e6:12.1f} {d['estimate'] / 1e6:12.1f} {d['estimate'] / max(d['measured'], 1):6.2f}")


if __name__ == "__main__":
    main()
