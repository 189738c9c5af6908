"""robustness-2d (:mod:`gandy.studies.robustness_2d`): the Wilson interval against a hand computation
and scipy, the threshold fraction on a hand-made table, a tiny --quick run's tables and figures
(rows = draws x games x targets, diverged draws counted apart; summary.md's counts), resume after a kill to the same
rows, bad options refused before anything is written."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from gandy.core.errors import ConfigError
from gandy.runs.summaries import fraction_interval, quartiles, wilson_interval
from gandy.studies import EXPERIMENTS
from gandy.studies.base import StudyOptions
from gandy.studies.robustness_2d import experiment as R

TINY = ["steps=4", "log_every=2", "generator.widths=[4]", "critic.widths=[4]", "particles.n=32", "batch_size=32",
        "search.trials=3"]
"""Overrides that make the study's every sweep a few milliseconds of training."""


def _options(**kw) -> StudyOptions:
    return StudyOptions(quick=True, progress=False, echo=lambda s: None, **kw)


def test_wilson_interval_by_hand_and_against_scipy():
    # 3 of 10 at 95 %: z = 1.959964, p = 0.3; centre (p + z^2/2n) / (1 + z^2/n), half-width
    # z sqrt(p(1-p)/n + z^2/4n^2) / (1 + z^2/n), written out here independently of the module
    z = 1.959963984540054
    for k, n in ((3, 10), (0, 8), (8, 8), (57, 200)):
        p = k / n
        d = 1 + z * z / n
        c = (p + z * z / (2 * n)) / d
        h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
        assert wilson_interval(k, n) == pytest.approx((c - h, c + h), abs=1e-12)
    assert wilson_interval(3, 10) == pytest.approx((0.10779, 0.60322), abs=1e-5)  # the textbook numbers
    lo, hi = wilson_interval(0, 8)
    assert lo == 0.0 and hi == pytest.approx(0.32441, abs=1e-5)  # not empty at k = 0
    assert all(math.isnan(v) for v in wilson_interval(0, 0))
    with pytest.raises(ValueError):
        wilson_interval(5, 4)
    stats = pytest.importorskip("scipy.stats")
    for k, n in ((0, 8), (3, 10), (8, 8), (57, 200), (199, 200)):
        ci = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
        assert wilson_interval(k, n) == pytest.approx((ci.low, ci.high), abs=1e-12)


def test_the_threshold_fraction_and_quartiles_on_a_hand_made_table():
    th = {"ring8": {"modes": 8, "w1": 0.5}, "grid25": {"modes": 25, "w1": 1.0}}
    t = pd.DataFrame({
        "target": ["ring8"] * 5 + ["grid25"] * 3,
        "game": ["ns"] * 5 + ["ns"] * 3,
        "phase": ["off_target", "transient", "diverged", "collapsed", "off_target",
                  "off_target", "off_target", "converged"],
        "w1": [0.3, 0.49, 0.1, 0.2, np.nan, 0.9, 1.0, 0.95],
        "modes_covered": [8, 8, 8, 7, 8, 25, 25, 24],
        "coverage_kl": [0.0] * 8, "on_mode": [0.5] * 8,
    })
    s = R.score(t, th)
    # diverged: the phase says so (row 2, though its W1 is small) or W1 is not finite (row 4)
    assert s.diverged.tolist() == [False, False, True, False, True, False, False, False]
    # good: not diverged, all modes, W1 strictly below the bar (row 1 at 0.49 yes; grid25 1.0 no)
    assert s.good.tolist() == [True, True, False, False, False, True, False, False]
    summ = R.summarise(s, {"ring8": 8, "grid25": 25})
    r8 = summ["ring8"]["ns"]
    assert (r8["runs"], r8["diverged"]) == (5, 2)
    assert r8["good"] == {"k": 2, "n": 5, "fraction": 0.4, **dict(zip(("lo", "hi"), wilson_interval(2, 5)))}
    assert r8["all_modes"]["k"] == 2  # row 3 covers 7, the diverged ones count as failures
    assert r8["w1"] == quartiles([0.3, 0.49, 0.2])  # diverged draws left out of the spread
    assert r8["w1"]["median"] == 0.3 and r8["best_w1"] == 0.2
    assert summ["grid25"]["ns"]["good"]["k"] == 1
    assert fraction_interval([])["fraction"] is None


