"""Numbers that studies compute from finished sweeps and from the target, shared by several studies:
the collapse boundary of a phase diagram (``collapse_boundary``) and the target data's own order
parameters, the reference an uncollapsed cloud is compared with (``digit_stats``)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from gandy.core.metrics.phases import SPLIT_FAILED
from gandy.runs.build import target_of


def collapse_boundary(results: pd.DataFrame, x: str, y: str) -> pd.DataFrame:
    """Per value of the column ``y`` (a critic learning rate): the smallest ``x`` (g2) at which at
    least half the seeds failed to split (collapsed or ran away, SPLIT_FAILED; NaN where none did),
    and the largest ``x`` below it at which fewer than half did. Columns ``y``, ``g2_critical`` and
    ``g2_last_uncollapsed``."""
    frac = results.assign(c=results.phase.isin(SPLIT_FAILED)).groupby([y, x]).c.mean().unstack(x).sort_index(axis=1)
    rows = []
    for lr, row in frac.iterrows():
        hit = row.index[row.to_numpy() >= 0.5]
        first = float(hit.min()) if len(hit) else np.nan
        below = row.index[(row.index < first) if len(hit) else np.ones(len(row), bool)]
        rows.append({y: float(lr), "g2_critical": first, "g2_last_uncollapsed": float(below.max()) if len(below) else np.nan})
    return pd.DataFrame(rows)


def digit_stats(target_cfg) -> dict:
    """The target digits' own mean |cos| between pairs and mean norm (standardised pixels): the
    reference an uncollapsed cloud is compared with (100 zeros: 0.48, 31.6; ten of each class:
    0.30, 27.3)."""
    d = target_of(target_cfg).data.double()  # (n, 784)
    u = d / d.norm(dim=1, keepdim=True)
    c = (u @ u.T).abs()
    n = len(d)
    return {"mean_abs_cos": float((c.sum() - c.diagonal().sum()) / (n * (n - 1))), "mean_norm": float(d.norm(dim=1).mean())}
