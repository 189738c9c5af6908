"""penalties: when do gradient penalties help the non-saturating game, and when do they hurt?

On ``parallel_lines`` (affine generator) and ``ring8`` (MLP generator), the configs of
``config.yaml`` (beside this module; many-paths' targets), each game of ``GAMES`` runs as one sweep
over the penalty weight lambda (penalised games only) x the generator's learning rate x critic
steps per generator step, seeds 0-2, into
``OUT/<target>/<game>/``. Per member (``OUT/penalties.parquet``): the phase label, the first
logged step with W1 < 0.1 (``t_w1``, NaN if never), the final W1 and the oscillation amplitude
``w1_swing`` (half the range of W1 about its linear trend over the last half of the run). ``OUT/figures/``: the swing and
the time to W1 < 0.1 against lambda per game, one panel per (learning rate, critic steps), and the
W1 trajectories at lambda = 10 and 5 critic steps (the setting of many-paths). Per grid point
(``OUT/cells.parquet``, ``summary.json``): the medians over seeds, and the mean of the final W1,
the swing and t_w1 over seeds with a Student-t 95 % interval (``final_w1_mean``, ``_lo``, ``_hi``,
``_n``: :func:`gandy.runs.summaries.seed_intervals`; t_w1's n counts the seeds that reached W1 < 0.1).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from gandy.core.metrics.convergence import W1_REACHED, w1_measures
from gandy.runs.config import load_config
from gandy.runs.store import read_parquet
from gandy.runs.summaries import seed_intervals
from gandy.runs.sweep import run_sweep
from gandy.studies.base import Experiment, StudyOptions, open_study, packaged, write_summary
from gandy.studies.penalties.figures import plot_penalties

DESCRIPTION = "ns vs gan_gp, dragan_ns, ns + R1 (and wgan vs wgan_gp) over lambda x learning rate x critic steps: W1 swing, time to W1 < 0.1"
GAMES = {"ns": ["objective=ns"], "gan_gp": ["objective=gan_gp"], "dragan_ns": ["objective=dragan_ns"],
         "ns_r1": ["objective=ns", "penalty.name=r1"], "wgan": ["objective=wgan"], "wgan_gp": ["objective=wgan_gp"]}
"""Each game's overrides. gan_gp, dragan_ns and wgan_gp penalise (|grad f| - 1)^2 (one-centred);
``ns_r1`` is the non-saturating game with the zero-centred R1 penalty |grad f(data)|^2 (Mescheder
et al. 2018), the control that tells a one-centred penalty's overshoot from a defect."""
PENALISED = ("gan_gp", "dragan_ns", "ns_r1", "wgan_gp")
LAMBDA, LR, STEPS = "penalty.weight", "optim.generator.lr", "optim.critic.steps"
GRID = {
    "parallel_lines": {LAMBDA: [0.1, 1.0, 10.0], LR: [0.001, 0.003, 0.01], STEPS: [1, 5]},
    "ring8": {LAMBDA: [1.0, 10.0], LR: [0.0002, 0.0005, 0.002], STEPS: [1, 5]},
}
"""The grid per target; many-paths runs lambda = 10, lr 1e-2 (parallel_lines) / 5e-4 (ring8), 5 critic steps."""
RUN = {"parallel_lines": ["seeds=[0, 1, 2]"], "ring8": ["seeds=[0, 1, 2]", "steps=1000", "log_every=50"]}
QUICK = {"parallel_lines": ["seeds=[0, 1, 2]", "steps=200", "log_every=10"]}
QUICK_GRID = {LAMBDA: [1.0, 10.0], LR: [0.01], STEPS: [1, 5]}


def configs() -> dict:
    """Each target's base config (``config.yaml`` beside this module)."""
    return packaged(__name__)


def _sweep(target: str, game: str, quick: bool) -> list[str]:
    grid = QUICK_GRID if quick else GRID[target]
    axes = {k: v for k, v in grid.items() if k != LAMBDA or game in PENALISED}
    return [f"sweep.{k}=[{', '.join(str(x) for x in v)}]" for k, v in axes.items()]


def measures(results: pd.DataFrame, metrics: pd.DataFrame) -> pd.DataFrame:
    """Per member of a sweep: :func:`w1_measures` beside the phase and the grid point."""
    rows = [{"member": member, **w1_measures(m.step.to_numpy(), m.w1.to_numpy())}
            for member, m in metrics.sort_values("step").groupby("member")]
    keep = [c for c in results.columns if c in (LAMBDA, LR, STEPS, "member", "seed", "phase", "phase_margin", "phase_period")]
    return results[keep].merge(pd.DataFrame(rows), on="member")


def run(out: Path, options: StudyOptions = StudyOptions()) -> list[Path]:
    out = Path(out)
    bases = configs()
    targets = list(QUICK) if options.quick else list(GRID)
    cfgs = {(t, g): load_config(bases[t], [*over, *(QUICK[t] if options.quick else RUN[t]), *_sweep(t, g, options.quick),
                                           *options.overrides])
            for t in targets for g, over in GAMES.items()}  # every sweep validated first
    open_study(out, options, parts=[f"{t}/{g}" for t, g in cfgs])
    tables = []
    for (target, game), cfg in cfgs.items():
        options.echo(f"penalties: {target} / {game}")
        res, met, _ = run_sweep(cfg, out / target / game, **options.sweep())
        t = measures(res, met).assign(target=target, game=game)
        if LAMBDA not in t:
            t[LAMBDA] = 0.0  # the unpenalised games
        tables.append(t)
    table = pd.concat(tables, ignore_index=True)
    agg = table.groupby(["target", "game", LAMBDA, LR, STEPS]).agg(final_w1=("final_w1", "median"), w1_swing=("w1_swing", "median"),
                                t_w1=("t_w1", "median"), reached=("t_w1", lambda v: int(v.notna().sum())),
                                seeds=("seed", "count"),
                                phases=("phase", lambda v: ", ".join(f"{p} {n}" for p, n in v.value_counts().items())))
    keys = ["target", "game", LAMBDA, LR, STEPS]
    agg = agg.reset_index().merge(seed_intervals(table, keys, ["final_w1", "w1_swing", "t_w1"]), on=keys)
    write_summary(out, {"experiment": "penalties", "quick": options.quick, "w1_reached": W1_REACHED,
                        "cells": agg.to_dict(orient="records")}, {"penalties": table, "cells": agg})
    shown = {t: float(bases[t]["optim"]["generator"]["lr"]) for t in targets}  # many-paths' own rate
    return plot_penalties(read_parquet(out / "penalties.parquet"), out, {t: out / t for t in targets}, shown,
                          LAMBDA, LR, STEPS)


EXPERIMENT = Experiment("penalties", DESCRIPTION, run)
