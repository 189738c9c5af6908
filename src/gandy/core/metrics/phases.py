"""The phase of a member, judged from its logged order parameters (docs/phases.md): the labels
(``PHASES``), the rule (:func:`classify`, with a margin and a period) and its summary for reports.
Pure numpy on arrays over logged steps; the thresholds come from a config's ``phase`` section
(read by attribute). Tested on constructed trajectories in tests/test_phases.py."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

PHASES = ("converged", "collapsed", "runaway", "oscillating", "transient", "stalled", "off_target", "diverged")
"""Every label :func:`classify` gives, in the order its tests run after ``diverged`` (docs/phases.md)."""

PHASE_RULE = ("diverged if non-finite or blown up; else, in order: converged if the distance to the target "
              "(mean_dist, or w1 without modes) settled within settle_tol x scale over the last `window` of "
              "logged steps, coverage_kl stayed below collapse_kl and the final on_mode >= on_mode; stalled if "
              "the final displacement < stall x the initial distance; runaway if the final distance > runaway x "
              "max(initial distance, scale); collapsed if coverage_kl > collapse_kl; oscillating if the distance "
              "reversed >= `reversals` times after swings > settle_tol x scale in the last `oscillation_window` "
              "(period recorded); transient if it still moved; else off_target (docs/phases.md). phase_margin: "
              "the smallest relative distance from a threshold among the deciding tests.")
"""The phase rule in one paragraph, for reports (the full text: docs/phases.md)."""

SPLIT_FAILED = ("collapsed", "runaway")
"""The phases in which the particles did not split between the modes: the mode-collapse side of a
phase diagram's boundary (a cloud that ran away sits on no mode at all)."""


@dataclass(frozen=True)
class Phase:
    """A member's phase: ``label`` (one of PHASES); ``margin``, the smallest relative distance of a
    statistic from its threshold among the tests that decided the label (below ~0.1, a small change
    would flip it; NaN for diverged); ``period`` in steps, for ``oscillating`` (else NaN)."""

    label: str
    margin: float = float("nan")
    period: float = float("nan")


@dataclass(frozen=True)
class PhaseRule:
    """The thresholds of :func:`classify` (``phase:`` in a config; docs/phases.md): the last
    ``window`` share of the logged points, ``settle_tol`` x the scale, ``collapse_kl`` (None:
    half log of the number of modes), ``on_mode`` share, ``reach`` x the scale, ``stall`` and
    ``runaway`` factors, the ``oscillation_window`` share and the ``reversals`` it needs."""

    window: float = 0.25
    collapse_kl: Optional[float] = None
    settle_tol: float = 0.05
    on_mode: float = 0.9
    reach: float = 0.2
    stall: float = 0.1
    runaway: float = 2.0
    oscillation_window: float = 0.5
    reversals: int = 3


def reversals(y: np.ndarray, tol: float) -> list[int]:
    """Indices of the confirmed turning points of ``y``: a maximum (minimum) counts once ``y`` has
    fallen (risen) by more than ``tol`` from it, so wiggles smaller than ``tol`` never reverse."""
    turns: list[int] = []
    lo = hi = ext = 0
    direction = 0  # +1 rising, -1 falling, 0 until y has moved by more than tol
    for i in range(1, len(y)):
        if direction == 0:
            hi = i if y[i] > y[hi] else hi
            lo = i if y[i] < y[lo] else lo
            if y[hi] - y[lo] > tol:
                direction, ext = (1, hi) if hi > lo else (-1, lo)
        elif direction * (y[i] - y[ext]) >= 0:
            ext = i
        elif abs(y[i] - y[ext]) > tol:
            turns.append(ext)
            direction, ext = -direction, i
    return turns


def _swing_margin(y: np.ndarray, tol: float, need: int) -> float:
    """The largest swing ``s`` at which ``y`` still has ``need`` reversals (bisection: fewer
    reversals at larger swings), relative to ``tol``: above 1 the oscillation test passes."""
    lo, hi = 0.0, float(np.ptp(y))
    if tol <= 0 or len(reversals(y, 0.0)) < need:
        return 0.0
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if len(reversals(y, mid)) >= need else (lo, mid)
    return lo / tol


class _Tests:
    """The margins of the tests a label rests on: a passed conjunction is as firm as its weakest
    condition; a failed one is as far from passing as its farthest failing condition."""

    def __init__(self):
        self.margins: list[float] = []

    def check(self, *gaps: float) -> bool:
        """``gaps``: each condition's signed relative gap (>= 0: holds). Records the test's margin."""
        gaps = [float(g) for g in gaps]
        ok = all(g >= 0 for g in gaps)
        self.margins.append(min(gaps) if ok else max(-g for g in gaps if g < 0))
        return ok

    def phase(self, label: str, period: float = float("nan")) -> Phase:
        return Phase(label, float(min(self.margins)), period)


def _at_least(value: float, threshold: float) -> float:
    """Signed gap of the test ``value >= threshold``, relative to the threshold (>= 0: holds)."""
    if threshold > 0:
        return (value - threshold) / threshold
    return np.inf if value > threshold else -np.inf if value < threshold else 0.0


def _at_most(value: float, threshold: float) -> float:
    """Signed gap of the test ``value <= threshold``, relative to the threshold (>= 0: holds)."""
    return -_at_least(value, threshold)


