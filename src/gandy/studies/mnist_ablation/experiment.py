"""mnist-ablation: what each of the authors' conventions changes in the 784-D effective model.

Starts from ``config.yaml`` (beside this module; mnist-collapse's set-up, the authors'
conventions, docs/bridge.md) and changes one
choice at a time (``VARIANTS``), each run as a small sweep over g2/g1 at one critic learning rate
into ``OUT/<variant>/``. Writes ``OUT/ablation.parquet`` (one row per variant and g2/g1: phase,
margin, the largest and the final force norm, the final mean particle norm, mean |cos|,
coverage_kl, on_mode, displacement), ``OUT/summary.json`` and ``OUT/figures/mnist-ablation.png``
(force norm and mean particle norm over the steps, per variant). ``--quick``: 40 steps.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from gandy.runs.config import load_config
from gandy.runs.store import read_parquet
from gandy.runs.summaries import digit_stats
from gandy.runs.sweep import run_sweep
from gandy.studies.base import Experiment, StudyOptions, open_study, packaged, write_summary
from gandy.studies.mnist_ablation.figures import plot_ablation

DESCRIPTION = "784-D: the authors' conventions one at a time (force, norm, phase per variant)"
X = "kernel.g2"
GRID = ["sweep={kernel.g2: [0.01, 0.0989, 0.977]}", "optim.critic.lr=0.000464159", "steps=300", "log_every=10",
        "metrics.keep_particles=false"]
QUICK = ["steps=40", "log_every=5"]

OLD = ["penalty.reduce=per_point", "optim.critic.steps=1", "optim.critic.startup_steps=null",
       "optim.critic.reset=false", "optim.critic.amsgrad=false", "critic={name: mlp, widths: [512], activation: relu}",
       "particles.init={name: gaussian, std: 0.1}", "penalty.weight=1.25"]

VARIANTS: dict[str, list[str]] = {
    "authors": [],
    "per_point_penalty": ["penalty.reduce=per_point"],
    "no_dropout": ["critic.dropout=0.0"],
    "persistent_adam": ["optim.critic.reset=false", "optim.critic.amsgrad=false"],
    "one_critic_step": ["optim.critic.steps=1", "optim.critic.startup_steps=null"],
    "width_512": ["critic={name: mlp, widths: [512], activation: relu, dropout: 0.2}"],
    "init_std_0.1": ["particles.init={name: gaussian, std: 0.1}"],
    "init_data_mean": ["particles.init={name: data_mean, std: 1.0}"],
    "init_data_gaussian": ["particles.init={name: data_gaussian, scale: 1.0}"],
    "gandy_before": OLD,
}
"""Each variant's overrides of the authors' conventions (``authors``: mnist-collapse's default, since
2026-12-04 with the initial cloud N(0, 0.5^2 I) read off the authors' clouds and the fitted penalty
weight 12.5; ``gandy_before``: gandy's earlier set-up: per-point penalty of weight 1.25, one critic
step with a persistent Adam, a [512] critic, particles at N(0, 0.1^2))."""


def base_config() -> dict:
    return packaged(__name__)


def summarise(metrics: pd.DataFrame, results: pd.DataFrame, variant: str) -> pd.DataFrame:
    """One row per member: its phase and final numbers, and the largest force norm of the run."""
    peak = metrics.groupby("member").force_norm.max().rename("max_force_norm")
    cols = ["member", X, "phase", "phase_margin", "force_norm", "mean_norm", "mean_abs_cos", "coverage_kl",
            "on_mode", "mean_dist", "displacement", "diverged_step"]
    return results[cols].join(peak, on="member").assign(variant=variant)


def run(out: Path, options: StudyOptions = StudyOptions()) -> list[Path]:
    out = Path(out)
    cfgs = {name: load_config(base_config(), [*GRID, *extra, *(QUICK if options.quick else []), *options.overrides])
            for name, extra in VARIANTS.items()}  # every variant validated first
    open_study(out, options, parts=list(cfgs))
    rows, series = [], []
    for name, cfg in cfgs.items():
        options.echo(f"mnist-ablation: {name}")
        res, met, _ = run_sweep(cfg, out / name, **options.sweep())
        rows.append(summarise(met, res, name))
        series.append(met[["member", X, "step", "force_norm", "mean_norm"]].assign(variant=name))
    table = pd.concat(rows, ignore_index=True)
    write_summary(out, {"experiment": "mnist-ablation", "quick": options.quick, "variants": VARIANTS,
                        "rows": table.to_dict(orient="records")}, {"ablation": table})
    norm = digit_stats(next(iter(cfgs.values())).target)["mean_norm"]
    return [plot_ablation(pd.concat(series, ignore_index=True), out / "figures" / "mnist-ablation.png", X, norm)]


def load(out: Path) -> pd.DataFrame:
    """The ablation table of a finished run."""
    return read_parquet(Path(out) / "ablation.parquet")


EXPERIMENT = Experiment("mnist-ablation", DESCRIPTION, run)
