"""A phase boundary read off finished runs, as tables (no file is read and nothing runs): per point
the runs that fail (``point_table``), per row the logistic boundary with its interval and the step
where the row's points change (``boundary_table``). The boundary search (:mod:`gandy.runs.boundary`),
the grid summaries (:mod:`gandy.runs.summaries`) and the figures (:mod:`gandy.views.plots`) share
them; the fits are :mod:`gandy.core.metrics.boundary`'s."""

from __future__ import annotations

from typing import Sequence

import pandas as pd

from gandy.core.metrics.boundary import METHOD, row_boundaries, step_bracket
from gandy.core.metrics.phases import SPLIT_FAILED


def boundary_table(results: pd.DataFrame, x: str, y: str, fail: Sequence[str] = SPLIT_FAILED, log: bool = True,
                   seed: int = 0, draws: int = 2000) -> pd.DataFrame:
    """Per value of the column ``y``: the logistic boundary in ``x`` of the runs in ``results`` (one
    row per run: its ``phase``, ``seed`` and ``x`` and ``y`` values; a grid or a search) that fail
    (``phase`` in ``fail``; :func:`gandy.core.metrics.boundary.row_boundaries`): columns ``y``,
    ``x50``, ``lo``, ``hi`` (the ``LEVEL`` interval), ``members`` (runs in the row), ``seeds``
    (distinct seeds; without a ``seed`` column, the most runs at one point), ``points``, ``slope`` (of logit P(fail) per unit log x, or x), ``censored``,
    ``method`` (``draws`` bootstrap data sets) and ``bracket_lo``, ``bracket_hi``: the positions
    between which the row's points change from not failing to failing
    (:func:`gandy.core.metrics.boundary.step_bracket`; NaN where its ends agree)."""
    fits = row_boundaries(results[x].to_numpy(float), results[y].to_numpy(float),
                          results.phase.isin(list(fail)).to_numpy(), log=log, draws=draws, seed=seed)
    seeds = results.groupby(y).seed.nunique() if "seed" in results else results.groupby([y, x]).size().groupby(y).max()
    brackets = {yv: step_bracket(p[x].to_numpy(float), p.failed.to_numpy(float), p.runs.to_numpy(float))
                for yv, p in point_table(results, x, y, fail).groupby(y)}
    return pd.DataFrame([{y: yv, "x50": b.x50, "lo": b.lo, "hi": b.hi, "members": b.runs, "seeds": int(seeds.loc[yv]),
                          "points": b.points, "slope": b.slope, "censored": b.censored, "method": METHOD,
                          "bracket_lo": brackets[yv][0], "bracket_hi": brackets[yv][1]}
                         for yv, b in fits])


def point_table(results: pd.DataFrame, x: str, y: str, fail: Sequence[str] = SPLIT_FAILED) -> pd.DataFrame:
    """Per point (``y``, ``x``): ``runs``, ``failed`` and ``fail_fraction``, and the fraction of
    runs in each phase (``frac_<phase>``, the phases that occur)."""
    g = results.assign(_f=results.phase.isin(list(fail)).astype(int)).groupby([y, x], sort=True)
    pts = g._f.agg(runs="count", failed="sum").reset_index()
    pts["fail_fraction"] = pts.failed / pts.runs
    frac = pd.crosstab([results[y], results[x]], results.phase, normalize="index")
    frac.columns = [f"frac_{c}" for c in frac.columns]
    return pts.merge(frac.reset_index(), on=[y, x], how="left")