def _fraction_at_least(value: float, threshold: float) -> float:
    """``value >= threshold`` for a fraction: above the threshold the gap is a share of the room up
    to 1, (v - t)/(1 - t); below it, (v - t)/t."""
    return (value - threshold) / (1 - threshold) if value >= threshold and threshold < 1 else _at_least(value, threshold)


def classify(series: dict[str, np.ndarray], n_modes: int, scale: float, rule: "PhaseRule", diverged: bool,
             steps: Optional[np.ndarray] = None) -> Phase:
    """Final phase of one member from its logged order parameters (arrays over logged steps, the
    first at step 0; ``steps``: the logged steps, for the period). Rule (docs/phases.md), with D the
    distance to the target (mean_dist, or w1 for targets without modes), S the target scale,
    tol = settle_tol S, W the last ``window`` of logged points, in this order:

    1. ``diverged``: non-finite values or a blow-up;
    2. ``converged``: D settled over W (range <= tol), mean coverage_kl over W <= collapse_kl and
       the final on_mode >= on_mode (without modes: final w1 <= reach S);
    3. ``stalled``: the final displacement < stall D(0) (the cloud never moved);
    4. ``runaway``: the final D > runaway max(D(0), S) (the cloud left the target);
    5. ``collapsed``: mean coverage_kl over W > collapse_kl (settled or cycling on few modes);
    6. ``oscillating``: D reversed at least ``reversals`` times in the last ``oscillation_window``,
       each after a swing > tol; the period is twice the mean spacing of the reversals;
    7. ``transient``: D still changing by more than tol over W (mostly: still falling);
    8. ``off_target``: settled without covering the target (on_mode or w1 short of the test in 2).
    """
    if diverged:
        return Phase("diverged")
    d = np.asarray(series["mean_dist" if n_modes > 0 else "w1"], dtype=float)
    if d.size == 0 or not np.isfinite(d).all():
        return Phase("diverged")
    steps = np.arange(d.size, dtype=float) if steps is None else np.asarray(steps, dtype=float)
    w = min(max(2, math.ceil(rule.window * d.size)), d.size)
    tol = rule.settle_tol * scale
    kl_w = float(np.mean(np.asarray(series["coverage_kl"], dtype=float)[-w:])) if n_modes > 1 else 0.0
    limit = rule.collapse_kl if rule.collapse_kl is not None else 0.5 * math.log(max(n_modes, 2))
    spread = float(np.ptp(d[-w:]))
    tests = _Tests()

    reached = _fraction_at_least(float(series["on_mode"][-1]), rule.on_mode) if n_modes > 0 else _at_most(d[-1], rule.reach * scale)
    if tests.check(_at_most(spread, tol), _at_most(kl_w, limit) if n_modes > 1 else np.inf, reached):
        return tests.phase("converged")
    disp = np.asarray(series.get("displacement", [np.nan]), dtype=float)[-1]
    if np.isfinite(disp) and d[0] > 0 and tests.check(_at_most(disp, rule.stall * d[0])):
        return tests.phase("stalled")
    if tests.check(_at_least(d[-1], rule.runaway * max(d[0], scale))):
        return tests.phase("runaway")
    if n_modes > 1 and tests.check(_at_least(kl_w, limit)):
        return tests.phase("collapsed")
    o = min(max(3, math.ceil(rule.oscillation_window * d.size)), d.size)
    if tests.check(_swing_margin(d[-o:], tol, rule.reversals) - 1.0):
        turns = reversals(d[-o:], tol)
        return tests.phase("oscillating", float(2 * np.mean(np.diff(steps[-o:][turns]))))
    if tests.check(_at_least(spread, tol)):
        return tests.phase("transient")
    return tests.phase("off_target")




THRESHOLDS = ("window", "collapse_kl", "settle_tol", "on_mode", "reach", "stall", "runaway", "oscillation_window",
              "reversals")
"""The fields of :class:`PhaseRule` a label rests on (every one; ``phase.blowup`` acts in the loop,
not in the rule, and cannot be changed after a run)."""

FRACTIONS = ("window", "on_mode", "oscillation_window")
"""The thresholds that are shares (of the logged points, of the particles): at most 1."""


def scaled_rule(rule: PhaseRule, field: str, factor: float, n_modes: int) -> PhaseRule:
    """``rule`` with one threshold ``field`` (one of :data:`THRESHOLDS`) multiplied by ``factor``,
    the others as they are: ``collapse_kl`` None is first its default, half log of the number of
    modes (``n_modes``, at least 2); a share (:data:`FRACTIONS`) is capped at 1; ``reversals``, a
    count, is rounded half up and kept at least 1 (3 x 0.5 -> 2, 3 x 1.5 -> 5)."""
    if field not in THRESHOLDS:
        raise ValueError(f"{field!r} is not a threshold of the phase rule; valid: {', '.join(THRESHOLDS)}")
    value = getattr(rule, field)
    if field == "collapse_kl" and value is None:
        value = 0.5 * math.log(max(n_modes, 2))
    new = value * factor
    if field in FRACTIONS:
        new = min(new, 1.0)
    if field == "reversals":
        new = max(1, math.floor(new + 0.5))
    return PhaseRule(**{**{f: getattr(rule, f) for f in THRESHOLDS}, field: new})
