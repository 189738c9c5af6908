"""Figures of the mnist-collapse study, drawn from its output files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from gandy.core.metrics.phases import SPLIT_FAILED
from gandy.runs.summaries import CLOUD_PHASES, cloud_phase
from gandy.views.plots import draw_image_rows, draw_phase, draw_phase_labels, mpl, phase_grid, plt, save_figure

X, Y = "kernel.g2", "optim.critic.lr"
"""The diagram's axes: g2 (g1 = 1, so g2/g1) and the critic's learning rate."""


def plot_mnist_collapse(results: pd.DataFrame, path: Path, x: str, y: str) -> Path:
    """The 784-D phase diagram: coverage_kl, mean |cos| and the phase over (g2/g1, critic lr); g2/g1
    = 0 is drawn one grid step left of the smallest positive value on the log axis and labelled 0
    (a decade tick closer to it than a factor 2 is left out, so the labels never overlap)."""
    xs = np.sort(results[x].unique())
    pos = xs[xs > 0]
    step = pos[1] / pos[0] if len(pos) > 1 else 10.0
    zero = pos[0] / step if len(pos) else 1.0
    shown = results.assign(**{x: results[x].where(results[x] > 0, zero)})
    fig, axes = plt.subplots(1, 3, figsize=(17, 4.4), layout="constrained")
    for ax, color, label in ((axes[0], "coverage_kl", "coverage_kl = KL(digit histogram || uniform)"),
                             (axes[1], "mean_abs_cos", "mean |cos| between particles"), (axes[2], "phase", None)):
        grid = phase_grid(shown, x, y, "coverage_kl" if color == "phase" else color)
        if color == "phase":
            draw_phase_labels(ax, grid, True, True)
            ax.set_title("phase (docs/phases.md); dashed: collapsed or ran away", fontsize=9)
        else:
            mesh = draw_phase(ax, grid, True, True, color)
            if color == "coverage_kl":
                mesh.set_clim(0, np.log(100))
            fig.colorbar(mesh, ax=ax, label=label)
            ax.set_title("dashed: collapsed or ran away; x: diverged", fontsize=9)
        ax.set_xlabel("g2/g1 (leftmost column: 0)" if (results[x] == 0).any() else "g2/g1")
        ax.set_ylabel("critic learning rate")
        if (results[x] == 0).any():
            decades = [v for v in (0.01, 0.1, 1.0) if pos.min() <= v <= pos.max() * 1.01 and v / zero >= 2]
            ax.set_xticks([zero, *decades], ["0", *[f"{v:g}" for v in decades]])
            ax.xaxis.set_minor_formatter(mpl.ticker.NullFormatter())
    fig.suptitle("100 particles in 784-D against 100 MNIST digits (coverage by nearest digit, cosine)", fontsize=10)
    return save_figure(fig, path)


# the MNIST diagram in the authors' style: points over (critic lr, g2/g1) on log axes
CLOUD_STYLE = {"data_like": ("o", "tab:green", "data-like"), "other": ("D", "tab:purple", "partial (bounded, other)"),
               "mean_like": ("s", "tab:orange", "on the data's mean image"), "runaway": ("^", "tab:red", "ran away"),
               "noise_like": ("x", "tab:gray", "noise-like (unmoved)"), "diverged": ("X", "black", "diverged")}
"""Marker, colour and legend text of each cloud phase (:data:`gandy.runs.summaries.CLOUD_PHASES`)."""
SHORT = {"data_like": "data-like", "other": "partial", "mean_like": "on the mean image", "runaway": "ran away",
         "noise_like": "noise-like", "diverged": "diverged"}


def _point_clouds(results: pd.DataFrame, x: str, y: str, digits_norm: float) -> pd.DataFrame:
    """Per point (``y`` = critic lr, ``x`` = g2): the seeds' mean coverage_kl, mean |cos| and mean
    norm, and the cloud phase most of its seeds have (ties: the first in CLOUD_PHASES order)."""
    r = results.assign(cloud=cloud_phase(results.mean_abs_cos, results.mean_norm, digits_norm))
    rank = {p: i for i, p in enumerate(CLOUD_PHASES)}

    def majority(s):
        counts = s.value_counts()
        return min(counts[counts == counts.max()].index, key=rank.get)

    return r.groupby([y, x]).agg(coverage_kl=("coverage_kl", "mean"), mean_abs_cos=("mean_abs_cos", "mean"),
                                 mean_norm=("mean_norm", "mean"), seeds=("seed", "count"),
                                 cloud=("cloud", majority)).reset_index()


def _cloud_markers(ax, pts: pd.DataFrame, x: str, y: str, colour=None, **kw):
    """``pts``' points at (``y``, ``x``), one marker per cloud phase; coloured by the column
    ``colour`` (a shared norm in ``kw``) or by the phase's own colour. Returns the last mappable."""
    sc = None
    for phase, (marker, c, _) in CLOUD_STYLE.items():
        p = pts[pts.cloud == phase]
        if p.empty:
            continue
        face = {"c": p[colour], **kw} if colour else {"color": c}
        edge = {} if marker == "x" else {"edgecolors": "k", "linewidths": 0.4}
        sc = ax.scatter(p[y], p[x], marker=marker, s=46, zorder=3, **face, **edge)
    return sc