def test_the_study_is_registered_and_searches_the_papers_ranges():
    assert EXPERIMENTS["robustness-2d"] is R.EXPERIMENT
    s = R.spec()
    assert s["targets"] == ["ring8", "grid25"] and {"ns", "mm", "gan_gp", "dragan_ns", "wgan_gp"} <= set(s["games"])
    ns, gp, wg = R.game_config("grid25", "ns"), R.game_config("ring8", "wgan_gp"), R.game_config("ring8", "wgan")
    assert ns.target.name == "grid25" and gp.target.name == "ring8"
    assert ns.search["trials"] >= 200 and ns.generator.name == "mlp"
    assert "penalty.weight" not in ns.search["params"] and ns.penalty.name == "none"
    assert "penalty.weight" not in wg.search["params"]  # clipping, no lambda to draw
    assert gp.penalty.name == "wgan_gp" and gp.search["params"]["penalty.weight"] == {"loguniform": [0.1, 100.0]}
    assert gp.search["params"]["optim.critic.lr,optim.generator.lr"] == {"loguniform": [1.0e-5, 1.0e-2]}
    q = R.game_config("ring8", "gan_gp", quick=True)
    assert q.search["trials"] == s["quick_trials"] and q.search["params"]["optim.critic.steps"] == {"int": [1, 2]}


def test_a_tiny_quick_run_writes_its_tables_and_figures_and_counts_diverged_draws_apart(tmp_path):
    out = tmp_path / "r2d"
    # a blow-up radius of 0.5 target scales: the untrained generators' points lie beyond it on ring8
    # (scale 2.05) and inside it on grid25 (scale 4.05), so every ring8 draw diverges, no grid25 one
    figs = R.run(out, _options(overrides=[*TINY, "phase.blowup=0.5"]))
    s = R.spec()
    assert [f.name for f in figs] == [n for t in s["targets"] for n in (f"{t}.png", f"{t}-paired.png")]
    assert all(f.stat().st_size > 0 for f in figs)
    table = pd.read_parquet(out / "robustness_2d.parquet")
    assert len(table) == 3 * len(s["games"]) * len(s["targets"])  # draws x games x targets (1 seed)
    assert table.groupby(["target", "game"]).trial.nunique().eq(3).all()
    assert {"w1", "modes_covered", "coverage_kl", "on_mode", "phase", "diverged", "good"} <= set(table.columns)
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["targets"]) == set(s["targets"])
    assert summary["w1_floor"]["ring8"]["n_points"] == 32 and summary["modes"] == {"ring8": 8, "grid25": 25}
    for (target, game), t in table.groupby(["target", "game"]):
        g = summary["targets"][target][game]
        assert g["diverged"] == int((t.phase == "diverged").sum()) and g["good"]["n"] == len(t)
        ok = t[~t.diverged]
        assert g["w1"] == quartiles(ok.w1)
    assert table.groupby("target").diverged.all().to_dict() == {"grid25": False, "ring8": True}
    assert not table[table.target == "grid25"].diverged.any()
    assert summary["targets"]["ring8"]["ns"]["w1"] == {"median": None, "q25": None, "q75": None}
    assert summary["targets"]["ring8"]["ns"]["good"]["k"] == 0
    # the games ran the same 3 draws: every comparison is paired, draw by draw
    for target, comps in summary["comparisons"].items():
        assert [(c["a"], c["b"]) for c in comps] == [tuple(p) for p in s["comparisons"]]
        t = table[table.target == target]
        for c in comps:
            a, b = (t[t.game == g].set_index("trial").sort_index() for g in (c["a"], c["b"]))
            wa, wb = (np.where(x.diverged, np.inf, x.w1) for x in (a, b))
            assert c["paired"] and c["draws"] == 3
            assert c["score"]["a_better"] == int((wa < wb).sum()) and c["score"]["b_better"] == int((wa > wb).sum())
    # every ring8 draw diverged under every game: all ties, none good
    assert all(c["score"]["ties"] == 3 and c["good"]["neither"] == 3 for c in summary["comparisons"]["ring8"])
    # parts.json: the study listed its sweeps when it opened, and every one of them ran
    from gandy.runs.store import experiment_parts

    parts, listed = experiment_parts(out)
    assert listed and [n for n, _ in parts] == [f"{t}/{g}" for t in s["targets"] for g in s["games"]]
    assert all(p is not None and (p / "results.parquet").exists() for _, p in parts)
    # summary.md: per target a row per game with the table's counts, and the comparisons' counts
    text = (out / "summary.md").read_text()
    for target, section in zip(s["targets"], text.split("\n## ")[1:]):
        assert section.startswith(f"{target}\n")
        rows = [line[2:-2].split(" | ") for line in section.splitlines() if line.startswith("| ") and "---" not in line]
        games = {r[0]: r for r in rows if r[0] in s["games"]}
        assert list(games) == list(s["games"])
        for game, row in games.items():
            t = table[(table.target == target) & (table.game == game)]
            assert row[1:3] == [str(len(t)), str(int(t.diverged.sum()))] and row[3].startswith(f"{int(t.good.sum())}/3")
        pairs = {r[0]: r for r in rows if " vs " in r[0] and r[0] != "A vs B"}
        assert list(pairs) == [f"{a} vs {b}" for a, b in s["comparisons"]]
        if target == "ring8":
            assert all(r[2] == "0 / 0 / 0 / 3" and r[5] == "0 / 0 / 3" for r in pairs.values())


