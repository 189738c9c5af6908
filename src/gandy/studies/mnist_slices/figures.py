"""Figures of the mnist-slices study: order parameters along the slices (the sample panels are
:func:`gandy.views.plots.plot_final_samples`)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from gandy.core.metrics.phases import PHASES
from gandy.views.plots import PHASE_COLORS, phase_handles, plt, save_figure

ROWS = {"mean_abs_cos": ("mean |cos| between particles", False), "mean_norm": ("mean particle norm", True),
        "coverage_kl": ("coverage_kl (0 = every digit once)", False),
        "force_norm": ("mean |force| at the end (0 not drawn)", True)}


def plot_slices(table: pd.DataFrame, x: str, y: str, path: Path, reference: dict) -> Path:
    """Rows: the ``ROWS`` order parameters; columns: the g2 slice (against g2/g1, symlog so that 0
    shows) and the lr slice (against the critic lr, log); markers coloured by phase; the digits'
    own mean |cos| and norm dotted."""
    cols = [("g2-slice", x, "g2/g1 (critic lr 4.64e-4)"), ("lr-slice", y, "critic learning rate (g2/g1 = 0.0989)")]
    fig, axes = plt.subplots(len(ROWS), 2, figsize=(10, 2.3 * len(ROWS)), layout="constrained", sharex="col", squeeze=False)
    present = set()
    for c, (name, key, label) in enumerate(cols):
        t = table[table["slice"] == name].sort_values(key)
        for r, (col, (ylabel, log)) in enumerate(ROWS.items()):
            ax = axes[r, c]
            ax.plot(t[key], t[col], "-", color="0.7", lw=0.8, zorder=1)
            for ph, g in t.groupby("phase"):
                ax.scatter(g[key], g[col], color=PHASE_COLORS.get(ph, "k"), s=28, zorder=2)
                present.add(ph)
            if col in reference:
                ax.axhline(reference[col], color="k", lw=0.8, ls=":")
            if log:
                ax.set_yscale("log")
            if c == 0:
                ax.set_ylabel(ylabel, fontsize=8)
            if key == x:
                ax.set_xscale("symlog", linthresh=0.01)
            else:
                ax.set_xscale("log")
        axes[-1, c].set_xlabel(label)
        axes[0, c].set_title(name, fontsize=9)
    axes[0, 1].legend(handles=phase_handles({PHASES.index(p) for p in present}), fontsize=7, loc="best")
    fig.suptitle("MNIST-100, authors' conventions, 1,000 steps: final state along the paper's two slices "
                 "(dotted: the 100 digits' own value)", fontsize=9)
    return save_figure(fig, path)
