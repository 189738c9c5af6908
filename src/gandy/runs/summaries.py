"""Numbers that studies compute from finished sweeps and from the target, shared by several studies:
the collapse boundary of a phase diagram with its interval (``collapse_boundary``), the target data's
own order parameters, the reference an uncollapsed cloud is compared with (``digit_stats``), the
mean of a headline number over seeds with its confidence interval (``seed_interval``,
``seed_intervals``), and the spread of a number across a random search's draws with the share of
draws that pass a threshold (``quartiles``, ``wilson_interval``, ``fraction_interval``)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from gandy.core.datafile import check_data_file
from gandy.core.errors import ConfigError
from gandy.core.lazy import LazyModule
from gandy.core.metrics.phases import SPLIT_FAILED
from gandy.runs.build import target_of
from gandy.runs.tables import boundary_table

stats = LazyModule("scipy.stats")  # 0.3 s of start-up, paid by the first interval


def collapse_boundary(results: pd.DataFrame, x: str, y: str, log: bool = True) -> pd.DataFrame:
    """Per value of the column ``y`` (a critic learning rate), where the runs fail to split
    (collapsed or ran away, SPLIT_FAILED) along ``x`` (g2): the logistic ``x50`` with its 95 %
    interval ``lo``, ``hi`` and ``members``, ``seeds``, ``points``, ``slope``, ``censored``,
    ``method`` (:func:`gandy.runs.tables.boundary_table`), and the grid's own cells:
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


def cloud_spread(cos, norm) -> np.ndarray:
    """A cloud's spread about its common part, ``norm * sqrt(1 - cos)``, from its mean |cos| and
    mean norm (arrays of one shape; NaN where not finite). For particles ``x_i = m + e_i`` whose
    deviations are independent, isotropic and high-dimensional (so nearly orthogonal to ``m`` and
    to each other), ``|x_i|^2 = |m|^2 + |e|^2`` and ``x_i . x_j = |m|^2``, so ``cos = |m|^2 /
    |x|^2`` and ``|e| = |x| sqrt(1 - cos)``: an N(0, s^2 I) cloud in d dimensions shifted by any
    ``m`` has spread ``s sqrt(d)`` (784-D: 28 s). The authors' table has only the two numbers, so
    this is how their clouds' spread is read (mnist-calibrate, docs/bridge.md); for a cloud with
    structure (digits) it is a summary, not a measurement."""
    cos, norm = np.asarray(cos, dtype=float), np.asarray(norm, dtype=float)
    with np.errstate(invalid="ignore"):
        return norm * np.sqrt(np.clip(1.0 - cos, 0.0, 1.0))


CLOUD_PHASES = ("data_like", "mean_like", "noise_like", "runaway", "other", "diverged")
"""The labels of :func:`cloud_phase`."""


def cloud_phase(cos, norm, digits_norm: float, noise_cos: float = 0.15, data_cos: float = 0.4,
                data_norm: float = 0.2, runaway: float = 2.0) -> np.ndarray:
    """The phase of MNIST particle clouds from their final mean |cos| and mean norm alone (arrays
    of one shape), with D = ``digits_norm`` the target digits' mean norm (:func:`digit_stats`), in
    this order: ``diverged`` where a number is not finite; ``runaway`` if norm > ``runaway`` D;
    ``noise_like`` if |cos| < ``noise_cos`` (independent 784-D Gaussian vectors have ~0.03, the
    digits among themselves 0.30: an unmoved or unstructured cloud); ``data_like`` if |cos| <=
    ``data_cos`` and norm within ``data_norm`` (relative) of D; ``mean_like`` if |cos| >
    ``data_cos`` and norm <= D (pulled onto the data's mean image, about 0.6 / 22: a collapse onto
    the mean, not onto one digit); ``other`` otherwise (bounded, none of these: a partial
    collapse). One rule for the authors' published clouds (two numbers each) and for gandy's, so
    the two are labelled alike (mnist-calibrate, the MNIST diagram). Returns an object array of
    :data:`CLOUD_PHASES` labels."""
    cos, norm = np.asarray(cos, dtype=float), np.asarray(norm, dtype=float)
    out = np.full(cos.shape, "other", dtype=object)
    finite = np.isfinite(cos) & np.isfinite(norm)
    rel = np.where(finite, norm, 0.0) / digits_norm
    c = np.where(finite, cos, 0.0)
    out[finite & (c <= data_cos) & (np.abs(rel - 1) <= data_norm)] = "data_like"
    out[finite & (c > data_cos) & (rel <= 1)] = "mean_like"
    out[finite & (c < noise_cos)] = "noise_like"
    out[finite & (rel > runaway)] = "runaway"
    out[~finite] = "diverged"  # the last assignment wins: the rule's order read backwards
    return out


