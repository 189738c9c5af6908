"""Figures drawn from a run directory (never from live objects). Matplotlib, Agg backend."""

from __future__ import annotations

import importlib
import io
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pandas as pd

from gandy.core.atomic import make_dir, write_atomic
from gandy.core.images.data import ArrayLike, grid
from gandy.core.lazy import LazyModule
from gandy.core.metrics.order import ORDER_PARAMETERS
from gandy.core.metrics.phases import PHASES, SPLIT_FAILED
from gandy.runs.store import final_particles, image_target, read_json, read_npz, read_parquet
from gandy.runs.tables import boundary_table


def _agg() -> None:
    importlib.import_module("matplotlib").use("Agg")  # files only, no display


plt = LazyModule("matplotlib.pyplot", before=_agg)  # 0.4-0.7 s of start-up, paid on the first figure
mpl = LazyModule("matplotlib", before=_agg, submodules=("colors", "patches", "ticker", "collections"))

LABELS = {
    "coverage_kl": "coverage KL (0 = even)",
    "modes_covered": "modes covered",
    "on_mode": "fraction on a mode",
    "mean_dist": "mean distance to mode",
    "com_error": "centre-of-mass error",
    "mean_abs_cos": "mean |cos| between particles",
    "w1": "W1 to target",
}


KEY_WORDS = {
    "kernel.g2": "g2/g1 (g1 = 1)",
    "kernel.g1": "g1 (kernel's diagonal)",
    "optim.critic.lr": "critic learning rate",
    "optim.generator.lr": "generator step (particle learning rate)",
    "optim.critic.steps": "critic steps per generator step",
    "penalty.weight": "penalty weight λ",
    "particles.n": "particles N",
    "critic.width": "critic width",
    "seed": "seed",
}
"""Swept keys in words, for axis labels (the key itself follows in small print)."""


def axis_label(key: str) -> str:
    """An axis label for a swept key: its words (:data:`KEY_WORDS`) with the key beneath, or the key."""
    words = KEY_WORDS.get(key)
    return key if words is None or words == key else f"{words}\n{key}"


PHASE_COLORS = {"converged": "#2ca02c", "collapsed": "#d62728", "runaway": "#9467bd", "oscillating": "#ff7f0e",
                "transient": "#17becf", "stalled": "#8c564b", "off_target": "#e377c2", "diverged": "#424242"}
"""One colour per phase (the report page uses the same)."""


def save_figure(fig, path: Path) -> Path:
    """Write a figure (creating its folder) and close it. The PNG goes through a temporary file
    and a rename (:func:`gandy.core.atomic.write_atomic`): a link at ``path`` is replaced, never
    written through, and a file there that gandy did not write is refused."""
    path = Path(path)
    buf = io.BytesIO()
    try:
        fig.savefig(buf, dpi=110, format=path.suffix.lstrip(".") or "png")
    finally:
        plt.close(fig)
    make_dir(path.parent)
    write_atomic(path, buf.getvalue())
    return path


def draw_spread(ax, table: pd.DataFrame, key: str, by: str, log: bool = False, label: Optional[str] = None) -> list[str]:
    """Per group of ``table[by]`` (in order of appearance, at x = 0, 1, ...): a box (quartiles,
    whiskers at 1.5 IQR, no fliers) and the points (jittered, seeded) of the column ``key`` over the
    rows whose ``diverged`` column is false, and "k/n diverged" above the axes. ``label`` names the
    points in a legend; ``log`` sets a log y scale. Returns the groups."""
    groups = list(dict.fromkeys(table[by]))
    rng = np.random.default_rng(0)
    for i, g in enumerate(groups):
        t = table[table[by] == g]
        v = t.loc[~t.diverged.astype(bool), key].astype(float).to_numpy()
        if len(v):
            ax.boxplot([v], positions=[i], widths=0.5, showfliers=False)
            ax.scatter(i + rng.uniform(-0.15, 0.15, len(v)), v, s=14 if len(v) < 50 else 5, alpha=0.7 if len(v) < 50 else 0.4,
                       color="tab:blue", zorder=3, label=label if i == 0 or label is None else None)
        ax.annotate(f"{int(t.diverged.astype(bool).sum())}/{len(t)} diverged", (i, 1.0), xycoords=("data", "axes fraction"),
                    ha="center", va="bottom", fontsize=8, color="tab:red")
    ax.set_xticks(range(len(groups)), groups)
    if log:
        ax.set_yscale("log")
    return groups


