"""Comparing two games on the same random-search draws (gandy.runs.summaries: difference_interval,
paired_difference_interval, sign_test, median_interval, paired_comparison): against Newcombe's
published intervals, scipy's binomial test, order statistics by hand, and coverage on planted
proportions."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from gandy.runs.summaries import (
    compare_games,
    difference_interval,
    median_interval,
    paired_comparison,
    paired_difference_interval,
    sign_test,
)


@pytest.mark.parametrize("counts, expected", [((56, 70, 48, 80), (0.0524, 0.3339)), ((9, 10, 3, 10), (0.1705, 0.8090)),
                                              ((5, 56, 0, 29), (-0.0381, 0.1926))])
def test_difference_interval_matches_newcombes_published_examples(counts, expected):
    # Newcombe (1998), Statistics in Medicine 17:873, table II, method 10 (score, no continuity correction)
    lo, hi = difference_interval(*counts)
    assert (round(lo, 4), round(hi, 4)) == expected


def test_paired_interval_is_the_independent_one_when_the_table_has_no_correlation():
    # both * neither == a_only * b_only: phi = 0, so the paired interval is the unpaired one at n1 = n2 = n
    both, a_only, b_only, neither = 6, 3, 4, 2
    n = both + a_only + b_only + neither
    assert paired_difference_interval(both, a_only, b_only, neither) == pytest.approx(
        difference_interval(both + a_only, n, both + b_only, n), abs=1e-12)
    # a positive correlation (draws good under one game good under the other) narrows it
    lo0, hi0 = paired_difference_interval(5, 5, 0, 10)
    lo1, hi1 = difference_interval(10, 20, 5, 20)
    assert hi0 - lo0 < hi1 - lo1
    assert lo0 > 0 > lo1  # paired, the 5 draws that only A gets are evidence; unpaired they are not enough


@pytest.mark.parametrize("pa, pb, rho", [(0.3, 0.3, 0.8), (0.5, 0.2, 0.5), (0.15, 0.05, 0.3)])
def test_paired_interval_covers_the_planted_difference(pa, pb, rho):
    """Correlated pairs of Bernoulli draws (a Gaussian copula) at n = 24, the study's size: the
    95 % interval covers pa - pb in 92-99 % of 2,000 tables (Newcombe's method is close to nominal
    and a little conservative)."""
    rng = np.random.default_rng(0)
    za, zb = stats.norm.ppf(1 - pa), stats.norm.ppf(1 - pb)
    hits = 0
    for _ in range(2000):
        x = rng.standard_normal(24)
        y = rho * x + np.sqrt(1 - rho ** 2) * rng.standard_normal(24)
        a, b = x > za, y > zb
        lo, hi = paired_difference_interval(int((a & b).sum()), int((a & ~b).sum()), int((~a & b).sum()), int((~a & ~b).sum()))
        hits += lo <= pa - pb <= hi
    assert 0.92 <= hits / 2000 <= 0.99


@pytest.mark.parametrize("wins, n", [(0, 0), (2, 10), (5, 10), (9, 10), (0, 12), (3, 24)])
def test_sign_test_is_scipys_exact_binomial_test(wins, n):
    expected = 1.0 if n == 0 else stats.binomtest(wins, n, 0.5).pvalue
    assert sign_test(wins, n) == pytest.approx(expected, rel=1e-12)
    with pytest.raises(ValueError):
        sign_test(n + 1, n)


def test_median_interval_by_order_statistics():
    # n = 12: P(B <= 2) = 79 / 4096 = 0.0193 <= 0.025 < P(B <= 3) = 299 / 4096, so the 3rd smallest
    # and the 3rd largest values, covering with probability 1 - 2 * 79 / 4096
    v = [9.0, 1.0, 4.0, np.inf, 2.0, 8.0, 3.0, 7.0, 5.0, 0.0, 6.0, np.nan, 10.0]
    out = median_interval(v)
    assert out == {"median": 5.5, "lo": 2.0, "hi": 9.0, "coverage": pytest.approx(1 - 2 * 79 / 4096), "n": 12}
    # n = 5 is too few for 95 % (P(B = 0) = 1/32 > 0.025); n = 6 gives the extremes
    assert median_interval(range(5))["lo"] is None and median_interval(range(5))["median"] == 2.0
    assert median_interval(range(6))["lo"] == 0.0 and median_interval(range(6))["hi"] == 5.0
    assert median_interval([])["median"] is None


def test_median_interval_covers_a_planted_median_whatever_the_distribution():
    rng = np.random.default_rng(1)
    cover = [median_interval(rng.lognormal(0.0, 2.0, 12)) for _ in range(4000)]
    hits = np.mean([c["lo"] <= 1.0 <= c["hi"] for c in cover])  # the lognormal's median is 1
    assert abs(hits - cover[0]["coverage"]) < 0.015


def test_paired_comparison_counts_a_hand_made_pair_of_games():
    good_a = [True, True, False, True, False, True, True, False]
    good_b = [True, False, False, False, False, False, True, True]
    fid_a = [100.0, 200.0, 900.0, 150.0, np.inf, 300.0, 120.0, 800.0]
    fid_b = [110.0, 700.0, 900.0, 600.0, np.inf, 650.0, 100.0, 400.0]
    out = paired_comparison(good_a, good_b, fid_a, fid_b)
    assert out["draws"] == 8
    g = out["good"]
    assert (g["both"], g["a_only"], g["b_only"], g["neither"]) == (2, 3, 1, 2)
    assert g["difference"] == pytest.approx(2 / 8)
    assert (g["lo"], g["hi"]) == pytest.approx(paired_difference_interval(2, 3, 1, 2))
    assert g["p"] == pytest.approx(stats.binomtest(3, 4).pvalue)
    s = out["score"]
    # A lower in draws 0, 1, 3, 5; B lower in 6, 7; draws 2 (equal) and 4 (both diverged) tie
    assert (s["a_better"], s["b_better"], s["ties"]) == (4, 2, 2)
    assert s["p"] == pytest.approx(stats.binomtest(4, 6).pvalue)
    ratios = sorted([100 / 110, 200 / 700, 1.0, 150 / 600, 1.0, 300 / 650, 120 / 100, 800 / 400])
    assert s["ratio_median"] == pytest.approx(np.sqrt(ratios[3] * ratios[4]))  # the geometric middle of the two middle ratios
    assert s["lo"] == pytest.approx(ratios[0]) and s["hi"] == pytest.approx(ratios[-1])  # n = 8: the extremes
    # one diverged draw against a finite one: the finite one is better, and the ratio is infinite
    one = paired_comparison([False], [False], [np.inf], [5.0])
    assert one["score"]["b_better"] == 1 and one["score"]["ratio_median"] == np.inf
    with pytest.raises(ValueError, match="one entry per draw"):
        paired_comparison([True], [True, False], [1.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="positive"):
        paired_comparison([True], [True], [0.0], [1.0])


def _runs(game, fids, modes, lrs):
    """A hand-made robustness table: one row per (trial, seed), two seeds a draw."""
    rows = [{"game": game, "trial": i // 2, "seed": i % 2, "fid": f, "modes_covered": m,
             "optim.critic.lr,optim.generator.lr": lrs[i // 2]} for i, (f, m) in enumerate(zip(fids, modes))]
    return pd.DataFrame(rows)


def test_a_draw_is_the_median_of_its_seeds_and_games_are_compared_draw_by_draw():
    from gandy.studies.robustness.experiment import draws_of, score

    th = {"fid": 100.0, "modes_covered": 5}
    lrs = [1e-4, 1e-3, 1e-2]
    t = pd.concat([_runs("ns", [50, 130, 300, 400, 90, np.nan], [9, 9, 9, 9, 9, 9], lrs),
                   _runs("gan_gp", [40, 60, 90, 110, 80, 70], [9, 9, 9, 4, 9, 9], lrs)], ignore_index=True)
    d = draws_of(score(t, th), th)
    ns, gp = d[d.game == "ns"].set_index("trial"), d[d.game == "gan_gp"].set_index("trial")
    # ns: draw 0's median FID is 90 (good); draw 2 has a diverged seed: its median is +inf, so the draw diverged
    assert ns.fid.tolist() == [90.0, 350.0, np.inf] and ns.good.tolist() == [True, False, False]
    assert ns.diverged.tolist() == [False, False, True] and ns.diverged_seeds.tolist() == [0, 0, 1]
    # gan_gp: draw 1's modes median is 6.5 >= 5 and its FID 100 <= 100: good
    assert gp.fid.tolist() == [50.0, 100.0, 75.0] and gp.good.tolist() == [True, True, True]
    assert (ns["optim.critic.lr,optim.generator.lr"] == lrs).all() and "seed" not in d.columns
    (c,) = compare_games(d, [("gan_gp", "ns")], "fid")
    assert c["paired"] and c["draws"] == 3
    assert (c["good"]["both"], c["good"]["a_only"], c["good"]["b_only"]) == (1, 2, 0)
    assert (c["score"]["a_better"], c["score"]["b_better"]) == (3, 0)
    # a draw whose values differ between the games is not the same draw: two independent samples
    t2 = t.copy()
    t2.loc[t2.game == "gan_gp", "optim.critic.lr,optim.generator.lr"] *= 2
    (u,) = compare_games(draws_of(score(t2, th), th), [("gan_gp", "ns")], "fid")
    assert not u["paired"] and u["score"] is None
    assert (u["good"]["a"], u["good"]["n_a"], u["good"]["b"], u["good"]["n_b"]) == (3, 3, 1, 3)
    assert (u["good"]["lo"], u["good"]["hi"]) == pytest.approx(difference_interval(3, 3, 1, 3))
    assert u["good"]["p"] == pytest.approx(stats.fisher_exact([[3, 0], [1, 2]]).pvalue)


@pytest.mark.parametrize("bad", [[["ns"]], [["ns", "ns"]], [["ns", "wgan"]], "ns", [[1, 2]]])
def test_comparisons_name_two_different_games_of_the_study(bad):
    from gandy.core.errors import ConfigError
    from gandy.studies.base import check_comparisons

    spec = {"games": ["ns", "gan_gp"], "comparisons": bad}
    with pytest.raises(ConfigError, match="comparisons"):
        check_comparisons(spec)
    assert check_comparisons({"games": ["ns", "gan_gp"], "comparisons": [["gan_gp", "ns"]]}) == [("gan_gp", "ns")]
    assert check_comparisons({"games": ["ns"]}) == []