COLUMNS = ("g2_over_g1", "critic_lr", "mean_abs_cos", "mean_norm")
"""The columns a calibration table needs (others are ignored)."""
MAX_TABLE_BYTES = 10_000_000
"""A calibration table larger than this is refused before it is read (the authors' grid: 676 rows)."""


def read_table(path: str) -> pd.DataFrame:
    """The calibration table at ``path``: the :data:`COLUMNS` as floats, one row per point. Refused
    (ConfigError naming ``calibration.table``, with the file, the column and the line) where it is
    missing, not a CSV, lacks a column, holds a value that is not a finite number, a negative
    g2/g1, a critic lr or norm <= 0, a |cos| outside [0, 1], or a point twice."""
    field = "calibration.table"
    p = check_data_file(path, field, expected=f"a CSV file with the columns {', '.join(COLUMNS)}")
    if p.stat().st_size > MAX_TABLE_BYTES:
        raise ConfigError(field, f"{p} holds {p.stat().st_size:,} bytes; a calibration table is at most "
                                   f"{MAX_TABLE_BYTES:,}")
    try:
        t = pd.read_csv(p, dtype=str)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise ConfigError(field, f"cannot read {p} as a CSV table: {type(e).__name__}: {e}") from None
    missing = [c for c in COLUMNS if c not in t.columns]
    if missing:
        raise ConfigError(field, f"{p} lacks the column(s) {', '.join(missing)}; a calibration table has "
                                   f"{', '.join(COLUMNS)}")
    if t.empty:
        raise ConfigError(field, f"{p} holds no rows")
    out = pd.DataFrame({c: pd.to_numeric(t[c].str.strip(), errors="coerce") for c in COLUMNS})
    checks = {"g2_over_g1": (lambda v: v >= 0, ">= 0"), "critic_lr": (lambda v: v > 0, "> 0"),
              "mean_abs_cos": (lambda v: (v >= 0) & (v <= 1), "in [0, 1]"), "mean_norm": (lambda v: v > 0, "> 0")}
    for c in COLUMNS:
        v = out[c].to_numpy(float)
        ok, what = checks[c]
        bad = ~np.isfinite(v) | ~ok(np.nan_to_num(v, nan=-1.0))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ConfigError(field, f"{p}, line {i + 2}: {c} must be a finite number {what}, got {t[c].iloc[i]!r}")
    dup = out.duplicated(["g2_over_g1", "critic_lr"])
    if dup.any():
        i = int(np.flatnonzero(dup.to_numpy())[0])
        raise ConfigError(field, f"{p}, line {i + 2}: the point (g2_over_g1 {out.g2_over_g1.iloc[i]:g}, critic_lr "
                                   f"{out.critic_lr.iloc[i]:g}) appears twice")
    return out


