"""Labels at twice the steps (``metrics.phase_2x``, docs/phases.md) and the phase rule's threshold
sensitivity (``gandy.runs.results.threshold_sensitivity``, ``phases.scaled_rule``).

A run with the option is a run of ``steps`` continued to twice that: everything it reports at
``steps`` (``phase``, the final columns, the logged series and snapshots up to ``steps``) must be
the same numbers, bit for bit, as a run of ``steps``, and ``phase_2x`` is the label of the whole
trajectory. The sensitivity is checked on hand-made trajectories whose label flips at a known
threshold."""

from __future__ import annotations

import copy
import functools
import json
import math

import numpy as np
import pandas as pd
import pytest

from gandy.core.metrics.order import ORDER_PARAMETERS
from gandy.core.metrics.phases import THRESHOLDS, PhaseRule, scaled_rule
from gandy.runs.api import run
from gandy.runs.config import ConfigError, load_config
from gandy.runs.results import label_changes, relabel, threshold_sensitivity
from gandy.studies.collapse_1d.experiment import base_config

COLLAPSE_1D = base_config()


def _uneven(tiny_cfg: dict) -> dict:
    """The tiny config with a log and snapshot cadence that does not divide ``steps`` (60): a run
    of 60 steps logs at 0, 25, 50 and 60, so the continued run must log at 60 too."""
    return {**tiny_cfg, "log_every": 25, "snapshot_every": 7}


# ----------------------------------------------------------------------------- a run continued
def test_phase_and_finals_at_steps_are_those_of_a_run_of_steps(tiny_cfg):
    cfg = _uneven(tiny_cfg)
    plain = run(cfg)
    both = run(cfg, overrides=["metrics.phase_2x=true"])
    # the results a run of `steps` reports, every column, bit for bit
    assert both.results[list(plain.results.columns)].equals(plain.results)
    assert "phase_2x" not in plain.results and "phase_2x_changes" not in plain.summary
    # the logged series: the same rows up to `steps`, then on to twice the steps
    upto = both.metrics[both.metrics.step <= 60].reset_index(drop=True)
    assert upto.equals(plain.metrics.reset_index(drop=True))
    assert sorted(set(both.metrics.step)) == [0, 25, 50, 60, 75, 100, 120]
    # the snapshots: the same particles at the same steps up to `steps`
    k = len(plain.trajectory["steps"])
    assert list(both.trajectory["steps"][:k]) == list(plain.trajectory["steps"]) and plain.trajectory["steps"][-1] == 60
    assert both.trajectory["steps"][-1] == 120
    np.testing.assert_array_equal(both.trajectory["particles"][:, :k], plain.trajectory["particles"])
    assert both.summary["final"] == plain.summary["final"] and both.summary["phases"] == plain.summary["phases"]
    changes = sum(a != b for a, b in zip(both.results.phase, both.results.phase_2x))
    assert both.summary["phase_2x_changes"]["changed"] == changes
    assert both.summary["phase_2x_changes"]["members"] == len(cfg["seeds"])


def test_a_sweep_with_the_option_has_the_rows_of_one_without(tiny_cfg, tmp_path):
    cfg = {**_uneven(tiny_cfg), "sweep": {"kernel.g2": [0.05, 0.3]}}
    plain = run(cfg, out=tmp_path / "plain")
    both = run(cfg, out=tmp_path / "both", overrides=["metrics.phase_2x=true"])
    cols = list(plain.results.columns)
    assert both.results[cols].reset_index(drop=True).equals(plain.results.reset_index(drop=True))
    stored = pd.read_parquet(tmp_path / "both" / "results.parquet")
    assert {"phase_2x", "phase_2x_margin", "phase_2x_period", "diverged_step_2x"} <= set(stored.columns)
    assert "phase_2x" not in pd.read_parquet(tmp_path / "plain" / "results.parquet")
    summary = json.loads((tmp_path / "both" / "summary.json").read_text())
    moved = stored[stored.phase != stored.phase_2x]
    assert summary["phase_2x_changes"]["members"] == len(stored) == 4
    assert summary["phase_2x_changes"]["changed"] == len(moved)
    assert sum(summary["phase_2x_changes"]["transitions"].values()) == len(moved)
    assert sum(summary["phase_2x_counts"].values()) == 4
    assert "phase_2x_changes" not in json.loads((tmp_path / "plain" / "summary.json").read_text())


