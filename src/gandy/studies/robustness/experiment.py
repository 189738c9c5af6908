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
* ``OUT/draws.parquet``: one row per game x trial (a draw), the median over its seeds of FID and
  modes covered (a diverged seed counted at FID +inf and 0 modes), ``diverged`` (an infinite
  median) and ``good`` (the threshold, below, met by those medians);
* ``OUT/figures/paired.png``: per pair of ``comparisons`` (config.yaml) each draw's median FID under
  one game against the other's, the same draw on both axes;
* ``OUT/summary.json``: per game the median, quartiles and best of each metric over the runs that
  did not diverge, the runs that diverged, ``good``: the share of all its runs (trials x seeds)
  that did not diverge and meet ``threshold`` (config.yaml: FID at most ``fid`` and at least
  ``modes_covered`` modes), with its Wilson 95 % interval, and ``good_draws``: the share of its
  draws that are good, with its Wilson interval. The draws are the unit a claim about
  hyperparameters rests on: a draw's seeds agree more often than two draws do, so the runs'
  interval is too narrow when seeds agree. ``comparisons``: for each pair (A, B) of config.yaml's
  ``comparisons``, A against B on the same draws (one search seed gives every game the same learning
  rates, beta1 and n_critic): the draws good under both, under A only, under B only; the difference
  of the good shares with Newcombe's paired score interval and McNemar's exact p; the draws where
  A's FID is lower, the sign test's p and the median FID ratio A / B with its order-statistic
  interval (:func:`gandy.runs.summaries.paired_comparison`);
* ``OUT/summary.md``: the same summary as Markdown tables (:func:`markdown`), rebuilt from
  summary.json alone: what docs/images.md's tables are copied from.

The default is sized for a 2-core CPU and ``--quick`` is a smoke test of minutes; the paper's full
size is a GPU job (config.yaml says both).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from gandy.core.errors import ConfigError
from gandy.runs.summaries import compare_games, draw_medians, fraction_interval, quartiles
from gandy.runs.sweep import run_sweep
from gandy.studies.base import (
    Experiment,
    StudyOptions,
    check_comparisons,
    open_study,
    packaged,
    search_config,
    write_summary,
)
from gandy.studies.robustness.figures import plot_robustness
from gandy.views import markdown as md

DESCRIPTION = "games ns, gan_gp, dragan_ns, wgan_gp on Color MNIST across random hyperparameter draws (FID, modes)"


def spec() -> dict:
    return packaged(__name__)


def game_config(game: str, quick: bool = False, overrides=()) -> "object":
    """The search config of one game (validated; :func:`gandy.studies.base.search_config`)."""
    return search_config(spec(), game, quick, overrides)


METRICS = ("fid", "kid", "score", "modes_covered", "ms_ssim", "w_critic")


def check_threshold(threshold) -> dict:
    """``threshold`` as ``{fid: a number > 0, modes_covered: a whole number >= 0}`` (a ConfigError
    naming ``threshold`` otherwise)."""
    ok = isinstance(threshold, dict) and set(threshold) == {"fid", "modes_covered"} \
        and isinstance(threshold["fid"], (int, float)) and not isinstance(threshold["fid"], bool) and threshold["fid"] > 0 \
        and isinstance(threshold["modes_covered"], int) and not isinstance(threshold["modes_covered"], bool) \
        and threshold["modes_covered"] >= 0
    if not ok:
        raise ConfigError("threshold", f"needs {{fid: a number > 0, modes_covered: a whole number >= 0}}, got {threshold!r}")
    return threshold


def score(table: pd.DataFrame, threshold: dict) -> pd.DataFrame:
    """``table`` (one row per game x trial x seed with ``fid`` and ``modes_covered``) with
    ``diverged`` (a non-finite FID: the run blew up before its metrics) and ``good`` (not diverged,
    FID <= ``threshold["fid"]`` and modes_covered >= ``threshold["modes_covered"]``)."""
    t = table.copy()
    fid = t["fid"].astype(float)
    t["diverged"] = ~np.isfinite(fid)
    t["good"] = ~t["diverged"] & (fid <= threshold["fid"]) & (t["modes_covered"].astype(float) >= threshold["modes_covered"])
    return t