def log_labels(axis) -> None:
    """Plain numbers at a log axis' decades and at its 2 x and 5 x minor ticks (no 10^k labels,
    no crowded ones)."""
    def minor(v, _):
        lead = round(v / 10 ** np.floor(np.log10(v))) if v > 0 else 0
        return f"{v:g}" if lead in (2, 5) else ""

    axis.set_major_formatter(mpl.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(mpl.ticker.FuncFormatter(minor))


def draw_paired(ax, x: np.ndarray, y: np.ndarray, threshold: Optional[float] = None) -> None:
    """One point per draw at (its score under game B ``x``, under game A ``y``), both (n,), lower
    better, on log-log axes with the diagonal y = x (below it A scored lower) and ``threshold`` as
    dashed lines. A draw that diverged under a game (+inf) is drawn as a red triangle on that
    game's top or right edge, above every finite score."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    finite = np.concatenate([x[np.isfinite(x)], y[np.isfinite(y)], [] if threshold is None else [threshold]])
    lo, hi = (finite.min() / 1.3, finite.max() * 1.3) if finite.size else (1.0, 10.0)
    edge = hi * 1.25
    inf = ~np.isfinite(x) | ~np.isfinite(y)
    ax.scatter(x[~inf], y[~inf], s=18, color="tab:blue", alpha=0.8, zorder=3, label="a draw")
    if inf.any():
        ax.scatter(np.where(np.isfinite(x[inf]), x[inf], edge), np.where(np.isfinite(y[inf]), y[inf], edge), s=24,
                   marker="^", color="tab:red", zorder=3, label="diverged (drawn at the edge)")
    ax.plot([lo, edge], [lo, edge], color="0.5", lw=1, label="equal")
    if threshold is not None:
        ax.axvline(threshold, color="0.4", lw=1, ls="--")
        ax.axhline(threshold, color="0.4", lw=1, ls="--", label=f"threshold {threshold:g}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    log_labels(ax.xaxis)
    log_labels(ax.yaxis)
    ax.set_xlim(lo, edge * 1.15)
    ax.set_ylim(lo, edge * 1.15)
    ax.set_aspect("equal")


def plot_paired(path: Path, draws: pd.DataFrame, comparisons, threshold: Optional[float], label: str,
                title: str = "") -> Path:
    """One panel per comparison (:func:`gandy.runs.summaries.compare_games`: ``a``, ``b``,
    ``metric``, ``paired``, ``draws``, ``good``, ``score``) of a random search's ``draws`` (one row
    per game x trial, the ``metric`` column lower better): each draw's score under game A against
    under game B (:func:`draw_paired`), titled with the draws where A scored lower, the sign test's
    p and the good draws under each. ``label`` names the metric on the axes."""
    cols = min(3, len(comparisons))
    rows = -(-len(comparisons) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(max(4.2, 3.6 * cols), 3.8 * rows), layout="constrained", squeeze=False)
    for ax in axes.flat[len(comparisons):]:
        ax.axis("off")
    for ax, c in zip(axes.flat, comparisons):
        a, b = (draws[draws.game == g].set_index("trial") for g in (c["a"], c["b"]))
        common = a.index.intersection(b.index)
        draw_paired(ax, b.loc[common, c["metric"]], a.loc[common, c["metric"]], threshold)
        ax.set_xlabel(f"{label}, {c['b']}")
        ax.set_ylabel(f"{label}, {c['a']}")
        if c["paired"]:
            s, g = c["score"], c["good"]
            ax.set_title(f"{c['a']} lower in {s['a_better']}/{c['draws']} draws (sign p {s['p']:.2g})\n"
                         f"good: {g['both'] + g['a_only']} vs {g['both'] + g['b_only']} of {c['draws']}", fontsize=8)
        else:
            ax.set_title(f"{c['a']} vs {c['b']}: draws not shared", fontsize=8)
    axes.flat[0].legend(loc="upper left", fontsize=7)
    fig.suptitle(f"{title}each draw under two games\n(below the diagonal: the y axis's game scored lower)", fontsize=9)
    return save_figure(fig, path)


def load_run_files(run_dir: Path) -> tuple[dict, dict]:
    """``(trajectory arrays, summary)`` of a run directory."""
    return read_npz(Path(run_dir) / "trajectory.npz"), read_json(Path(run_dir) / "summary.json")


def spacetime_1d(ax, traj: dict, seed_index: int, title: str = "") -> None:
    """Particles of one seed as dots over (step, position), target modes as dashed lines."""
    steps, parts = traj["steps"], traj["particles"][seed_index, ..., 0]  # (T, n)
    if len(steps) > 1:
        ax.plot(steps, parts[:, :200], lw=0.5, alpha=0.35, color="tab:blue", rasterized=True)
    else:
        ax.scatter(np.repeat(steps, parts.shape[1]), parts.reshape(-1), s=2, color="tab:blue")
    for m in traj.get("modes", np.zeros((0, 1)))[:, 0][:20]:
        ax.axhline(m, color="tab:red", lw=0.8, ls="--", alpha=0.7)
    ax.set_xlabel("step")
    ax.set_ylabel("position x")
    if title:
        ax.set_title(title, fontsize=10)


def density_1d(ax, traj: dict) -> None:
    """Target density (or a histogram of target samples) against position, drawn sideways."""
    if "density" in traj:
        ax.fill_betweenx(traj["density_x"], 0, traj["density"], color="tab:red", alpha=0.4)
    else:
        ax.hist(traj["target_samples"][:, 0], bins=60, orientation="horizontal", color="tab:red", alpha=0.4, density=True)
    ax.set_xlabel("target density")
    ax.tick_params(labelleft=False)


def plot_particles(run_dir: Path) -> Path | None:
    run_dir = Path(run_dir)
    traj, summary = load_run_files(run_dir)
    d = traj["particles"].shape[-1]
    if d > 2:
        return None
    seeds = traj["seeds"]
    phases = summary.get("phases", {})
    if d == 1:
        rows = min(len(seeds), 3)
        fig, axes = plt.subplots(rows, 2, figsize=(9, 2.8 * rows), squeeze=False, layout="constrained",
                                 gridspec_kw={"width_ratios": [5, 1]}, sharey="row")
        for r in range(rows):
            s = int(seeds[r])
            spacetime_1d(axes[r, 0], traj, r, f"seed {s}: {phases.get(str(s), '')}")
            density_1d(axes[r, 1], traj)
    else:
        steps = traj["steps"]
        picks = sorted(set(np.linspace(0, len(steps) - 1, 4).round().astype(int)))
        fig, axes = plt.subplots(1, len(picks), figsize=(3.4 * len(picks), 3.4), squeeze=False, layout="constrained",
                                 sharex=True, sharey=True)
        ts = traj["target_samples"]
        cs = None
        for ax, k in zip(axes[0], picks):
            if "density" in traj:
                top = float(traj["density"].max())
                cs = ax.contourf(traj["density_x"], traj["density_y"], traj["density"],
                                 levels=np.linspace(0.02 * top, top, 10), cmap="Reds", alpha=0.7)
            else:
                ax.scatter(ts[:, 0], ts[:, 1], s=2, color="tab:red", alpha=0.3, label="target")
            p = traj["particles"][0, k]
            ax.scatter(p[:, 0], p[:, 1], s=4, color="tab:blue", label="particles")
            ax.set_title(f"step {int(steps[k])}", fontsize=10)
            ax.set_xlabel("x1")
            ax.set_ylabel("x2")
            ax.set_aspect("equal", adjustable="box")
        axes[0, 0].legend(loc="upper left", fontsize=7)
        if cs is not None:
            fig.colorbar(cs, ax=axes[0, -1], label="target density", shrink=0.8)
        fig.suptitle(f"seed {int(seeds[0])}: {phases.get(str(int(seeds[0])), '')}", fontsize=10)
    return save_figure(fig, run_dir / "figures" / "particles.png")


def plot_order(run_dir: Path) -> Path:
    run_dir = Path(run_dir)
    m = read_parquet(run_dir / "metrics.parquet")
    keys = [k for k in ORDER_PARAMETERS if m[k].notna().any()]
    if read_json(run_dir / "summary.json").get("dim") == 1:
        keys = [k for k in keys if k != "mean_abs_cos"]  # on the line every pair has |cos| = 1: no information
    cols = 3
    rows = -(-len(keys) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 2.8 * rows), squeeze=False, layout="constrained")
    for ax, k in zip(axes.flat, keys):
        for seed, g in m.groupby("seed"):
            ax.plot(g.step, g[k], lw=1.2, label=f"seed {seed}")
        ax.set_xlabel("step")
        ax.set_ylabel(LABELS.get(k, k))
        v = m[k].dropna()
        if k in ("w1", "mean_dist", "com_error") and len(v) and (v > 0).all() and v.max() / v.min() > 20:
            ax.set_yscale("log")  # only where the values span decades
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    axes[0, 0].legend(fontsize=7)
    return save_figure(fig, run_dir / "figures" / "order_parameters.png")


def plot_run(run_dir: Path) -> list[Path]:
    """All figures of one run directory (image runs: sample grids instead of particle plots)."""
    if "image_shape" in read_npz(Path(run_dir) / "trajectory.npz"):
        return [*plot_sample_grids(run_dir), plot_order(run_dir)]
    return [p for p in (plot_particles(run_dir), plot_order(run_dir)) if p is not None]


def save_grid(images: ArrayLike, path, nrow: int = 8) -> Path:
    """Write a PNG sample grid of ``images (n, C, 28, 28)`` in [-1, 1] to ``path`` (layout: :func:`grid`).

    The file is written atomically (a temporary file in the same folder, then a rename); missing
    parent folders are created. Returns the path.
    """
    g = grid(images, nrow)
    buf = io.BytesIO()
    plt.imsave(buf, g, format="png")
    path = Path(path)
    make_dir(path.parent)
    write_atomic(path, buf.getvalue())
    return path


def plot_sample_grids(run_dir: Path, max_images: int = 64) -> list[Path]:
    """``figures/samples/step_XXXXXX.png``: a grid of the first seed's images at every snapshot (the
    same fixed latents each time), and ``figures/samples_final.png``: the last snapshot of every seed."""
    traj, _ = load_run_files(Path(run_dir))
    shape = tuple(int(v) for v in traj["image_shape"])
    parts = traj["particles"]  # (S, T, n, C*28*28)
    out = []
    for t, step in enumerate(traj["steps"]):
        x = np.nan_to_num(parts[0, t, :max_images], nan=0.0).reshape(-1, *shape)
        out.append(save_grid(x, Path(run_dir) / "figures" / "samples" / f"step_{int(step):06d}.png"))
    seeds = traj["seeds"]
    fig, axes = plt.subplots(1, len(seeds), figsize=(3.2 * len(seeds), 3.5), layout="constrained", squeeze=False)
    for ax, s, x in zip(axes[0], seeds, parts[:, -1, :max_images]):
        ax.imshow(grid(np.nan_to_num(x, nan=0.0).reshape(-1, *shape)), interpolation="nearest")
        ax.set_title(f"seed {int(s)}, step {int(traj['steps'][-1])}", fontsize=9)
        ax.axis("off")
    out.append(save_figure(fig, Path(run_dir) / "figures" / "samples_final.png"))
    return out


def cell_edges(values: np.ndarray, log: bool) -> np.ndarray:
    """Cell edges around sorted grid values (geometric midpoints on a log grid)."""
    v = np.log(values) if log else values.astype(float)
    if len(v) == 1:
        e = np.array([v[0] - 0.5, v[0] + 0.5]) if not log else np.array([v[0] - 0.25, v[0] + 0.25])
    else:
        mid = (v[1:] + v[:-1]) / 2
        e = np.concatenate([[v[0] - (mid[0] - v[0])], mid, [v[-1] + (v[-1] - mid[-1])]])
    return np.exp(e) if log else e


LOG_SPAN = 3.0
"""A positive grid whose largest value exceeds its smallest by more than this factor is drawn on a
log axis, whatever its count and spacing (a two-value learning-rate list on a linear axis showed
negative learning rates)."""


def is_log_axis(summary: dict, key: str, values: np.ndarray) -> bool:
    """Whether the swept ``key`` is drawn on a log axis: its sweep axis is a log one (``logspace``,
    or a list evenly spaced in log), or its ``values`` are positive and span more than
    :data:`LOG_SPAN`."""
    values = np.asarray(values, dtype=float)
    if any(a["key"] == key and a["scale"] == "log" for a in summary.get("sweep", {}).get("axes", [])):
        return True
    return bool(len(values) > 1 and (values > 0).all() and values.max() > LOG_SPAN * values.min())


def phase_grid(results: pd.DataFrame, x: str, y: str, color: str) -> dict:
    """Seed statistics on the (x, y) grid, arrays of shape (len(ys), len(xs)): ``mean``, ``std`` of
    ``color``; ``split_failed``, the fraction of seeds collapsed or run away (SPLIT_FAILED);
    ``diverged``, the fraction diverged; ``phase``, the index into PHASES of the most common phase
    (ties: the first in PHASES); ``fractions`` (len(PHASES), len(ys), len(xs)), the fraction of
    seeds in each phase (NaN where a cell has no run); ``seeds``, the most runs in a cell. Diverged members count as NaN in the mean and std, never as numbers."""
    xs, ys = np.sort(results[x].unique()), np.sort(results[y].unique())
    code = results.phase.map({p: i for i, p in enumerate(PHASES)}).astype(float)
    g = results.assign(_c=results.phase.isin(SPLIT_FAILED).astype(float), _d=(results.phase == "diverged").astype(float),
                       _p=code)
    g.loc[g.phase == "diverged", color] = np.nan
    agg = g.groupby([y, x]).agg(mean=(color, "mean"), std=(color, "std"), split_failed=("_c", "mean"),
                                diverged=("_d", "mean"), phase=("_p", lambda v: v.value_counts().sort_index().idxmax()))
    out = {"xs": xs, "ys": ys}
    for k in ("mean", "std", "split_failed", "diverged", "phase"):
        out[k] = agg[k].unstack(x).reindex(index=ys, columns=xs).to_numpy(dtype=float)
    frac = pd.crosstab([results[y], results[x]], results.phase, normalize="index")
    out["fractions"] = np.stack([frac[p].unstack(x).reindex(index=ys, columns=xs).to_numpy(dtype=float) if p in frac
                                 else np.where(np.isfinite(out["phase"]), 0.0, np.nan) for p in PHASES])
    out["seeds"] = int(results.groupby([y, x]).size().max())
    return out


def _boundary(ax, grid: dict) -> None:
    """The dashed line where half the seeds failed to split (collapsed or ran away)."""
    xs, ys = grid["xs"], grid["ys"]
    if len(xs) > 1 and len(ys) > 1 and np.nanmin(grid["split_failed"]) < 0.5 < np.nanmax(grid["split_failed"]):
        ax.contour(xs, ys, grid["split_failed"], levels=[0.5], colors="white", linewidths=2)
        ax.contour(xs, ys, grid["split_failed"], levels=[0.5], colors="black", linewidths=1, linestyles="--")


def _scales(ax, xlog: bool, ylog: bool) -> None:
    ax.set_xscale("log" if xlog else "linear")
    ax.set_yscale("log" if ylog else "linear")


def draw_phase(ax, grid: dict, xlog: bool, ylog: bool, label: str, cmap: str = "viridis"):
    """Heat map of the seed mean with the half-split-failed boundary; returns the mesh (for a colour bar)."""
    xs, ys = grid["xs"], grid["ys"]
    mesh = ax.pcolormesh(cell_edges(xs, xlog), cell_edges(ys, ylog), np.ma.masked_invalid(grid["mean"]), cmap=cmap, shading="flat")
    _boundary(ax, grid)
    for j, yv in enumerate(ys):
        for i, xv in enumerate(xs):
            if grid["diverged"][j, i] >= 0.5:
                ax.plot(xv, yv, marker="x", color="red", ms=7, mew=2)
    _scales(ax, xlog, ylog)
    return mesh


def draw_phase_labels(ax, grid: dict, xlog: bool, ylog: bool, legend: bool = True) -> set:
    """Every cell split into vertical stripes, one per phase its seeds ended in (PHASE_COLORS, in
    PHASES order), each as wide as the fraction of seeds in that phase; the boundary where half the
    seeds failed to split dashed, and a legend of the phases present (``legend``); returns the
    PHASES indices present."""
    xs, ys = grid["xs"], grid["ys"]
    ex, ey = cell_edges(xs, xlog), cell_edges(ys, ylog)
    fx = (lambda v: np.log(v)) if xlog else (lambda v: v)
    gx = (lambda v: np.exp(v)) if xlog else (lambda v: v)
    fr = grid["fractions"]
    rects, colors = [], []
    for j in range(len(ys)):
        for i in range(len(xs)):
            if not np.isfinite(fr[:, j, i]).all():
                continue
            a, b = fx(ex[i]), fx(ex[i + 1])
            left = a
            for p, f in enumerate(fr[:, j, i]):
                if f <= 0:
                    continue
                right = left + f * (b - a)
                rects.append(mpl.patches.Rectangle((gx(left), ey[j]), gx(right) - gx(left), ey[j + 1] - ey[j]))
                colors.append(PHASE_COLORS[PHASES[p]])
                left = right
    ax.add_collection(mpl.collections.PatchCollection(rects, facecolors=colors, edgecolors="none"))
    ax.vlines(ex, ey[0], ey[-1], colors="white", linewidths=0.6)  # cell outlines: stripes of one cell read together
    ax.hlines(ey, ex[0], ex[-1], colors="white", linewidths=0.6)
    ax.set_xlim(ex[0], ex[-1])
    ax.set_ylim(ey[0], ey[-1])
    _boundary(ax, grid)
    _scales(ax, xlog, ylog)
    present = {p for p in range(len(PHASES)) if np.nanmax(fr[p], initial=0.0) > 0}
    if legend:
        ax.legend(handles=phase_handles(present), fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0),
                  borderaxespad=0, frameon=False)
    return present


def draw_boundary_interval(ax, rows: pd.DataFrame, y: str, label: bool = True) -> None:
    """A boundary table's rows (``y``, ``x50``, ``lo``, ``hi``; :func:`gandy.runs.tables.boundary_table`)
    as points at x50 with horizontal bars over [lo, hi] and a shaded band through them; rows
    without a crossing in the range (``censored``) are left out, and an interval unbounded on one
    side runs past the axis's edge."""
    ok = np.isfinite(rows.x50.to_numpy(float))
    if "censored" in rows:
        ok &= rows.censored.fillna("").to_numpy() == ""
    r = rows[ok].sort_values(y)
    if r.empty:
        return
    yv, x50 = r[y].to_numpy(float), r.x50.to_numpy(float)
    lo, hi = r.lo.to_numpy(float), r.hi.to_numpy(float)
    left, right = ax.get_xlim()
    lo_c = np.minimum(np.where(np.isfinite(lo) & (lo > 0), lo, left), x50)
    hi_c = np.maximum(np.where(np.isfinite(hi) & (hi < 10 * right), hi, 10 * right), x50)  # an unbounded side: past the edge
    ax.fill_betweenx(yv, lo_c, hi_c, color="black", alpha=0.15, lw=0)
    ax.errorbar(x50, yv, xerr=[x50 - lo_c, hi_c - x50], fmt="o", color="black", ms=4, capsize=3, lw=1.2,
                label="x50 (P(fail) = 1/2), 95 % interval" if label else None)


