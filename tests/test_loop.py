"""The one driver (runs/loop.py ``drive``): which steps its hooks see, early stops, and that a
driven run is the same as stepping ``advance`` by hand; logs measured on the worker thread."""

from __future__ import annotations

import os
import signal
import threading
import time

import pandas as pd
import pytest
import torch

import gandy
from gandy.core.step import advance, start
from gandy.runs import config as C
from gandy.runs import loop
from gandy.runs.build import build
from gandy.runs.loop import drive

TINY = {"target": {"name": "two_modes_1d", "separation": 2.0, "std": 0.3}, "particles": {"n": 3},
        "critic": {"name": "mlp", "widths": [4]}, "steps": 7, "seeds": [0, 1]}


def _sim():
    return build(C.load_config(TINY))


def test_observers_see_every_nth_step_and_the_last_and_after_step_every_step():
    sim = _sim()
    st = start(sim, [0, 1])
    seen, after = {"a": [], "b": []}, []
    end = drive(sim, st, 7, [(3, lambda t: seen["a"].append((t, st.t))), (2, lambda t: seen["b"].append(t))],
                after_step=after.append)
    assert end == 7 and st.t == 7
    assert seen["a"] == [(0, 0), (3, 3), (6, 6), (7, 7)]  # the state an observer sees is the one of step t
    assert seen["b"] == [0, 2, 4, 6, 7]
    assert after == [1, 2, 3, 4, 5, 6, 7]


def test_a_stop_ends_the_run_and_its_step_is_observed_once():
    sim = _sim()
    st = start(sim, [0, 1])
    seen = []
    end = drive(sim, st, 10, [(4, seen.append)], stop=lambda t: t == 4)
    assert end == 4 and st.t == 4 and seen == [0, 4]
    seen.clear()  # from a state part way through (a resumed run): observed from st.t on
    assert drive(sim, st, 6, [(4, seen.append)]) == 6 and seen == [4, 6]


def test_a_driven_run_is_advance_stepped_by_hand():
    sim = _sim()
    a, b = start(sim, [0, 1]), start(sim, [0, 1])
    drive(sim, a, 5)
    for _ in range(5):
        advance(sim, b)
    assert torch.equal(a.x, b.x) and all(torch.equal(a.params[k], b.params[k]) for k in a.params)


LAB = ["target={name: ring8}", "generator={name: mlp, latent_dim: 2, widths: [16]}", "critic.widths=[16]",
       "objective=ns", "batch_size=64", "particles.n=64", "steps=30", "log_every=5", "seeds=[0, 1]",
       "metrics.divergences=true"]


@pytest.mark.parametrize("batch", [8, 3])
@pytest.mark.parametrize("over", [LAB, ["target={name: two_modes_1d}", "particles.n=16", "critic.widths=[8]",
                                         "steps=30", "log_every=5", "seeds=[0, 1, 2]"]])
def test_logs_measured_on_the_worker_thread_equal_those_measured_in_place(monkeypatch, over, batch):
    """loop.Background: the same rows, bit for bit and in order, whether the logs are measured on
    the worker thread while the run steps on, several to a pass (their members stacked), or in
    place one at a time (every input is a copy or an in-order draw; the estimators give a member
    what it gives alone)."""
    cfg = gandy.load_config(None, over)
    rows = {}
    monkeypatch.setattr(loop, "LOG_BATCH", batch)
    for on, process in ((False, False), (True, False), (True, True)):  # in place, worker thread, a LogProcess
        monkeypatch.setattr(loop, "BACKGROUND_LOGS", on)
        monkeypatch.setattr(loop, "LOG_PROCESS", process)
        rows[on, process] = pd.DataFrame(loop.simulate(build(cfg), cfg.seeds).metrics)
    assert len(rows[True, True]) == 7 * len(cfg.seeds)
    for mode in ((True, False), (True, True)):
        assert rows[mode]["step"].tolist() == rows[False, False]["step"].tolist()
        pd.testing.assert_frame_equal(rows[mode], rows[False, False])


class _Children:
    """loop.LogProcess, each instance kept (its child's pid)."""

    def __init__(self, monkeypatch):
        self.made = []
        made, original = self.made, loop.LogProcess

        class Kept(original):
            def __init__(self, compute):
                super().__init__(compute)
                made.append(self.pid)

        monkeypatch.setattr(loop, "LogProcess", Kept)