def draws_of(table: pd.DataFrame, threshold: dict) -> pd.DataFrame:
    """One row per game x trial of a :func:`score` d table: the medians over the draw's seeds of
    FID and modes covered (a diverged seed at FID +inf and 0 modes) and the draw's values,
    :func:`score` d by ``threshold`` (a draw diverged when its median FID is infinite)."""
    params = [c for c in spec()["search"]["params"] if c in table.columns]
    return score(draw_medians(table, ["game", "trial"], {"fid": np.inf, "modes_covered": 0.0}, params), threshold)


def summarise(table: pd.DataFrame, draws: pd.DataFrame | None = None) -> dict:
    """Per game of a :func:`score` d table: runs, diverged, the best FID and the quartiles of
    METRICS over the runs that did not diverge, and ``good``: the share of good runs among all of
    them with its Wilson 95 % interval (:func:`gandy.runs.summaries.fraction_interval`); with
    ``draws`` (:func:`draws_of`) also ``good_draws``, the share of good draws with its interval."""
    out = {}
    for game, t in table.groupby("game", sort=False):
        ok = t[~t.diverged]
        out[game] = {"runs": int(len(t)), "diverged": int(t.diverged.sum()),
                     "best_fid": float(ok.fid.min()) if len(ok) else None,
                     **{k: quartiles(ok[k].astype(float)) for k in METRICS}, "good": fraction_interval(t.good)}
        if draws is not None:
            out[game]["good_draws"] = fraction_interval(draws.good[draws.game == game])
    return out


def markdown(summary: dict) -> str:
    """``summary.json`` of the study as Markdown (``OUT/summary.md``): the threshold, a row per
    game (runs, diverged, good runs and good draws with their Wilson intervals, FID, modes covered
    and MS-SSIM as median [quartiles] over the runs that did not diverge, the best FID), then the
    comparisons on the same draws (:func:`gandy.views.markdown.comparisons_table`)."""
    th = summary["threshold"]
    games = summary["games"]
    rows = [[game, str(g["runs"]), str(g["diverged"]), md.share(g["good"]),
             md.share(g["good_draws"]) if "good_draws" in g else md.DASH, md.spread(g["fid"], ",.0f"),
             md.number(g["best_fid"], ",.0f"), md.spread(g["modes_covered"], ".0f"), md.spread(g["ms_ssim"], ".2f")]
            for game, g in games.items()]
    parts = [md.title("robustness", summary["quick"]),
             f"A run is good when it did not diverge, its FID is at most {th['fid']:g} and it covers at least "
             f"{th['modes_covered']} modes. A draw: {summary['draw']}. Intervals: {summary['interval']}; "
             "quartiles over the runs that did not diverge.\n",
             md.table(["game", "runs", "diverged", "good runs", "good draws", "FID median [q25, q75]", "best FID",
                       "modes covered median [q25, q75]", "MS-SSIM median [q25, q75]"], rows,
                      right=(False, True, True, False, False, False, True)),
             "## Game against game on the same draws\n",
             md.comparisons_table(summary["comparisons"]) or "No comparisons.\n"]
    return "\n".join(parts)


def run(out: Path, options: StudyOptions = StudyOptions()) -> list[Path]:
    out = Path(out)
    s = spec()
    games, threshold = s["games"], check_threshold(s.get("threshold"))
    pairs = check_comparisons(s)
    cfgs = {g: game_config(g, options.quick, options.overrides) for g in games}  # every game validated first
    open_study(out, options, parts=list(cfgs))
    tables = []
    for game, cfg in cfgs.items():
        options.echo(f"robustness: {game}")
        results, _, _ = run_sweep(cfg, out / game, **options.sweep())
        results = results.copy()
        results.insert(0, "game", game)
        tables.append(results)
    table = score(pd.concat(tables, ignore_index=True), threshold)
    draws = draws_of(table, threshold)
    summary = {"experiment": "robustness", "quick": options.quick,
               "threshold": {**threshold, "rule": "not diverged, fid <= fid and modes_covered >= modes_covered"},
               "draw": "median over the draw's seeds of fid and modes_covered (a diverged seed: fid inf, 0 modes)",
               "interval": "Wilson score, 95 %", "games": summarise(table, draws),
               "comparisons": compare_games(draws, pairs, "fid")}
    write_summary(out, summary, {"robustness": table.drop(columns=["samples_uint8"]), "draws": draws}, markdown(summary))
    return plot_robustness(out, table, threshold, draws, summary["comparisons"])


EXPERIMENT = Experiment("robustness", DESCRIPTION, run)
