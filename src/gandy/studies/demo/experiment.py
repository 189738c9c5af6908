"""``gandy demo``: the mode-collapse mechanism in one picture.

The built-in config (``config.yaml`` (beside this module)) runs at a small and a large g2/g1. At small g2/g1 the
relative modes of the kernel (eigenvalue g1 - g2) are as fast as the centre of mass and the
particles split over both modes; near g2/g1 = 1 the centre-of-mass eigenvalue g1 + (N-1) g2
dominates, the cloud moves as one body and collapses onto (and oscillates between) the modes.
Then a small version of the ``collapse-1d`` experiment (ReLU critic, 6 x 3 grid, 2 seeds) draws
the phase diagram as one batched sweep. ``OUT/report.html`` links the interactive page of each.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from gandy.runs.api import run
from gandy.runs.config import load_config
from gandy.runs.store import open_output
from gandy.runs.sweep import run_sweep
from gandy.studies.base import packaged
from gandy.studies.demo.figures import plot_demo
from gandy.views.plots import plot_run, plot_sweep
from gandy.views.report import write_report

RATIOS = {"small_ratio": 0.01, "large_ratio": 0.9}
PHASE_GRID = ["steps=3000", "seeds=[0, 1]", "critic.activation=relu",
              "sweep.kernel.g2={logspace: [0.003, 0.5], num: 6}", "sweep.optim.critic.lr={logspace: [0.0001, 0.01], num: 3}"]


def demo_config() -> dict:
    return packaged(__name__)


def phase_config() -> dict:
    """The phase diagram's config (``phase.yaml`` beside this module: collapse-1d's set-up), before
    ``PHASE_GRID``."""
    return packaged(__name__, "phase.yaml")


def run_demo(out: Path, progress: bool = True, echo: Callable[[str], None] = print) -> list[Path]:
    out = Path(out)
    base = demo_config()
    open_output(out, "demo", replace=True)  # a previous demo there is replaced; anything else is refused
    dirs = []
    for name, ratio in RATIOS.items():
        res = run(base, out=out / name, overrides=[f"kernel.g2={ratio}"], progress=progress, draw=plot_run)
        phases = ", ".join(res.results.phase)
        echo(f"g2/g1 = {ratio}: {phases}  ({res.summary['wall_seconds']:.1f} s)")
        dirs.append(out / name)
    res, _, summ = run_sweep(load_config(phase_config(), PHASE_GRID), out / "phase", progress=progress, draw=plot_sweep)
    echo(f"phase diagram: {len(res)} members, {summ['phase_counts']}  ({summ['wall_seconds_this_invocation']:.1f} s)")
    figs = [plot_demo(dirs, out / "demo.png"), out / "phase" / "figures" / "phase_coverage_kl.png"]
    page = write_report(out)  # one page for the two runs and the phase diagram, to explore in a browser
    return [page] + figs + [p for d in dirs for p in sorted((d / "figures").glob("*.png"))]
