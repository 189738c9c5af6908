"""Figures of the demo study, drawn from its output files."""

from __future__ import annotations

from pathlib import Path

from gandy.views.plots import density_1d, load_run_files, plt, save_figure, spacetime_1d


def plot_demo(run_dirs: list[Path], path: Path) -> Path:
    """Side-by-side space-time plots (first seed) of several 1-D runs, titled by g2/g1 and phase."""
    fig, axes = plt.subplots(1, 2 * len(run_dirs), figsize=(6.5 * len(run_dirs), 3.6), layout="constrained",
                             gridspec_kw={"width_ratios": [5, 1] * len(run_dirs)})
    for i, run_dir in enumerate(map(Path, run_dirs)):
        traj, summary = load_run_files(run_dir)
        k = summary.get("kernel", {})
        phase = summary["phases"][str(int(traj["seeds"][0]))]
        spacetime_1d(axes[2 * i], traj, 0, f"g2/g1 = {k.get('ratio', float('nan')):.2g}: {phase}")
        density_1d(axes[2 * i + 1], traj)
        axes[2 * i + 1].set_ylim(axes[2 * i].get_ylim())
    return save_figure(fig, path)