def _boundary_bars(ax, rows: pd.DataFrame, y: str, lo_edge: float, hi_edge: float) -> None:
    """Per row of a boundary table (``y``, ``x50``, ``lo``, ``hi``, ``censored``): x50 at (y, x50)
    with a vertical bar over its interval (clipped to the axis: an unbounded side runs to the
    edge); a row with no crossing in the range an arrow at the edge it lies beyond; and, where the
    row's points change from not failing to failing (``bracket_lo``, ``bracket_hi``), a thick bar
    between those two positions just right of the row, which replaces the arrow of a fit whose
    crossing lies outside the positions (the figure's legend names all four)."""
    for r in rows.sort_values(y).to_dict("records"):
        cens, yv, x50 = r.get("censored") or "", r[y], float(r["x50"])
        step = float(r.get("bracket_lo", np.nan)), float(r.get("bracket_hi", np.nan))
        if np.isfinite(step).all():  # where the points change from not failing to failing: the data, no model
            ax.plot([yv * 1.13, yv * 1.13], step, color="tab:red", lw=5, alpha=0.6, solid_capstyle="butt",
                    zorder=3.5)  # just right of the row, beside its markers
            if cens in ("below_range", "above_range"):
                continue  # the fit's crossing lies outside the positions, the points' change inside: the bar says it
        if cens in ("half_failed_at_both_ends", "below_range", "all_failed"):
            ax.plot(yv, lo_edge * 1.08, "v", color="k", ms=7, zorder=4)
        elif cens in ("under_half_failed_at_both_ends", "above_range", "none_failed"):
            ax.plot(yv, hi_edge / 1.08, "^", color="k", ms=7, mfc="white", zorder=4)
        elif np.isfinite(x50):
            lo = r["lo"] if np.isfinite(r["lo"]) and r["lo"] > 0 else lo_edge
            hi = r["hi"] if np.isfinite(r["hi"]) else hi_edge
            lo, hi = max(min(lo, x50), lo_edge), min(max(hi, x50), hi_edge)
            ax.errorbar([yv], [x50], yerr=[[x50 - lo], [hi - x50]], fmt="_", color="k", ms=14, mew=2,
                        capsize=4, lw=1.4, zorder=4)


