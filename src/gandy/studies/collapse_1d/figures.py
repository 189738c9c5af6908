"""Figures of the collapse-1d study, drawn from its output files."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from gandy.runs.store import read_json, read_parquet
from gandy.views.plots import (
    LABELS,
    draw_boundary_interval,
    draw_phase,
    draw_phase_labels,
    is_log_axis,
    phase_grid,
    phase_handles,
    plt,
    save_figure,
)


def plot_collapse_pair(run_dirs: list[Path], names: list[str], path: Path, x: str, y: str,
                       color: str = "coverage_kl", boundaries: Optional[list[pd.DataFrame]] = None) -> Path:
    """Phase diagrams of several sweeps side by side: the seed mean of ``color`` on one shared colour
    scale (top) and the fraction of seeds in each phase per cell (bottom, stripes), each with the
    grid's boundary where half the seeds collapsed or ran away (dashed) and, given ``boundaries``
    (one table per sweep: ``y``, ``x50``, ``lo``, ``hi``), the fitted x50 with its interval."""
    n = len(run_dirs)
    fig, axes = plt.subplots(2, n, figsize=(5.4 * n + 1.2, 8.2), layout="constrained", squeeze=False)
    mesh, present = None, set()
    for k, (run_dir, name) in enumerate(zip(map(Path, run_dirs), names)):
        res = read_parquet(run_dir / "results.parquet")
        summary = read_json(run_dir / "summary.json")
        grid = phase_grid(res, x, y, color)
        xlog, ylog = is_log_axis(summary, x, grid["xs"]), is_log_axis(summary, y, grid["ys"])
        mesh = draw_phase(axes[0, k], grid, xlog, ylog, color)
        mesh.set_clim(0, np.log(2) if color == "coverage_kl" else None)
        axes[0, k].set_title(f"{name} critic (dashed: half the seeds collapsed or ran away)", fontsize=10)
        present |= draw_phase_labels(axes[1, k], grid, xlog, ylog, legend=False)
        if boundaries is not None:
            draw_boundary_interval(axes[1, k], boundaries[k], y)
        axes[1, k].set_title(f"{name} critic: phases of {grid['seeds']} seeds per cell; x50 with 95 % interval", fontsize=10)
        for ax in axes[:, k]:
            ax.set_xlabel(f"{x} (g1 = 1, so g2/g1)")
            ax.set_ylabel(y)
    fig.colorbar(mesh, ax=axes[0, -1], label=LABELS.get(color, color) + ", mean over seeds")
    handles, _ = axes[1, -1].get_legend_handles_labels()
    axes[1, -1].legend(handles=phase_handles(present) + handles, fontsize=7, loc="upper left",
                       bbox_to_anchor=(1.01, 1.0), borderaxespad=0, frameon=False)
    return save_figure(fig, path)
