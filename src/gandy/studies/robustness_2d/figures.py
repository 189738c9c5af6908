"""Figures of the robustness-2d study, drawn from its table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from gandy.views.plots import draw_spread, log_labels, plot_paired, plt, save_figure


def plot_robustness_2d(out: Path, table: pd.DataFrame, thresholds: dict, floors: dict, n_modes: dict,
                       draws: pd.DataFrame | None = None, comparisons: dict | None = None) -> list[Path]:
    """One figure per target, ``OUT/figures/<target>.png``, from the study's table (one row per
    target x game x draw x seed, with ``diverged`` and ``good``): per game the W1 (log scale) and
    the modes covered of the draws that did not diverge (box plus points; "k/n diverged" above),
    and every game's empirical CDF of W1 (diverged draws counted as W1 = infinity, so a curve ends
    below 1 by their share). The threshold (``thresholds[target]``) and the median W1 of two target
    samples (``floors[target]["median"]``) are drawn as lines. With ``draws`` (one row per target x
    game x trial) and ``comparisons`` (per target, summary.json's) also ``<target>-paired.png``: each
    draw's W1 under game A against under game B (:func:`gandy.views.plots.plot_paired`)."""
    out = Path(out)
    paths = []
    for target in dict.fromkeys(table.target):
        t = table[table.target == target]
        th, floor, k = thresholds[target], floors[target].get("median"), n_modes[target]
        games = list(dict.fromkeys(t.game))
        n = t.groupby("game").size()
        fig, axes = plt.subplots(1, 3, figsize=(15.5, 4.6), layout="constrained",
                                 gridspec_kw={"width_ratios": [1.15, 1.15, 1.0]})
        ax = axes[0]
        draw_spread(ax, t, "w1", "game", log=True, label="one draw (did not diverge)")
        ax.axhline(th["w1"], color="tab:green", ls="--", lw=1, label=f"threshold W1 < {th['w1']:g}")
        if floor is not None:
            ax.axhline(floor, color="k", ls=":", lw=1, label=f"two target samples (median {floor:.2f})")
        ax.set_xlabel("game")
        ax.set_ylabel("final W1 (exact, 256 points; log scale)")
        log_labels(ax.yaxis)
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2)
        ax = axes[1]
        draw_spread(ax, t, "modes_covered", "game", label="one draw (did not diverge)")
        ax.axhline(th["modes"], color="tab:green", ls="--", lw=1, label=f"threshold: >= {th['modes']} modes")
        ax.set_ylim(-0.5, k + 0.8)
        ax.set_xlabel("game")
        ax.set_ylabel(f"modes covered (of {k})")
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2)
        ax = axes[2]
        for g in games:
            v = np.sort(np.where(t[t.game == g].diverged, np.inf, t[t.game == g].w1.astype(float)))
            good = t[t.game == g].good
            y = np.arange(1, len(v) + 1) / len(v)
            fin = np.isfinite(v)
            if fin.any():  # from 0 at the smallest W1 up to the share that did not diverge
                ax.step(np.r_[v[fin][0], v[fin]], np.r_[0.0, y[fin]], where="post", lw=1.3,
                        label=f"{g}: {int(good.sum())}/{len(good)} good")
        ax.axvline(th["w1"], color="tab:green", ls="--", lw=1)
        if floor is not None:
            ax.axvline(floor, color="k", ls=":", lw=1)
        ax.set_xscale("log")
        log_labels(ax.xaxis)
        ax.set_ylim(0, 1)
        ax.set_xlabel("final W1 (log scale)")
        ax.set_ylabel("fraction of draws with W1 <= x")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, title="game: good draws", title_fontsize=7, loc="upper left")
        else:
            ax.text(0.5, 0.5, "every draw diverged", transform=ax.transAxes, ha="center", color="tab:red")
        runs = ", ".join(sorted({str(int(c)) for c in n}))
        fig.suptitle(f"{target}: final W1 and modes covered across random hyperparameter draws "
                     f"({runs} runs per game, draws × seeds); good = not diverged, >= {th['modes']} modes, "
                     f"W1 < {th['w1']:g}", fontsize=10)
        paths.append(save_figure(fig, out / "figures" / f"{target}.png"))
        if draws is not None and (comparisons or {}).get(target):
            paths.append(plot_paired(out / "figures" / f"{target}-paired.png", draws[draws.target == target],
                                     comparisons[target], th["w1"], "final W1", f"{target}: "))
    return paths
