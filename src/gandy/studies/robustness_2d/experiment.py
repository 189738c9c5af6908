"""robustness-2d: how robust each game is across random hyperparameter draws on the 2-D lab targets.

Fedus et al. (2018)'s robustness question (section 4) at high statistics, where it is cheap: for
each target of ``config.yaml`` (beside this module; ring8 and grid25) and each game (ns, mm,
gan_gp, dragan_ns, wgan_gp; wgan with clipping is left out for its cost, below) a random search with the paper's ranges (the learning rate shared
by both players, log-uniform on [1e-5, 1e-2]; beta1 from {0.5, 0.9}; n_critic from 1..5; the
penalty weight lambda, log-uniform on [0.1, 100], for the penalised games), built by
:func:`gandy.studies.base.search_config` as for the robustness study. All draws of a game run as one
batched sweep (members that share beta1 and n_critic run as one simulation) into
``OUT/<target>/<game>/``, resumable after a kill (the sweep store). Every draw is scored by the
lab's final order parameters: the exact W1 to a fresh target sample of 256 points, the modes
covered (a generated point within 3 std of the mode), ``coverage_kl`` and ``on_mode`` (the fraction
of generated points on a mode: the high-quality fraction). Then:

* ``OUT/robustness_2d.parquet``: one row per target x game x draw x seed with its draws, metrics,
  phase, ``diverged`` (phase diverged or a non-finite W1) and ``good`` (see below);
* ``OUT/summary.json``: per target and game the median and quartiles of each metric over the
  draws that did not diverge, the best W1, the diverged count, and the fraction of draws (diverged
  ones included, as failures) that are good, and of those that cover every mode, each with its
  Wilson 95 % interval (:func:`gandy.runs.summaries.fraction_interval`); per target the stated
  threshold (``thresholds`` in config.yaml: at least ``modes`` modes covered and W1 below ``w1``)
  and the W1 of two samples of the target itself (``w1_floor``: median and quartiles over 50 pairs
  of 256 points each);
* ``OUT/figures/<target>.png``: per game the distribution of W1 (log scale) and of modes covered
  across draws (box plus points, diverged draws counted apart above the axes) and the W1 CDF of
  every game, with the threshold and the floor drawn;
* ``OUT/summary.md``: the summary as Markdown tables (:func:`markdown`), rebuilt from summary.json
  alone: what docs/lab.md's tables are copied from.

Cost (measured 2026-12-04 on the 2-core AMD EPYC, one torch thread per process, while a niced
background study and other jobs shared the machine, load average 3.6-5: single runs, noisy, on the
high side). At the default [32, 32] nets, 256-point batches and 1,000 steps, 200 draws of a game
cut into 10 chunks of 13-30 members (members share beta1 and n_critic); a draw then costs about
1.6 ms per step for ns and mm and 2.1-2.3 ms for the penalised games (200 draws x 200 steps at load
3.6: ns 1.57, gan_gp 2.10 ms; at load 5 both ~3x that, ns 4.8 and wgan_gp 7.0 ms). Extrapolated:
(2 x 1.6 + 3 x 2.3) ms x 1,000 steps x 200 draws x 2 targets = ~67 min of one core for the 2,000
draws of the full default, ~35 min on 2 cores with ``--workers 2 --executor processes``; wgan
(clipping, n_critic drawn too) would add ~20 % and is left out of ``games``. ``--quick`` (8 draws,
200 steps, n_critic <= 2) took 115 s (6 games then, load ~4).
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pandas as pd

from gandy.core.errors import ConfigError
from gandy.core.metrics.order import w1_exact
from gandy.runs.build import target_of
from gandy.runs.plan import expand
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
from gandy.studies.robustness_2d.figures import plot_robustness_2d
from gandy.views import markdown as md

DESCRIPTION = ("games ns, mm, gan_gp, dragan_ns, wgan_gp on ring8 and grid25 across 200 random hyperparameter "
               "draws each, batched (exact W1, modes covered)")
METRICS = ("w1", "modes_covered", "coverage_kl", "on_mode")
"""The final order parameters the study scores a draw by (the sweep's results columns)."""
FLOOR_PAIRS = 50
"""Pairs of target samples whose W1 gives the floor a trained generator is compared with."""


def spec() -> dict:
    return packaged(__name__)


def game_config(target: str, game: str, quick: bool = False, overrides=()) -> "object":
    """The search config of one game on one target (validated): the study's base with
    ``target: {name: target}`` (:func:`gandy.studies.base.search_config`)."""
    s = copy.deepcopy(spec())
    s["base"]["target"] = {"name": target}
    return search_config(s, game, quick, overrides)


def w1_floor(cfg, pairs: int = FLOOR_PAIRS, seed: int = 0) -> dict:
    """The exact W1 between two independent samples of ``cfg``'s target (a Gaussian mixture), each
    of ``min(particles.n, metrics.max_points)`` points (the size a draw's W1 is measured at):
    ``{"n_points", "pairs", "median", "q25", "q75"}`` over ``pairs`` pairs drawn by numpy from
    ``seed`` (independent of the runs' random streams)."""
    t = target_of(cfg.target)
    modes, stds, w = (t.modes.double().numpy(), t.stds.double().numpy(), t.weights.double().numpy())
    n = min(int(cfg.particles.n), int(cfg.metrics.max_points))
    rng = np.random.default_rng(seed)

    def sample():
        c = rng.choice(len(modes), size=n, p=w / w.sum())
        return modes[c] + stds[c, None] * rng.standard_normal((n, modes.shape[1]))

    v = [w1_exact(sample(), sample()) for _ in range(pairs)]
    return {"n_points": n, "pairs": pairs, **quartiles(v)}


def score(table: pd.DataFrame, thresholds: dict) -> pd.DataFrame:
    """``table`` (one row per target x game x draw x seed, columns ``target``, ``phase`` and
    METRICS; or one per draw, :func:`draws_of`, without ``phase``) with ``diverged`` (phase
    diverged or a non-finite W1) and ``good``: not diverged, at
    least ``thresholds[target]["modes"]`` modes covered and W1 below ``thresholds[target]["w1"]``."""
    t = table.copy()
    w1 = t["w1"].astype(float)
    t["diverged"] = ~np.isfinite(w1) | ((t["phase"] == "diverged") if "phase" in t else False)
    modes_min = t["target"].map(lambda k: thresholds[k]["modes"]).astype(float)
    w1_max = t["target"].map(lambda k: thresholds[k]["w1"]).astype(float)
    t["good"] = ~t["diverged"] & (t["modes_covered"].astype(float) >= modes_min) & (w1 < w1_max)
    return t


def draws_of(table: pd.DataFrame, thresholds: dict) -> pd.DataFrame:
    """One row per target x game x trial of a :func:`score` d table: the medians over the draw's
    seeds of METRICS (a diverged seed at W1 +inf, 0 modes, coverage_kl +inf, on_mode 0) and the
    draw's values, :func:`score` d by ``thresholds`` (with the default one seed, a draw is its run)."""
    params = [c for c in spec()["search"]["params"] if c in table.columns]
    worst = {"w1": np.inf, "modes_covered": 0.0, "coverage_kl": np.inf, "on_mode": 0.0}
    return score(draw_medians(table, ["target", "game", "trial"], worst, params), thresholds)


def summarise(table: pd.DataFrame, n_modes: dict) -> dict:
    """Per target and game of a :func:`score` d table: runs, diverged, the quartiles of METRICS over
    the draws that did not diverge, the best W1, and the fractions ``good`` and ``all_modes`` (every
    one of the target's ``n_modes[target]`` modes covered) of all its draws with Wilson 95 %
    intervals."""
    out: dict = {}
    for (target, game), t in table.groupby(["target", "game"], sort=False):
        ok = t[~t.diverged]
        out.setdefault(target, {})[game] = {
            "runs": int(len(t)), "diverged": int(t.diverged.sum()),
            **{k: quartiles(ok[k].astype(float)) for k in METRICS},
            "best_w1": float(ok.w1.min()) if len(ok) else None,
            "good": fraction_interval(t.good),
            "all_modes": fraction_interval(~t.diverged & (t.modes_covered.astype(float) >= n_modes[target])),
        }
    return out


def check_thresholds(s: dict) -> None:
    """Every target has a threshold ``{modes: int >= 1, w1: number > 0}`` (a ConfigError naming
    ``thresholds.TARGET``)."""
    for target in s["targets"]:
        th = s.get("thresholds", {}).get(target)
        if not isinstance(th, dict) or set(th) != {"modes", "w1"} or not isinstance(th["modes"], int) \
                or th["modes"] < 1 or not isinstance(th["w1"], (int, float)) or not th["w1"] > 0:
            raise ConfigError(f"thresholds.{target}", f"needs {{modes: a whole number >= 1, w1: a number > 0}}, got {th!r}")


def markdown(summary: dict) -> str:
    """``summary.json`` of the study as Markdown (``OUT/summary.md``): per target its threshold and
    the W1 between two samples of the target itself, a row per game (draws, diverged, the good
    share and the share covering every mode with their Wilson intervals, W1 and modes covered as
    median [quartiles] over the draws that did not diverge, the best W1), then its comparisons on
    the same draws (:func:`gandy.views.markdown.comparisons_table`)."""
    parts = [md.title("robustness-2d", summary["quick"]),
             f"Intervals: {summary['interval']}; quartiles over the draws that did not diverge.\n"]
    for target, games in summary["targets"].items():
        th, floor, n = summary["threshold"][target], summary["w1_floor"][target], summary["modes"][target]
        rows = [[game, str(g["runs"]), str(g["diverged"]), md.share(g["good"]), md.share(g["all_modes"]),
                 md.spread(g["w1"], ".2f"), md.spread(g["modes_covered"], ".0f"), md.number(g["best_w1"], ".2f")]
                for game, g in games.items()]
        parts += [f"## {target}\n",
                  f"Good: at least {th['modes']} of {n} modes covered and W1 < {th['w1']:g}. Two samples of the "
                  f"target itself ({floor['n_points']} points each, {floor['pairs']} pairs): W1 "
                  f"{md.spread(floor, '.2f')}.\n",
                  md.table(["game", "draws", "diverged", "good", f"all {n} modes", "W1 median [q25, q75]",
                            "modes median [q25, q75]", "best W1"], rows,
                           right=(False, True, True, False, False, False, False, True)),
                  f"Game against game on the same draws ({target}):\n",
                  md.comparisons_table(summary["comparisons"].get(target, [])) or "No comparisons.\n"]
    return "\n".join(parts)


def run(out: Path, options: StudyOptions = StudyOptions()) -> list[Path]:
    out = Path(out)
    s = spec()
    check_thresholds(s)
    pairs = check_comparisons(s)
    cfgs = {(t, g): game_config(t, g, options.quick, options.overrides) for t in s["targets"] for g in s["games"]}
    for cfg in cfgs.values():
        expand(cfg)  # every draw of every game validated before anything is written
    open_study(out, options, parts=[f"{t}/{g}" for t, g in cfgs])
    tables, floors, n_modes = [], {}, {}
    for (target, game), cfg in cfgs.items():
        options.echo(f"robustness-2d: {target} / {game}")
        results, _, _ = run_sweep(cfg, out / target / game, **options.sweep())
        results = results.copy()
        results.insert(0, "game", game)
        results.insert(0, "target", target)
        tables.append(results)
        if target not in floors:
            floors[target] = w1_floor(cfg)
            n_modes[target] = int(target_of(cfg.target).modes.shape[0])
    table = score(pd.concat(tables, ignore_index=True), s["thresholds"])
    draws = draws_of(table, s["thresholds"])
    summary = {"experiment": "robustness-2d", "quick": options.quick,
               "threshold": {t: {**s["thresholds"][t], "rule": "not diverged, modes_covered >= modes and w1 < w1"}
                             for t in s["targets"]},
               "w1_floor": floors, "modes": n_modes, "interval": "Wilson score, 95 %",
               "targets": summarise(table, n_modes),
               "comparisons": {t: compare_games(d, pairs, "w1") for t, d in draws.groupby("target", sort=False)}}
    write_summary(out, summary, {"robustness_2d": table}, markdown(summary))
    return plot_robustness_2d(out, table, s["thresholds"], floors, n_modes, draws, summary["comparisons"])


EXPERIMENT = Experiment("robustness-2d", DESCRIPTION, run)
