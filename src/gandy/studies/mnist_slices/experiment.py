"""mnist-slices: the MNIST-100 phase diagram along the paper's two slices, 1,000 steps, with samples.

``config.yaml`` (beside this module; mnist-collapse's set-up, the authors' conventions:
docs/bridge.md) run as three sweeps into ``OUT/<slice>/``: ``g2-slice`` (critic lr 4.64e-4, g2/g1 rising from 0 to 0.977), ``lr-slice``
(g2/g1 0.0989, critic lr from 1e-5 to 2.15e-3, the slow-critic rows included) and ``corners``
(g2/g1 0.257 and 0.977 at critic lr 1e-4 and 2.15e-3). Each keeps its final particles.
``OUT/slices.parquet``: every run's final order parameters and phase; ``OUT/figures/``:
``slices.png`` (mean |cos|, mean norm, coverage_kl and force along both slices, coloured by phase,
the 100 digits' own values dotted) and ``samples_<slice>.png`` (particles 0, N/3 and 2N/3 of every run, as
images). The whole grid is ``gandy run mnist-collapse`` (a GPU job: ``benchmarks/gpu.sh``).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import yaml

from gandy.runs.config import load_config
from gandy.runs.summaries import digit_stats
from gandy.runs.sweep import run_sweep
from gandy.studies.base import Experiment, StudyOptions, open_study, packaged, write_summary
from gandy.studies.mnist_slices.figures import plot_slices
from gandy.views.plots import plot_final_samples

X, Y, LAMBDA = "kernel.g2", "optim.critic.lr", "penalty.weight"
DESCRIPTION = "MNIST-100 along the paper's two slices (critic lr 4.64e-4, g2/g1 rising; g2/g1 0.0989, critic lr falling), 1,000 steps, sample panels"
SLICES = {
    "g2-slice": {X: [0, 0.01, 0.0215443, 0.0464159, 0.0989, 0.215443, 0.464159, 0.977], Y: [0.000464159]},
    "lr-slice": {X: [0.0989], Y: [1.0e-05, 1.33352e-05, 1.77828e-05, 0.0001, 0.000215443, 0.000464159, 0.001, 0.00215443]},
    "corners": {X: [0.257, 0.977], Y: [0.0001, 0.00215443]},
    "penalty": {X: [0.0989, 0.215443], LAMBDA: [12.5, 125.0, 1250.0], Y: [0.000464159]},
}
"""The paper's two slices (its Fig. 6 panels: critic lr 4.64e-4 with g2/g1 rising; g2/g1 0.0989
with critic lr falling) on every third point of its grid, and g2/g1 in {0.257, 0.977} at critic lr
1e-4 and 2.15e-3 (0.0989 at those rates is on the lr slice); and g2/g1 0.0989 and 0.215 at the
fixed-lr slice with the Sobolev weight 10, 100 and 1,000 times the authors' 1.25 (``penalty``)."""
QUICK = ["steps=10", "log_every=5", "optim.critic.startup_steps=2", "optim.critic.steps=2"]
QUICK_SLICES = {"g2-slice": {X: [0, 0.977], Y: [0.000464159]}, "lr-slice": {X: [0.0989], Y: [1.0e-05, 0.00215443]}}


def base_config() -> dict:
    return packaged(__name__)


def slice_overrides(axes: dict) -> list[str]:
    """``sweep.KEY=[...]`` overrides, the values written as YAML writes them (so that they read
    back as the same numbers)."""
    return [f"sweep.{k}={yaml.safe_dump(vals, default_flow_style=True).strip()}" for k, vals in axes.items()]


def run(out: Path, options: StudyOptions = StudyOptions()) -> list[Path]:
    out = Path(out)
    base = base_config()
    slices = QUICK_SLICES if options.quick else SLICES
    cfgs = {name: load_config(base, [*(QUICK if options.quick else []), *slice_overrides(axes), *options.overrides])
            for name, axes in slices.items()}  # every sweep validated first
    open_study(out, options, parts=list(cfgs))
    tables = []
    for name, cfg in cfgs.items():
        options.echo(f"mnist-slices: {name}")
        res, _, _ = run_sweep(cfg, out / name, **options.sweep())
        tables.append(res.drop(columns=[c for c in ("samples_uint8",) if c in res]).assign(slice=name))
    table = pd.concat(tables, ignore_index=True)
    digits = load_config(base, []).target
    write_summary(out, {"experiment": "mnist-slices", "quick": options.quick,
                        "runs": table[["slice", X, Y, "phase", "phase_margin", "mean_abs_cos", "mean_norm",
                                       "coverage_kl", "force_norm"]].to_dict(orient="records")},
                  {"slices": table})
    paths = [plot_slices(table, X, Y, out / "figures" / "slices.png", reference=digit_stats(digits))]
    for name in cfgs:
        paths.append(plot_final_samples(out / name, 3, out / "figures" / f"samples_{name}.png", name))
    return paths


EXPERIMENT = Experiment("mnist-slices", DESCRIPTION, run)