def phase_handles(present) -> list:
    """Legend patches for the PHASES indices ``present``, in PHASES order."""
    return [mpl.patches.Patch(color=PHASE_COLORS[PHASES[i]], label=PHASES[i]) for i in sorted(present)]


def grid_boundary(results: pd.DataFrame, x: str, y: str, xlog: bool, draws: int = 1000,
                  fail: Sequence[str] = SPLIT_FAILED) -> pd.DataFrame:
    """Per value of ``y``, where half the runs fail (their phase in ``fail``; default: did not
    split, SPLIT_FAILED) along ``x``: :func:`gandy.runs.tables.boundary_table`'s columns ``y``,
    ``x50``, ``lo``, ``hi`` (the logistic x50 and its interval), ``censored`` (why a row has no
    x50 in range) and ``bracket_lo``, ``bracket_hi`` (where the row's points change from not
    failing to failing; NaN where its ends agree)."""
    return boundary_table(results, x, y, fail, log=xlog, draws=draws)[
        [y, "x50", "lo", "hi", "censored", "bracket_lo", "bracket_hi"]]


def plot_boundary(run_dir: Path) -> list[Path]:
    """The figure of a boundary search (``gandy boundary``): every point it ran, coloured by the
    fraction of its seeds that failed, and per row x50 with its 95 % interval (bars and band)."""
    run_dir = Path(run_dir)
    summary = read_json(run_dir / "summary.json")["boundary"]
    pts = read_parquet(run_dir / "points.parquet")
    table = read_parquet(run_dir / "boundary.parquet")
    x, y = summary["x"], summary["y"]
    ylog = is_log_axis(read_json(run_dir / "summary.json"), y, np.sort(pts[y].unique()))
    fig, ax = plt.subplots(figsize=(7.5, 5.2), layout="constrained")
    ax.set_xscale("log" if summary["scale"] == "log" else "linear")
    ax.set_yscale("log" if ylog else "linear")
    xs = summary.get("xs") or [pts[x].min(), pts[x].max()]
    pad = 1.3 if summary["scale"] == "log" else 1.0
    limits = (min(xs) / pad, max(xs) * pad)
    ax.set_xlim(*limits)
    sc = ax.scatter(pts[x], pts[y], c=pts.fail_fraction, cmap="coolwarm", vmin=0, vmax=1, s=40, edgecolors="k",
                    linewidths=0.4, zorder=3)
    fig.colorbar(sc, ax=ax, label=f"fraction of {len(summary['seeds'])} seeds failed ({', '.join(summary['fail'])})")
    draw_boundary_interval(ax, table, y)
    his = table.hi.to_numpy(float)[(table.censored == "").to_numpy() & np.isfinite(table.hi.to_numpy(float))]
    if len(his) and summary["scale"] == "log":  # an interval past the range is drawn whole, up to ten times its end
        limits = (limits[0], max(limits[1], min(his.max() * 1.2, max(xs) * 10)))
    ax.set_xlim(*limits)  # the bar of an unbounded interval runs past the edge
    ax.set_xlabel(axis_label(x))
    ax.set_ylabel(axis_label(y))
    ax.legend(fontsize=8, loc="best")
    ax.set_title(f"adaptive boundary: {summary['members']} members in {summary['rounds']} rounds "
                 f"(full grid at this resolution: {summary['full_grid_members']})", fontsize=9)
    return [save_figure(fig, run_dir / "figures" / "boundary.png")]


