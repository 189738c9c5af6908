"""Figures of the damping study, drawn from its output files."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gandy.runs.store import read_json, read_parquet
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


def plot_damping_overview(table_path: Path, lambda_c: float, path: Path) -> Path:
    """Steps to converge vs lambda / lambda_c, one panel per critic, one line per penalty (judged at
    its scan's ``tol_used``), with the linear or effective theory (discrete map) at that tolerance."""
    tab = read_parquet(table_path)
    critics = list(dict.fromkeys(tab.critic))
    fig, axes = plt.subplots(1, len(critics), figsize=(5.6 * len(critics), 4.2), layout="constrained", squeeze=False, sharey=True)
    for ax, c in zip(axes[0], critics):
        for pen, g in tab[tab.critic == c].groupby("penalty", sort=False):
            g = g.sort_values("weight")
            y = g.steps_to_converge.where(g.steps_to_converge >= 0)
            tol = float(g.tol_used.iloc[0]) if "tol_used" in g else 1e-3
            ax.plot(g.weight / lambda_c, y, "o-", ms=4, label=f"{pen} (measured, tol {tol:.2g})")
            if g.theory_decay_rate.notna().any():
                rate = g.theory_decay_rate.where(g.theory_decay_rate > 0)  # unstable map: no finite time
                ax.plot(g.weight / lambda_c, np.log(1 / tol) / rate, ":", color=ax.lines[-1].get_color(),
                        label=f"{pen} (theory{'' if c == 'linear' else ', effective'})")
        ax.axvline(1.0, color="k", lw=0.6, ls=":")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("penalty weight λ / λ_c (λ_c: sobolev, linear critic)")
        ax.set_title(f"{c} critic (gaps: not converged)", fontsize=10)
        ax.legend(fontsize=7)
    axes[0, 0].set_ylabel("steps until |e| ≤ tol·|e₀| (tol: legend)")
    return save_figure(fig, path)
