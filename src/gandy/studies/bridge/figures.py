"""Figures of the bridge study, drawn from its output files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from gandy.views.plots import plt, save_figure


def plot_bridge(table: pd.DataFrame, summary: pd.DataFrame, path: Path) -> Path:
    """Bridge experiment: discrepancy to the network over time per width (one panel per particle
    side, first step size), and final discrepancy against width for every side and step size."""
    etas = sorted(table.eta.unique())
    widths = sorted(table.width.unique())
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), layout="constrained")
    colors = plt.cm.viridis(np.linspace(0, 0.85, len(widths)))
    t0 = table[table.eta == etas[0]]
    for ax, side in zip(axes[:2], ("empirical_ntk", "two_number")):
        for w, c in zip(widths, colors):
            m = t0[(t0.side == side) & (t0.width == w) & (t0.step > 0)].groupby("step").discrepancy.mean()
            ax.plot(m.index, m.to_numpy(), color=c, label=f"width {w}")
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel("mean |X_i - G(z_i)| (mean over seeds)")
        ax.set_title(f"{side} particles vs the network (eta = {etas[0]:g})", fontsize=10)
        ax.legend(fontsize=8)
    ax = axes[2]
    for side, marker in (("empirical_ntk", "o"), ("two_number", "s")):
        for eta, ls in zip(etas, ("-", "--", ":", "-.")):
            s = summary[(summary.side == side) & (summary.eta == eta)].sort_values("width")
            ax.plot(s.width, s.final_discrepancy, marker=marker, ls=ls, label=f"{side}, eta {eta:g}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("generator width")
    ax.set_ylabel("final discrepancy (mean over seeds)")
    ax.set_title("discrepancy at the last step against width", fontsize=10)
    ax.legend(fontsize=8)
    return save_figure(fig, path)
