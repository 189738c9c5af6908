"""damping: convergence against penalty weight for linear and MLP critics, penalties sobolev,
wgan_gp and r1, beside the linear theory (docs/model.md, "Critical damping").

Each (critic, penalty) pair is one ``gandy damping`` run over the same absolute weights,
lambda_c x {0.1 ... 10} with lambda_c the sobolev linear theory's critical weight, into
``OUT/<critic>-<penalty>/``; ``OUT/figures/damping.png`` puts them side by side and
``OUT/summary.json`` / ``OUT/damping.parquet`` hold the numbers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from gandy.runs.config import load_config
from gandy.runs.store import read_json, read_parquet
from gandy.studies.base import Experiment, StudyOptions, open_study, packaged, write_summary
from gandy.studies.damping.figures import plot_damping_overview
from gandy.studies.damping.model import linear_model, run_damping

DESCRIPTION = "critical damping: steps to converge vs penalty weight, linear and MLP critics, sobolev / wgan_gp / r1"
CRITICS = {"linear": ["critic={name: linear}"], "mlp": ["critic={name: mlp, widths: [64], activation: tanh}"]}
PENALTIES = ("sobolev", "r1", "wgan_gp")


def base_config() -> dict:
    return packaged(__name__)


def run(out: Path, options: StudyOptions = StudyOptions()) -> list[Path]:
    out = Path(out)
    base = load_config(base_config(), list(options.overrides))
    lam_c = linear_model(base).lambda_c
    weights = list(lam_c * np.geomspace(0.1, 10, 9 if options.quick else 17))
    cfgs = {f"{cname}-{pen}": load_config(base, [*cov, f"penalty.name={pen}", *(["steps=500"] if options.quick else [])])
            for cname, cov in CRITICS.items() for pen in PENALTIES}  # every scan validated first
    open_study(out, options)
    rows, summary = [], {"experiment": "damping", "lambda_c_sobolev_linear": lam_c, "runs": {}}
    for cname in CRITICS:
        for pen in PENALTIES:
            name = f"{cname}-{pen}"
            cfg = cfgs[name]
            if options.resume and (out / name / "damping.parquet").exists():
                tab = read_parquet(out / name / "damping.parquet")
                s = read_json(out / name / "summary.json")
            else:
                options.echo(f"damping: {name}")
                tab, s = run_damping(cfg, weights, out / name)
            rows.append(tab.drop(columns="eigenvalues").assign(critic=cname, penalty=pen))
            summary["runs"][name] = {k: s[k] for k in ("lambda_c", "lambda_best_theory", "lambda_best")}
            summary["runs"][name]["theory"] = s["theory"].get("kind", s["theory"].get("why"))
    table = pd.concat(rows, ignore_index=True)
    write_summary(out, summary, {"damping": table})
    fig = plot_damping_overview(out / "damping.parquet", lam_c, out / "figures" / "damping.png")
    return [fig] + sorted((out / "linear-sobolev" / "figures").glob("*.png"))


EXPERIMENT = Experiment("damping", DESCRIPTION, run)
