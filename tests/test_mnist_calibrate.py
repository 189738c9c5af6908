"""mnist-calibrate: scoring against a hand-made table (errors computed by hand), a bad table refused
by field before anything is written, a planted penalty weight found by the search on a cheap 784-D
stand-in whose "authors' table" gandy's own sweep wrote, and a killed search resumed to the same
table without rerunning its finished chunks."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest

import gandy.runs.execute as execute_module
from gandy.runs import config as C
from gandy.runs.outputs import scoped_locks
from gandy.runs.sweep import run_sweep
from gandy.studies import EXPERIMENTS
from gandy.studies.base import StudyOptions
from gandy.studies.mnist_calibrate import experiment as E
from gandy.studies.mnist_collapse.experiment import base_config as collapse_config

COLS = ",".join(E.COLUMNS)


def _csv(path, rows, header=COLS):
    path.write_text(header + "\n" + "\n".join(",".join(str(v) for v in r) for r in rows) + "\n")
    return path


# ----------------------------------------------------------------------------- the config
def test_the_base_is_mnist_collapses_set_up_at_300_steps_and_registered():
    raw = E.base_config()
    mine = {k: v for k, v in raw.items() if k not in ("calibration", "steps")}
    theirs = {k: v for k, v in collapse_config().items() if k not in ("sweep", "steps")}
    assert mine == theirs and raw["steps"] == 300
    assert EXPERIMENTS["mnist-calibrate"] is E.EXPERIMENT
    cal = E.parse_calibration(raw["calibration"])
    assert cal.table.endswith("durr_mnist_calibration.csv") and not cal.table.startswith("/")
    for name, options in cal.choices:  # every packaged option is a valid config on its own
        for o in options:
            E.candidate_config({k: v for k, v in raw.items() if k != "calibration"}, E.Candidate(1, name, o))


def test_quick_is_the_smallest_and_largest_g2_of_each_row_at_20_steps_and_a_sweep_is_refused(tmp_path):
    raw, cfg, cal = E.configure(StudyOptions(quick=True))
    assert cfg.steps == 20 and [name for name, _ in cal.choices] == ["penalty_weight"] and "calibration" not in raw
    t = E.read_table(_csv(tmp_path / "t.csv", [(g, lr, 0.3, 27.0) for lr in (1e-3, 1e-5) for g in (0, 0.01, 0.1, 0.9)]))
    assert E.select_points(t, cal.every).g2_over_g1.tolist() == [0, 0.9, 0, 0.9]
    with pytest.raises(C.ConfigError, match="drop the sweep"):
        E.configure(StudyOptions(overrides=["sweep={kernel.g2: [0.1, 0.2]}"]))


# ----------------------------------------------------------------------------- scoring by hand
def test_score_and_summary_on_a_hand_made_table():
    """Five members against hand-chosen clouds (digits' norm D = 27.3): errors, the 5 % / 10 % test
    and the cloud phases worked out by hand."""
    cal = E.Calibration(table="t.csv")
    gandy = [(0.33, 28.5), (0.50, 20.0), (0.98, 800.0), (0.35, 40.0), (np.nan, np.nan), (0.03, 28.0)]
    authors = [(0.30, 30.0), (0.60, 22.0), (1.00, 940.0), (0.31, 27.0), (0.54, 21.0), (0.31, 27.0)]
    s = E.score([g[0] for g in gandy], [g[1] for g in gandy], [a[0] for a in authors], [a[1] for a in authors], 27.3, cal)
    assert s.d_cos.iloc[:4].to_numpy() == pytest.approx([0.03, 0.10, 0.02, 0.04])
    assert s.d_log_norm.iloc[:4].to_numpy() == pytest.approx([math.log(30 / 28.5), math.log(1.1), math.log(940 / 800),
                                                              math.log(40 / 27)])
    assert s.norm_error.iloc[:4].to_numpy() == pytest.approx([0.05, 2 / 22, 140 / 940, 13 / 27])
    # 1: both within; 2: |cos| off by 0.10; 3: norm off by 15 %; 4: norm off by 48 %; 5: diverged;
    # 6: an unmoved Gaussian cloud (|cos| 0.03) with the digits' norm is not data-like
    assert s.within.tolist() == [True, False, False, False, False, False]
    assert s.gandy_cloud.tolist() == ["data_like", "mean_like", "runaway", "other", "diverged", "noise_like"]
    assert s.authors_cloud.tolist() == ["data_like", "mean_like", "runaway", "data_like", "mean_like", "data_like"]
    assert s.agree.tolist() == [True, True, True, False, False, False]
    assert np.isnan(s.d_cos.iloc[4]) and np.isnan(s.d_log_norm.iloc[4])

    t = E.summarise(s.iloc[:5].assign(candidate=[7, 7, 7, 3, 3])).set_index("candidate")
    assert t.loc[7, "fit"] == pytest.approx(1 / 3) and t.loc[7, "phase_agreement"] == 1.0
    assert t.loc[7, "mean_abs_dcos"] == pytest.approx(0.05)
    assert t.loc[7, "mean_abs_dlog_norm"] == pytest.approx((math.log(30 / 28.5) + math.log(1.1) + math.log(940 / 800)) / 3)
    assert (t.loc[3, "fit"], t.loc[3, "phase_agreement"], t.loc[3, "diverged"], t.loc[3, "members"]) == (0.0, 0.0, 1, 2)
    assert t.loc[3, "mean_abs_dcos"] == pytest.approx(0.04)  # over the finite member only
    assert (t.loc[7, "rank"], t.loc[3, "rank"]) == (1, 2)


def test_the_phase_rule_s_thresholds_and_a_tighter_tolerance():
    cal = E.Calibration(table="t.csv", noise_cos=0.1, data_cos=0.35, data_norm=0.1, runaway=3.0, cos_tol=0.01)
    ph = E.cloud_phase([0.34, 0.36, 0.36, 0.2, 0.9, 0.09, 0.09, 0.11], [27.0, 27.0, 28.0, 30.5, 81.0, 27.0, 82.0, 27.0],
                       27.0, cal)
    assert ph.tolist() == ["data_like", "mean_like", "other", "other", "other",  # 81 = 3 D is not above 3 D
                           "noise_like", "runaway", "data_like"]
    assert E.score([0.32], [27.0], [0.30], [27.0], 27.0, cal).within.tolist() == [False]


@pytest.mark.parametrize("s, shift", [(0.5, 0.0), (0.5, 17.0), (1.0, 15.0), (0.25, 40.0)])
def test_cloud_spread_recovers_a_shifted_gaussian_clouds_size_from_cos_and_norm(s, shift):
    """100 particles m + e_i, e_i ~ N(0, s^2 I) in 784-D, m of norm ``shift``: their mean |cos|
    and mean norm, computed directly, give back the spread s sqrt(784) = 28 s to ~2 % (the
    deviations are only nearly orthogonal at n = 100); a cloud of identical particles has none."""
    g = np.random.default_rng(0)
    m = g.normal(size=784)
    m *= shift / np.linalg.norm(m) if shift else 0.0
    x = m + s * g.normal(size=(100, 784))
    u = x / np.linalg.norm(x, axis=1, keepdims=True)
    c = np.abs(u @ u.T)
    cos = (c.sum() - np.trace(c)) / (100 * 99)
    spread = E.cloud_spread([cos], [np.linalg.norm(x, axis=1).mean()])[0]
    assert spread == pytest.approx(28 * s, rel=0.02)
    assert E.cloud_spread([1.0, np.nan], [22.0, 5.0]).tolist()[0] == 0.0
    assert np.isnan(E.cloud_spread([np.nan], [22.0])[0])


def test_points_every_kth_g2_per_row_and_the_largest(tmp_path):
    rows = [(g, lr, 0.3, 27.0) for lr in (1e-3, 1e-5) for g in (0.5, 0, 0.01, 0.1, 0.2)]
    t = E.read_table(_csv(tmp_path / "t.csv", rows))
    p = E.select_points(t, every=2)
    assert p.critic_lr.tolist() == [1e-5] * 3 + [1e-3] * 3 and p.g2_over_g1.tolist() == [0, 0.1, 0.5] * 2
    assert p.point.tolist() == list(range(6))
    assert E.select_points(t, every=3).g2_over_g1.tolist() == [0, 0.2, 0.5] * 2
    assert E.select_points(t, every=2, rows=[0.001]).critic_lr.tolist() == [1e-3] * 3
    with pytest.raises(C.ConfigError, match="not a critic_lr"):
        E.select_points(t, rows=[1e-4])


def test_combinations_of_the_winners_better_than_the_base():
    cands = [E.Candidate(0, "base", ()), E.Candidate(1, "a", ("x=1",)), E.Candidate(2, "a", ("x=2",)),
             E.Candidate(3, "b", ("y=1",)), E.Candidate(4, "c", ("z=1",)), E.Candidate(5, "d", ("w=1",))]
    ranked = pd.DataFrame({"rank": [1, 2, 3, 4, 5, 6], "candidate": [2, 3, 1, 5, 0, 4]})
    combos = E.combined(ranked, cands, top_k=3)  # winners: a (x=2), b, d; c ranks below the base
    assert [c.overrides for c in combos] == [("x=2", "y=1"), ("x=2", "w=1"), ("y=1", "w=1"), ("x=2", "y=1", "w=1")]
    assert [c.index for c in combos] == [6, 7, 8, 9] and {c.stage for c in combos} == {"combined"}
    assert [c.overrides for c in E.combined(ranked, cands, top_k=2)] == [("x=2", "y=1")]
    assert E.combined(ranked, cands, top_k=1) == []


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("content, words", [
    (None, "no such file"),
    ("g2_over_g1,critic_lr,mean_norm\n0,1e-3,27\n", "lacks the column(s) mean_abs_cos"),
    (COLS + "\n0,1e-3,0.3,27\n0.1,1e-3,high,27\n", "line 3: mean_abs_cos must be a finite number in [0, 1], got 'high'"),
    (COLS + "\n0,1e-3,1.3,27\n", "line 2: mean_abs_cos must be a finite number in [0, 1]"),
    (COLS + "\n0,0,0.3,27\n", "critic_lr must be a finite number > 0"),
    (COLS + "\n0,1e-3,0.3,nan\n", "mean_norm must be a finite number > 0"),
    (COLS + "\n0,1e-3,0.3,27\n0,1e-3,0.4,26\n", "appears twice"),
    (COLS + "\n", "holds no rows"),
    ("", "cannot read"),
])
def test_a_bad_table_is_refused_by_field_and_nothing_is_written(tmp_path, invoke_cli, content, words):
    table = tmp_path / "table.csv"
    if content is not None:
        table.write_text(content)
    out = tmp_path / "out"
    r = invoke_cli(["run", "mnist-calibrate", f"calibration.table={table}", "--out", out, "-q"])
    assert r.exit_code == 2, r.output
    assert r.stderr.startswith("error: calibration.table: ") and words in r.stderr and r.stderr.count("\n") == 1
    assert not out.exists()


@pytest.mark.parametrize("override, field", [
    ("calibration.table=null", "calibration.table"),
    ("calibration.every=0", "calibration.every"),
    ("calibration.colour=red", "calibration.colour"),
    ("calibration.cos_tol=-1", "calibration.cos_tol"),
    ("calibration.noise_cos=0.5", "calibration.noise_cos"),
    ("calibration.choices={w: [kernel.g2=0.5]}", "calibration.choices.w"),
    ("calibration.choices={w: [penalty.weight=-1]}", "calibration.choices.w"),
    ("calibration.rows=[0.5]", "calibration.rows"),
    ("calibration.choices={a: ['critic.widths=[8]'], b: ['critic.widths=[4]']}", "calibration.choices.b"),
])
def test_bad_calibration_options_are_refused_by_field(tmp_path, invoke_cli, override, field):
    table = _csv(tmp_path / "t.csv", [(0, 1e-3, 0.3, 27.0)])
    out = tmp_path / "out"
    r = invoke_cli(["run", "mnist-calibrate", f"calibration.table={table}", override, "--out", out, "-q"])
    assert r.exit_code == 2 and r.stderr.startswith(f"error: {field}: "), r.stderr
    assert not out.exists()


def test_choices_that_set_the_same_path_and_too_many_combinations_are_refused(monkeypatch):
    raw = {k: v for k, v in E.base_config().items() if k != "calibration"}
    choices = (("a", (("critic.widths=[8]",),)), ("b", (("critic={name: mlp, widths: [4]}",),)))
    with pytest.raises(C.ConfigError, match="sets critic, as choice a does") as e:
        E.check_combinations(raw, E.Calibration(table="t", choices=choices))
    assert e.value.field == "calibration.choices.b"
    named = (("a", (("optim.critic.amsgrad=false",),)), ("b", (("optim.critic.name=sgd",),)))
    with pytest.raises(C.ConfigError, match="as choice a does"):  # a new kind replaces the section
        E.check_combinations(raw, E.Calibration(table="t", choices=named))
    cal = E.parse_calibration(E.base_config()["calibration"])
    counts = [len(o) for _, o in cal.choices]  # the packaged choices: every pair and triple validates
    pairs = sum(a * b for a, b in itertools.combinations(counts, 2))
    triples = sum(a * b * c for a, b, c in itertools.combinations(counts, 3))
    assert E.check_combinations(raw, cal) == pairs + triples
    monkeypatch.setattr(E, "MAX_COMBINATIONS", pairs)
    with pytest.raises(C.ConfigError, match="lower it") as e:
        E.check_combinations(raw, cal)
    assert e.value.field == "calibration.top_k"
    assert E.check_combinations(raw, E.Calibration(table="t", top_k=2, choices=cal.choices)) == pairs


# ----------------------------------------------------------------------------- the search
STAND_IN = ["target.n=10", "particles.n=10", "batch_size=10", "critic.widths=[16]", "critic.dropout=0.0",
            "optim.critic.steps=2", "optim.critic.startup_steps=2", "steps=30", "log_every=5",
            "metrics.max_points=10", "optim.generator.lr=0.1", "penalty.weight=1.25",
            "particles.init={name: gaussian, std: 1.0}"]
"""A cheap 784-D stand-in: ten digits, ten particles, a [16] critic, two critic steps, 30 steps; the
base at the authors' literal penalty weight, far from the planted 10, and a unit initial cloud."""
G2, LR, PLANTED = [0.0, 0.1, 0.5], [1e-3, 1e-2], "penalty.weight=10; optim.generator.lr=0.1"


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """A table that gandy's own sweep wrote on the stand-in at penalty weight 10 and particle step
    0.1, and the search from a base at weight 1000 and step 0.05 over the weight (0.3, 10, 100) and
    the step (0.1), uninterrupted; two workers, so that every stage runs in several chunks."""
    d = tmp_path_factory.mktemp("calibrate")
    raw = {k: v for k, v in E.base_config().items() if k != "calibration"}
    cfg = C.load_config(raw, [*STAND_IN, "penalty.weight=10", f"sweep={{kernel.g2: {G2}, optim.critic.lr: {LR}}}"])
    with scoped_locks():
        res, _, _ = run_sweep(cfg, d / "truth")
    table = pd.DataFrame({"g2_over_g1": res["kernel.g2"], "critic_lr": res["optim.critic.lr"],
                          "mean_abs_cos": res.mean_abs_cos.round(6), "mean_norm": res.mean_norm.round(6)})
    table.to_csv(d / "table.csv", index=False)
    over = [*STAND_IN, "penalty.weight=1000", "optim.generator.lr=0.05", f"calibration.table={d / 'table.csv'}",
            "calibration.every=1", "calibration.choices={weight: [penalty.weight=0.3, penalty.weight=10, "
            "penalty.weight=100], particle_step: [optim.generator.lr=0.1]}"]
    options = dict(overrides=over, progress=False, echo=lambda s: None, workers=2)
    with scoped_locks():
        figs = E.run(d / "search", StudyOptions(**options))
    return d, options, figs


def test_the_search_finds_the_planted_setting(planted):
    """One at a time, weight 10 ranks first among the weights and the particle step 0.1 above the
    base; their combination, the planted setting, ranks first of all with errors at the table's
    rounding (1e-6)."""
    d, _, figs = planted
    t = pd.read_parquet(d / "search" / "calibration.parquet")
    top = t.iloc[0]
    assert top.overrides == PLANTED and top.stage == "combined" and top["rank"] == 1
    assert top.fit == 1.0 and top.phase_agreement == 1.0 and top.mean_abs_dcos < 1e-4 and top.mean_abs_dlog_norm < 1e-4
    others = t.iloc[1:]
    assert (others.mean_abs_dcos + others.mean_abs_dlog_norm > 100 * (top.mean_abs_dcos + top.mean_abs_dlog_norm)).all()
    weights = t[t.choice == "weight"]
    assert weights.overrides.iloc[0] == "penalty.weight=10"
    assert t.set_index("overrides").loc["optim.generator.lr=0.1", "rank"] < t.set_index("overrides").loc["(base)", "rank"]
    assert len(t) == 6 and (t.members == len(G2) * len(LR)).all() and (t.steps == 30).all()
    p = pd.read_parquet(d / "search" / "points.parquet")
    assert len(p) == len(t) * len(G2) * len(LR) and set(p.candidate) == set(t.candidate)
    assert p.gandy_spread.to_numpy() == pytest.approx(E.cloud_spread(p.gandy_cos, p.gandy_norm), nan_ok=True)
    assert p.authors_spread.to_numpy() == pytest.approx(p.authors_norm * np.sqrt(1 - p.authors_cos))
    assert figs[0].name == "mnist-calibrate.png" and figs[0].stat().st_size > 10_000


def test_a_killed_search_resumes_to_the_same_table_without_rerunning_finished_chunks(planted, tmp_path, monkeypatch):
    d, options, _ = planted
    real_write, real_run = execute_module.write_chunk, execute_module.run_chunk
    written, ran = [], []

    def dying(*a, **k):
        if len(written) == 2:
            raise KeyboardInterrupt("killed")
        written.append(a[1])
        return real_write(*a, **k)

    monkeypatch.setattr(execute_module, "write_chunk", dying)
    with scoped_locks(), pytest.raises(KeyboardInterrupt):
        E.run(tmp_path / "s", StudyOptions(**options))
    monkeypatch.setattr(execute_module, "write_chunk", real_write)
    monkeypatch.setattr(execute_module, "run_chunk", lambda ch, *a, **k: ran.append(ch.id) or real_run(ch, *a, **k))
    with scoped_locks(), pytest.raises(C.ConfigError, match="out"):  # without --resume: refused
        E.run(tmp_path / "s", StudyOptions(**options))
    with scoped_locks():  # where it runs may change on resume (store.RUNTIME_KEYS), not what
        E.run(tmp_path / "s", StudyOptions(**{**options, "overrides": [*options["overrides"], "device=cpu", "threads=1"]},
                                           resume=True))
    assert not set(ran) & set(written) and ran
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "s" / "calibration.parquet"),
                                  pd.read_parquet(d / "search" / "calibration.parquet"))
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "s" / "points.parquet"),
                                  pd.read_parquet(d / "search" / "points.parquet"))
    with scoped_locks(), pytest.raises(C.ConfigError, match="another calibration"):  # other options: refused
        E.run(tmp_path / "s", StudyOptions(**{**options, "overrides": [*options["overrides"], "calibration.top_k=0"]},
                                           resume=True))


def test_gandy_run_mnist_calibrate_from_the_command_line(planted, tmp_path, invoke_cli):
    """The CLI hands the overrides (calibration ones included), --out and --resume to the study;
    a finished output resumed runs nothing again and writes the same table."""
    d, _, _ = planted
    args = ["run", "mnist-calibrate", *STAND_IN, "steps=10", f"calibration.table={d / 'table.csv'}",
            "calibration.rows=[0.01]", "calibration.every=1", "calibration.choices={weight: [penalty.weight=10]}", "--out", tmp_path / "c", "-q"]
    r = invoke_cli(args)
    assert r.exit_code == 0, r.stderr
    assert "mnist-calibrate.png" in r.stdout and "3 points x 1 seeds, 2 candidates" in r.stdout
    first = pd.read_parquet(tmp_path / "c" / "calibration.parquet")
    assert first.overrides.tolist() == ["penalty.weight=10", "(base)"] and (first.steps == 10).all()
    r = invoke_cli([*args, "--resume"])
    assert r.exit_code == 0 and "6 members in 1 chunks; 1 already done" in r.stdout, r.stdout
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "c" / "calibration.parquet"), first)