@functools.lru_cache(maxsize=None)
def _slow_split(steps: int, twice: bool) -> pd.DataFrame:
    """collapse-1d's set-up with a tanh critic, 32 particles, g2/g1 = 0.01 and fast learning rates
    (critic 0.03, particles 0.03): the cloud splits slowly, still moving at 200 steps and settled
    on both modes by 400 (found by a scan of 2026-12-03: transient with margins 0.22 and 0.36,
    then converged with 0.37 and 0.37, seeds 0 and 1)."""
    cfg = copy.deepcopy(COLLAPSE_1D)
    cfg.pop("sweep")
    return run(cfg, overrides=["critic.activation=tanh", "kernel.g2=0.01", "optim.critic.lr=0.03", "optim.generator.lr=0.03",
                               "particles.n=32", f"steps={steps}", "log_every=50", "seeds=[0, 1]",
                               f"metrics.phase_2x={str(twice).lower()}"]).results


def test_a_slowly_converging_run_is_transient_at_steps_and_converged_at_twice():
    r = _slow_split(200, True)
    assert list(r.phase) == ["transient", "transient"] and list(r.phase_2x) == ["converged", "converged"]
    assert (r.phase_margin > 0.1).all() and (r.phase_2x_margin > 0.1).all()  # neither label is a near call
    assert label_changes(r) == {"members": 2, "changed": 2, "split_failed_changed": 0,
                                "transitions": {"transient -> converged": 2}}


def test_label_changes_counts_the_crossings_of_the_collapse_boundary():
    r = pd.DataFrame({"phase": ["collapsed", "collapsed", "transient", "runaway", "stalled", "converged"],
                      "phase_2x": ["oscillating", "runaway", "converged", "runaway", "collapsed", "converged"]})
    assert label_changes(r) == {"members": 6, "changed": 4, "split_failed_changed": 2,  # collapsed -> oscillating, stalled -> collapsed
                                "transitions": {"collapsed -> oscillating": 1, "collapsed -> runaway": 1,
                                                "stalled -> collapsed": 1, "transient -> converged": 1}}
    assert label_changes(r.drop(columns="phase_2x")) is None


def test_phase_2x_is_the_phase_of_a_run_of_twice_the_steps():
    """Where ``log_every`` divides ``steps``, the continued run logs what a run of 2 x steps logs,
    so its ``phase_2x`` is that run's ``phase``, margin and all."""
    twice, long = _slow_split(200, True), _slow_split(400, False)
    assert list(twice.phase_2x) == list(long.phase)
    np.testing.assert_array_equal(twice.phase_2x_margin.to_numpy(), long.phase_margin.to_numpy())
    assert list(twice.diverged_step_2x) == list(long.diverged_step)


def test_a_continued_sweep_killed_after_steps_resumes_to_the_same_rows(tiny_cfg, tmp_path, kill_and_resume):
    """Killed during step 45 of 2 x 30 after saves every 10 steps: the resumed sweep (from step 40,
    its log at the horizon, 30, inside the checkpoint) writes the uninterrupted sweep's tables."""
    cfg = load_config({**tiny_cfg, "steps": 30, "log_every": 25, "sweep": {"kernel.g2": [0.05, 0.6]}},
                      ["metrics.phase_2x=true"])
    assert kill_and_resume(cfg, tmp_path, 45, 10) == 60 - 40  # only the steps after the last save (40)
    assert sorted(set(pd.read_parquet(tmp_path / "whole" / "metrics.parquet").step)) == [0, 25, 30, 50, 60]


# ----------------------------------------------------------------------------- the config key
@pytest.mark.parametrize("value", ["maybe", "[1]", "2"])
def test_phase_2x_takes_a_boolean(tiny_cfg, value):
    with pytest.raises(ConfigError) as ei:
        load_config(tiny_cfg, [f"metrics.phase_2x={value}"])
    assert ei.value.field == "metrics.phase_2x"


def test_phase_2x_defaults_off_and_is_read(tiny_cfg):
    assert load_config(tiny_cfg).metrics.phase_2x is False
    assert load_config(tiny_cfg, ["metrics.phase_2x=true"]).metrics.phase_2x is True


def test_gandy_run_prints_the_label_at_twice_the_steps(invoke_cli, tiny_yaml, tmp_path):
    res = invoke_cli(["run", str(tiny_yaml), "metrics.phase_2x=true", "steps=20", "--out", str(tmp_path / "out"), "-q"])
    assert res.exit_code == 0, res.stderr
    stored = pd.read_parquet(tmp_path / "out" / "results.parquet")
    for r in stored.itertuples():
        assert f"seed {r.seed}: {r.phase} (at twice the steps: {r.phase_2x})" in res.stdout