def plot_sweep(run_dir: Path) -> list[Path]:
    """The figures of a sweep directory: the phase diagram (coverage_kl) where the sweep has two axes."""
    axes = read_json(Path(run_dir) / "summary.json")["sweep"]["axes"]
    return [plot_phase(run_dir, axes[0]["key"], axes[1]["key"], "coverage_kl")] if len(axes) == 2 else []


def plot_phase(run_dir: Path, x: str, y: str, color: str = "coverage_kl") -> Path:
    """Phase diagram of a 2-D sweep: seed mean of ``color`` (left), the most common phase (middle),
    both with the boundary where half the seeds fail to split (dashed), and the seed spread (right)."""
    run_dir = Path(run_dir)
    res = read_parquet(run_dir / "results.parquet")
    summary = read_json(run_dir / "summary.json")
    for key in (x, y, color):
        if key not in res.columns:
            raise KeyError(f"{key!r} is not a column of results.parquet; columns: {', '.join(res.columns)}")
    grid = phase_grid(res, x, y, color)
    xlog, ylog = is_log_axis(summary, x, grid["xs"]), is_log_axis(summary, y, grid["ys"])
    n_seeds = res.groupby([x, y]).size().max()
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.2), layout="constrained")
    mesh = draw_phase(axes[0], grid, xlog, ylog, color)
    fig.colorbar(mesh, ax=axes[0], label=f"{LABELS.get(color, color)} (mean of {n_seeds} seeds)")
    axes[0].set_title("dashed: half the seeds collapsed or ran away; x: diverged", fontsize=9)
    draw_phase_labels(axes[1], grid, xlog, ylog)
    draw_boundary_interval(axes[1], grid_boundary(res, x, y, xlog), y)
    axes[1].set_title(f"phases of {n_seeds} seeds per cell (stripes: fraction in each phase); "
                      "dots: x50 with 95 % interval", fontsize=8)
    spread = axes[2].pcolormesh(cell_edges(grid["xs"], xlog), cell_edges(grid["ys"], ylog), np.ma.masked_invalid(grid["std"]),
                                cmap="magma", shading="flat")
    _scales(axes[2], xlog, ylog)
    fig.colorbar(spread, ax=axes[2], label=f"std over seeds of {color}")
    axes[2].set_title("seed spread", fontsize=9)
    for ax in axes:
        ax.set_xlabel(axis_label(x))
        ax.set_ylabel(axis_label(y))
    return save_figure(fig, run_dir / "figures" / f"phase_{color}.png")


