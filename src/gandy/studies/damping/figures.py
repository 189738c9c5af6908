"""Figures of the damping study, drawn from its output files."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from gandy.runs.store import read_json, read_parquet
from gandy.runs.summaries import seed_interval
from gandy.views.plots import plt, save_figure


def plot_damping(run_dir: Path) -> list[Path]:
    """Figures of a damping run: convergence time vs lambda/lambda_c (with theory), under-,
    critically and over-damped trajectories, eigenvalue paths in the complex plane."""
    run_dir = Path(run_dir)
    tab = read_parquet(run_dir / "damping.parquet")
    traj = read_parquet(run_dir / "trajectories.parquet")
    summary = read_json(run_dir / "summary.json")
    theory = read_parquet(run_dir / "theory.parquet") if (run_dir / "theory.parquet").exists() else None
    lc = summary.get("lambda_c") or 1.0
    xlabel = "penalty weight λ / λ_c" if summary.get("lambda_c") else "penalty weight λ"
    tol = summary.get("tol_used", summary["tol"])
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
    paths.append(save_figure(fig, run_dir / "figures" / "convergence_time.png"))

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
    paths.append(save_figure(fig, run_dir / "figures" / "trajectories.png"))

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
    paths.append(save_figure(fig, run_dir / "figures" / "eigenvalues.png"))
    return paths


def plot_damping_overview(table_path: Path, lambda_c: float, path: Path, intervals_path: Optional[Path] = None) -> Path:
    """Steps to converge vs lambda / lambda_c, one panel per critic, one line per penalty (judged at
    its scan's ``tol_used``), with the linear or effective theory (discrete map) at that tolerance.

    With several seeds (a ``seed`` column): the mean over the seeds that converged, with its 95 %
    t interval as error bars, drawn where at least half the seeds converged; the theory is the
    median over seeds (for a nonlinear critic also the curved theory, dashed). With ``intervals_path`` (the study's ``intervals.parquet``): the best
    measured weight of each penalty, its geometric mean over seeds and 95 % interval, as a
    horizontal bar near the top of the panel."""
    tab = read_parquet(table_path)
    if "seed" not in tab:
        tab = tab.assign(seed=0)
    iv = read_parquet(intervals_path) if intervals_path is not None else None
    critics = list(dict.fromkeys(tab.critic))
    fig, axes = plt.subplots(1, len(critics), figsize=(5.6 * len(critics), 5.4), layout="constrained", squeeze=False, sharey=True)
    top = float(tab.steps_to_converge.max()) * 2.2
    done = tab.steps_to_converge[tab.steps_to_converge > 0]
    bottom = float(done.min()) * 0.6 if len(done) else 1.0
    for ax, c in zip(axes[0], critics):
        for j, (pen, g) in enumerate(tab[tab.critic == c].groupby("penalty", sort=False)):
            n_seeds = g.seed.nunique()
            tol = float(g.tol_used.median()) if "tol_used" in g else 1e-3
            per_w = []
            for w, gw in g.groupby("weight", sort=True):
                mean, lo, hi, n = seed_interval(gw.steps_to_converge.where(gw.steps_to_converge >= 0))
                ok = n >= max(1, n_seeds / 2)
                per_w.append((w, mean if ok else np.nan, lo if ok else np.nan, hi if ok else np.nan))
            w, m, lo, hi = (np.array(v, dtype=float) for v in zip(*per_w))
            err = np.stack([m - np.where(np.isfinite(lo), lo, m), np.where(np.isfinite(hi), hi, m) - m])
            line = ax.errorbar(w / lambda_c, m, yerr=np.clip(err, 0, None), fmt="o-", ms=4, capsize=2,
                               label=f"{pen} (measured, {n_seeds} seed{'s' if n_seeds > 1 else ''}, tol ~{tol:.2g})")
            col = line[0].get_color()
            if g.theory_decay_rate.notna().any():
                rate = g.groupby("weight", sort=True).theory_decay_rate.median()
                rate = rate.where(rate > 0)  # unstable map: no finite time
                ax.plot(rate.index / lambda_c, np.log(1 / tol) / rate, ":", color=col,
                        label=f"{pen} (theory{'' if c == 'linear' else ', effective'})")
            if c != "linear" and "curved_decay_rate" in g and g.curved_decay_rate.notna().any():
                rate = g.groupby("weight", sort=True).curved_decay_rate.median()
                ax.plot(rate.index / lambda_c, np.log(1 / tol) / rate.where(rate > 0), "--", color=col, lw=0.9,
                        label=f"{pen} (curved theory)")
            if iv is not None:
                r = iv[(iv.critic == c) & (iv.penalty == pen)]
                if len(r) and np.isfinite(r.lambda_best_mean.iloc[0]):
                    r = r.iloc[0]
                    y = top * 0.8 ** (j + 1)
                    xlo = r.lambda_best_lo if np.isfinite(r.lambda_best_lo) else r.lambda_best_mean
                    xhi = r.lambda_best_hi if np.isfinite(r.lambda_best_hi) else r.lambda_best_mean
                    ax.errorbar([r.lambda_best_mean / lambda_c], [y], xerr=[[(r.lambda_best_mean - xlo) / lambda_c],
                                [(xhi - r.lambda_best_mean) / lambda_c]], fmt="D", color=col, ms=5, capsize=3)
        ax.axvline(1.0, color="k", lw=0.6, ls=":")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_ylim(bottom, top)
        ax.set_xlabel("penalty weight λ / λ_c (λ_c: sobolev, linear critic)")
        ax.set_title(f"{c} critic (gaps: not converged; ◆: best λ, 95 % interval over seeds)", fontsize=9)
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2)
    axes[0, 0].set_ylabel("steps until |e| ≤ tol·|e₀| (mean over seeds, 95 % interval)")
    return save_figure(fig, path)
