"""How a logged distance to the target falls: the first step it is below a level, its final value
and how much it still swings at the end (pure functions of the logged arrays)."""

from __future__ import annotations

import numpy as np

W1_REACHED = 0.1
"""The W1 level whose first crossing ``t_w1`` times (:func:`w1_measures`)."""


def w1_measures(steps: np.ndarray, w1: np.ndarray) -> dict:
    """Of one trajectory (``steps``, ``w1``: (T,), logged steps in order): ``t_w1`` (first logged
    step with w1 < 0.1; NaN if never), ``final_w1`` and ``w1_swing``, the oscillation amplitude:
    half the range of w1 about its straight-line trend over the last half of the run (a steady
    decline, however fast, has no swing; NaN if a value there is not finite)."""
    w = np.asarray(w1, dtype=float)
    steps = np.asarray(steps, dtype=float)
    hit = np.nonzero(w < W1_REACHED)[0]
    sel = steps >= steps.max() / 2
    t, late = steps[sel], w[sel]
    swing = np.nan
    if len(late) >= 3 and np.isfinite(late).all():
        resid = late - np.polyval(np.polyfit(t, late, 1), t)
        swing = float((resid.max() - resid.min()) / 2)
    return {"t_w1": float(steps[hit[0]]) if hit.size else np.nan, "final_w1": float(w[-1]), "w1_swing": swing}
