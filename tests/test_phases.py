"""The phase rule (gandy.core.metrics.phases.classify, docs/phases.md) on constructed trajectories: particle
clouds of the two-mode 1-D target moved by hand, their order parameters computed by the real
metrics, and each label, its margin and its period checked against what the cloud was made to do."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from gandy.core.metrics import phases as results
from gandy.core.metrics.order import ORDER_PARAMETERS, order_parameters
from gandy.runs.build import phase_rule, target_of
from gandy.runs.config import PhaseConfig, load_config

TARGET = target_of(load_config({"target": {"name": "two_modes_1d", "separation": 4.0, "std": 0.1}}).target)
STEPS = np.arange(0, 2001, 100)  # 21 logged steps, as collapse-1d logs them
N = 64


def _cloud(centre_of, seed: int = 0) -> tuple[dict, np.ndarray]:
    """Series of order parameters of a cloud whose particle j sits at ``centre_of(t, j) + noise``
    (the start's spread, 0.1, kept), and the logged steps."""
    g = torch.Generator().manual_seed(seed)
    noise = 0.1 * torch.randn(N, 1, generator=g)
    side = torch.tensor([1.0 if j % 2 else -1.0 for j in range(N)])[:, None]
    x0 = noise.clone()[None]
    rows = []
    for t in STEPS:
        x = (torch.as_tensor(centre_of(float(t), side), dtype=torch.float32) + noise)[None]
        op = order_parameters(x, TARGET, None, start=x0)
        rows.append({k: float(op[k][0]) for k in ORDER_PARAMETERS})
    return {k: np.array([r[k] for r in rows]) for k in ORDER_PARAMETERS}, STEPS


def _label(centre_of, pcfg=PhaseConfig(), diverged=False):
    series, steps = _cloud(centre_of)
    return results.classify(series, 2, TARGET.scale, phase_rule(pcfg), diverged, steps)


def _ramp(t, until=1000.0):
    return min(t / until, 1.0)


CASES = {
    "converged": lambda t, s: 2.0 * s * _ramp(t),                       # halves reach -2 and +2, stay
    "collapsed": lambda t, s: 2.0 * _ramp(t) + 0 * s,                    # the whole cloud onto +2
    "runaway": lambda t, s: 26.0 * _ramp(t, 2000) + 0 * s,                # the whole cloud leaves, to +26
    "oscillating": lambda t, s: s * (2.0 + 0.8 * math.cos(2 * math.pi * t / 800)),  # halves swing about the modes
    "transient": lambda t, s: 2.0 * s * (1 - math.exp(-t / 3000)),       # halves still approaching at the end
    "stalled": lambda t, s: 0.01 * s * _ramp(t),                         # hardly moved
    "off_target": lambda t, s: 1.0 * s * _ramp(t),                       # halves stop half-way, at -1 and +1
}


@pytest.mark.parametrize("label", list(CASES))
def test_each_constructed_trajectory_gets_its_label(label):
    phase = _label(CASES[label])
    assert phase.label == label
    assert phase.margin > 0.1, phase  # these were built far from every threshold
    assert math.isnan(phase.period) == (label != "oscillating")


def test_every_label_is_listed_and_reachable():
    assert set(CASES) | {"diverged"} == set(results.PHASES)


def test_diverged_wins_and_non_finite_series_diverge():
    assert _label(CASES["converged"], diverged=True).label == "diverged"
    series, steps = _cloud(CASES["converged"])
    series["mean_dist"][-3:] = np.nan
    assert results.classify(series, 2, TARGET.scale, phase_rule(PhaseConfig()), False, steps).label == "diverged"


def test_oscillation_period_is_that_of_the_distance():
    """Halves swinging about their modes with period 800 steps: the distance to the nearest mode,
    |0.8 cos|, repeats every 400 steps, and that is the period recorded."""
    phase = _label(CASES["oscillating"])
    assert phase.period == pytest.approx(400.0)


def test_oscillation_needs_swings_above_the_settle_tolerance():
    """The same swing at 4 % of the scale (below settle_tol = 5 %) is settled: converged."""
    amp = 0.02 * TARGET.scale  # peak to trough 4 % of the scale
    phase = _label(lambda t, s: s * (2.0 + amp * math.cos(2 * math.pi * t / 800)))
    assert phase.label == "converged"


def test_thresholds_move_the_labels_as_documented():
    # the whole cloud to +2 is collapsed unless the collapse threshold is above log 2
    assert _label(CASES["collapsed"], PhaseConfig(collapse_kl=0.8)).label != "collapsed"
    # a displacement of 0.01 against an initial distance of ~2: stalled at stall = 0.1, not at 0.001
    assert _label(CASES["stalled"], PhaseConfig(stall=0.001)).label != "stalled"
    # 26 away from modes at +-2 is beyond runaway = 2 x scale, not beyond 20 x
    assert _label(CASES["runaway"], PhaseConfig(runaway=20.0)).label != "runaway"


def test_margin_is_the_weakest_deciding_test_by_hand():
    """Converged with the final on_mode at 0.95 against a threshold of 0.9 and coverage_kl 0.3
    against 0.5 log 2: the margin is min((0.95-0.9)/(1-0.9), (0.3466-0.3)/0.3466, settle gap)
    (a fraction's gap above its threshold is a share of the room up to 1)."""
    series, steps = _cloud(CASES["converged"])
    series["on_mode"][-1] = 0.95
    series["coverage_kl"][:] = 0.3
    phase = results.classify(series, 2, TARGET.scale, phase_rule(PhaseConfig()), False, steps)
    limit = 0.5 * math.log(2)
    tol = 0.05 * TARGET.scale
    settle = (tol - np.ptp(series["mean_dist"][-6:])) / tol
    assert phase.label == "converged"
    assert phase.margin == pytest.approx(min(0.05 / 0.1, (limit - 0.3) / limit, settle))


def test_margin_of_a_label_reached_by_failing_tests_counts_how_near_they_came():
    """Collapsed: the converged test failed only on coverage_kl (log 2 against 0.3466, gap 1.0);
    stalled failed far (displacement ~2 against 0.1 x 2); runaway failed by 1 - D_end / (2 x 2.1);
    the collapsed test passed with (log 2 - limit) / limit = 1.0."""
    series, steps = _cloud(CASES["collapsed"])
    phase = results.classify(series, 2, TARGET.scale, phase_rule(PhaseConfig()), False, steps)
    runaway_gap = 1 - series["mean_dist"][-1] / (2 * max(series["mean_dist"][0], TARGET.scale))
    assert phase.label == "collapsed"
    assert phase.margin == pytest.approx(min(1.0, runaway_gap), abs=1e-6)


def test_without_modes_converged_needs_w1_within_reach():
    settled = np.array([1.5, 1.0, 0.5, 0.2, 0.06, 0.05, 0.05, 0.05])
    nan = np.full(8, np.nan)
    s = {k: nan for k in ORDER_PARAMETERS}
    s = {**s, "w1": settled, "displacement": np.full(8, 2.0)}
    assert results.classify(s, 0, 1.0, phase_rule(PhaseConfig()), False).label == "converged"
    assert results.classify({**s, "w1": settled + 0.5}, 0, 1.0, phase_rule(PhaseConfig()), False).label == "off_target"
    swing = np.array([1.0, 0.1] * 8)
    osc = results.classify({**{k: np.full(16, np.nan) for k in s}, "w1": swing}, 0, 1.0, phase_rule(PhaseConfig()), False)
    assert osc.label == "oscillating" and osc.period == pytest.approx(2.0)


def test_reversals_ignore_wiggles_below_the_tolerance():
    assert results.reversals(np.array([0.0, 5.0, -5.0, 5.0]), 3.0) == [1, 2]
    assert results.reversals(np.array([0.0, -5.0, 5.0]), 3.0) == [1]
    wiggle = np.linspace(5, 0, 40) + 0.1 * (-1.0) ** np.arange(40)  # falls 0.128 a step, wiggles 0.2
    assert results.reversals(wiggle, 0.1) == []
    assert len(results.reversals(wiggle, 0.0)) == 38


def test_every_phase_has_a_colour_in_figures_and_report():
    from gandy.views.plots import PHASE_COLORS

    assert list(PHASE_COLORS) == list(results.PHASES)
    page = (Path(__file__).parents[1] / "src" / "gandy" / "views" / "report_page.html").read_text()
    assert f"const PHASES = {json.dumps(list(results.PHASES))};" in page
    for p, colour in PHASE_COLORS.items():
        assert f"{p}: \"{colour}\"" in page
