"""gandy.load: any output folder back as Python objects, the same ones gandy.run returns."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import gandy
from gandy.runs.config import ConfigError

TINY = {"target": {"name": "two_modes_1d"}, "particles": {"n": 8}, "critic": {"name": "mlp", "widths": [8]},
        "steps": 20, "log_every": 10, "seeds": [0, 1]}


def test_a_run_loads_as_what_gandy_run_returned(tmp_path):
    res = gandy.run(TINY, out=tmp_path / "run", figures=False)
    back = gandy.load(tmp_path / "run")
    assert isinstance(back, gandy.RunResult) and back.config == res.config
    pd.testing.assert_frame_equal(back.results, res.results, check_exact=True)
    assert (back.particles == res.particles).all()


def test_a_sweep_loads_as_what_gandy_run_returned_and_load_run_points_to_load(tmp_path):
    cfg = {**TINY, "sweep": {"kernel.g2": [0.1, 0.5]}}
    res = gandy.run(cfg, out=tmp_path / "sweep", figures=False)
    back = gandy.load(tmp_path / "sweep")
    assert isinstance(res, gandy.SweepResult) and isinstance(back, gandy.SweepResult)
    assert back.path == tmp_path / "sweep" and back.config == res.config
    pd.testing.assert_frame_equal(back.results, res.results, check_exact=True)
    pd.testing.assert_frame_equal(back.metrics, res.metrics, check_exact=True)
    assert len(back.results) == 4 and back.summary["sweep"] == res.summary["sweep"]
    with pytest.raises(ConfigError) as e:
        gandy.load_run(tmp_path / "sweep")
    assert "gandy sweep, not a run" in e.value.message and "gandy.load" in e.value.message


def test_gandy_sweep_gives_each_members_particles_on_demand_and_resumes(tmp_path):
    """gandy.sweep: every member's kept final particles and snapshots, read from the chunks; the
    final snapshot of a member is its final particles (to float16, the snapshots' dtype); resume
    of a finished sweep recomputes nothing and returns the same tables; an unknown member and a
    sweep that kept no final particles say so."""
    cfg = {**TINY, "metrics": {"keep_particles": True}, "sweep": {"kernel.g2": [0.1, 0.5]}}
    res = gandy.sweep(cfg, tmp_path / "s", figures=False)
    assert len(res.results) == 4 and sorted(res.results.member) == [0, 1, 2, 3]
    x = res.particles()
    assert x.shape == (4, 8, 1) and np.isfinite(x).all()
    for m in range(4):
        steps, snaps = res.snapshots(m)
        assert steps[-1] == 20 and snaps.shape[1:] == (8, 1)
        np.testing.assert_allclose(snaps[-1], res.particles(m), rtol=1e-3, atol=1e-3)
    assert not np.allclose(res.particles(0), res.particles(2))  # other g2, other cloud
    with pytest.raises(KeyError, match="member 9 is not in"):
        res.particles(9)
    with pytest.raises(KeyError, match="member 9 is not in"):
        res.snapshots(9)
    stamp = {p: p.stat().st_mtime_ns for p in (tmp_path / "s" / "chunks").iterdir()}
    again = gandy.sweep(cfg, tmp_path / "s", resume=True, figures=False)
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "s" / "chunks").iterdir()} == stamp
    pd.testing.assert_frame_equal(again.results, res.results, check_exact=True)
    plain = gandy.sweep({**TINY, "sweep": {"kernel.g2": [0.1]}}, tmp_path / "p", figures=False)
    with pytest.raises(FileNotFoundError, match="keep_particles"):
        plain.particles(0)
    with pytest.raises(ConfigError) as e:
        gandy.sweep(TINY, tmp_path / "single")
    assert e.value.field == "config" and "gandy.run" in e.value.message and not (tmp_path / "single").exists()


def test_a_damping_scan_loads_with_its_tables(tmp_path):
    from gandy.studies.damping.model import run_damping

    cfg = gandy.load_config({"target": {"name": "point_mass", "location": [1.0, 0.0]}, "particles": {"n": 4},
                             "critic": {"name": "linear"}, "kernel": {"name": "two_number", "g1": 1.0, "g2": 0.0},
                             "optim": {"critic": {"name": "sgd", "lr": 0.05}, "generator": {"lr": 0.05}},
                             "penalty": {"name": "sobolev", "weight": 1.0}, "steps": 200, "seeds": [0]})
    table, summary = run_damping(cfg, [0.1, 1.0], tmp_path / "damp")
    back = gandy.load(tmp_path / "damp")
    assert back.kind == "damping" and back.summary["lambda_c"] == summary["lambda_c"]
    assert list(back.damping.columns) == list(table.columns)
    cols = ["weight", "decay_rate", "theory_decay_rate"]
    pd.testing.assert_frame_equal(back.damping[cols], table[cols].reset_index(drop=True), check_exact=True)
    with pytest.raises(AttributeError, match="tables: damping"):
        back.no_such_table


def test_an_experiment_loads_with_its_parts(tmp_path):
    """An experiment folder: its own tables and every gandy output inside it, each as load reads it."""
    from gandy.runs.outputs import write_marker

    out = tmp_path / "exp"
    out.mkdir()
    write_marker(out, "experiment")
    gandy.run(TINY, out=out / "a", figures=False)
    pd.DataFrame({"x": [1.0, 2.0]}).to_parquet(out / "table.parquet")
    back = gandy.load(out)
    assert back.kind == "experiment" and set(back.parts) == {"a"} and isinstance(back.parts["a"], gandy.RunResult)
    assert back.table.x.tolist() == [1.0, 2.0] and back.config is None


@pytest.mark.parametrize("make", ["missing", "plain", "file"])
def test_what_is_no_gandy_output_is_one_clear_error(tmp_path, make):
    path = tmp_path / "x"
    if make == "plain":
        path.mkdir()
        (path / "notes.txt").write_text("mine")
    elif make == "file":
        path.write_text("mine")
    with pytest.raises(ConfigError) as e:
        gandy.load(path)
    assert e.value.field == "path" and str(path) in e.value.message


def test_a_logger_hook_sees_every_log_as_the_run_goes():
    """gandy.run(on_log=...): one call per logged step, in order, before the run ends, with the
    rows metrics.parquet will hold (member index dropped there); refused for a sweep."""
    calls = []
    res = gandy.run(TINY, figures=False, on_log=lambda rows: calls.append([dict(r) for r in rows]))
    assert [c[0]["step"] for c in calls] == [0, 10, 20] and all(len(c) == 2 for c in calls)
    seen = pd.DataFrame([r for c in calls for r in c]).drop(columns="member")
    pd.testing.assert_frame_equal(seen[["seed", "step", "w1"]].reset_index(drop=True),
                                  res.metrics[["seed", "step", "w1"]].sort_values(["step", "seed"]).reset_index(drop=True))
    with pytest.raises(ConfigError) as e:
        gandy.run({**TINY, "sweep": {"kernel.g2": [0.1, 0.5]}}, out="unused", on_log=print)
    assert e.value.field == "on_log"
