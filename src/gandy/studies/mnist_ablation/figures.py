"""Figures of the mnist-ablation study, drawn from its tables."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from gandy.views.plots import plt, save_figure


def plot_ablation(series: pd.DataFrame, path: Path, x: str, digits_norm: float) -> Path:
    """Force norm (top) and mean particle norm (bottom) over the steps, one line per variant, one
    column per g2/g1; both on log scales; ``digits_norm`` (the target digits' mean norm) dotted."""
    g2s = sorted(series[x].unique())
    variants = list(dict.fromkeys(series.variant))
    colours = plt.get_cmap("tab10")(np.arange(len(variants)) % 10)
    fig, axes = plt.subplots(2, len(g2s), figsize=(5 * len(g2s) + 2, 7.5), layout="constrained", squeeze=False)
    for j, g2 in enumerate(g2s):
        for v, c in zip(variants, colours):
            t = series[(series[x] == g2) & (series.variant == v)].sort_values("step")
            axes[0, j].plot(t.step, t.force_norm, color=c, label=v, lw=1.2)
            axes[1, j].plot(t.step, t.mean_norm, color=c, label=v, lw=1.2)
        axes[0, j].set_title(f"g2/g1 = {g2:g}", fontsize=10)
        axes[0, j].set_ylabel("mean |force| per particle")
        axes[1, j].set_ylabel("mean particle norm")
        axes[1, j].axhline(digits_norm, color="k", ls=":", lw=1)
        for ax in axes[:, j]:
            ax.set_yscale("log")
            ax.set_xlabel("particle step")
    axes[1, -1].text(1.0, digits_norm, " digits' mean norm", va="bottom", ha="right", fontsize=7, transform=axes[1, -1].get_yaxis_transform())
    axes[0, -1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.suptitle("784-D, critic lr 4.64e-4: the authors' conventions one at a time", fontsize=10)
    return save_figure(fig, path)
