"""Figures of the robustness study, drawn from its output files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from gandy.core.images.data import grid
from gandy.views.plots import draw_spread, plot_paired, plt, save_figure


def plot_robustness(out: Path, table: pd.DataFrame, threshold: dict, draws: pd.DataFrame | None = None,
                    comparisons=()) -> list[Path]:
    """Figures of the robustness experiment from its table (one row per game x trial x seed, with
    ``good``), the quality ``threshold`` drawn and each game's good share written under it; with
    ``draws`` (one row per game x trial, the seeds' median FID) and ``comparisons`` (summary.json's)
    also paired.png: per comparison A against B, each draw's FID under both."""
    out = Path(out)
    games = list(dict.fromkeys(table.game))
    paths = []
    for key, label, log, fname in (("fid", "FID (digit-classifier features)", True, "fid.png"),
                                   ("modes_covered", "modes covered (of 1,000)", False, "modes.png")):
        fig, ax = plt.subplots(figsize=(1.6 * len(games) + 2.5, 4.0), layout="constrained")
        draw_spread(ax, table, key, "game", log)
        ax.axhline(threshold[key], color="0.4", lw=1, ls="--",
                   label=f"good: FID <= {threshold['fid']:g} and >= {threshold['modes_covered']} modes")
        ax.legend(loc="best", fontsize=8)
        ax.set_xticks(range(len(games)), [f"{g}\ngood {int(table[table.game == g].good.sum())}/{int((table.game == g).sum())}"
                                          for g in games])
        ax.set_xlabel("game (good runs / runs)")
        ax.set_ylabel(label)
        ax.set_title(f"{label} across random hyperparameter draws (points: trials x seeds)", fontsize=10, pad=16)
        paths.append(save_figure(fig, out / "figures" / fname))
    fig, axes = plt.subplots(len(games), 3, figsize=(7.5, 2.6 * len(games)), layout="constrained", squeeze=False)
    for r, g in enumerate(games):
        t = table[(table.game == g) & ~table.diverged].sort_values("fid")
        picks = {"best": 0, "median": len(t) // 2, "worst": len(t) - 1} if len(t) else {}
        for c, name in enumerate(("best", "median", "worst")):
            ax = axes[r, c]
            ax.axis("off")
            if name not in picks:
                ax.set_title(f"{g}: no finite run", fontsize=9)
                continue
            row = t.iloc[picks[name]]
            x = np.asarray(row.samples_uint8, dtype=np.float32).reshape(-1, 3, 28, 28) / 127.5 - 1
            ax.imshow(grid(x, nrow=4), interpolation="nearest")
            ax.set_title(f"{g}, {name}: FID {row.fid:.3g}, {int(row.modes_covered)} modes", fontsize=8)
    paths.append(save_figure(fig, out / "figures" / "samples.png"))
    if draws is not None and len(comparisons):
        paths.append(plot_paired(out / "figures" / "paired.png", draws, comparisons, threshold["fid"], "FID"))
    return paths
