"""critic-types: the mode-collapse phase diagram in (g2/g1, critic lr) for each critic type of the
frequency experiment (ReLU MLPs of two widths, a tanh MLP, RBF critics of two bandwidths, random
Fourier features), on the two-mode 1-D target (collapse-1d's config) and on the 2-D ring of eight
modes, seeds 0-4. ``config.yaml`` (beside this module): ``base``, the collapse-1d config, and
``critics``, the critic types.

Each (target, critic) is one sweep into ``OUT/<target>/<critic>/``. Writes ``OUT/boundary.parquet``
(per target, critic and critic lr: x50, the g2/g1 at which a logistic fit gives half the seeds
collapsed or run away, with its 95 % interval, and the grid's own cells;
:func:`gandy.runs.summaries.collapse_boundary`), ``OUT/summary.json`` and the figures
``OUT/figures/critic-types.png`` (the boundaries overlaid, one panel per target) and
``OUT/figures/critic-types-phases.png`` (every diagram's phase fractions per cell). docs/phases.md relates the boundaries to the frequency experiment's fit times.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from pydantic import TypeAdapter

from gandy.runs import config as C
from gandy.runs.config import load_config
from gandy.runs.summaries import collapse_boundary
from gandy.runs.sweep import run_sweep
from gandy.studies.base import Experiment, StudyOptions, open_study, packaged, write_summary
from gandy.studies.critic_types.figures import plot_boundaries, plot_phase_maps

DESCRIPTION = "collapse phase diagrams (1-D two modes, 2-D ring) per critic type, boundaries overlaid"
TARGETS = {
    "two_modes_1d": [],
    "ring8": ["target={name: ring8}", "particles.init={name: gaussian, mean: [0.0, 0.0], std: 0.1}", "steps=3000"],
}
"""Each target's overrides of the base config (collapse-1d's)."""
QUICK = {"two_modes_1d": ["steps=1200"], "ring8": ["steps=1500"]}
QUICK_GRID = ["sweep.kernel.g2={logspace: [0.001, 0.5], num: 5}", "sweep.optim.critic.lr={logspace: [0.0001, 0.03], num: 3}"]
X, Y = "kernel.g2", "optim.critic.lr"
_CRITICS = TypeAdapter(dict[str, C.CriticConfig])


def base_config() -> dict:
    """The config every (target, critic) sweep starts from (``config.yaml``'s ``base``)."""
    return packaged(__name__)["base"]


def critics() -> dict:
    """The critic types (``config.yaml``'s ``critics``: the frequency experiment's), validated and
    written out in full as config sections."""
    return {name: c.model_dump(mode="json") for name, c in _CRITICS.validate_python(packaged(__name__)["critics"]).items()}


def run(out: Path, options: StudyOptions = StudyOptions()) -> list[Path]:
    out = Path(out)
    cfgs = {(t, c): load_config(base_config(), [*extra, *(QUICK[t] + QUICK_GRID if options.quick else []),
                                                *options.overrides, f"critic={critic}"])
            for t, extra in TARGETS.items() for c, critic in critics().items()}  # every sweep validated first
    open_study(out, options, parts=[f"{t}/{c}" for t, c in cfgs])
    tables, summary, dirs = [], {"experiment": "critic-types", "quick": options.quick, "runs": {}}, {}
    for (t, c), cfg in cfgs.items():
        options.echo(f"critic-types: {t} / {c}")
        res, _, s = run_sweep(cfg, out / t / c, **options.sweep())
        tables.append(collapse_boundary(res, X, Y).assign(target=t, critic=c))
        summary["runs"][f"{t}/{c}"] = s["phase_counts"]
        dirs[(t, c)] = out / t / c
    table = pd.concat(tables, ignore_index=True)
    summary["boundary"] = table.to_dict(orient="records")
    write_summary(out, summary, {"boundary": table})
    return [plot_boundaries(table, out / "figures" / "critic-types.png", X, Y),
            plot_phase_maps(dirs, out / "figures" / "critic-types-phases.png", X, Y)]


EXPERIMENT = Experiment("critic-types", DESCRIPTION, run, sweep_config=base_config)
