"""Figures of the mnist-calibrate study, drawn from its per-member table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from gandy.runs.summaries import cloud_spread
from gandy.views.plots import mpl, plt, save_figure


def g2_axis(values) -> tuple[bool, float]:
    """How g2/g1 ``values`` are drawn: ``(log, zero)``. A log axis where there are two positive
    values or more spanning a factor of 5 or more; 0 is then drawn at ``zero``, one grid step
    (the smallest ratio of neighbouring positive values) left of the smallest positive value."""
    pos = np.unique(np.asarray(values, dtype=float))
    pos = pos[pos > 0]
    if len(pos) < 2 or pos[-1] / pos[0] < 5:
        return False, 0.0
    step = float(np.min(pos[1:] / pos[:-1]))
    return True, float(pos[0] / step)


def plot_calibration(points: pd.DataFrame, path: Path, shown: dict[int, str], digits: dict) -> Path:
    """Mean |cos| (top), mean particle norm (middle, log) and the spread about the common part
    (bottom, log: norm sqrt(1 - |cos|), :func:`~gandy.runs.summaries.cloud_spread`)
    against g2/g1, one column per critic lr of ``points`` (the per-member table: ``candidate``,
    ``critic_lr``, ``g2_over_g1``, the authors' ``authors_cos`` / ``authors_norm`` /
    ``authors_spread`` and gandy's ``gandy_cos`` / ``gandy_norm`` / ``gandy_spread``): the
    authors' clouds (black dots) and gandy's at each candidate of ``shown`` (index -> legend
    label; a line through the mean over seeds, each seed a faint dot); the target digits' own
    values (``digits``: ``mean_abs_cos``, ``mean_norm``; their spread from these) dotted. On a log g2/g1 axis, 0 is drawn
    one grid step left of the smallest positive value and labelled 0."""
    lrs = sorted(points.critic_lr.unique())
    refs = {**digits, "spread": float(cloud_spread(digits["mean_abs_cos"], digits["mean_norm"]))}
    log, zero = g2_axis(points.g2_over_g1)
    fig, axes = plt.subplots(3, len(lrs), figsize=(4.6 * len(lrs) + 1.5, 10.0), layout="constrained", squeeze=False)
    colours = plt.get_cmap("tab10")(np.arange(len(shown)) % 10)
    styles = ["--", "-", "-.", ":"]
    plain = mpl.ticker.FuncFormatter(lambda v, _: f"{v:g}")
    for j, lr in enumerate(lrs):
        row = points[points.critic_lr == lr]
        x = row.g2_over_g1.where(row.g2_over_g1 > 0, zero) if log else row.g2_over_g1
        row = row.assign(x=x)
        authors = row.drop_duplicates("point").sort_values("x")
        for i, (ax, a, g, ref, name) in enumerate(((axes[0, j], "authors_cos", "gandy_cos", "mean_abs_cos", "mean |cos| between particles"),
                                                   (axes[1, j], "authors_norm", "gandy_norm", "mean_norm", "mean particle norm"),
                                                   (axes[2, j], "authors_spread", "gandy_spread", "spread",
                                                    "spread, norm x sqrt(1 - |cos|)"))):
            ax.plot(authors.x, authors[a], "o", color="k", ms=5, label="the authors (published clouds)", zorder=3)
            for k, ((cand, label), c) in enumerate(zip(shown.items(), colours)):
                mine = row[row.candidate == cand]
                if mine.empty:
                    continue
                if i == 2:  # a cloud of identical particles (|cos| 1 to rounding) has no spread on a log axis
                    mine = mine.assign(**{g: mine[g].where(mine[g] > 0)})
                mean = mine.groupby("x")[g].mean().sort_index()
                ax.plot(mean.index, mean.to_numpy(), styles[k % len(styles)], marker="s", ms=3, color=c, lw=1.5,
                        label=f"gandy, {label}")
                if mine.seed.nunique() > 1:
                    ax.plot(mine.x, mine[g], ".", color=c, alpha=0.35, ms=4)
            ax.axhline(refs[ref], color="grey", ls=":", lw=1, label="the target digits' own value")
            ax.set_ylabel(name)
            if i >= 1:
                ax.set_yscale("log")
                lo, hi = ax.get_ylim()
                ax.yaxis.set_major_formatter(plain)  # minor ticks labelled within a decade only
                ax.yaxis.set_minor_formatter(plain if hi / lo < 10 else mpl.ticker.NullFormatter())
            if i == 2:
                ax.set_xlabel("g2/g1" + (" (leftmost: 0)" if log and (row.g2_over_g1 == 0).any() else ""))
            if log:
                ax.set_xscale("log")
                ax.xaxis.set_major_locator(mpl.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))  # 1-2-5: default minor
                ax.xaxis.set_major_formatter(plain)  # labels overlapped on a row narrower than two decades
                ax.xaxis.set_minor_formatter(mpl.ticker.NullFormatter())
                if (points.g2_over_g1 == 0).any():
                    pos = points.g2_over_g1[points.g2_over_g1 > 0]
                    decades = [v for v in (0.01, 0.1, 1.0) if pos.min() <= v <= pos.max() * 1.05 and v / zero >= 2]
                    ax.set_xticks([zero, *decades], ["0", *[f"{v:g}" for v in decades]])
        axes[0, j].set_title(f"critic lr {lr:.3g}", fontsize=10)
    axes[0, -1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.suptitle("784-D: gandy's final clouds against the authors' along each calibration row", fontsize=10)
    return save_figure(fig, path)
