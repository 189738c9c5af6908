"""robustness: how robust each game is across random hyperparameter draws on Color MNIST.

For each game of ``config.yaml`` (beside this module) a random search (``search:``; learning rate shared by
both players, log-uniform; beta1 from a set; n_critic; the penalty weight lambda, log-uniform, for
the penalised games) runs through the sweep store into ``OUT/<game>/`` (resumable), every trial
evaluated by the image metrics. Then:

* ``OUT/robustness.parquet``: one row per game x trial x seed with its draws and metrics;
* ``OUT/figures/fid.png`` and ``OUT/figures/modes.png``: per game, the distribution of FID
  (log scale) and of modes covered (of 1,000) across trials, box plus points, diverged trials
  counted apart;
* ``OUT/figures/samples.png``: per game, the final samples of the best, median and worst trial
  by FID;
* ``OUT/summary.json``: per game the median, quartiles and best of each metric and the share of
  trials that diverged.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from gandy.runs.summaries import quartiles
from gandy.runs.sweep import run_sweep
from gandy.studies.base import Experiment, StudyOptions, open_study, packaged, search_config, write_summary
from gandy.studies.robustness.figures import plot_robustness

DESCRIPTION = "games ns, gan_gp, dragan_ns, wgan_gp on Color MNIST across random hyperparameter draws (FID, modes)"


def spec() -> dict:
    return packaged(__name__)


def game_config(game: str, quick: bool = False, overrides=()) -> "object":
    """The search config of one game (validated; :func:`gandy.studies.base.search_config`)."""
    return search_config(spec(), game, quick, overrides)


def run(out: Path, options: StudyOptions = StudyOptions()) -> list[Path]:
    out = Path(out)
    games = spec()["games"]
    cfgs = {g: game_config(g, options.quick, options.overrides) for g in games}  # every game validated first
    open_study(out, options)
    tables = []
    for game, cfg in cfgs.items():
        options.echo(f"robustness: {game}")
        results, _, _ = run_sweep(cfg, out / game, **options.sweep())
        results = results.copy()
        results.insert(0, "game", game)
        tables.append(results)
    table = pd.concat(tables, ignore_index=True)
    table["diverged"] = ~np.isfinite(table["fid"].astype(float))
    summary = {"experiment": "robustness", "quick": options.quick, "games": {}}
    for game, t in table.groupby("game", sort=False):
        good = t[~t.diverged]
        stats = {}
        for k in ("fid", "kid", "score", "modes_covered", "ms_ssim", "w_critic"):
            stats[k] = quartiles(good[k].astype(float))
        summary["games"][game] = {"runs": int(len(t)), "diverged": int(t.diverged.sum()),
                                  "best_fid": float(good.fid.min()) if len(good) else None, **stats}
    write_summary(out, summary, {"robustness": table.drop(columns=["samples_uint8"])})
    return plot_robustness(out, table)


EXPERIMENT = Experiment("robustness", DESCRIPTION, run)