def _gone(pid: int) -> bool:
    """The process ``pid`` was reaped (no zombie left)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.mark.skipif(not hasattr(os, "fork"), reason="a LogProcess forks")
def test_a_run_whose_log_process_dies_loses_no_log_and_leaves_no_child(monkeypatch):
    """loop.LogProcess: the child killed after the first log's rows, the run measures the rest in
    its own process: every row, bit for bit those measured in place; the child is reaped. The
    default (LOG_PROCESS None) forks one where divergences are tracked on the worker."""
    cfg = gandy.load_config(None, LAB)
    monkeypatch.setattr(loop, "BACKGROUND_LOGS", False)
    expected = pd.DataFrame(loop.simulate(build(cfg), cfg.seeds).metrics)
    children = _Children(monkeypatch)
    monkeypatch.setattr(loop, "BACKGROUND_LOGS", True)
    monkeypatch.setattr(loop, "LOG_PROCESS", None)
    monkeypatch.setattr(loop, "LOG_BATCH", 2)
    killed = []

    def on_log(rows):
        if not killed:
            os.kill(children.made[0], signal.SIGKILL)
            killed.append(rows[0]["step"])

    rows = pd.DataFrame(loop.simulate(build(cfg), cfg.seeds, on_log=on_log).metrics)
    assert len(children.made) == 1 and killed == [0]
    pd.testing.assert_frame_equal(rows, expected)
    assert _gone(children.made[0])


@pytest.mark.parametrize("process", [False, True])
def test_an_error_in_a_background_log_stops_the_run(monkeypatch, process):
    """A log that fails on the worker thread, or in its LogProcess, raises in the run (at the next
    log or the end), and the worker is shut down and the child reaped; no silent gap in the
    metrics."""
    calls = []

    def boom(*a, **k):
        calls.append(1)
        raise FloatingPointError("a log failed")

    children = _Children(monkeypatch)
    monkeypatch.setattr(loop, "BACKGROUND_LOGS", True)
    monkeypatch.setattr(loop, "LOG_PROCESS", process)
    monkeypatch.setattr(loop, "order_parameters", boom)
    cfg = gandy.load_config(None, LAB)
    with pytest.raises(FloatingPointError, match="a log failed"):
        loop.simulate(build(cfg), cfg.seeds)
    assert calls == ([] if process else [1])  # the run stopped at the next log (the child's calls are its own)
    assert len(children.made) == int(process) and all(_gone(pid) for pid in children.made)
    assert not any(t.name.startswith("gandy-log") for t in threading.enumerate())


@pytest.mark.skipif(not hasattr(os, "fork"), reason="a LogProcess forks")
def test_an_interrupted_run_reaps_its_log_process(monkeypatch):
    """Ctrl-C in the run's thread (here: raised by its progress hook at step 12) ends the run with
    the interrupt, its log worker stopped and its LogProcess reaped."""
    children = _Children(monkeypatch)
    monkeypatch.setattr(loop, "BACKGROUND_LOGS", True)
    monkeypatch.setattr(loop, "LOG_PROCESS", True)
    steps = []

    def progress(k):
        steps.append(k)
        if len(steps) == 12:
            raise KeyboardInterrupt

    cfg = gandy.load_config(None, LAB)
    with pytest.raises(KeyboardInterrupt):
        loop.simulate(build(cfg), cfg.seeds, progress=progress)
    assert len(children.made) == 1 and _gone(children.made[0])
    assert not any(t.name.startswith("gandy-log") for t in threading.enumerate())


def test_the_log_worker_measures_logs_in_batches_in_order_and_loses_none():
    """loop.Background(on=True, batch=3): the logs reach ``measure`` in the order taken, at most 3
    to a pass; a lone log is measured once it has waited ``delay`` (no later log, no wait());
    wait() measures every log taken; the run is never more than 2 batches ahead."""
    passes, lock = [], threading.Lock()
    gate, inside = threading.Event(), threading.Event()

    def measure(logs):
        inside.set()
        gate.wait(10)
        with lock:
            passes.append(list(logs))

    gate.set()
    with loop.Background(measure, on=True, batch=3, delay=0.2) as bg:
        bg(0)
        deadline = time.monotonic() + 10
        while not passes and time.monotonic() < deadline:  # measured after its delay, alone
            time.sleep(0.01)
        assert passes == [[0]]
        gate.clear()  # the worker will be held inside its next pass
        inside.clear()
        for i in range(1, 4):
            bg(i)  # three waiting: a batch, taken at once
        assert inside.wait(10)
        for i in range(4, 10):
            bg(i)  # six waiting (two batches): the run still goes on
        ahead = threading.Thread(target=bg, args=(10,))
        ahead.start()  # a seventh would put the run more than two batches ahead: it waits
        ahead.join(0.3)
        blocked = ahead.is_alive()
        gate.set()
        ahead.join(10)
        bg(11)
        bg.wait()
        assert blocked
        taken = [i for p in passes for i in p]
        assert taken == list(range(12)) and all(1 <= len(p) <= 3 for p in passes)
        assert passes[1] == [1, 2, 3]
    in_place = []
    with loop.Background(in_place.append, on=False, batch=3) as bg:
        for i in range(4):
            bg(i)
            assert in_place[-1] == [i]  # measured at once, alone


def test_a_log_taken_now_is_measured_without_waiting_for_a_batch():
    """loop.Background: a log taken ``now`` (the run's last logs) makes the worker take what is
    waiting as soon as it is free, neither a full batch nor ``delay`` later; before it, logs wait."""
    passes, done = [], threading.Event()

    def measure(logs):
        passes.append(list(logs))
        done.set()

    with loop.Background(measure, on=True, batch=8, delay=60.0) as bg:
        bg(0)
        bg(1)
        time.sleep(0.3)
        assert passes == []  # two of a batch of 8, a minute's delay: still waiting
        bg(2, now=True)
        assert done.wait(10)  # no wait(), no full batch, no delay
        assert passes == [[0, 1, 2]]
        done.clear()
        bg(3)  # the run's last stretch: every later log goes at once too
        assert done.wait(10) and passes[-1] == [3]
        bg.wait()
