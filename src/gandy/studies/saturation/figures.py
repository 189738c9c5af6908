"""Figure of the saturation study: the generator's gradient and W1 against step, per cell."""

from __future__ import annotations

from pathlib import Path

from gandy.runs.store import read_parquet
from gandy.views.plots import plt, save_figure

GAME_COLORS = {"mm": "tab:red", "ns": "tab:blue"}


def plot_saturation(dirs: dict, critics: list, generators: list, path: Path) -> Path:
    """Rows: critic strength (weakest first); columns: per generator optimiser, |grad_x l_G| then
    W1 (log scales); mm red, ns blue, one line per seed. ``dirs[(critic, generator, game)]`` holds
    each run."""
    fig, axes = plt.subplots(len(critics), 2 * len(generators), figsize=(3.3 * 2 * len(generators), 2.5 * len(critics)),
                             layout="constrained", squeeze=False, sharex=True)
    for r, c in enumerate(critics):
        for j, g in enumerate(generators):
            af, aw = axes[r, 2 * j], axes[r, 2 * j + 1]
            for game, color in GAME_COLORS.items():
                m = read_parquet(Path(dirs[(c, g, game)]) / "metrics.parquet")
                for i, (_, s) in enumerate(m.groupby("seed")):
                    af.plot(s.step, s.force_norm, color=color, lw=1, alpha=0.8, label=game if i == 0 else None)
                    aw.plot(s.step, s.w1, color=color, lw=1, alpha=0.8)
            af.set_yscale("log")
            aw.set_yscale("log")
            aw.axhline(0.1, color="k", lw=0.6, ls=":")
            af.set_title(f"critic {c}; G {g}", fontsize=8)
            aw.set_title("W1 (dotted: 0.1)", fontsize=8)
            if j == 0:
                af.set_ylabel("|∇ₓ l_G| per sample", fontsize=8)
            if r == len(critics) - 1:
                af.set_xlabel("generator step")
                aw.set_xlabel("generator step")
    axes[0, 0].legend(fontsize=7)
    fig.suptitle("parallel_lines: minimax (red) vs non-saturating (blue) generator gradient and W1, per critic "
                 "strength (rows) and generator optimiser; one line per seed", fontsize=9)
    return save_figure(fig, path)
