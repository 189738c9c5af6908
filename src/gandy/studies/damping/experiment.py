"""damping: convergence against penalty weight for linear and MLP critics, penalties sobolev,
wgan_gp and r1, beside the linear theory (docs/model.md, "Critical damping"), over several seeds.

Each (critic, penalty) pair and seed (the config's ``seeds``: 0-4; ``--quick``: the first two) is
one ``gandy damping`` run over the same absolute weights, lambda_c x {0.1 ... 10} with lambda_c
the sobolev linear theory's critical weight, into ``OUT/<critic>-<penalty>/seed<S>/``. Per seed
the best measured weight, the discrete theory's best weight (for the MLP: the effective theory,
theta at the seed's initial critic) and the curvature-corrected theory's (``CurvedModel``) go to
``OUT/best.parquet``; their geometric means over seeds with Student-t 95 % intervals on the log
(``gandy.runs.summaries.seed_interval``), one row per pair, to ``OUT/intervals.parquet`` and
``OUT/summary.json``. ``OUT/figures/damping.png`` puts the pairs side by side, with error bars over
seeds; ``OUT/damping.parquet`` holds every member of every scan.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from gandy.runs.config import load_config
from gandy.runs.store import read_json, read_parquet
from gandy.runs.summaries import seed_interval
from gandy.studies.base import Experiment, StudyOptions, open_study, packaged, write_summary
from gandy.studies.damping.figures import plot_damping_overview
from gandy.studies.damping.model import linear_model, run_damping

DESCRIPTION = "critical damping: steps to converge vs penalty weight, linear and MLP critics, sobolev / wgan_gp / r1, 5 seeds"
CRITICS = {"linear": ["critic={name: linear}"], "mlp": ["critic={name: mlp, widths: [64], activation: tanh}"]}
PENALTIES = ("sobolev", "r1", "wgan_gp")
QUICK_SEEDS = 2
INTERVALS = ("lambda_best", "lambda_best_theory", "lambda_best_curved", "ratio", "ratio_curved")
"""The per-seed numbers given with an interval: the best measured weight, the discrete theory's and
the curved theory's best weights, and measured / theory for each theory."""


def base_config() -> dict:
    return packaged(__name__)


def log_interval(values) -> dict:
    """Geometric mean of positive ``values`` (one per seed; missing ones, None or NaN, left out) and
    its 95 % interval: :func:`seed_interval` of the logs, exponentiated (the weights lie on a
    geometric grid, and ratios are symmetric on a log scale). ``{"mean", "lo", "hi", "n"}``, None
    where there is no number (no seed converged; one seed has no interval)."""
    v = np.array([np.nan if x is None else x for x in values], dtype=float)
    m, lo, hi, n = seed_interval(np.log(np.where(v > 0, v, np.nan)))
    return {**{k: float(np.exp(x)) if np.isfinite(x) else None for k, x in (("mean", m), ("lo", lo), ("hi", hi))}, "n": n}


def best_row(name: str, seed: int, s: dict) -> dict:
    """One seed's best weights (measured, discrete theory, curved theory; None where there is none)
    and measured / theory, from a damping run's summary ``s``."""
    curved = (s.get("curved") or {}).get("lambda_best")
    best, theory = s["lambda_best"], s["lambda_best_theory"]
    critic, pen = name.split("-", 1)
    return {"critic": critic, "penalty": pen, "seed": seed, "lambda_c": s["lambda_c"], "lambda_best": best,
            "lambda_best_theory": theory, "lambda_best_curved": curved,
            "theta_final": (s.get("curved") or {}).get("theta"), "curvature_final": (s.get("curved") or {}).get("curvature"),
            "ratio": best / theory if best and theory else None, "ratio_curved": best / curved if best and curved else None}


def run(out: Path, options: StudyOptions = StudyOptions()) -> list[Path]:
    out = Path(out)
    base = load_config(base_config(), list(options.overrides))
    lam_c = linear_model(base).lambda_c
    weights = list(lam_c * np.geomspace(0.1, 10, 9 if options.quick else 17))
    seeds = list(base.seeds[:QUICK_SEEDS] if options.quick else base.seeds)
    cfgs = {f"{cname}-{pen}": load_config(base, [*cov, f"penalty.name={pen}", *(["steps=500"] if options.quick else [])])
            for cname, cov in CRITICS.items() for pen in PENALTIES}  # every scan validated first
    open_study(out, options)
    rows, best = [], []
    summary = {"experiment": "damping", "lambda_c_sobolev_linear": lam_c, "seeds": seeds,
               "interval": "geometric mean over seeds, Student-t 95 % interval on the log (gandy.runs.summaries.seed_interval)",
               "runs": {}}
    for name, cfg in cfgs.items():
        for seed in seeds:
            d = out / name / f"seed{seed}"
            if options.resume and (d / "damping.parquet").exists():
                tab, s = read_parquet(d / "damping.parquet"), read_json(d / "summary.json")
            else:
                options.echo(f"damping: {name}, seed {seed}")
                tab, s = run_damping(cfg, weights, d, seed=seed)
            critic, pen = name.split("-", 1)
            rows.append(tab.drop(columns="eigenvalues").assign(critic=critic, penalty=pen, seed=seed))
            best.append(best_row(name, seed, s))
        b = [r for r in best if f"{r['critic']}-{r['penalty']}" == name]
        summary["runs"][name] = {k: {**log_interval([r[k] for r in b]), "per_seed": [r[k] for r in b]} for k in INTERVALS}
        summary["runs"][name]["theory"] = s["theory"].get("kind", s["theory"].get("why"))
    best_table = pd.DataFrame(best)
    intervals = pd.DataFrame([{"critic": n.split("-", 1)[0], "penalty": n.split("-", 1)[1],
                               **{f"{k}_{q}": r[k][q] for k in INTERVALS for q in ("mean", "lo", "hi", "n")}}
                              for n, r in summary["runs"].items()])
    intervals = intervals.astype({c: float for c in intervals.columns if c.endswith(("_mean", "_lo", "_hi"))})  # None -> NaN
    table = pd.concat(rows, ignore_index=True)
    write_summary(out, summary, {"damping": table, "best": best_table, "intervals": intervals})
    fig = plot_damping_overview(out / "damping.parquet", lam_c, out / "figures" / "damping.png", out / "intervals.parquet")
    return [fig] + sorted((out / "linear-sobolev" / f"seed{seeds[0]}" / "figures").glob("*.png"))


EXPERIMENT = Experiment("damping", DESCRIPTION, run)
