"""Where a phase boundary lies, with its interval: a logistic fit of the probability that a run
fails (collapses, runs away) against an axis, and a parametric bootstrap for the point where that
probability is one half.

Seeds at one point of a phase diagram give a count: ``k`` of ``n`` seeds failed. Along one row of
the diagram (one value of the other axis) the counts at positions ``t`` (``log x`` on a logarithmic
axis, ``x`` otherwise) are fitted by P(fail | t) = sigma(b0 + b1 t) by maximum likelihood with
Firth's bias-reducing penalty (the log-likelihood plus half the log-determinant of the Fisher
information): unlike plain maximum likelihood it stays finite when the seeds separate perfectly
(every run below some x succeeded and every run above failed), which is the usual outcome of a
bisection with a few seeds. The boundary is t50 = -b0 / b1. Its 95 % interval is the 2.5 and 97.5
percentiles of t50 refitted on counts drawn from the fitted probabilities at the same points with
the same numbers of seeds (a parametric bootstrap): it widens where few seeds or a shallow
transition leave the boundary uncertain.

Everything here is plain numpy on counts; nothing runs a simulation (:mod:`gandy.runs.boundary` does).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

LEVEL = 0.95
"""The coverage of the reported interval."""

METHOD = "firth-logistic+parametric-bootstrap"
"""How ``x50`` and its interval are estimated (the ``method`` a boundary table carries)."""


@dataclass(frozen=True)
class Boundary:
    """One row's boundary: ``x50`` (where P(fail) = 1/2, on the axis's own scale), its interval
    ``[lo, hi]`` (``LEVEL``), the fitted slope of logit P(fail) per unit of ``t`` (positive: failing
    grows with x), the points and the runs (seeds summed over points) it rests on. NaN where the
    row has no crossing (every run failed, or none did): ``censored`` then says which; where the
    fitted x50 lies outside the positions tried, its numbers are an extrapolation and ``censored``
    says on which side (``above_range``, ``below_range``)."""

    x50: float
    lo: float
    hi: float
    slope: float
    points: int
    runs: int
    censored: str = ""  # "", "all_failed", "none_failed", "above_range" or "below_range"


def firth_logistic(t: np.ndarray, k: np.ndarray, n: np.ndarray, iterations: int = 100,
                   tol: float = 1e-10) -> np.ndarray:
    """Firth-penalised logistic regression of ``k`` failures out of ``n`` runs at positions ``t``.

    ``t``: (J,) positions; ``k``: (..., J) failure counts (a leading batch of independent data
    sets, e.g. bootstrap draws, is fitted at once); ``n``: (J,) runs per position. Returns ``(..., 2)``:
    ``(b0, b1)`` of logit P(fail) = b0 + b1 t. Newton steps on the modified score
    ``sum_j (k_j - n_j p_j + h_j (1/2 - p_j)) (1, t_j)`` (``h``: the hat matrix's diagonal,
    Firth 1993), each step capped in length so that the iteration cannot overshoot."""
    t = np.asarray(t, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    k = np.asarray(k, dtype=np.float64)
    X = np.stack([np.ones_like(t), t], axis=1)  # (J, 2)
    beta = np.zeros(k.shape[:-1] + (2,))
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-(beta @ X.T)))  # (..., J)
        w = n * p * (1.0 - p)  # (..., J)
        info = np.einsum("...j,ja,jb->...ab", w, X, X) + 1e-12 * np.eye(2)  # (..., 2, 2)
        inv = np.linalg.inv(info)
        h = w * np.einsum("ja,...ab,jb->...j", X, inv, X)  # (..., J) hat diagonal
        score = np.einsum("...j,ja->...a", k - n * p + h * (0.5 - p), X)  # (..., 2)
        step = np.einsum("...ab,...b->...a", inv, score)
        size = np.linalg.norm(step, axis=-1, keepdims=True)
        step = step * np.minimum(1.0, 5.0 / np.maximum(size, 1e-300))
        beta = beta + step
        if float(np.max(np.abs(step))) < tol:
            break
    return beta


def t50(beta: np.ndarray) -> np.ndarray:
    """Where logit P = b0 + b1 t crosses zero: -b0 / b1 (infinite where the slope is zero)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return -beta[..., 0] / beta[..., 1]


