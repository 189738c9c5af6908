"""The mean over seeds and its confidence interval (gandy.runs.summaries.seed_interval,
seed_intervals): by hand, against scipy, and its coverage on a planted mean."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import scipy.stats

from gandy.runs.summaries import seed_interval, seed_intervals

# Student's t quantiles in closed form: 1 degree of freedom (Cauchy) tan(pi (p - 1/2)); 2 degrees
# (2p - 1) / sqrt(2 p (1 - p)). At p = 0.975: 12.7062, 4.3027.
T1 = math.tan(math.pi * 0.475)
T2 = 0.95 / math.sqrt(2 * 0.975 * 0.025)


def test_three_seeds_by_hand():
    # mean 2, s = 1, half-width t_{0.975, 2} / sqrt(3)
    mean, lo, hi, n = seed_interval([1.0, 2.0, 3.0])
    half = T2 / math.sqrt(3)
    assert (mean, n) == (2.0, 3)
    assert lo == pytest.approx(2.0 - half, rel=1e-12) and hi == pytest.approx(2.0 + half, rel=1e-12)


@pytest.mark.parametrize("level", [0.9, 0.95, 0.99])
def test_agrees_with_scipy_t_interval(level):
    v = np.array([0.31, 0.43, 0.53, 0.36, 0.40])
    mean, lo, hi, n = seed_interval(v, level)
    ref = scipy.stats.t.interval(level, len(v) - 1, loc=v.mean(), scale=scipy.stats.sem(v))
    assert n == 5 and mean == pytest.approx(v.mean())
    assert (lo, hi) == pytest.approx(ref, rel=1e-12)


def test_non_finite_values_are_left_out_and_counted():
    mean, lo, hi, n = seed_interval([1.0, float("nan"), 3.0, float("inf")])
    assert n == 2 and mean == 2.0
    # two values: s = sqrt(2), half-width t_{0.975, 1} s / sqrt(2)
    half = T1
    assert (lo, hi) == pytest.approx((2.0 - half, 2.0 + half), rel=1e-12)


def test_one_or_no_value_has_no_interval():
    mean, lo, hi, n = seed_interval([0.7])
    assert (mean, n) == (0.7, 1) and math.isnan(lo) and math.isnan(hi)
    mean, lo, hi, n = seed_interval([float("nan")])
    assert n == 0 and all(math.isnan(x) for x in (mean, lo, hi))
    with pytest.raises(ValueError):
        seed_interval([1.0, 2.0], level=1.0)


def test_identical_seeds_give_a_zero_width_interval():
    assert seed_interval([0.5, 0.5, 0.5])[1:3] == (0.5, 0.5)


def test_covers_a_planted_mean_at_its_level():
    # 4,000 experiments of 3 seeds each from N(1, 0.2^2): the 95 % interval holds 1.0 in 95 % of
    # them (binomial s.d. 0.34 %), where a normal (1.96) interval would hold it in only ~88 %
    rng = np.random.default_rng(26)
    draws = rng.normal(1.0, 0.2, size=(4000, 3))
    hits = [lo <= 1.0 <= hi for lo, hi in (seed_interval(d)[1:3] for d in draws)]
    assert np.mean(hits) == pytest.approx(0.95, abs=0.012)


def test_per_group_table():
    t = pd.DataFrame({"game": ["a", "a", "a", "b", "b"], "lr": [1, 1, 1, 2, 2],
                      "final_w1": [1.0, 2.0, 3.0, 0.5, np.nan], "t_w1": [10, 20, 30, 5, 7]})
    out = seed_intervals(t, ["game", "lr"], ["final_w1", "t_w1"])
    assert list(out.game) == ["a", "b"] and list(out.lr) == [1, 2]
    a, b = out.iloc[0], out.iloc[1]
    assert (a.final_w1_mean, a.final_w1_n) == (2.0, 3)
    assert a.final_w1_hi == pytest.approx(2.0 + T2 / math.sqrt(3))
    assert a.t_w1_mean == 20.0 and a.t_w1_lo == pytest.approx(20.0 - 10 * T2 / math.sqrt(3))
    assert (b.final_w1_mean, b.final_w1_n) == (0.5, 1) and math.isnan(b.final_w1_lo)
    assert (b.t_w1_mean, b.t_w1_n) == (6.0, 2)
