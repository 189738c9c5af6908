"""Figures drawn from a run directory (never from live objects). Matplotlib, Agg backend."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from .metrics.order import ORDER_PARAMETERS  # noqa: E402

LABELS = {
    "coverage_kl": "coverage KL (0 = even)",
    "modes_covered": "modes covered",
    "on_mode": "fraction on a mode",
    "mean_dist": "mean distance to mode",
    "com_error": "centre-of-mass error",
    "mean_abs_cos": "mean |cos| between particles",
    "w1": "W1 to target",
}


def _save(fig, path: Path) -> Path:
    """Write a figure (creating its folder) and close it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _load(run_dir: Path):
    with np.load(run_dir / "trajectory.npz") as z:
        traj = {k: z[k] for k in z.files}
    return traj, json.loads((run_dir / "summary.json").read_text())


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
    traj, summary = _load(run_dir)
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
    return _save(fig, run_dir / "figures" / "particles.png")


def plot_order(run_dir: Path) -> Path:
    run_dir = Path(run_dir)
    m = pd.read_parquet(run_dir / "metrics.parquet")
    keys = [k for k in ORDER_PARAMETERS if m[k].notna().any()]
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
    return _save(fig, run_dir / "figures" / "order_parameters.png")


def plot_run(run_dir: Path) -> list[Path]:
    """All figures of one run directory (image runs: sample grids instead of particle plots)."""
    with np.load(Path(run_dir) / "trajectory.npz") as z:
        images = "image_shape" in z.files
    if images:
        return [*plot_sample_grids(run_dir), plot_order(run_dir)]
    return [p for p in (plot_particles(run_dir), plot_order(run_dir)) if p is not None]


def plot_sample_grids(run_dir: Path, max_images: int = 64) -> list[Path]:
    """``figures/samples/step_XXXXXX.png``: a grid of the first seed's images at every snapshot (the
    same fixed latents each time), and ``figures/samples_final.png``: the last snapshot of every seed."""
    from .images.data import grid, save_grid

    traj, _ = _load(Path(run_dir))
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
    out.append(_save(fig, Path(run_dir) / "figures" / "samples_final.png"))
    return out


def plot_demo(run_dirs: list[Path], path: Path) -> Path:
    """Side-by-side space-time plots (first seed) of several 1-D runs, titled by g2/g1 and phase."""
    fig, axes = plt.subplots(1, 2 * len(run_dirs), figsize=(6.5 * len(run_dirs), 3.6), layout="constrained",
                             gridspec_kw={"width_ratios": [5, 1] * len(run_dirs)})
    for i, run_dir in enumerate(map(Path, run_dirs)):
        traj, summary = _load(run_dir)
        k = summary.get("kernel", {})
        phase = summary["phases"][str(int(traj["seeds"][0]))]
        spacetime_1d(axes[2 * i], traj, 0, f"g2/g1 = {k.get('ratio', float('nan')):.2g}: {phase}")
        density_1d(axes[2 * i + 1], traj)
        axes[2 * i + 1].set_ylim(axes[2 * i].get_ylim())
    return _save(fig, path)


def _edges(values: np.ndarray, log: bool) -> np.ndarray:
    """Cell edges around sorted grid values (geometric midpoints on a log grid)."""
    v = np.log(values) if log else values.astype(float)
    if len(v) == 1:
        e = np.array([v[0] - 0.5, v[0] + 0.5]) if not log else np.array([v[0] - 0.25, v[0] + 0.25])
    else:
        mid = (v[1:] + v[:-1]) / 2
        e = np.concatenate([[v[0] - (mid[0] - v[0])], mid, [v[-1] + (v[-1] - mid[-1])]])
    return np.exp(e) if log else e


def _is_log(summary: dict, key: str, values: np.ndarray) -> bool:
    for a in summary.get("sweep", {}).get("axes", []):
        if a["key"] == key:
            return a["scale"] == "log"
    return bool((values > 0).all() and len(values) > 2 and np.allclose(np.diff(np.log(values)), np.diff(np.log(values))[0]))