def fit_boundary(x: np.ndarray, failed: np.ndarray, runs: np.ndarray, log: bool = True, draws: int = 2000,
                 seed: int = 0) -> Boundary:
    """The boundary of one row: ``x`` (J,) the positions tried, ``failed`` (J,) how many runs failed
    there, ``runs`` (J,) how many ran; ``log``: fit against log x. ``draws`` bootstrap data sets
    from a generator seeded by ``seed`` (the interval is a function of the counts)."""
    x = np.asarray(x, dtype=np.float64)
    k = np.asarray(failed, dtype=np.float64)
    n = np.asarray(runs, dtype=np.float64)
    keep = n > 0
    x, k, n = x[keep], k[keep], n[keep]
    base = dict(points=int(len(x)), runs=int(n.sum()))
    nan = float("nan")
    if k.sum() == 0 or k.sum() == n.sum():
        return Boundary(nan, nan, nan, nan, censored="none_failed" if k.sum() == 0 else "all_failed", **base)
    if len(x) < 2:
        raise ValueError("a boundary needs runs at two positions at least")
    raw = np.log(x) if log else x
    centre, scale = float(raw.mean()), float(raw.std()) or 1.0
    t = (raw - centre) / scale
    beta = firth_logistic(t, k, n)
    p = 1.0 / (1.0 + np.exp(-(beta[0] + beta[1] * t)))
    rng = np.random.default_rng(seed)
    kb = rng.binomial(n.astype(np.int64), p, size=(draws, len(t)))
    tb = t50(firth_logistic(t, kb, n))
    tb = np.where(np.isnan(tb), np.inf, tb)  # a flat refit (all or none failed in a draw) places no crossing
    a = (1.0 - LEVEL) / 2.0
    lo_t = float(np.quantile(tb, a, method="lower"))  # order statistics: defined with infinite draws too
    hi_t = float(np.quantile(tb, 1.0 - a, method="higher"))

    def back(v: float) -> float:
        if not math.isfinite(v):
            return float("inf") if v > 0 else (0.0 if log else float("-inf"))
        u = v * scale + centre
        return float(math.exp(min(u, 709.0))) if log else float(u)  # a crossing beyond 1e308: as far as a float goes

    x50 = back(float(t50(beta)))
    side = "above_range" if x50 > x.max() else "below_range" if x50 < x.min() else ""  # outside the positions tried
    return Boundary(x50, back(lo_t), back(hi_t), float(beta[1] / scale), censored=side, **base)


def step_bracket(x: np.ndarray, failed: np.ndarray, runs: np.ndarray) -> tuple[float, float]:
    """Where one row's points change from not failing to failing, read off the counts without a
    model: ``x`` (J,) the positions, ``failed`` and ``runs`` (J,) the counts there; a point fails
    where at least half its runs did (as :mod:`gandy.runs.boundary`'s search judges it). Walking
    from the end that does not fail, ``(the last position that did not fail, the first that did)``,
    in increasing x; ``(nan, nan)`` where the ends agree (no change in the range). The bracket a
    bisection ends with, for any set of points (a grid, pooled runs)."""
    x = np.asarray(x, dtype=np.float64)
    order = np.argsort(x)
    x, fails = x[order], (2 * np.asarray(failed, dtype=np.float64) >= np.asarray(runs, dtype=np.float64))[order]
    if len(x) < 2 or fails[0] == fails[-1]:
        return float("nan"), float("nan")
    walk = np.arange(len(x)) if not fails[0] else np.arange(len(x))[::-1]  # from the end that does not fail
    k = int(np.argmax(fails[walk]))  # the first failing point's place on the walk (k >= 1: the walk starts not failing)
    return tuple(sorted((float(x[walk[k - 1]]), float(x[walk[k]]))))


def row_boundaries(x: np.ndarray, y: np.ndarray, failed: np.ndarray, log: bool = True, draws: int = 2000,
                   seed: int = 0) -> list[tuple[float, Boundary]]:
    """The boundary in ``x`` of every row of a phase diagram: ``x``, ``y`` (M,) each run's position
    and row, ``failed`` (M,) whether it failed. Returns ``[(y value, Boundary)]`` in increasing
    ``y``; runs at the same ``x`` of a row are pooled into one count."""
    x, y, failed = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64), np.asarray(failed, dtype=bool)
    out = []
    for yv in np.unique(y):
        m = y == yv
        xs, inv = np.unique(x[m], return_inverse=True)
        k = np.bincount(inv, weights=failed[m].astype(np.float64), minlength=len(xs))
        n = np.bincount(inv, minlength=len(xs)).astype(np.float64)
        out.append((float(yv), fit_boundary(xs, k, n, log=log, draws=draws, seed=seed)))
    return out
