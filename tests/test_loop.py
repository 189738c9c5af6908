"""The one driver (runs/loop.py ``drive``): which steps its hooks see, early stops, and that a
driven run is the same as stepping ``advance`` by hand."""

from __future__ import annotations

import torch

from gandy.core.step import advance, start
from gandy.runs import config as C
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
