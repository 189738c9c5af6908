"""Figures of the many-paths study, drawn from its output files."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gandy.runs.store import read_parquet
from gandy.views.plots import load_run_files, plt, save_figure


def plot_many_paths(out: Path, targets: list[str], games: list[str]) -> list[Path]:
    """Figures of the many-paths experiment, drawn from its run directories."""
    out = Path(out)
    paths = []
    for target in targets:
        trajs = {g: load_run_files(out / target / g)[0] for g in games}
        steps = trajs[games[0]]["steps"]
        picks = sorted(set(np.linspace(0, len(steps) - 1, 4).round().astype(int)))
        # one frame for all panels: the target and the starting samples with a margin, so that a
        # run that blows up does not shrink every other panel (points outside are counted)
        first = trajs[games[0]]
        box = np.concatenate([first["target_samples"][:, :2], first["particles"][0, 0][:, :2]])
        lo, hi = box.min(0), box.max(0)
        pad = 0.25 * np.maximum(hi - lo, 0.5 * (hi - lo).max())
        lo, hi = lo - pad, hi + pad
        fig, axes = plt.subplots(len(games), len(picks), figsize=(2.3 * len(picks), 2.1 * len(games)),
                                 layout="constrained", squeeze=False)
        for r, g in enumerate(games):
            tr = trajs[g]
            for c, k in enumerate(picks):
                ax = axes[r, c]
                ts = tr["target_samples"]
                ax.scatter(ts[:, 0], ts[:, 1], s=1, color="tab:red", alpha=0.3)
                p = tr["particles"][0, k]
                ax.scatter(p[:, 0], p[:, 1], s=2, color="tab:blue")
                ax.set_xlim(lo[0], hi[0])
                ax.set_ylim(lo[1], hi[1])
                outside = int((~((p[:, :2] >= lo) & (p[:, :2] <= hi)).all(-1)).sum())
                if outside:
                    ax.text(0.02, 0.02, f"{outside} outside", transform=ax.transAxes, fontsize=7, color="tab:blue")
                if r == 0:
                    ax.set_title(f"step {int(tr['steps'][k])}", fontsize=9)
                if c == 0:
                    ax.set_ylabel(f"{g}\nx2", fontsize=9)
                if r == len(games) - 1:
                    ax.set_xlabel("x1")
        fig.suptitle(f"{target}: generated (blue) and target (red) samples, seed 0", fontsize=10)
        paths.append(save_figure(fig, out / "figures" / f"samples_{target}.png"))

        keys = ["js", "kl_pq", "w1", "mmd"]
        fig, axes = plt.subplots(1, len(keys), figsize=(4.0 * len(keys), 3.4), layout="constrained", squeeze=False)
        for g in games:
            met = read_parquet(out / target / g / "metrics.parquet")
            by = met.groupby("step")
            m = by[keys].mean()
            for ax, k in zip(axes[0], keys):
                line, = ax.plot(m.index, m[k].replace([np.inf], np.nan), lw=1.2, label=g)
                if f"{k}_se" in met:  # 95 % band of the seed mean from the per-seed standard errors
                    half = 1.96 * np.sqrt(by[f"{k}_se"].apply(lambda v: np.mean(np.square(v)))) / np.sqrt(by.size())
                    ax.fill_between(m.index, m[k] - half, m[k] + half, color=line.get_color(), alpha=0.2, lw=0)
        for ax, k in zip(axes[0], keys):
            ax.set_xlabel("step")
            ax.set_ylabel(k + (" (inf not drawn)" if k.startswith("kl") else ""))
            if k == "js":
                ax.axhline(np.log(2), color="k", lw=0.6, ls=":")
        axes[0, 0].legend(fontsize=7, ncol=2)
        fig.suptitle(f"{target}: divergences per step, mean over seeds, shaded: 95 % from the estimators' standard "
                     "errors (dotted: log 2)", fontsize=10)
        paths.append(save_figure(fig, out / "figures" / f"divergences_{target}.png"))

    tab = read_parquet(out / "increases.parquet")
    cols = [c for c in tab.columns if c.startswith("increased_")]
    fig, axes = plt.subplots(1, len(targets), figsize=(6.5 * len(targets), 3.8), layout="constrained", squeeze=False)
    for ax, target in zip(axes[0], targets):
        t = tab[tab.target == target].set_index("game")[cols]
        width = 0.8 / len(cols)
        x = np.arange(len(t))
        for j, c in enumerate(cols):
            ax.bar(x + j * width, t[c].fillna(0), width, label=c.removeprefix("increased_"))
        ax.set_xticks(x + 0.4 - width / 2, t.index, rotation=45, fontsize=8)
        ax.set_ylabel("fraction of logged steps it rose\n(> 2 combined s.e.; w1: any rise)")
        ax.set_ylim(0, 1)
        ax.set_title(target, fontsize=10)
        ax.legend(fontsize=7)
    paths.append(save_figure(fig, out / "figures" / "increases.png"))
    return paths
