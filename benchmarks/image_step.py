"""Image GAN speed and memory.

1. Training images per second of the DCGAN generator and critic (width 64, batch 64, ns with the
   gan_gp penalty and without) on MNIST and Color MNIST, B members batched by grouped convolutions
   against the same members run one after another (B = 1 each), and against what a sweep's chunk
   of one member runs: the member padded to two (``gandy.runs.loop.simulate`` pads a lone member of
   a sweep so that its numbers are bit for bit those it gets beside others; the twin's images are
   not counted).
2. Peak resident memory of computing every image metric (fid, kid, score, modes_covered, ms_ssim,
   w_critic) on 10,000 generated Color MNIST images (goal <= 2 GB), measured in a fresh process.

    python benchmarks/image_step.py [--steps 20] [--members 4] [--device cpu|cuda] [--skip-memory]
                                    [--threads N] [--study]

``--study``: the robustness study's nets instead (width 32, batch-norm generator, layer-norm
critic, 3 critic steps a step, gan_gp at lambda 10), which is what the planner's ``cpu_chunk`` of
the DCGAN critic is measured on (2 members a chunk on a CPU since 2026-12-05: a chunk of one is
padded to two, so it pays two members' arithmetic for one).
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import time

import torch

import gandy
from gandy.core.step import advance, start
from gandy.runs.build import build
from gandy.runs.members import member_values

STUDY = ["generator={name: dcgan, latent_dim: 64, width: 32, norm: batch}", "critic={name: dcgan, width: 32, norm: layer}",
         "optim.critic={name: adam, lr: 0.0002, betas: [0.5, 0.999], steps: 3}"]
BASE = ["generator={name: dcgan, latent_dim: 64, width: 64}", "critic={name: dcgan, width: 64}",
        "optim.critic={name: adam, lr: 0.0002, betas: [0.5, 0.999]}",
        "optim.generator={name: adam, lr: 0.0002, betas: [0.5, 0.999]}", "batch_size=64", "particles.n=64"]

MEMORY_SNIPPET = """
import resource, numpy as np, torch
from gandy.core.images.classifier import load_classifier
from gandy.core.images.data import color_mnist
from gandy.core.images.evaluate import Extractor, evaluate_images
torch.set_num_threads(1)
clf = load_classifier()
fake = color_mnist(np.arange(10_000), "train", seed=5)[0]
real = color_mnist(np.arange(10_000), "test")[0]
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
out = evaluate_images(fake, real, Extractor(clf, 3), "test", 0)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(f"{before / 1e6:.3f} {peak / 1e6:.3f} " + " ".join(f"{k}={v['value']:.4g}" for k, v in out.items()))
"""


def images_per_second(over: list[str], steps: int, members: int, device: str, batched: bool, padded: bool = False) -> float:
    """Training images per second of ``members`` members: one batch of all (``batched``), or one
    after another, each alone or (``padded``) beside a twin as a sweep's chunk of one runs it."""
    sim = build(gandy.load_config(None, BASE + over + [f"device={device}"]))  # later overrides win
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    groups = [list(range(members))] if batched else [[i] for i in range(members)]
    if padded:
        states = [start(sim, [g[0], g[0] + 1], member_values([sim.cfg], sim.device).pad(2)) for g in groups]
    else:
        states = [start(sim, g, member_values([sim.cfg] * len(g), sim.device)) for g in groups]
    for st in states:
        advance(sim, st)  # warm-up
    sync()
    t0 = time.perf_counter()
    for st in states:
        for _ in range(steps):
            advance(sim, st)
    sync()
    wall = time.perf_counter() - t0
    return members * steps * sim.critic_batch / wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--members", type=int, default=4)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--study", action="store_true", help="the robustness study's nets (see the docstring)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"# torch {torch.__version__}, {platform.machine()}, {torch.get_num_threads()} threads, device {args.device}")
    print(f"{'target':>12} {'game':>8} {'batched img/s':>14} {'one by one img/s':>17} {'ratio':>6} "
          f"{'padded one by one (a sweep chunk of 1) img/s':>45} {'batched / padded':>17}")
    for target in ("mnist", "color_mnist"):
        for game in ("ns", "gan_gp"):
            over = [f"target={{name: {target}}}", f"objective={game}"]
            if args.study:
                over = STUDY + over + (["penalty.weight=10"] if game == "gan_gp" else [])
            batched = images_per_second(over, args.steps, args.members, args.device, True)
            single = images_per_second(over, args.steps, args.members, args.device, False)
            padded = images_per_second(over, args.steps, args.members, args.device, False, padded=True)
            print(f"{target:>12} {game:>8} {batched:>14.0f} {single:>17.0f} {batched / single:>6.2f} "
                  f"{padded:>45.0f} {batched / padded:>17.2f}")
    if not args.skip_memory:
        out = subprocess.run([sys.executable, "-c", MEMORY_SNIPPET], capture_output=True, text=True, check=True)
        before, peak, *vals = out.stdout.split()
        print(f"all metrics on 10,000 Color MNIST images (fresh process): peak resident {float(peak):.2f} GB "
              f"(after loading the images {float(before):.2f} GB; goal <= 2 GB); {' '.join(vals)}")


if __name__ == "__main__":
    main()