def phase_grid(results: pd.DataFrame, x: str, y: str, color: str) -> dict:
    """Seed statistics on the (x, y) grid: ``mean``, ``std`` of ``color``, ``collapsed`` and
    ``diverged`` fractions; arrays of shape (len(ys), len(xs)). Diverged members count as NaN in
    the mean and std, never as numbers."""
    xs, ys = np.sort(results[x].unique()), np.sort(results[y].unique())
    g = results.assign(_c=(results.phase == "collapsed").astype(float), _d=(results.phase == "diverged").astype(float))
    g.loc[g.phase == "diverged", color] = np.nan
    agg = g.groupby([y, x]).agg(mean=(color, "mean"), std=(color, "std"), collapsed=("_c", "mean"), diverged=("_d", "mean"))
    out = {"xs": xs, "ys": ys}
    for k in ("mean", "std", "collapsed", "diverged"):
        out[k] = agg[k].unstack(x).reindex(index=ys, columns=xs).to_numpy(dtype=float)
    return out


def draw_phase(ax, grid: dict, xlog: bool, ylog: bool, label: str, cmap: str = "viridis"):
    """Heat map of the seed mean with the half-collapse boundary; returns the mesh (for a colour bar)."""
    xs, ys = grid["xs"], grid["ys"]
    mesh = ax.pcolormesh(_edges(xs, xlog), _edges(ys, ylog), np.ma.masked_invalid(grid["mean"]), cmap=cmap, shading="flat")
    if len(xs) > 1 and len(ys) > 1 and np.nanmin(grid["collapsed"]) < 0.5 < np.nanmax(grid["collapsed"]):
        ax.contour(xs, ys, grid["collapsed"], levels=[0.5], colors="white", linewidths=2)
        ax.contour(xs, ys, grid["collapsed"], levels=[0.5], colors="black", linewidths=1, linestyles="--")
    for j, yv in enumerate(ys):
        for i, xv in enumerate(xs):
            if grid["diverged"][j, i] >= 0.5:
                ax.plot(xv, yv, marker="x", color="red", ms=7, mew=2)
    ax.set_xscale("log" if xlog else "linear")
    ax.set_yscale("log" if ylog else "linear")
    return mesh


def plot_phase(run_dir: Path, x: str, y: str, color: str = "coverage_kl") -> Path:
    """Phase diagram of a 2-D sweep: seed mean of ``color`` (left, with the boundary where half
    the seeds collapse, dashed) and the seed spread (right)."""
    run_dir = Path(run_dir)
    res = pd.read_parquet(run_dir / "results.parquet")
    summary = json.loads((run_dir / "summary.json").read_text())
    for key in (x, y, color):
        if key not in res.columns:
            raise KeyError(f"{key!r} is not a column of results.parquet; columns: {', '.join(res.columns)}")
    grid = phase_grid(res, x, y, color)
    xlog, ylog = _is_log(summary, x, grid["xs"]), _is_log(summary, y, grid["ys"])
    n_seeds = res.groupby([x, y]).size().max()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
    mesh = draw_phase(axes[0], grid, xlog, ylog, color)
    fig.colorbar(mesh, ax=axes[0], label=f"{LABELS.get(color, color)} (mean of {n_seeds} seeds)")
    axes[0].set_title("dashed: half the seeds collapsed; x: diverged", fontsize=9)
    spread = axes[1].pcolormesh(_edges(grid["xs"], xlog), _edges(grid["ys"], ylog), np.ma.masked_invalid(grid["std"]),
                                cmap="magma", shading="flat")
    axes[1].set_xscale("log" if xlog else "linear")
    axes[1].set_yscale("log" if ylog else "linear")
    fig.colorbar(spread, ax=axes[1], label=f"std over seeds of {color}")
    axes[1].set_title("seed spread", fontsize=9)
    for ax in axes:
        ax.set_xlabel(x)
        ax.set_ylabel(y)
    return _save(fig, run_dir / "figures" / f"phase_{color}.png")


