"""Figures of the penalties study, drawn from its tables."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from gandy.runs.store import read_parquet
from gandy.views.plots import plt, save_figure

GAME_COLORS = {"ns": "tab:blue", "gan_gp": "tab:orange", "dragan_ns": "tab:green", "ns_r1": "tab:purple",
               "wgan": "tab:gray", "wgan_gp": "tab:red"}
MEASURES = {"w1_swing": "W1 swing, last half (half range about the trend)", "t_w1": "first step with W1 < 0.1",
            "final_w1": "final W1"}
AXIS = {"w1_swing": "W1 swing", "t_w1": "steps to W1 < 0.1", "final_w1": "final W1"}


def _grid_figure(t: pd.DataFrame, key: str, lam: str, lr: str, steps: str, title: str):
    lrs, ns = sorted(t[lr].unique()), sorted(t[steps].unique())
    fig, axes = plt.subplots(len(ns), len(lrs), figsize=(3.6 * len(lrs), 2.9 * len(ns)), layout="constrained",
                             squeeze=False, sharey=True)
    lams = sorted(v for v in t[lam].unique() if v > 0)
    for r, n in enumerate(ns):
        for c, rate in enumerate(lrs):
            ax = axes[r, c]
            cell = t[(t[steps] == n) & (t[lr] == rate)]
            for game, g in cell.groupby("game", sort=False):
                color = GAME_COLORS.get(game)
                med = g.groupby(lam)[key].median()
                if (g[lam] > 0).any():
                    ax.plot(med.index, med.to_numpy(), "o-", color=color, label=game)
                    ax.plot(g[lam], g[key], ".", color=color, alpha=0.35, ms=4)
                elif len(med) and np.isfinite(med.iloc[0]):  # unpenalised: one level across lambda
                    ax.hlines(med.iloc[0], lams[0], lams[-1], colors=color, linestyles="--", label=f"{game} (no penalty)")
                never = g[g[key].isna()]
                if len(never) and key == "t_w1":
                    ax.plot(never[lam].where(never[lam] > 0, lams[0]), np.full(len(never), 0.0), "x", color=color)
            ax.set_xscale("log")
            if key != "t_w1":
                ax.set_yscale("symlog", linthresh=0.01)
            ax.set_title(f"lr_G {rate:g}, {n} critic step{'s' if n > 1 else ''}", fontsize=9)
            if r == len(ns) - 1:
                ax.set_xlabel("penalty weight λ")
            if c == 0:
                ax.set_ylabel(AXIS[key], fontsize=8)
    axes[0, 0].legend(fontsize=7)
    fig.suptitle(title + ("; x at 0: never reached" if key == "t_w1" else "") + "\nline: median over seeds, dots: seeds",
                 fontsize=9)
    return fig


def plot_penalties(table: pd.DataFrame, out: Path, target_dirs: dict, shown_lr: dict, lam: str, lr: str,
                   steps: str) -> list[Path]:
    """``OUT/figures/{swing,time}_<target>.png`` and ``w1_<target>.png`` (W1 against step for each
    game at lambda = 10 and the most critic steps, at the grid's learning rate closest to
    ``shown_lr[target]``)."""
    out = Path(out)
    paths = []
    for target, d in target_dirs.items():
        t = table[table.target == target]
        for key, name in (("w1_swing", "swing"), ("t_w1", "time")):
            fig = _grid_figure(t, key, lam, lr, steps, f"{target}: {MEASURES[key]}")
            paths.append(save_figure(fig, out / "figures" / f"{name}_{target}.png"))
        rates = np.asarray(sorted(t[lr].unique()))
        n, rate = t[steps].max(), float(rates[np.argmin(np.abs(np.log(rates / shown_lr[target])))])
        fig, ax = plt.subplots(figsize=(7.0, 3.8), layout="constrained")
        for game in t.game.unique():
            m = read_parquet(Path(d) / game / "metrics.parquet")
            sel = (m[steps] == n) & (m[lr] == rate) & ((m[lam] == 10.0) if lam in m else True)
            for i, (_, s) in enumerate(m[sel].groupby("seed")):
                ax.plot(s.step, s.w1, color=GAME_COLORS.get(game), lw=1.0, alpha=0.8, label=game if i == 0 else None)
        ax.axhline(0.1, color="k", lw=0.6, ls=":")
        ax.set_yscale("log")
        ax.set_xlabel("generator step")
        ax.set_ylabel("W1 to target (exact)")
        ax.set_title(f"{target}: λ = 10 (penalised games), {n} critic steps, lr_G {rate:g}; one line per seed "
                     "(dotted: 0.1)", fontsize=9)
        ax.legend(fontsize=7, ncol=2)
        paths.append(save_figure(fig, out / "figures" / f"w1_{target}.png"))
    return paths
