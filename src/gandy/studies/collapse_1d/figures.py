"""Figures of the collapse-1d study, drawn from its output files."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gandy.runs.store import read_json, read_parquet
from gandy.views.plots import LABELS, draw_phase, is_log_axis, phase_grid, plt, save_figure


def plot_collapse_pair(run_dirs: list[Path], names: list[str], path: Path, x: str, y: str,
                       color: str = "coverage_kl") -> Path:
    """Phase diagrams of several sweeps side by side, one shared colour scale."""
    fig, axes = plt.subplots(1, len(run_dirs), figsize=(5.4 * len(run_dirs), 4.3), layout="constrained", squeeze=False)
    mesh = None
    for ax, run_dir, name in zip(axes[0], map(Path, run_dirs), names):
        res = read_parquet(run_dir / "results.parquet")
        summary = read_json(run_dir / "summary.json")
        grid = phase_grid(res, x, y, color)
        mesh = draw_phase(ax, grid, is_log_axis(summary, x, grid["xs"]), is_log_axis(summary, y, grid["ys"]), color)
        mesh.set_clim(0, np.log(2) if color == "coverage_kl" else None)
        ax.set_title(f"{name} critic (dashed: half the seeds collapsed)", fontsize=10)
        ax.set_xlabel(f"{x} (g1 = 1, so g2/g1)")
        ax.set_ylabel(y)
    fig.colorbar(mesh, ax=axes[0, -1], label=LABELS.get(color, color) + ", mean over seeds")
    return save_figure(fig, path)
