"""Markdown tables of a study's summary (:mod:`gandy.views.markdown`): each cell against a hand
computation (a Wilson interval, quartiles, a hand-made pair of games) and the table's shape. The
robustness studies' summary.md is checked against their own tables in test_images_run.py and
test_robustness_2d.py."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from gandy.runs.summaries import compare_games, fraction_interval, paired_comparison, quartiles
from gandy.views import markdown as md


def test_a_share_is_its_count_and_wilson_interval_in_percent():
    # 3 of 12: p = 0.25, z = 1.96: centre (0.25 + z^2/24) / (1 + z^2/12) = 0.3106, half-width
    # z sqrt(0.25 * 0.75 / 12 + z^2 / 576) / (1 + z^2/12) = 0.2217: [8.9 %, 53.2 %]
    assert md.share(fraction_interval([True] * 3 + [False] * 9)) == "3/12: 25.0 % [8.9, 53.2]"
    # none of 200: the upper end is z^2 / (n + z^2) = 1.9 %
    assert md.share(fraction_interval([False] * 200)) == "0/200: 0.0 % [0.0, 1.9]"
    assert md.share(fraction_interval([])) == "0/0"


def test_quartiles_and_numbers_with_a_dash_for_none():
    assert md.spread(quartiles([1.0, 2.0, 3.0, 4.0, 5.0]), ".1f") == "3.0 [2.0, 4.0]"
    assert md.spread(quartiles([1200.0, 3400.0]), ",.0f") == "2,300 [1,750, 2,850]"
    assert md.spread(quartiles([]), ".2f") == md.DASH
    assert md.number(None, ".2f") == md.DASH and md.number(0.2349, ".2f") == "0.23"


def test_a_table_aligns_numbers_right_escapes_bars_and_refuses_ragged_rows():
    text = md.table(["game", "runs"], [["ns", "24"], ["a|b", "3"]], right=(False, True))
    assert text.splitlines() == ["| game | runs |", "| --- | ---: |", "| ns | 24 |", "| a\\|b | 3 |"]
    with pytest.raises(ValueError, match="2 cells"):
        md.table(["game", "runs"], [["ns"]])


def test_a_paired_comparison_row_against_a_hand_made_pair_of_games():
    c = {"a": "gan_gp", "b": "ns", "metric": "fid", "paired": True,
         **paired_comparison([True, True, False, True, False, True, True, False],
                             [True, False, False, False, False, False, True, True],
                             [100.0, 200.0, 900.0, 150.0, np.inf, 300.0, 120.0, 800.0],
                             [110.0, 700.0, 900.0, 600.0, np.inf, 650.0, 100.0, 400.0])}
    row = md.comparison_row(c)
    assert row[:3] == ["gan_gp vs ns", "8", "2 / 3 / 1 / 2"]  # both, A only, B only, neither
    assert row[3].startswith("+25.0 pp [")  # (3 - 1) / 8
    assert row[4] == f"{stats.binomtest(3, 4).pvalue:.2g} (McNemar)" == "0.62 (McNemar)"
    assert row[5:7] == ["4 / 2 / 2", "0.69"]  # A lower in 4 draws, B in 2, 2 ties; binomtest(4, 6)
    # ratios sorted: 0.25, 0.286, 0.462, 0.909, 1, 1, 1.2, 2; the median the geometric middle of 0.909
    # and 1; at n = 8 the interval is the extremes, with coverage 1 - 2 / 2^8 = 99.2 %
    assert row[7] == "0.95 [0.25, 2.00, 99.2 %]"
    header = md.comparisons_table([c]).splitlines()[0]
    assert "fid: A lower / B lower / ties" in header


def test_an_unpaired_comparison_row_has_the_two_counts_and_fishers_p():
    t = pd.DataFrame({"game": ["a"] * 3 + ["b"] * 3, "trial": [0, 1, 2] * 2, "good": [True, True, True, True, False, False],
                      "fid": [1.0] * 6, "optim.critic.lr": [1e-3] * 3 + [2e-3] * 3})
    (c,) = compare_games(t, [("a", "b")], "fid")
    row = md.comparison_row(c)
    assert row[1] == md.DASH and row[2] == "unpaired: A 3/3, B 1/3" and row[3].startswith("+66.7 pp [")
    assert row[4] == f"{stats.fisher_exact([[3, 0], [1, 2]]).pvalue:.2g} (Fisher)" and row[5:] == [md.DASH] * 3
    assert md.comparisons_table([]) == ""