def plot_collapse_pair(run_dirs: list[Path], names: list[str], path: Path, x: str, y: str,
                       color: str = "coverage_kl") -> Path:
    """Phase diagrams of several sweeps side by side, one shared colour scale."""
    fig, axes = plt.subplots(1, len(run_dirs), figsize=(5.4 * len(run_dirs), 4.3), layout="constrained", squeeze=False)
    mesh = None
    for ax, run_dir, name in zip(axes[0], map(Path, run_dirs), names):
        res = pd.read_parquet(run_dir / "results.parquet")
        summary = json.loads((run_dir / "summary.json").read_text())
        grid = phase_grid(res, x, y, color)
        mesh = draw_phase(ax, grid, _is_log(summary, x, grid["xs"]), _is_log(summary, y, grid["ys"]), color)
        mesh.set_clim(0, np.log(2) if color == "coverage_kl" else None)
        ax.set_title(f"{name} critic (dashed: half the seeds collapsed)", fontsize=10)
        ax.set_xlabel(f"{x} (g1 = 1, so g2/g1)")
        ax.set_ylabel(y)
    fig.colorbar(mesh, ax=axes[0, -1], label=LABELS.get(color, color) + ", mean over seeds")
    return _save(fig, path)


def plot_damping(run_dir: Path) -> list[Path]:
    """Figures of a damping run: convergence time vs lambda/lambda_c (with theory), under-,
    critically and over-damped trajectories, eigenvalue paths in the complex plane."""
    run_dir = Path(run_dir)
    tab = pd.read_parquet(run_dir / "damping.parquet")
    traj = pd.read_parquet(run_dir / "trajectories.parquet")
    summary = json.loads((run_dir / "summary.json").read_text())
    theory = pd.read_parquet(run_dir / "theory.parquet") if (run_dir / "theory.parquet").exists() else None
    lc = summary.get("lambda_c") or 1.0
    xlabel = "penalty weight λ / λ_c" if summary.get("lambda_c") else "penalty weight λ"
    tol = summary["tol"]
    paths = []

    fig, ax = plt.subplots(figsize=(6.2, 4.2), layout="constrained")
    ok = tab[tab.steps_to_converge >= 0]
    ax.plot(ok.weight / lc, ok.steps_to_converge, "o", color="tab:blue", label=f"measured (|e| ≤ {tol:g}·|e₀|)")
    never = tab[tab.steps_to_converge < 0]
    if len(never):
        ax.plot(never.weight / lc, np.full(len(never), summary["steps"]), "v", color="tab:gray",
                label=f"not converged in {summary['steps']} steps")
    if theory is not None:
        ax.plot(theory.weight / lc, np.log(1 / tol) / theory.decay_rate.where(theory.decay_rate > 0), "-", color="tab:red",
                label="theory: discrete map")
        ax.plot(theory.weight / lc, np.log(1 / tol) / theory.continuous_decay_rate, "--", color="tab:orange",
                label="theory: continuous time")
        ax.axvline(1.0, color="k", lw=0.8, ls=":")
        if summary.get("lambda_best_theory"):
            ax.axvline(summary["lambda_best_theory"] / lc, color="tab:red", lw=0.8, ls=":")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_ylim(top=summary["steps"] * 3)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("steps to converge")
    ax.set_title(f"{summary['critic']} critic, {summary['penalty']} penalty", fontsize=10)
    ax.legend(fontsize=8)
    paths.append(_save(fig, run_dir / "figures" / "convergence_time.png"))

    fig, ax = plt.subplots(figsize=(6.2, 4.2), layout="constrained")
    ws = np.sort(tab.weight.unique())
    picks = {"under-damped": ws[0], "near critical": ws[np.argmin(np.abs(np.log(ws / lc)))], "over-damped": ws[-1]}
    for (name, w), col in zip(picks.items(), ("tab:blue", "tab:green", "tab:purple")):
        t = traj[traj.weight == w]
        ax.plot(t.step, t.com_error / t.com_error.iloc[0], color=col, lw=1.2, label=f"{name}: λ/λ_c = {w / lc:.2g}")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("|μ_P − μ_Q| / initial")
    ax.legend(fontsize=8)
    paths.append(_save(fig, run_dir / "figures" / "trajectories.png"))

    fig, ax = plt.subplots(figsize=(6.0, 4.6), layout="constrained")
    ax.axvline(0, color="k", lw=0.6)
    if theory is not None:  # the theory path over the measured range of weights, as s = log z
        theory = theory[(theory.weight >= tab.weight.min()) & (theory.weight <= tab.weight.max())]
        for k in (1, 2):
            s_ = np.log(theory[f"eig{k}_re"].to_numpy() + 1j * theory[f"eig{k}_im"].to_numpy())
            sc = ax.scatter(s_.real, s_.imag, c=np.log10(theory.weight / lc), s=4, cmap="coolwarm", vmin=-1, vmax=1)
        fig.colorbar(sc, ax=ax, label="log10 λ/λ_c (theory, discrete map)")
    for eigs in tab.eigenvalues:
        e = np.array([complex(*z) for z in eigs])
        e = e[(np.abs(e - 1) > 1e-7) & (np.abs(e) > 0)]
        ax.plot(np.log(e).real, np.log(e).imag, "x", color="k", ms=5)
    ax.plot([], [], "x", color="k", label="Jacobian of the update map (measured weights)")
    ax.set_xscale("symlog", linthresh=0.01)  # slow and fast over-damped branches differ by decades
    ax.set_xlabel("Re log z  (−decay rate per step; symlog)")
    ax.set_ylabel("Im log z  (angular frequency per step)")
    ax.set_title("eigenvalues z of the one-step map, as s = log z (Re s < 0: decays)", fontsize=9)
    ax.legend(fontsize=8, loc="upper left")
    paths.append(_save(fig, run_dir / "figures" / "eigenvalues.png"))
    return paths


