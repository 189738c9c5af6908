"""collapse-1d: mode-collapse phase diagrams in (g2/g1, critic learning rate) for two critics.

Runs ``config.yaml`` (beside this module) as a batched sweep for each critic in ``CRITICS`` into
``OUT/<critic>/``, then draws the diagrams side by side (``OUT/figures/collapse-1d.png``) and
writes the collapse boundary for each critic learning rate, x50 (the g2/g1 at which a logistic fit
gives half the seeds collapsed or run away) with its 95 % interval and the grid's own cells
(:func:`gandy.runs.summaries.collapse_boundary`), to ``OUT/boundary.parquet`` and ``OUT/summary.json``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from gandy.runs.config import load_config
from gandy.runs.summaries import collapse_boundary
from gandy.runs.sweep import run_sweep
from gandy.studies.base import Experiment, StudyOptions, open_study, packaged, write_summary
from gandy.studies.collapse_1d.figures import plot_collapse_pair
from gandy.views.plots import plot_sweep

DESCRIPTION = "two-mode 1-D target: collapse phase diagram over g2/g1 x critic lr, ReLU vs tanh critic"
CRITICS = {"relu": ["critic.activation=relu"], "tanh": ["critic.activation=tanh"]}
QUICK = ["steps=1200", "seeds=[0, 1, 2]", "sweep.kernel.g2={logspace: [0.001, 0.5], num: 6}",
         "sweep.optim.critic.lr={logspace: [0.0001, 0.03], num: 4}"]
X, Y = "kernel.g2", "optim.critic.lr"


def base_config() -> dict:
    return packaged(__name__)


def run(out: Path, options: StudyOptions = StudyOptions()) -> list[Path]:
    out = Path(out)
    cfgs = {name: load_config(base_config(), [*(QUICK if options.quick else []), *extra, *options.overrides]) for name, extra in CRITICS.items()}
    open_study(out, options, parts=list(cfgs))
    tables, summary = [], {"experiment": "collapse-1d", "quick": options.quick, "critics": {}}
    for name, cfg in cfgs.items():
        options.echo(f"collapse-1d: {name} critic")
        res, _, s = run_sweep(cfg, out / name, draw=plot_sweep, **options.sweep())
        b = collapse_boundary(res, X, Y).assign(critic=name)
        tables.append(b)
        summary["critics"][name] = {"phase_counts": s["phase_counts"], "boundary": b.drop(columns="critic").to_dict(orient="records")}
    write_summary(out, summary, {"boundary": pd.concat(tables)})
    fig = plot_collapse_pair([out / n for n in cfgs], list(cfgs), out / "figures" / "collapse-1d.png", X, Y,
                             boundaries=[t.drop(columns="critic") for t in tables])
    return [fig] + [p for n in cfgs for p in sorted((out / n / "figures").glob("*.png"))]


EXPERIMENT = Experiment("collapse-1d", DESCRIPTION, run, sweep_config=base_config)
