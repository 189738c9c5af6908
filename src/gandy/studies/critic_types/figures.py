"""Figures of the critic-types study, drawn from its output files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from gandy.runs.store import read_json, read_parquet
from gandy.views.plots import draw_phase_labels, is_log_axis, mpl, phase_grid, phase_handles, plt, save_figure


def plot_boundaries(table: pd.DataFrame, path: Path, x: str, y: str) -> Path:
    """The collapse boundary of every critic type, overlaid: the smallest g2/g1 at which half the
    seeds collapsed or ran away (x) against the critic learning rate (y), one panel per target;
    a learning rate at which no g2/g1 collapsed is drawn as an open marker at the grid's edge."""
    targets = list(dict.fromkeys(table.target))
    critic_names = list(dict.fromkeys(table.critic))
    colours = plt.get_cmap("tab10")(np.arange(len(critic_names)) % 10)
    styles = ["-", "--", "-.", ":"]
    markers = "osD^v<>"
    fig, axes = plt.subplots(1, len(targets), figsize=(5.5 * len(targets) + 1.6, 4.4), layout="constrained", squeeze=False)
    edge = np.nanmax(table.g2_critical.to_numpy(dtype=float)) * 1.5 if table.g2_critical.notna().any() else 1.0
    for ax, t in zip(axes[0], targets):
        for k, (name, c) in enumerate(zip(critic_names, colours)):
            b = table[(table.target == t) & (table.critic == name)].sort_values(y)
            g = b.g2_critical.to_numpy(dtype=float)
            m = markers[k % len(markers)]
            ax.plot(np.where(np.isnan(g), edge, g), b[y], color=c, lw=1.3, ls=styles[k % len(styles)], label=name)
            ax.plot(g[~np.isnan(g)], b[y].to_numpy()[~np.isnan(g)], m, color=c, ms=6 - 0.5 * k)
            ax.plot(np.full(np.isnan(g).sum(), edge), b[y].to_numpy()[np.isnan(g)], m, mfc="none", color=c, ms=7)
        ax.set_xscale("log")
        ax.set_yscale("log")
        lo, hi = ax.get_xlim()
        ticks = [v for v in (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0) if lo <= v <= hi]
        ax.set_xticks(ticks, [f"{v:g}" for v in ticks])
        ax.xaxis.set_minor_formatter(mpl.ticker.NullFormatter())
        ax.set_xlabel("critical g2/g1 (half the seeds collapsed or ran away)")
        ax.set_ylabel("critic learning rate")
        ax.set_title(f"{t} (open: none collapsed)", fontsize=10)
    axes[0, -1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return save_figure(fig, path)


def plot_phase_maps(dirs: dict, path: Path, x: str, y: str) -> Path:
    """Every (target, critic) diagram's most common phase, rows targets, columns critics."""
    targets = list(dict.fromkeys(t for t, _ in dirs))
    critic_names = list(dict.fromkeys(c for _, c in dirs))
    fig, axes = plt.subplots(len(targets), len(critic_names), figsize=(3.3 * len(critic_names) + 1.8, 3.0 * len(targets)),
                             layout="constrained", squeeze=False)
    present: set = set()
    for i, t in enumerate(targets):
        for j, c in enumerate(critic_names):
            run_dir = Path(dirs[(t, c)])
            res = read_parquet(run_dir / "results.parquet")
            summary = read_json(run_dir / "summary.json")
            grid = phase_grid(res, x, y, "coverage_kl")
            present |= draw_phase_labels(axes[i, j], grid, is_log_axis(summary, x, grid["xs"]),
                                         is_log_axis(summary, y, grid["ys"]), legend=False)
            axes[i, j].set_title(f"{t}: {c}", fontsize=8)
            axes[i, j].set_xlabel("g2/g1", fontsize=8)
            axes[i, j].set_ylabel("critic lr", fontsize=8)
    fig.legend(handles=phase_handles(present), loc="outside right upper", fontsize=8, frameon=False)
    return save_figure(fig, path)