def plot_damping_overview(table_path: Path, lambda_c: float, path: Path) -> Path:
    """Steps to converge vs lambda / lambda_c, one panel per critic, one line per penalty, with the
    sobolev linear theory (discrete map) for reference."""
    tab = pd.read_parquet(table_path)
    critics = list(dict.fromkeys(tab.critic))
    fig, axes = plt.subplots(1, len(critics), figsize=(5.6 * len(critics), 4.2), layout="constrained", squeeze=False, sharey=True)
    for ax, c in zip(axes[0], critics):
        for pen, g in tab[tab.critic == c].groupby("penalty", sort=False):
            g = g.sort_values("weight")
            y = g.steps_to_converge.where(g.steps_to_converge >= 0)
            ax.plot(g.weight / lambda_c, y, "o-", ms=4, label=f"{pen} (measured)")
            if g.theory_decay_rate.notna().any():
                rate = g.theory_decay_rate.where(g.theory_decay_rate > 0)  # unstable map: no finite time
                ax.plot(g.weight / lambda_c, np.log(1e3) / rate, ":", color=ax.lines[-1].get_color(),
                        label=f"{pen} (theory{'' if c == 'linear' else ', effective'})")
        ax.axvline(1.0, color="k", lw=0.6, ls=":")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("penalty weight λ / λ_c (λ_c: sobolev, linear critic)")
        ax.set_title(f"{c} critic (gaps: not converged)", fontsize=10)
        ax.legend(fontsize=7)
    axes[0, 0].set_ylabel("steps to converge (|e| ≤ 1e-3 |e₀|)")
    return _save(fig, path)