def test_a_bad_phase_2x_is_one_error_line_and_exit_2(invoke_cli, tiny_yaml, tmp_path):
    res = invoke_cli(["run", str(tiny_yaml), "metrics.phase_2x=maybe", "--out", str(tmp_path / "out"), "-q"])
    assert res.exit_code == 2
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: metrics.phase_2x:"), res.stderr
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- threshold sensitivity
STEPS = np.arange(0, 2001, 100)  # 21 logged points: the window (0.25) holds the last 6


def _series(last_slope: float) -> dict:
    """Order parameters of a cloud on both modes (coverage_kl 0, every particle on a mode) whose
    distance to the target falls from 2 to 0.5 by step 1000 and then by ``last_slope`` per logged
    step: over the window of the last 6 points it changes by 5 x ``last_slope``, over 3 points
    (window 0.125) by 2 x, over 8 (window 0.375) by 7 x."""
    d = np.where(STEPS <= 1000, 2.0 - 1.5 * STEPS / 1000, 0.5 - last_slope * (STEPS - 1000) / 100)
    s = {k: np.zeros(len(STEPS)) for k in ORDER_PARAMETERS}
    s.update(mean_dist=d, on_mode=np.ones(len(STEPS)), modes_covered=np.full(len(STEPS), 2.0),
             displacement=2.0 - d)
    return s


def _tables(members: dict[int, dict], diverged: dict[int, int] = {}) -> tuple[pd.DataFrame, pd.DataFrame]:
    metrics = pd.concat([pd.DataFrame({"member": m, "step": STEPS, **s}) for m, s in members.items()], ignore_index=True)
    results = pd.DataFrame({"member": list(members), "diverged_step": [diverged.get(m, -1) for m in members]})
    return metrics, results


def test_a_label_flips_at_the_settling_tolerance_it_straddles():
    # member 0 moves 0.012 per logged step: 0.06 over the window, above tol = 0.05 (transient),
    # below 1.5 x tol = 0.075 (converged); over the half window it moves 0.024 < 0.05 (converged),
    # over 1.5 windows 0.084 (still transient). Member 1 sits still: converged under every rule.
    metrics, results = _tables({0: _series(0.012), 1: _series(0.0)})
    rule = PhaseRule()
    assert list(relabel(metrics, results, 2, 1.0, rule)) == ["transient", "converged"]
    table = threshold_sensitivity(metrics, results, 2, 1.0, rule).set_index(["threshold", "factor"])
    assert len(table) == 2 * len(THRESHOLDS) and (table.members == 2).all()
    flips = table[table.changed > 0]
    assert set(flips.index) == {("settle_tol", 1.5), ("window", 0.5)}
    assert (flips.changed == 1).all() and (flips.transitions == "transient -> converged: 1").all()
    assert (table.split_failed_changed == 0).all()
    assert table.loc[("settle_tol", 1.5), "value"] == pytest.approx(0.075)
    assert table.loc[("collapse_kl", 0.5), "value"] == pytest.approx(0.25 * math.log(2))


def test_the_flip_sits_where_the_tolerance_crosses_the_movement():
    metrics, results = _tables({0: _series(0.012)})  # moves 0.06 over the window
    for tol, label in [(0.059, "transient"), (0.061, "converged")]:
        assert relabel(metrics, results, 2, 1.0, PhaseRule(settle_tol=tol)).iloc[0] == label


def test_relabel_reads_only_the_steps_up_to_the_horizon():
    # diverged at step 1500: a horizon of 1000 saw no divergence; the series up to 1000 still falls
    metrics, results = _tables({0: _series(0.0)}, diverged={0: 1500})
    assert relabel(metrics, results, 2, 1.0, PhaseRule()).iloc[0] == "diverged"
    assert relabel(metrics, results, 2, 1.0, PhaseRule(), upto=1000).iloc[0] == "transient"


def test_scaled_rule():
    rule = PhaseRule()
    assert scaled_rule(rule, "collapse_kl", 2.0, 8).collapse_kl == pytest.approx(math.log(8))
    assert scaled_rule(rule, "on_mode", 1.5, 2).on_mode == 1.0  # a share: capped at 1
    assert [scaled_rule(rule, "reversals", f, 2).reversals for f in (0.5, 1.5)] == [2, 5]
    r = scaled_rule(rule, "stall", 0.5, 2)
    assert r.stall == pytest.approx(0.05) and r.runaway == rule.runaway and r.window == rule.window
    with pytest.raises(ValueError):
        scaled_rule(rule, "blowup", 2.0, 2)
