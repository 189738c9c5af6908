"""Studies stand alone (issue 25): each owns its config, and the pieces several studies share live in
runs/ or core/. The copies are today's configs, so every study computes the numbers it computed
when it read another study's file; the shared helpers are checked by hand. Every experiment's
``run(out, options)`` takes one :class:`~gandy.studies.base.StudyOptions`, built by ``gandy run``."""

from __future__ import annotations

import dataclasses
import inspect

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from gandy.cli import app
from gandy.core.metrics.phases import SPLIT_FAILED
from gandy.runs import config as C
from gandy.runs.summaries import collapse_boundary, digit_stats
from gandy.runs.sweep import run_sweep
from gandy.studies import EXPERIMENTS
from gandy.studies.base import Experiment, StudyOptions, packaged
from gandy.studies.collapse_1d import experiment as collapse_1d
from gandy.studies.critic_types import experiment as critic_types
from gandy.studies.demo import experiment as demo
from gandy.studies.frequency import experiment as frequency
from gandy.studies.many_paths import experiment as many_paths
from gandy.studies.mnist_ablation import experiment as mnist_ablation
from gandy.studies.mnist_collapse import experiment as mnist_collapse
from gandy.studies.mnist_slices import experiment as mnist_slices
from gandy.studies.penalties import experiment as penalties
from gandy.studies.saturation import experiment as saturation


def test_each_copied_config_is_the_config_it_was_read_from():
    mnist = {k: v for k, v in mnist_collapse.base_config().items() if k != "sweep"}
    assert mnist_slices.base_config() == mnist and mnist_ablation.base_config() == mnist
    assert critic_types.base_config() == collapse_1d.base_config() == demo.phase_config()
    assert critic_types.critics() == {k: v.model_dump(mode="json") for k, v in frequency.settings().critics.items()}
    assert penalties.configs() == many_paths.configs()
    assert packaged(saturation.__name__) == many_paths.configs()["parallel_lines"]


def test_the_ablation_grid_replaces_the_sweep_it_no_longer_copies():
    """mnist-ablation's GRID sets ``sweep=...`` whole, so its config without mnist-collapse's grid
    gives every variant the same validated config as before."""
    for extra in mnist_ablation.VARIANTS.values():
        over = [*mnist_ablation.GRID, *extra]
        assert C.load_config(mnist_ablation.base_config(), over) == C.load_config(mnist_collapse.base_config(), over)


def test_packaged_reads_a_named_file_and_refuses_a_missing_one():
    assert packaged(demo.__name__, "phase.yaml")["target"]["name"] == "two_modes_1d"
    assert packaged(demo.__name__)["target"]["name"] == "gaussian_mixture"
    with pytest.raises(FileNotFoundError):
        packaged(demo.__name__, "absent.yaml")


def test_collapse_boundary_by_hand():
    x, y = "kernel.g2", "optim.critic.lr"
    failed, ok = sorted(SPLIT_FAILED)[0], "split"
    rows = []
    # lr 0.01: g2 0.1 fails in 1 of 2 seeds (half: the boundary), 0.01 in none; lr 0.1: no failure
    for g2, phases in ((0.01, [ok, ok]), (0.1, [failed, ok]), (0.5, [failed, failed])):
        rows += [{x: g2, y: 0.01, "phase": p} for p in phases]
    rows += [{x: g2, y: 0.1, "phase": ok} for g2 in (0.01, 0.1, 0.5) for _ in range(2)]
    b = collapse_boundary(pd.DataFrame(rows), x, y).set_index(y)
    assert b.loc[0.01, "g2_critical"] == 0.1 and b.loc[0.01, "g2_last_uncollapsed"] == 0.01
    assert np.isnan(b.loc[0.1, "g2_critical"]) and b.loc[0.1, "g2_last_uncollapsed"] == 0.5


def test_digit_stats_of_the_mnist_100_target():
    """Ten digits of each class: mean |cos| 0.30 and mean norm 27.3 (the docstring's numbers)."""
    s = digit_stats(C.load_config(mnist_slices.base_config()).target)
    assert s["mean_abs_cos"] == pytest.approx(0.30, abs=0.005) and s["mean_norm"] == pytest.approx(27.3, abs=0.05)


# ----------------------------------------------------------------------------- one options object
def test_every_experiment_runs_with_out_and_one_options_object():
    for name, exp in EXPERIMENTS.items():
        params = inspect.signature(exp.run).parameters
        assert list(params) == ["out", "options"], name
        assert params["options"].default == StudyOptions(), name


def test_study_options_default_to_run_sweeps_defaults_and_freeze_their_overrides():
    sweep = inspect.signature(run_sweep).parameters
    o = StudyOptions(overrides=["steps=3"])
    assert o.overrides == ("steps=3",) and hash(o.overrides)
    with pytest.raises(dataclasses.FrozenInstanceError):
        o.quick = True
    for key in ("executor", "address", "workers", "checkpoint_seconds", "connect_timeout", "resume"):
        assert o.sweep()[key] == sweep[key].default, key
    assert set(o.sweep()) <= set(sweep) and not {"force", "draw", "cfg", "out"} & set(o.sweep())


def test_gandy_run_name_hands_every_flag_to_the_experiment_as_options(tmp_path, monkeypatch):
    seen = []

    def fake(out, options=StudyOptions()):
        seen.append((out, options))
        return []

    monkeypatch.setitem(EXPERIMENTS, "fake-study", Experiment("fake-study", "records its options", fake))
    r = CliRunner().invoke(app, ["run", "fake-study", "steps=3", "seeds=[1]", "--out", str(tmp_path / "o"), "--quick",
                                 "--force", "--executor", "processes", "--workers", "3", "--checkpoint-every", "5",
                                 "--connect-timeout", "7", "-q"])
    assert r.exit_code == 0, r.output
    out, o = seen[0]
    assert out == tmp_path / "o"
    assert (o.quick, o.overrides, o.resume, o.replace, o.executor, o.address, o.progress) == \
        (True, ("steps=3", "seeds=[1]"), False, True, "processes", None, False)
    assert (o.workers, o.checkpoint_seconds, o.connect_timeout) == (3, 5.0, 7.0)
    r = CliRunner().invoke(app, ["run", "fake-study", "--out", str(tmp_path / "o"), "--resume"])
    out, o = seen[1]
    assert r.exit_code == 0 and o.resume and not o.replace and not o.quick and o.progress and o.overrides == ()
    assert o.workers == 1 and o.executor == "local"  # --workers defaults to 1 outside --executor processes