def plot_many_paths(out: Path, targets: list[str], games: list[str]) -> list[Path]:
    """Figures of the many-paths experiment, drawn from its run directories."""
    out = Path(out)
    paths = []
    for target in targets:
        trajs = {g: _load(out / target / g)[0] for g in games}
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
        paths.append(_save(fig, out / "figures" / f"samples_{target}.png"))

        keys = ["js", "kl_pq", "w1", "mmd"]
        fig, axes = plt.subplots(1, len(keys), figsize=(4.0 * len(keys), 3.4), layout="constrained", squeeze=False)
        for g in games:
            m = pd.read_parquet(out / target / g / "metrics.parquet").groupby("step")[keys].mean()
            for ax, k in zip(axes[0], keys):
                ax.plot(m.index, m[k].replace([np.inf], np.nan), lw=1.2, label=g)
        for ax, k in zip(axes[0], keys):
            ax.set_xlabel("step")
            ax.set_ylabel(k + (" (inf not drawn)" if k.startswith("kl") else ""))
            if k == "js":
                ax.axhline(np.log(2), color="k", lw=0.6, ls=":")
        axes[0, 0].legend(fontsize=7, ncol=2)
        fig.suptitle(f"{target}: divergences per step, mean over seeds (dotted: log 2)", fontsize=10)
        paths.append(_save(fig, out / "figures" / f"divergences_{target}.png"))

    tab = pd.read_parquet(out / "increases.parquet")
    cols = [c for c in tab.columns if c.startswith("increased_")]
    fig, axes = plt.subplots(1, len(targets), figsize=(6.5 * len(targets), 3.8), layout="constrained", squeeze=False)
    for ax, target in zip(axes[0], targets):
        t = tab[tab.target == target].set_index("game")[cols]
        width = 0.8 / len(cols)
        x = np.arange(len(t))
        for j, c in enumerate(cols):
            ax.bar(x + j * width, t[c].fillna(0), width, label=c.removeprefix("increased_"))
        ax.set_xticks(x + 0.4 - width / 2, t.index, rotation=45, fontsize=8)
        ax.set_ylabel("fraction of logged steps it increased")
        ax.set_ylim(0, 1)
        ax.set_title(target, fontsize=10)
        ax.legend(fontsize=7)
    paths.append(_save(fig, out / "figures" / "increases.png"))
    return paths


def plot_robustness(out: Path, table: pd.DataFrame) -> list[Path]:
    """Figures of the robustness experiment from its table (one row per game x trial x seed)."""
    from .images.data import grid

    out = Path(out)
    games = list(dict.fromkeys(table.game))
    paths = []
    for key, label, log, fname in (("fid", "FID (digit-classifier features)", True, "fid.png"),
                                   ("modes_covered", "modes covered (of 1,000)", False, "modes.png")):
        fig, ax = plt.subplots(figsize=(1.6 * len(games) + 2.5, 4.0), layout="constrained")
        rng = np.random.default_rng(0)
        for i, g in enumerate(games):
            t = table[table.game == g]
            v = t.loc[~t.diverged, key].astype(float).to_numpy()
            if len(v):
                ax.boxplot([v], positions=[i], widths=0.5, showfliers=False)
                ax.scatter(i + rng.uniform(-0.15, 0.15, len(v)), v, s=14, alpha=0.7, color="tab:blue", zorder=3)
            ax.annotate(f"{int(t.diverged.sum())}/{len(t)} diverged", (i, 1.0), xycoords=("data", "axes fraction"),
                        ha="center", va="bottom", fontsize=8, color="tab:red")
        ax.set_xticks(range(len(games)), games)
        ax.set_xlabel("game")
        ax.set_ylabel(label)
        if log:
            ax.set_yscale("log")
        ax.set_title(f"{label} across random hyperparameter draws (points: trials x seeds)", fontsize=10, pad=16)
        paths.append(_save(fig, out / "figures" / fname))
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
    paths.append(_save(fig, out / "figures" / "samples.png"))
    return paths