def draw_image_rows(images: np.ndarray, labels: list[str], colors: list[str], path: Path, title: str) -> Path:
    """``images: (R, K, H, W)`` grey or ``(R, K, H, W, 3)`` RGB pixels in [0, 1] (clipped; a
    non-finite image is drawn black), one row of K per run, each row labelled (``labels``, in
    ``colors``)."""
    r, k = images.shape[:2]
    fig, axes = plt.subplots(r, k, figsize=(1.2 * k + 1.2, 1.25 * r), layout="constrained", squeeze=False)
    for i in range(r):
        for j in range(k):
            img = images[i, j]
            axes[i, j].imshow(np.clip(img, 0, 1) if np.isfinite(img).all() else np.zeros_like(img),
                              cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
            axes[i, j].set_xticks([])
            axes[i, j].set_yticks([])
        axes[i, 0].set_ylabel(labels[i], fontsize=6, color=colors[i])
    fig.suptitle(title, fontsize=8)
    return save_figure(fig, path)


def plot_final_samples(run_dir: Path, per_run: int = 3, path: Optional[Path] = None, name: str = "final") -> Path:
    """``path`` (default ``DIR/figures/final_samples.png``): particles 0, N/k, 2N/k, ... of every
    member of a sweep against an image target, from its kept final particles
    (``metrics.keep_particles``), one row per member labelled with its grid values and phase;
    ``name`` heads the title."""
    run_dir = Path(run_dir)
    res = read_parquet(run_dir / "results.parquet").set_index("member")
    keys = [a["key"] for a in read_json(run_dir / "summary.json")["sweep"]["axes"]]
    members, x = final_particles(run_dir)
    target = image_target(run_dir)
    c, h, w = target.image_shape
    n = x.shape[1]
    pick = x[:, [i * n // per_run for i in range(per_run)]]  # (R, per_run, D)
    imgs = target.unit_pixels(pick).reshape(len(members), per_run, c, h, w)
    imgs = imgs[:, :, 0] if c == 1 else np.moveaxis(imgs, 2, -1)  # grey (R, K, H, W) or RGB (R, K, H, W, C)
    rows = res.loc[members]
    labels = ["\n".join([*(f"{k.rsplit('.', 1)[-1]} {row[k]:.4g}" for k in keys), row["phase"]]) for _, row in rows.iterrows()]
    colors = [PHASE_COLORS.get(p, "k") for p in rows.phase]
    return draw_image_rows(imgs, labels, colors, path or run_dir / "figures" / "final_samples.png",
                           f"{name}: particles 0, N/{per_run}, ... per member\n(pixels in [0, 1], clipped; black: diverged)")
