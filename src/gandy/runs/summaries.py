"""Numbers that studies compute from finished sweeps and from the target, shared by several studies:
the collapse boundary of a phase diagram with its interval (``collapse_boundary``) and the target data's own order
parameters, the reference an uncollapsed cloud is compared with (``digit_stats``)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from gandy.core.metrics.phases import SPLIT_FAILED
from gandy.runs.boundary import boundary_table
from gandy.runs.build import target_of


def collapse_boundary(results: pd.DataFrame, x: str, y: str, log: bool = True) -> pd.DataFrame:
    """Per value of the column ``y`` (a critic learning rate), where the runs fail to split
    (collapsed or ran away, SPLIT_FAILED) along ``x`` (g2): the logistic ``x50`` with its 95 %
    interval ``lo``, ``hi`` and ``members``, ``seeds``, ``points``, ``slope``, ``censored``,
    ``method`` (:func:`gandy.runs.boundary.boundary_table`), and the grid's own cells:
    ``g2_critical``, the smallest ``x`` at which at least half the seeds failed (NaN where none
    did), and ``g2_last_uncollapsed``, the largest ``x`` below it at which fewer than half did."""
    frac = results.assign(c=results.phase.isin(SPLIT_FAILED)).groupby([y, x]).c.mean().unstack(x).sort_index(axis=1)
    rows = []
    for lr, row in frac.iterrows():
        hit = row.index[row.to_numpy() >= 0.5]
        first = float(hit.min()) if len(hit) else np.nan
        below = row.index[(row.index < first) if len(hit) else np.ones(len(row), bool)]
        rows.append({y: float(lr), "g2_critical": first, "g2_last_uncollapsed": float(below.max()) if len(below) else np.nan})
    return boundary_table(results, x, y, SPLIT_FAILED, log=log).merge(pd.DataFrame(rows), on=y)


def digit_stats(target_cfg) -> dict:
    """The target digits' own mean |cos| between pairs and mean norm (standardised pixels): the
    reference an uncollapsed cloud is compared with (100 zeros: 0.48, 31.6; ten of each class:
    0.30, 27.3)."""
    d = target_of(target_cfg).data.double()  # (n, 784)
    u = d / d.norm(dim=1, keepdim=True)
    c = (u @ u.T).abs()
    n = len(d)
    return {"mean_abs_cos": float((c.sum() - c.diagonal().sum()) / (n * (n - 1))), "mean_norm": float(d.norm(dim=1).mean())}