def plot_bridge(table: pd.DataFrame, summary: pd.DataFrame, path: Path) -> Path:
    """Bridge experiment: discrepancy to the network over time per width (one panel per particle
    side, first step size), and final discrepancy against width for every side and step size."""
    etas = sorted(table.eta.unique())
    widths = sorted(table.width.unique())
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), layout="constrained")
    colors = plt.cm.viridis(np.linspace(0, 0.85, len(widths)))
    t0 = table[table.eta == etas[0]]
    for ax, side in zip(axes[:2], ("empirical_ntk", "two_number")):
        for w, c in zip(widths, colors):
            m = t0[(t0.side == side) & (t0.width == w) & (t0.step > 0)].groupby("step").discrepancy.mean()
            ax.plot(m.index, m.to_numpy(), color=c, label=f"width {w}")
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel("mean |X_i - G(z_i)| (mean over seeds)")
        ax.set_title(f"{side} particles vs the network (eta = {etas[0]:g})", fontsize=10)
        ax.legend(fontsize=8)
    ax = axes[2]
    for side, marker in (("empirical_ntk", "o"), ("two_number", "s")):
        for eta, ls in zip(etas, ("-", "--", ":", "-.")):
            s = summary[(summary.side == side) & (summary.eta == eta)].sort_values("width")
            ax.plot(s.width, s.final_discrepancy, marker=marker, ls=ls, label=f"{side}, eta {eta:g}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("generator width")
    ax.set_ylabel("final discrepancy (mean over seeds)")
    ax.set_title("discrepancy at the last step against width", fontsize=10)
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_mnist_collapse(results: pd.DataFrame, path: Path, x: str, y: str) -> Path:
    """The 784-D phase diagram: coverage_kl and mean |cos| over (g2/g1, critic lr); g2/g1 = 0 is
    drawn one grid step left of the smallest positive value on the log axis and labelled 0."""
    xs = np.sort(results[x].unique())
    pos = xs[xs > 0]
    step = pos[1] / pos[0] if len(pos) > 1 else 10.0
    shown = results.assign(**{x: results[x].where(results[x] > 0, pos[0] / step if len(pos) else 1.0)})
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.4), layout="constrained")
    for ax, color, label in ((axes[0], "coverage_kl", "coverage_kl = KL(digit histogram || uniform)"),
                             (axes[1], "mean_abs_cos", "mean |cos| between particles")):
        grid = phase_grid(shown, x, y, color)
        mesh = draw_phase(ax, grid, True, True, color)
        if color == "coverage_kl":
            mesh.set_clim(0, np.log(100))
        fig.colorbar(mesh, ax=ax, label=label)
        ax.set_xlabel("g2/g1 (leftmost column: 0)")
        ax.set_ylabel("critic learning rate")
        if (results[x] == 0).any():
            ticks = [pos[0] / step, *[v for v in (0.01, 0.1, 1.0) if pos.min() <= v <= pos.max() * 1.01]]
            ax.set_xticks(ticks, ["0", *[f"{v:g}" for v in ticks[1:]]])
        ax.set_title("dashed: collapsed boundary; x: diverged", fontsize=9)
    fig.suptitle("100 particles in 784-D against 100 MNIST digits (coverage by nearest digit, cosine)", fontsize=10)
    return _save(fig, path)


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
            ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
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
    paths = [_save(fig, Path(folder) / "spread.png")]
    fig, axes = plt.subplots(1, len(acts), figsize=(5.6 * len(acts), 4.4), layout="constrained", squeeze=False)
    vals = table.rel_distance.to_numpy()
    norm = matplotlib.colors.LogNorm(vmin=max(vals.min(), 1e-3), vmax=vals.max())
    for ax, act in zip(axes[0], acts):
        t = table[table.activation == act].pivot(index="latent_dim", columns="width", values="rel_distance")
        w, dz = t.columns.to_numpy(), t.index.to_numpy()
        mesh = ax.pcolormesh(_edges(w, True), _edges(dz, True), t.to_numpy(), cmap="viridis", norm=norm, shading="flat")
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
    paths.append(_save(fig, Path(folder) / "distance.png"))
    return paths