def seed_interval(values, level: float = 0.95) -> tuple[float, float, float, int]:
    """The mean of ``values`` (one number per seed) and its two-sided ``level`` confidence interval
    by Student's t: mean +- t_{(1 + level) / 2, n - 1} * s / sqrt(n), s the sample standard deviation
    (ddof 1), n the number of finite values. NaN and infinite values (a seed that never reached a
    threshold, a run that blew up) are left out, and ``n`` says how many remained.

    Returns ``(mean, lo, hi, n)``; with one finite value lo = hi = NaN (one seed has no spread), with
    none all three are NaN. The interval assumes the seeds' values scatter roughly normally; at
    3 seeds t = 4.30, at 5 seeds 2.78, so a few seeds give wide intervals, as they should."""
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    v = np.asarray(values, dtype=float).reshape(-1)
    v = v[np.isfinite(v)]
    n = int(v.size)
    if n == 0:
        return float("nan"), float("nan"), float("nan"), 0
    mean = float(v.mean())
    if n == 1:
        return mean, float("nan"), float("nan"), 1
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * float(v.std(ddof=1)) / np.sqrt(n)
    return mean, mean - half, mean + half, n


def seed_intervals(table: pd.DataFrame, by: list[str], columns: list[str], level: float = 0.95) -> pd.DataFrame:
    """Per group of ``table`` by the columns ``by`` (a grid point, a game): :func:`seed_interval` of
    each of ``columns`` over the group's rows (its seeds). One row per group: the ``by`` columns,
    then ``COL_mean``, ``COL_lo``, ``COL_hi``, ``COL_n`` for each column."""
    rows = []
    for key, g in table.groupby(by, sort=False, dropna=False):
        row = dict(zip(by, key if isinstance(key, tuple) else (key,)))
        for c in columns:
            row.update(zip((f"{c}_mean", f"{c}_lo", f"{c}_hi", f"{c}_n"), seed_interval(g[c], level)))
        rows.append(row)
    return pd.DataFrame(rows, columns=[*by, *(f"{c}_{k}" for c in columns for k in ("mean", "lo", "hi", "n"))])


def quartiles(values) -> dict:
    """``{"median", "q25", "q75"}`` of ``values`` (pandas' linear quantiles), each None where
    ``values`` is empty. Non-finite values count as given: leave out diverged runs first."""
    v = pd.Series(np.asarray(values, dtype=float).reshape(-1))
    if not len(v):
        return {"median": None, "q25": None, "q75": None}
    return {"median": float(v.median()), "q25": float(v.quantile(0.25)), "q75": float(v.quantile(0.75))}