def plot_mnist_diagram(results: pd.DataFrame, rows: pd.DataFrame, path: Path, digits_norm: float,
                       authors: pd.DataFrame | None = None, x: str = X, y: str = Y, title: str = "",
                       fail: tuple = SPLIT_FAILED) -> Path:
    """The MNIST-100 diagram in the authors' style: g2/g1 (log) against critic lr (log), one
    marker per point shaped by its cloud phase (:func:`gandy.runs.summaries.cloud_phase`, the
    seeds' majority) and coloured by its coverage KL (the seeds' mean), with gandy's boundary per
    row (``rows``: a boundary table, x50 and its interval; a row without a crossing in the range
    as an arrow at the edge it lies beyond: down, below the positions tried; up, above them). With
    ``authors`` (the calibration table: g2_over_g1, critic_lr, mean_abs_cos, mean_norm), a second
    panel shows their published clouds by the same phase rule, with gandy's boundary over them.
    ``results``: one row per member (``x`` = kernel.g2 with g1 = 1, ``y``, ``seed``,
    ``coverage_kl``, ``mean_abs_cos``, ``mean_norm``); ``fail``: the phases ``rows`` counted as
    failing, named in the title."""
    pts = _point_clouds(results, x, y, digits_norm)
    pts = pts[pts[x] > 0]
    panels = 1 if authors is None else 2
    fig, axes = plt.subplots(1, panels, figsize=(6.8 * panels + 1.2, 5.6), layout="constrained", squeeze=False)
    g_all = np.concatenate([pts[x].to_numpy(float), [] if authors is None else authors.g2_over_g1[authors.g2_over_g1 > 0]])
    l_all = np.concatenate([pts[y].to_numpy(float), [] if authors is None else authors.critic_lr])
    g_lim, l_lim = (g_all.min() / 1.6, g_all.max() * 1.6), (l_all.min() / 1.5, l_all.max() * 1.5)
    norm = mpl.colors.Normalize(0, np.log(100))
    sc = _cloud_markers(axes[0, 0], pts, x, y, colour="coverage_kl", cmap="viridis", norm=norm)
    if sc is not None:
        fig.colorbar(sc, ax=axes[0, 0], label="coverage KL (KL(digit histogram || uniform); log 100 = one digit)")
    axes[0, 0].set_title(f"gandy: {int((results[x] > 0).sum())} runs at {len(pts)} points with g2/g1 > 0 (seeds per point: "
                         f"{pts.seeds.min()}-{pts.seeds.max()})", fontsize=9)
    if authors is not None:
        a = authors[authors.g2_over_g1 > 0].rename(columns={"g2_over_g1": x, "critic_lr": y})
        a = a.assign(cloud=cloud_phase(a.mean_abs_cos, a.mean_norm, digits_norm))
        _cloud_markers(axes[0, 1], a, x, y)
        axes[0, 1].set_title(f"the authors' published clouds ({len(a)} points with g2/g1 > 0) by the same rule,\n"
                             "under gandy's boundary", fontsize=9)
    for ax in axes[0]:
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(*l_lim)
        ax.set_ylim(*g_lim)
        _boundary_bars(ax, rows, y, *g_lim)
        ax.set_xlabel("critic learning rate")
        ax.set_ylabel("g2/g1")
    handles = [mpl.lines.Line2D([], [], ls="", marker=m, color=c, mec="k", label=t) for m, c, t in CLOUD_STYLE.values()]
    handles += [mpl.lines.Line2D([], [], ls="-", marker="_", color="k", label="gandy's boundary: P(fail) = 1/2, 95 % interval"),
                mpl.lines.Line2D([], [], ls="-", lw=5, alpha=0.6, color="tab:red",
                                 label="beside a row: from its last position that did not fail to the first that did"),
                mpl.lines.Line2D([], [], ls="", marker="v", color="k", label="no crossing: boundary below the positions tried"),
                mpl.lines.Line2D([], [], ls="", marker="^", color="k", mfc="white",
                                 label="no crossing: boundary above the positions tried")]
    fig.legend(handles=handles, loc="outside lower center", ncol=5, fontsize=7, title="cloud phase (markers; the "
               "colour of the left panel is coverage KL)", title_fontsize=7)
    said = {"collapsed": "collapsed", "runaway": "ran away", "diverged": "diverged"}
    names = [said.get(p, p) for p in fail]
    fail_text = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]
    fig.suptitle(title or f"MNIST-100: 100 particles in 784-D against 100 digits; fail = {fail_text}", fontsize=10)
    return save_figure(fig, path)


def plot_mnist_samples(results: pd.DataFrame, path: Path, digits_norm: float, per_run: int = 8,
                       x: str = X, y: str = Y) -> Path:
    """Final particles (``samples_uint8``) of one representative run per cloud phase present: the
    run whose coverage KL is the median of that phase's runs, one row each, labelled with its
    point, seed and numbers. Runs stopped by the blow-up limit (``diverged_step`` >= 0; their cloud
    phase is that of their last finite log) have no final particles and are picked only where a
    phase has no other run, labelled as stopped."""
    r = results.assign(cloud=cloud_phase(results.mean_abs_cos, results.mean_norm, digits_norm)).reset_index(drop=True)
    stopped = r["diverged_step"].fillna(-1).to_numpy() >= 0 if "diverged_step" in r else np.zeros(len(r), bool)
    picks = []
    for phase in CLOUD_STYLE:  # a run stopped by the blow-up limit has no final particles: one only where all were
        mine = r.cloud == phase
        p = r[mine & ~stopped if (mine & ~stopped).any() else mine].sort_values("coverage_kl", kind="stable")
        if len(p):
            picks.append(p.iloc[(len(p) - 1) // 2])
    images = np.stack([np.asarray(p.samples_uint8, dtype=np.float32).reshape(-1, 28, 28)[:per_run] / 255.0 for p in picks])
    labels = [f"{SHORT[p.cloud]}\ng2/g1 {p[x]:.3g}, lr {p[y]:.3g}\nseed {int(p.seed)}: {p.mean_abs_cos:.2f} / {p.mean_norm:.3g}"
              + (f"\nstopped at step {int(p.diverged_step)}: no final particles" if p.get("diverged_step", -1) >= 0 else "")
              for p in picks]
    return draw_image_rows(images, labels, [CLOUD_STYLE[p.cloud][1] for p in picks], path,
                           "final particles of one run per cloud phase (the median coverage KL of its runs); "
                           "labels: phase, point, seed: mean |cos| / mean norm")
