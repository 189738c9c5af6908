"""Figures of the mnist-collapse study, drawn from its output files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from gandy.views.plots import draw_phase, draw_phase_labels, mpl, phase_grid, plt, save_figure


def plot_mnist_collapse(results: pd.DataFrame, path: Path, x: str, y: str) -> Path:
    """The 784-D phase diagram: coverage_kl, mean |cos| and the phase over (g2/g1, critic lr); g2/g1
    = 0 is drawn one grid step left of the smallest positive value on the log axis and labelled 0
    (a decade tick closer to it than a factor 2 is left out, so the labels never overlap)."""
    xs = np.sort(results[x].unique())
    pos = xs[xs > 0]
    step = pos[1] / pos[0] if len(pos) > 1 else 10.0
    zero = pos[0] / step if len(pos) else 1.0
    shown = results.assign(**{x: results[x].where(results[x] > 0, zero)})
    fig, axes = plt.subplots(1, 3, figsize=(17, 4.4), layout="constrained")
    for ax, color, label in ((axes[0], "coverage_kl", "coverage_kl = KL(digit histogram || uniform)"),
                             (axes[1], "mean_abs_cos", "mean |cos| between particles"), (axes[2], "phase", None)):
        grid = phase_grid(shown, x, y, "coverage_kl" if color == "phase" else color)
        if color == "phase":
            draw_phase_labels(ax, grid, True, True)
            ax.set_title("phase (docs/phases.md); dashed: collapsed or ran away", fontsize=9)
        else:
            mesh = draw_phase(ax, grid, True, True, color)
            if color == "coverage_kl":
                mesh.set_clim(0, np.log(100))
            fig.colorbar(mesh, ax=ax, label=label)
            ax.set_title("dashed: collapsed or ran away; x: diverged", fontsize=9)
        ax.set_xlabel("g2/g1 (leftmost column: 0)" if (results[x] == 0).any() else "g2/g1")
        ax.set_ylabel("critic learning rate")
        if (results[x] == 0).any():
            decades = [v for v in (0.01, 0.1, 1.0) if pos.min() <= v <= pos.max() * 1.01 and v / zero >= 2]
            ax.set_xticks([zero, *decades], ["0", *[f"{v:g}" for v in decades]])
            ax.xaxis.set_minor_formatter(mpl.ticker.NullFormatter())
    fig.suptitle("100 particles in 784-D against 100 MNIST digits (coverage by nearest digit, cosine)", fontsize=10)
    return save_figure(fig, path)