def wilson_interval(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson's score interval for a binomial proportion: ``k`` successes in ``n`` trials, two-sided
    ``level``. With z the normal quantile (1.96 at 95 %) and p = k / n, the centre is
    (p + z^2 / 2n) / (1 + z^2 / n) and the half-width z sqrt(p (1 - p) / n + z^2 / 4n^2) / (1 + z^2 / n);
    unlike p +- z sqrt(p (1 - p) / n) it stays inside [0, 1] and is not empty at k = 0 or k = n.
    Returns ``(lo, hi)``; NaN for both when n = 0."""
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    if not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return float("nan"), float("nan")
    z = float(stats.norm.ppf(0.5 + level / 2))
    p, z2 = k / n, z * z
    denom = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z * np.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def fraction_interval(hits, level: float = 0.95) -> dict:
    """The share of true entries of ``hits`` (booleans, one per draw) with its Wilson interval
    (:func:`wilson_interval`): ``{"k", "n", "fraction", "lo", "hi"}`` (fraction, lo, hi None for
    no draws)."""
    h = np.asarray(hits, dtype=bool).reshape(-1)
    k, n = int(h.sum()), int(h.size)
    if n == 0:
        return {"k": 0, "n": 0, "fraction": None, "lo": None, "hi": None}
    lo, hi = wilson_interval(k, n, level)
    return {"k": k, "n": n, "fraction": k / n, "lo": lo, "hi": hi}


def difference_interval(k1: int, n1: int, k2: int, n2: int, level: float = 0.95) -> tuple[float, float]:
    """Newcombe's hybrid score interval (1998, "method 10") for the difference p1 - p2 of two
    independent binomial proportions, k1 of n1 against k2 of n2: with (l_i, u_i) the Wilson interval
    of p_i = k_i / n_i (:func:`wilson_interval`), ``(p1 - p2 - sqrt((p1 - l1)^2 + (u2 - p2)^2),
    p1 - p2 + sqrt((u1 - p1)^2 + (p2 - l2)^2))``. Inside [-1, 1], not empty at 0 or n, and close to
    its nominal coverage at a few dozen draws, where p1 - p2 +- z * (Wald's standard error) is not.
    NaN for both ends when n1 or n2 is 0."""
    if n1 == 0 or n2 == 0:
        return float("nan"), float("nan")
    (l1, u1), (l2, u2) = wilson_interval(k1, n1, level), wilson_interval(k2, n2, level)
    p1, p2 = k1 / n1, k2 / n2
    return (float(p1 - p2 - np.hypot(p1 - l1, u2 - p2)), float(p1 - p2 + np.hypot(u1 - p1, p2 - l2)))


def paired_difference_interval(both: int, a_only: int, b_only: int, neither: int,
                               level: float = 0.95) -> tuple[float, float]:
    """Newcombe's score interval (1998b, "method 10") for p_a - p_b when both proportions are
    measured on the same n = both + a_only + b_only + neither draws: each draw is a hit under A, under
    B, under both or neither. With p_a = (both + a_only) / n, p_b = (both + b_only) / n, their Wilson
    intervals (l_a, u_a), (l_b, u_b) and phi the correlation of the 2 x 2 table,
    (both * neither - a_only * b_only) / sqrt(product of its four margins) (0 when a margin is 0):
    ``(d - sqrt((p_a - l_a)^2 - 2 phi (p_a - l_a)(u_b - p_b) + (u_b - p_b)^2),
    d + sqrt((u_a - p_a)^2 - 2 phi (u_a - p_a)(p_b - l_b) + (p_b - l_b)^2))``, d = p_a - p_b.
    With phi = 0 it is :func:`difference_interval` at n1 = n2 = n; a positive phi (draws that are
    good under one game tend to be good under the other) narrows it. NaN for both ends at n = 0."""
    n = both + a_only + b_only + neither
    if min(both, a_only, b_only, neither) < 0:
        raise ValueError(f"counts must be >= 0, got {(both, a_only, b_only, neither)}")
    if n == 0:
        return float("nan"), float("nan")
    ka, kb = both + a_only, both + b_only
    (la, ua), (lb, ub) = wilson_interval(ka, n, level), wilson_interval(kb, n, level)
    pa, pb = ka / n, kb / n
    margins = float(ka) * (n - ka) * kb * (n - kb)
    phi = (both * neither - a_only * b_only) / np.sqrt(margins) if margins > 0 else 0.0
    lo = np.sqrt(max(0.0, (pa - la) ** 2 - 2 * phi * (pa - la) * (ub - pb) + (ub - pb) ** 2))
    hi = np.sqrt(max(0.0, (ua - pa) ** 2 - 2 * phi * (ua - pa) * (pb - lb) + (pb - lb) ** 2))
    return float(max(-1.0, pa - pb - lo)), float(min(1.0, pa - pb + hi))


def sign_test(wins: int, n: int) -> float:
    """The exact two-sided p-value of ``wins`` successes in ``n`` trials against a fair coin:
    min(1, 2 P(B <= min(wins, n - wins))), B ~ Binomial(n, 1/2). On the draws where two games
    disagree it is McNemar's exact test (who is good) or the sign test (who scores better). 1 at n = 0."""
    if not 0 <= wins <= n:
        raise ValueError(f"need 0 <= wins <= n, got wins={wins}, n={n}")
    if n == 0:
        return 1.0
    return float(min(1.0, 2 * stats.binom.cdf(min(wins, n - wins), n, 0.5)))


def median_interval(values, level: float = 0.95) -> dict:
    """The median of ``values`` (finite or infinite; NaN left out) with its distribution-free
    interval from order statistics: the j-th smallest and j-th largest value, j the largest rank with
    P(B < j) <= (1 - level) / 2, B ~ Binomial(n, 1/2), so that the interval covers the population
    median with probability ``coverage`` = 1 - 2 P(B < j) >= level whatever the distribution.
    ``{"median", "lo", "hi", "coverage", "n"}``; lo, hi and coverage None when n is too small for
    ``level`` (n < 6 at 95 %), the median None at n = 0."""
    v = np.sort(np.asarray(values, dtype=float).reshape(-1))
    v = v[~np.isnan(v)]
    n = int(v.size)
    out = {"median": float(np.median(v)) if n else None, "lo": None, "hi": None, "coverage": None, "n": n}
    if n == 0:
        return out
    tail = stats.binom.cdf(np.arange(n), n, 0.5)  # tail[j - 1] = P(B < j) = P(B <= j - 1)
    ok = np.flatnonzero(tail <= (1 - level) / 2)
    if ok.size:
        j = int(ok[-1]) + 1  # 1-based rank
        out.update(lo=float(v[j - 1]), hi=float(v[n - j]), coverage=float(1 - 2 * tail[j - 1]))
    return out


def paired_comparison(good_a, good_b, score_a, score_b, level: float = 0.95) -> dict:
    """Two games compared on the same n draws (arrays aligned by draw): ``good_*`` booleans,
    ``score_*`` a positive number where lower is better (FID, W1; +inf for a draw that diverged).

    ``good``: the counts of draws good under both, A only, B only, neither; ``difference`` = p_a -
    p_b with :func:`paired_difference_interval`; ``p`` McNemar's exact test (:func:`sign_test` on
    the draws good under one game only). ``score``: the draws where A scores lower, where B does,
    ties (both diverged counts as a tie), ``p`` the sign test over the untied draws, and
    ``ratio_median`` [``lo``, ``hi``]: the median over draws of score_a / score_b with its
    order-statistic interval (:func:`median_interval`; ``coverage`` its exact level), below 1 when
    A tends to score lower (better). None for the ratio's ends where n is too small."""
    ga, gb = np.asarray(good_a, dtype=bool).reshape(-1), np.asarray(good_b, dtype=bool).reshape(-1)
    sa, sb = np.asarray(score_a, dtype=float).reshape(-1), np.asarray(score_b, dtype=float).reshape(-1)
    if not ga.size == gb.size == sa.size == sb.size:
        raise ValueError(f"every array needs one entry per draw, got sizes {ga.size}, {gb.size}, {sa.size}, {sb.size}")
    if np.any(sa <= 0) or np.any(sb <= 0) or np.isnan(sa).any() or np.isnan(sb).any():
        raise ValueError("scores must be positive numbers (+inf for a diverged draw)")
    both, a_only, b_only = int((ga & gb).sum()), int((ga & ~gb).sum()), int((~ga & gb).sum())
    n = int(ga.size)
    lo, hi = paired_difference_interval(both, a_only, b_only, n - both - a_only - b_only, level)
    with np.errstate(invalid="ignore"):
        log_ratio = np.log(sa) - np.log(sb)  # +-inf where one diverged, NaN where both did
    log_ratio[np.isnan(log_ratio)] = 0.0  # both diverged: a tie
    a_better, b_better = int((log_ratio < 0).sum()), int((log_ratio > 0).sum())
    med = median_interval(log_ratio, level)
    ratio = {k: (None if med[k] is None else float(np.exp(med[k]))) for k in ("median", "lo", "hi")}
    return {"draws": n,
            "good": {"both": both, "a_only": a_only, "b_only": b_only, "neither": n - both - a_only - b_only,
                     "difference": (a_only - b_only) / n if n else None, "lo": lo, "hi": hi,
                     "p": sign_test(a_only, a_only + b_only)},
            "score": {"a_better": a_better, "b_better": b_better, "ties": n - a_better - b_better,
                      "p": sign_test(a_better, a_better + b_better), "ratio_median": ratio["median"],
                      "lo": ratio["lo"], "hi": ratio["hi"], "coverage": med["coverage"]}}


def draw_medians(table: pd.DataFrame, by: list[str], worst: dict, keep=()) -> pd.DataFrame:
    """One row per draw of a random search run at several seeds: per group of ``table`` by ``by``
    (e.g. game and trial), the median over its rows (seeds) of each column of ``worst``, a run
    whose ``diverged`` is true counted at ``worst[column]`` (+inf for a score where lower is
    better, 0 for a count), so that a draw most of whose seeds blew up has the worst median.
    Columns: ``by``, ``seeds`` (rows in the group), ``diverged_seeds``, each of ``worst``, then each
    column of ``keep`` present in ``table`` (the draw's values, e.g. its learning rate: the group's
    first row's)."""
    rows = []
    for key, g in table.groupby(by, sort=False, dropna=False):
        bad = g["diverged"].astype(bool).to_numpy()
        row = {**dict(zip(by, key if isinstance(key, tuple) else (key,))), "seeds": len(g), "diverged_seeds": int(bad.sum())}
        for c, w in worst.items():
            row[c] = float(np.median(np.where(bad, w, g[c].astype(float).to_numpy())))
        row.update({c: g[c].iloc[0] for c in keep if c in g.columns})
        rows.append(row)
    return pd.DataFrame(rows)


def compare_games(table: pd.DataFrame, pairs, score: str, key: str = "trial", level: float = 0.95) -> list[dict]:
    """For each ``(a, b)`` of ``pairs``: game ``a`` against game ``b`` of ``table`` (one row per
    game x draw, columns ``game``, ``key``, ``good`` and ``score``, lower better; a diverged draw's
    score +inf). Draws of one random search share their values across games (the same search seed:
    the same learning rates, beta1 and n_critic), so the games are compared on the draws both ran,
    matched by ``key``: :func:`paired_comparison`'s dict with ``a``, ``b``, ``metric`` (= ``score``)
    and ``paired``. Where
    a shared value differs between the two games' draws (a column named ``optim.*`` in both), the
    draws are not the same and the comparison falls back to two independent samples: ``paired``
    False, the good shares' difference with :func:`difference_interval` and Fisher's exact ``p``, no
    score pairing."""
    out = []
    for a, b in pairs:
        ta, tb = (table[table.game == g].set_index(key) for g in (a, b))
        common = ta.index.intersection(tb.index)
        shared = [c for c in ta.columns if c.startswith("optim.") and c in tb.columns]
        x, y = ta.loc[common], tb.loc[common]
        same = all((x[c].astype(str) == y[c].astype(str)).all() for c in shared)
        if len(common) and same:
            res = paired_comparison(x.good, y.good, x[score].fillna(np.inf), y[score].fillna(np.inf), level)
            out.append({"a": a, "b": b, "metric": score, "paired": True, **res})
            continue
        ka, na, kb, nb = int(ta.good.sum()), len(ta), int(tb.good.sum()), len(tb)
        lo, hi = difference_interval(ka, na, kb, nb, level)
        p = float(stats.fisher_exact([[ka, na - ka], [kb, nb - kb]]).pvalue) if na and nb else 1.0
        out.append({"a": a, "b": b, "metric": score, "paired": False, "draws": None, "score": None,
                    "good": {"a": ka, "n_a": na, "b": kb, "n_b": nb,
                             "difference": ka / na - kb / nb if na and nb else None, "lo": lo, "hi": hi, "p": p}})
    return out
