"""``gandy demo``: the mode-collapse mechanism in one picture.

The built-in config (``configs/demo.yaml``) runs at a small and a large g2/g1. At small g2/g1 the
relative modes of the kernel (eigenvalue g1 - g2) are as fast as the centre of mass and the
particles split over both modes; near g2/g1 = 1 the centre-of-mass eigenvalue g1 + (N-1) g2
dominates, the cloud moves as one body and collapses onto (and oscillates between) the modes.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Callable

import yaml

RATIOS = {"small_ratio": 0.01, "large_ratio": 0.9}


def demo_config() -> dict:
    return yaml.safe_load(resources.files("gandy").joinpath("configs/demo.yaml").read_text())


def run_demo(out: Path, progress: bool = True, echo: Callable[[str], None] = print) -> list[Path]:
    from .api import run
    from .plots import plot_demo

    out = Path(out)
    base = demo_config()
    dirs = []
    for name, ratio in RATIOS.items():
        res = run(base, out=out / name, overrides=[f"kernel.g2={ratio}"], progress=progress, force=True)
        phases = ", ".join(res.results.phase)
        echo(f"g2/g1 = {ratio}: {phases}  ({res.summary['wall_seconds']:.1f} s)")
        dirs.append(out / name)
    return [plot_demo(dirs, out / "demo.png")] + [p for d in dirs for p in sorted((d / "figures").glob("*.png"))]
