"""Figures of the universality study, drawn from its output files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from gandy.views.plots import cell_edges, mpl, plt, save_figure


def plot_universality(table: pd.DataFrame, folder: Path) -> list[Path]:
    """kernel-universality figures from its table (one row per activation x width x d_z).

    ``spread.png``: one row per activation, four columns against width, one line per d_z, log-log:
    the relative error of the mean diagonal entry against g1 (rms over networks), the std of the
    diagonal / g1, and the same two for the off-diagonal entries against g2, where dashed lines of
    the same colour are the infinite-width kernel at the same latents (the floor finite d_z sets).
    ``distance.png``: heat map of |K - two-number K|_F / |two-number K|_F over (width, d_z), per
    activation, annotated, with a colour bar.
    """
    acts = list(dict.fromkeys(table.activation))
    cols = (("diag_rel_error", None, "rms over nets of (mean diagonal / g1 - 1)"),
            ("diag_rel_spread", None, "std of diagonal entries / g1"),
            ("offdiag_rel_error", "offdiag_rel_error_limit", "rms over nets of (mean off-diag. / g2 - 1)"),
            ("offdiag_rel_spread", "offdiag_rel_spread_limit", "std of off-diagonal entries / g2"))
    fig, axes = plt.subplots(len(acts), len(cols), figsize=(4.3 * len(cols), 3.9 * len(acts)), layout="constrained",
                             squeeze=False, sharey="col")
    for r, act in enumerate(acts):
        t = table[table.activation == act]
        dzs = sorted(t.latent_dim.unique())
        colors = plt.cm.viridis(np.linspace(0, 0.9, len(dzs)))
        nets, n = int(t.networks.iloc[0]), int(t.samples.iloc[0])
        for c, (key, limit, label) in enumerate(cols):
            ax = axes[r, c]
            for dz, col in zip(dzs, colors):
                s = t[t.latent_dim == dz].sort_values("width")
                ax.plot(s.width, s[key].clip(lower=1e-4), marker="o", ms=4, color=col, label=f"d_z = {dz}")
                if limit is not None:
                    ax.plot(s.width, s[limit].clip(lower=1e-4), ls="--", lw=1, color=col)
            ax.set_xscale("log")
            ax.set_yscale("log")
            widths = sorted(t.width.unique())
            ax.set_xticks(widths, [str(v) for v in widths], **({"fontsize": 7} if len(widths) > 6 else {}))
            ax.xaxis.set_minor_locator(mpl.ticker.NullLocator())
            ax.set_xlabel("width")
            ax.set_ylabel(label)
            ax.grid(True, which="major", alpha=0.3)
            ax.set_title(f"{act}, depth {int(t.depth.iloc[0])}: g1 = {t.g1.iloc[0]:.3g}, g2 = {t.g2.iloc[0]:.3g}", fontsize=9)
            if c == 0:
                ax.legend(fontsize=7, title=f"{nets} nets x {n} latents", title_fontsize=7)
            elif limit is not None and c == len(cols) - 1:
                ax.plot([], [], ls="--", color="grey", label="infinite width,\nsame latents")
                ax.legend(handles=ax.get_lines()[-1:], fontsize=7, loc="lower left")
    fig.suptitle("empirical NTK of random networks against the two numbers (g1, g2)", fontsize=11)
    paths = [save_figure(fig, Path(folder) / "spread.png")]
    fig, axes = plt.subplots(1, len(acts), figsize=(5.6 * len(acts), 4.4), layout="constrained", squeeze=False)
    vals = table.rel_distance.to_numpy()
    norm = mpl.colors.LogNorm(vmin=max(vals.min(), 1e-3), vmax=vals.max())
    for ax, act in zip(axes[0], acts):
        t = table[table.activation == act].pivot(index="latent_dim", columns="width", values="rel_distance")
        w, dz = t.columns.to_numpy(), t.index.to_numpy()
        mesh = ax.pcolormesh(cell_edges(w, True), cell_edges(dz, True), t.to_numpy(), cmap="viridis", norm=norm, shading="flat")
        for i, y in enumerate(dz):
            for j, x in enumerate(w):
                v = t.to_numpy()[i, j]
                ax.text(x, y, f"{v:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if norm(v) < 0.5 else "black")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(w, [str(v) for v in w])
        ax.set_yticks(dz, [str(v) for v in dz])
        ax.minorticks_off()
        ax.set_xlabel("width")
        ax.set_ylabel("latent dimension d_z")
        ax.set_title(f"{act}: distance of K from the two-number kernel", fontsize=10)
        fig.colorbar(mesh, ax=ax, label="|K - K_two|_F / |K_two|_F (mean over networks)")
    paths.append(save_figure(fig, Path(folder) / "distance.png"))
    return paths
