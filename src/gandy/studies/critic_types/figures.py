"""Figures of the critic-types study, drawn from its output files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from gandy.runs.store import read_json, read_parquet
from gandy.views.plots import draw_phase_labels, is_log_axis, mpl, phase_grid, phase_handles, plt, save_figure


def plot_boundaries(table: pd.DataFrame, path: Path, x: str, y: str) -> Path:
    """The collapse boundary of every critic type, overlaid: per critic learning rate (y), x50, the
    g2/g1 at which the logistic fit gives half the seeds collapsed or run away, with its 95 %
    interval as a horizontal bar (x), one panel per target; a learning rate without a crossing in
    the grid (no seed failed anywhere, or every one did) is an open marker at the grid's edge."""
    targets = list(dict.fromkeys(table.target))
    critic_names = list(dict.fromkeys(table.critic))
    colours = plt.get_cmap("tab10")(np.arange(len(critic_names)) % 10)
    styles = ["-", "--", "-.", ":"]
    markers = "osD^v<>"
    fig, axes = plt.subplots(1, len(targets), figsize=(5.5 * len(targets) + 1.6, 4.4), layout="constrained", squeeze=False)
    crossing = np.isfinite(table.x50.to_numpy(dtype=float))
    if "censored" in table:
        crossing &= table.censored.fillna("").to_numpy() == ""  # a fitted x50 outside the grid is no crossing
    edge = float(table.x50[crossing].max()) * 1.5 if crossing.any() else 1.0
    for ax, t in zip(axes[0], targets):
        for k, (name, c) in enumerate(zip(critic_names, colours)):
            b = table[(table.target == t) & (table.critic == name)].sort_values(y)
            g, yv = b.x50.to_numpy(dtype=float), b[y].to_numpy(dtype=float)
            ok = np.isfinite(g) & ((b.censored.fillna("").to_numpy() == "") if "censored" in b else True)
            lo = np.minimum(np.clip(b.lo.to_numpy(dtype=float), 1e-12, None), np.where(ok, g, np.inf))
            hi = np.maximum(np.minimum(np.nan_to_num(b.hi.to_numpy(dtype=float), nan=edge), edge), np.where(ok, g, 0))
            shift = 1.0 + 0.04 * (k - len(critic_names) / 2)  # critics' bars side by side, not on top of each other
            m = markers[k % len(markers)]
            ax.plot(np.where(ok, g, edge), yv * shift, color=c, lw=1.1, ls=styles[k % len(styles)], label=name)
            ax.errorbar(g[ok], yv[ok] * shift, xerr=[g[ok] - lo[ok], hi[ok] - g[ok]], fmt=m, color=c, ms=5, capsize=2, lw=1)
            ax.plot(np.full((~ok).sum(), edge), yv[~ok] * shift, m, mfc="none", color=c, ms=7)
        ax.set_xscale("log")
        ax.set_yscale("log")
        lo_x, hi_x = ax.get_xlim()
        ticks = [v for v in (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0) if lo_x <= v <= hi_x]
        ax.set_xticks(ticks, [f"{v:g}" for v in ticks])
        ax.xaxis.set_minor_formatter(mpl.ticker.NullFormatter())
        ax.set_xlabel("x50: g2/g1 where half the seeds collapse or run away (95 % interval)")
        ax.set_ylabel("critic learning rate")
        ax.set_title(f"{t} (open: no crossing in the grid)", fontsize=10)
    axes[0, -1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return save_figure(fig, path)


def plot_phase_maps(dirs: dict, path: Path, x: str, y: str) -> Path:
    """Every (target, critic) diagram's phase fractions per cell (stripes), rows targets, columns critics."""
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