@pytest.mark.slow  # ~30 s: the study three times over
def test_a_killed_study_resumes_to_the_same_rows(tmp_path, monkeypatch):
    import gandy.runs.loop as loop

    R.run(tmp_path / "whole", _options(overrides=TINY))
    real, calls = loop.advance, {"n": 0}

    def dying(sim, st, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 30:  # inside a later game's sweep, some sweeps finished, some not begun
            raise KeyboardInterrupt
        return real(sim, st, *args, **kwargs)

    monkeypatch.setattr(loop, "advance", dying)
    with pytest.raises(KeyboardInterrupt):
        R.run(tmp_path / "cut", _options(overrides=TINY))
    assert not (tmp_path / "cut" / "robustness_2d.parquet").exists()
    assert 0 < len(list((tmp_path / "cut").glob("*/*/results.parquet"))) < len(R.spec()["games"]) * 2  # cut midway
    calls["n"] = -10**9
    R.run(tmp_path / "cut", _options(overrides=TINY, resume=True))
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "whole" / "robustness_2d.parquet"),
                                  pd.read_parquet(tmp_path / "cut" / "robustness_2d.parquet"), check_exact=True)


@pytest.mark.parametrize("over, field", [
    (["steps=0"], "steps"),
    (["generator.widths=[0]"], "generator.widths.0"),
    (["search.seed=x"], "search.seed"),
    (["search.trials=0"], "search.trials"),
])
def test_bad_options_exit_2_naming_the_field_with_nothing_written(tmp_path, invoke_cli, over, field):
    out = tmp_path / "r2d"
    with pytest.raises(ConfigError) as e:
        R.run(out, _options(overrides=over))
    assert e.value.field == field
    assert not out.exists()
    res = invoke_cli(["run", "robustness-2d", "--quick", "--out", out, "-q", *over])
    assert res.exit_code == 2 and f"error: {field}:" in res.stderr
    assert not out.exists()
