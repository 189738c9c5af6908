"""Live curves of a single run: the JSON lines gandy always writes (read by ``gandy watch`` while the
run goes on) and the TensorBoard logger (``on_log``, ``gandy run --tensorboard``)."""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

import gandy
from gandy.cli import app
from gandy.runs.config import ConfigError
from gandy.runs.loggers import TensorBoard
from gandy.runs.store import latest_rows, run_live_files

TINY = {"target": {"name": "two_modes_1d"}, "particles": {"n": 8}, "critic": {"name": "mlp", "widths": [8]},
        "steps": 60, "log_every": 10, "seeds": [0, 1]}


def scalars(logdir) -> dict:
    """Every scalar in the event files under ``logdir``, read by TensorBoard's own reader:
    ``{tag: [(step, value), ...]}``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logdir))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_tensorboard_holds_every_logged_number_of_every_seed(tmp_path):
    with TensorBoard(tmp_path / "tb") as tb:
        res = gandy.run(TINY, on_log=tb)
    got = scalars(tmp_path / "tb")
    m = res.metrics
    numeric = [c for c in m.columns if c not in ("seed", "step", "mode_hist") and m[c].notna().any()]
    assert "w1" in numeric and "force_norm" in numeric
    assert {f"{c}/seed_{s}" for c in numeric for s in (0, 1)} == set(got)
    for c in numeric:
        for s in (0, 1):
            rows = m[(m.seed == s) & m[c].notna()]
            steps, values = zip(*got[f"{c}/seed_{s}"])
            assert list(steps) == rows.step.tolist()
            np.testing.assert_allclose(values, rows[c].to_numpy(), rtol=1e-6)  # TensorBoard stores float32


def test_a_single_run_is_watched_while_it_runs_and_leaves_only_its_folder(tmp_path, hold_at):
    """A run held at step 30 of 60 in another thread: its rows so far are in the live file of the
    folder it is being written in, and ``gandy watch OUT`` prints each seed at step 30; once it
    finishes, OUT holds the run (no live file, no temporary folder) and watch reads its tables."""
    held, go = hold_at(30)
    out = tmp_path / "run"
    done = {}
    worker = threading.Thread(target=lambda: done.update(res=gandy.run(TINY, out=out, figures=False)))
    worker.start()
    try:
        assert held.wait(60)
        assert not out.exists() and len(run_live_files(out)) == 1
        deadline = time.monotonic() + 30  # the step-30 log may still be measured on the log's worker thread
        while time.monotonic() < deadline and not (len(rows := latest_rows(out)[0]) == 2 and (rows.step == 30).all()):
            time.sleep(0.05)
        r = CliRunner().invoke(app, ["watch", str(out), "--columns", "w1"])
        assert r.exit_code == 0, r.output
        assert f"running (process {os.getpid()}); a single run; 2 members logged" in r.output
        lines = [line.split() for line in r.output.splitlines()[2:]]
        assert [line[1:3] for line in lines] == [["0", "30"], ["1", "30"]]  # member, seed, step
    finally:
        go.set()
        worker.join(60)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"] and not (out / "live.jsonl").exists()
    r = CliRunner().invoke(app, ["watch", str(out), "--columns", "w1"])
    assert r.exit_code == 0 and "finished; a single run" in r.output
    lines = [line.split() for line in r.output.splitlines()[2:]]
    m = done["res"].metrics
    assert [(int(s), int(t)) for s, t, _ in lines] == [(0, 60), (1, 60)]
    assert [float(w) for *_, w in lines] == pytest.approx(m[m.step == 60].w1.tolist(), rel=1e-3)


def test_a_run_that_fails_mid_way_leaves_nothing_and_the_error_is_raised(tmp_path):
    def boom(rows):
        if rows[0]["step"] == 20:
            raise RuntimeError("logger failed")

    with pytest.raises(RuntimeError, match="logger failed"):
        gandy.run(TINY, out=tmp_path / "run", on_log=boom)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("case", ["sweep", "file", "experiment"])
def test_tensorboard_option_is_checked_before_any_work(tmp_path, case):
    """--tensorboard takes a single run's logs into a folder: a sweep, an experiment, or a LOGDIR
    that is a file are exit 2 naming the option, with nothing written."""
    cfg = {**TINY, "sweep": {"kernel.g2": [0.1, 0.5]}} if case == "sweep" else TINY
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    logdir = tmp_path / "tb"
    if case == "file":
        logdir.write_text("not a folder")
    before = sorted(p.name for p in tmp_path.iterdir())
    config = "collapse-1d" if case == "experiment" else str(tmp_path / "c.yaml")
    r = CliRunner().invoke(app, ["run", config, "--out", str(tmp_path / "out"), "--tensorboard", str(logdir), "-q"])
    assert r.exit_code == 2, r.output
    assert "tensorboard" in r.output and sorted(p.name for p in tmp_path.iterdir()) == before


def test_gandy_run_tensorboard_writes_the_runs_logs(tmp_path):
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({**TINY, "steps": 20}))
    r = CliRunner().invoke(app, ["run", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "out"), "--tensorboard",
                                 str(tmp_path / "tb"), "-q"])
    assert r.exit_code == 0, r.output
    got = scalars(tmp_path / "tb")
    back = gandy.load(tmp_path / "out")
    w1 = back.metrics[back.metrics.seed == 1]
    assert got["w1/seed_1"] == [(int(t), pytest.approx(v, rel=1e-6)) for t, v in zip(w1.step, w1.w1)]


def test_a_logdir_that_cannot_be_made_is_a_config_error(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(ConfigError) as e:
        TensorBoard(tmp_path / "f" / "tb")
    assert e.value.field == "logdir" and "is not a folder" in e.value.message
