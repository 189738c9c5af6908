"""saturation: where does minimax's generator gradient vanish, and does it stall the game?

Goodfellow et al. (2014) replace the minimax generator loss log(1 - D) by -log D because, once the
critic is confident, sigma(f) -> 0 on generated points and mm's gradient sigma(f) grad f vanishes
while ns's (1 - sigma(f)) grad f does not. On ``parallel_lines`` (affine generator; ``config.yaml``
beside this module, many-paths' set-up) this study runs mm and ns for every critic strength in
``CRITICS`` (optimiser, learning rate, steps per generator step, steps before the first generator
step) and both generator optimisers in ``GENERATORS`` (plain SGD feels the gradient's size; Adam
divides it out), seeds 0-2, into ``OUT/<critic>/<generator>/<game>/``, with the generator's
gradient logged as ``force_norm`` (mean |grad_x l_G(f(x))| over the batch). ``OUT/saturation.parquet``: per run and
seed, the force at the first logged step and its median over the run, the mm / ns ratio of the
first, time to W1 < 0.1, final W1 and phase. ``OUT/cells.parquet`` (and ``summary.json``): per
cell the medians over seeds, and the mean over seeds with a Student-t 95 % interval (``COL_mean``,
``_lo``, ``_hi``, ``_n``: :func:`gandy.runs.summaries.seed_intervals`) of the first and median force,
t_w1 (n: the seeds that reached W1 < 0.1), the final W1 and the mm / ns ratio of the first force
(per seed). ``OUT/figures/saturation.png``: force and W1 against step per cell, one line per seed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from gandy.core.metrics.convergence import w1_measures
from gandy.runs.api import run as run_one
from gandy.runs.config import load_config
from gandy.runs.store import read_parquet
from gandy.runs.summaries import seed_intervals
from gandy.studies.base import Experiment, StudyOptions, open_study, packaged, write_summary
from gandy.studies.saturation.figures import plot_saturation

DESCRIPTION = "mm vs ns on parallel_lines over critic strength (optimiser, lr, steps, pre-training) and SGD vs Adam generators: where mm's gradient vanishes"
GAMES = ("mm", "ns")
CRITICS = {
    "adam 1e-4 x1": "{name: adam, lr: 0.0001, betas: [0.5, 0.999], steps: 1}",
    "adam 1e-3 x5": "{name: adam, lr: 0.001, betas: [0.5, 0.999], steps: 5}",
    "adam 1e-3 x5 +500": "{name: adam, lr: 0.001, betas: [0.5, 0.999], steps: 5, startup_steps: 500}",
    "sgd 0.1 x5 +500": "{name: sgd, lr: 0.1, steps: 5, startup_steps: 500}",
}
"""Critic strength, weakest first: optimiser, learning rate, x steps per generator step, + steps
before the first generator step (a critic trained to confidence, Goodfellow's setting)."""
GENERATORS = {"sgd": "{name: sgd, lr: 0.1}", "adam": "{name: adam, lr: 0.01, betas: [0.5, 0.999]}"}
RUN = ["steps=400", "log_every=10", "seeds=[0, 1, 2]"]
QUICK = ["steps=60", "log_every=10", "seeds=[0, 1, 2]"]
QUICK_CRITICS = ("adam 1e-4 x1", "sgd 0.1 x5 +500")


def _slug(name: str) -> str:
    return name.replace(" ", "_").replace("+", "pre")


def run(out: Path, options: StudyOptions = StudyOptions()) -> list[Path]:
    out = Path(out)
    base = packaged(__name__)
    critics = QUICK_CRITICS if options.quick else tuple(CRITICS)
    cfgs = {(c, g, game): load_config(base, [f"objective={game}", f"optim.critic={CRITICS[c]}", f"optim.generator={GENERATORS[g]}",
                                             *(QUICK if options.quick else RUN), *options.overrides])
            for c in critics for g in GENERATORS for game in GAMES}  # every run validated first
    open_study(out, options, parts=[f"{_slug(c)}/{g}/{game}" for c, g, game in cfgs])
    rows = []
    dirs = {}
    for (c, g, game), cfg in cfgs.items():
        d = out / _slug(c) / g / game
        dirs[(c, g, game)] = d
        if not (options.resume and (d / "metrics.parquet").exists()):
            options.echo(f"saturation: {c} / generator {g} / {game}")
            run_one(cfg, out=d, progress=options.progress)
        met = read_parquet(d / "metrics.parquet")
        res = read_parquet(d / "results.parquet").set_index("seed")
        for seed, m in met.sort_values("step").groupby("seed"):
            f = m.force_norm.to_numpy(dtype=float)
            rows.append({"critic": c, "generator": g, "game": game, "seed": int(seed),
                         "first_force": float(f[1]) if len(f) > 1 else np.nan, "median_force": float(np.nanmedian(f[1:])),
                         "phase": res.loc[seed, "phase"], **w1_measures(m.step.to_numpy(), m.w1.to_numpy())})
    table = pd.DataFrame(rows)
    first = table.pivot_table(index=["critic", "generator", "seed"], columns="game", values="first_force")
    per_seed = (first["mm"] / first["ns"]).rename("mm_over_ns_first_force")
    ratio = per_seed.groupby(level=["critic", "generator"]).median()
    ratio_iv = seed_intervals(per_seed.reset_index(), ["critic", "generator"], ["mm_over_ns_first_force"])
    cells = table.groupby(["critic", "generator", "game"]).agg(
        first_force=("first_force", "median"), median_force=("median_force", "median"), final_w1=("final_w1", "median"),
        t_w1=("t_w1", "median"), phases=("phase", lambda v: ", ".join(f"{p} {n}" for p, n in v.value_counts().items())))
    keys = ["critic", "generator", "game"]
    cells = (cells.reset_index().merge(ratio.reset_index(), on=["critic", "generator"])
             .merge(seed_intervals(table, keys, ["first_force", "median_force", "t_w1", "final_w1"]), on=keys)
             .merge(ratio_iv, on=["critic", "generator"]))
    write_summary(out, {"experiment": "saturation", "quick": options.quick, "cells": cells.to_dict(orient="records")},
                  {"saturation": table, "cells": cells})
    return [plot_saturation(dirs, list(critics), list(GENERATORS), out / "figures" / "saturation.png")]


EXPERIMENT = Experiment("saturation", DESCRIPTION, run)
