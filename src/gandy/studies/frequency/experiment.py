"""frequency: the frequency principle, measured for each critic type.

For every critic in ``config.yaml`` (ReLU MLPs of two widths, a tanh MLP, RBF critics of two
bandwidths, random Fourier features), least-squares fits to sin(k x) and to two bumps of width 1/k
on [-3, 3], every (k, critic lr, seed) one member of a batch (:mod:`gandy.studies.frequency.model`).
Writes ``OUT/curves.parquet`` (the learning curves: relative L2 error per logged critic step),
``OUT/fit_times.parquet`` (critic steps to reach the threshold error, NaN where the budget ran
out), ``OUT/exponents.parquet`` (per critic and family: the median slope of log steps-to-fit
against log k), ``OUT/summary.json`` and the figures ``OUT/figures/frequency.png`` (steps to fit
against k, per critic) and ``OUT/figures/frequency-curves.png`` (the learning curves).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import pandas as pd
from pydantic import BeforeValidator, Field, ValidationError

from gandy.runs import config as C
from gandy.runs.messages import Explainer
from gandy.studies.base import Experiment, StudyOptions, open_study, packaged, write_summary
from gandy.studies.frequency.figures import plot_curves, plot_fit_times
from gandy.studies.frequency.model import FAMILIES, fit_curves, fit_times, frequency_exponent

DESCRIPTION = "frequency principle: critic steps to fit sin(kx) and bumps of width 1/k, per critic type"
QUICK = ["frequencies=[1, 4, 16]", "learning_rates=[0.000669, 0.00448]", "seeds=[0]", "steps=1500"]


class FrequencySettings(C.Section):
    """The experiment's own settings (config.yaml beside this module; overrides as key=value)."""

    critics: dict[str, C.CriticConfig]
    families: list[Literal[FAMILIES]] = list(FAMILIES)
    frequencies: Annotated[list[C.PosFloat], Field(min_length=1)]
    learning_rates: Annotated[list[C.PosFloat], Field(min_length=1)]
    seeds: Annotated[list[C.Int], Field(min_length=1)] = [0]
    steps: C.PosInt = 4000
    log_every: C.PosInt = 20
    points: C.PosInt = 512
    threshold: Annotated[float, BeforeValidator(C._not_bool), Field(gt=0, lt=1)] = 0.1
    optimiser: C.CriticOptim = C.CriticOptim()
    """The critic's optimiser (its lr replaced by each member's learning rate)."""


_EXPLAIN = Explainer(FrequencySettings, {})


def settings(overrides=()) -> FrequencySettings:
    data = C.apply_overrides(packaged(__name__), list(overrides))
    try:
        return FrequencySettings.model_validate(data)
    except ValidationError as e:
        raise _EXPLAIN.error(e) from None


def run(out: Path, options: StudyOptions = StudyOptions()) -> list[Path]:
    out = Path(out)
    s = settings([*(QUICK if options.quick else []), *options.overrides])
    open_study(out, options)
    curves, times, expo = [], [], []
    for name, critic in s.critics.items():
        for family in s.families:
            options.echo(f"frequency: {name}, {family}")
            c = fit_curves(critic, s.optimiser, family, s.frequencies, s.learning_rates, s.seeds, s.steps,
                           s.log_every, s.points).assign(critic=name, family=family)
            t = fit_times(c, s.threshold).assign(critic=name, family=family)
            curves.append(c)
            times.append(t)
            expo.append({"critic": name, "family": family, "exponent": frequency_exponent(t),
                         "fitted": int(t.steps_to_fit.notna().sum()), "members": len(t)})
    curves, times, expo = pd.concat(curves), pd.concat(times), pd.DataFrame(expo)
    write_summary(out, {"experiment": "frequency", "quick": options.quick, "threshold": s.threshold, "steps": s.steps,
                        "exponents": expo.to_dict(orient="records")},
                  {"curves": curves, "fit_times": times, "exponents": expo})
    return [plot_fit_times(times, s.steps, out / "figures" / "frequency.png"),
            plot_curves(curves, s.threshold, out / "figures" / "frequency-curves.png")]


EXPERIMENT = Experiment("frequency", DESCRIPTION, run)
