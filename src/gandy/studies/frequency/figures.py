"""Figures of the frequency study, drawn from its tables."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from gandy.views.plots import plt, save_figure


def plot_fit_times(times: pd.DataFrame, budget: int, path: Path) -> Path:
    """Critic steps to fit against the frequency k (log-log), one panel per family, one line per
    critic (median over seeds, at each critic's fastest learning rate for that k); a frequency not
    fitted within the budget is drawn at the budget with an open marker."""
    families = list(dict.fromkeys(times.family))
    critics = list(dict.fromkeys(times.critic))
    colours = plt.get_cmap("tab10")(np.arange(len(critics)) % 10)
    fig, axes = plt.subplots(1, len(families), figsize=(6 * len(families) + 1.5, 4.4), layout="constrained", squeeze=False)
    for ax, fam in zip(axes[0], families):
        for name, c in zip(critics, colours):
            t = times[(times.family == fam) & (times.critic == name)]
            med = t.groupby(["k", "lr"]).steps_to_fit.median().groupby("k").min()  # best lr per k
            ks = med.index.to_numpy()
            y = med.to_numpy(dtype=float)
            ax.plot(ks, np.where(np.isnan(y), budget, y), color=c, lw=1.3, label=name)
            ax.plot(ks[~np.isnan(y)], y[~np.isnan(y)], "o", color=c, ms=5)
            ax.plot(ks[np.isnan(y)], np.full(np.isnan(y).sum(), budget), "o", mfc="none", color=c, ms=6)
        ax.axhline(budget, color="k", ls=":", lw=1)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("frequency k (sin(kx); bumps of width 1/k)")
        ax.set_ylabel("critic steps to fit (best learning rate)")
        ax.set_title(f"{fam}: open markers = not fitted in {budget} steps", fontsize=9)
    axes[0, -1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return save_figure(fig, path)


def plot_curves(curves: pd.DataFrame, threshold: float, path: Path) -> Path:
    """Learning curves (relative error against critic steps, log-log), one panel per critic and
    family, one line per frequency (the fastest learning rate, seed 0)."""
    families = list(dict.fromkeys(curves.family))
    critics = list(dict.fromkeys(curves.critic))
    fig, axes = plt.subplots(len(families), len(critics), figsize=(3.2 * len(critics) + 1.5, 3.0 * len(families)),
                             layout="constrained", squeeze=False, sharey=True)
    ks = sorted(curves.k.unique())
    colours = plt.get_cmap("viridis")(np.linspace(0, 0.9, len(ks)))
    for i, fam in enumerate(families):
        for j, name in enumerate(critics):
            ax = axes[i, j]
            t = curves[(curves.family == fam) & (curves.critic == name) & (curves.seed == curves.seed.min())]
            final = t[t.step == t.step.max()].groupby("lr").rel_error.mean()
            lr = final.idxmin() if final.notna().any() else t.lr.min()
            for k, c in zip(ks, colours):
                u = t[(t.k == k) & (t.lr == lr)].sort_values("step")
                ax.plot(u.step.clip(lower=1), u.rel_error, color=c, lw=1.1, label=f"k = {k:g}")
            ax.axhline(threshold, color="k", ls=":", lw=1)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_title(f"{name}, {fam} (lr {lr:.2g})", fontsize=8)
            ax.set_xlabel("critic step")
            if j == 0:
                ax.set_ylabel("relative L2 error")
    axes[0, -1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return save_figure(fig, path)
