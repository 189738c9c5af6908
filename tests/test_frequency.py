"""frequency: the frequency principle as a measurement (gandy.studies.frequency)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from gandy.runs import config as C
from gandy.studies.base import StudyOptions
from gandy.studies.frequency.experiment import run, settings
from gandy.studies.frequency.model import fit_curves, fit_times, frequency_exponent, target_function


def test_target_functions_by_hand():
    x = torch.tensor([0.0, 1.5, -1.5, 0.5])
    torch.testing.assert_close(target_function("sin", 2.0, x), torch.sin(2 * x))
    b = target_function("bumps", 4.0, x)
    assert float(b[1]) == pytest.approx(1 - math.exp(-0.5 * (4 * 3.0) ** 2), abs=1e-6)  # on the right bump
    assert float(b[2]) == pytest.approx(-float(b[1]), abs=1e-6)  # odd
    assert float(b[0]) == pytest.approx(0.0, abs=1e-6)


def test_fit_times_and_exponent_by_hand():
    """Steps to fit t = 10 k^2 at two learning rates: the first logged step below the threshold, NaN
    when never reached, and a slope of 2 on log-log axes."""
    rows = []
    for lr in (0.1, 0.2):
        for k in (1.0, 2.0, 4.0, 64.0):
            fit = 10 * k**2
            for step in range(0, 201, 10):
                rows.append({"k": k, "lr": lr, "seed": 0, "step": step, "rel_error": 0.05 if step >= fit else 0.5})
    t = fit_times(pd.DataFrame(rows), 0.1)
    one = t[t.lr == 0.1].set_index("k")
    assert one.steps_to_fit.loc[1.0] == 10 and one.steps_to_fit.loc[4.0] == 160
    assert math.isnan(one.steps_to_fit.loc[64.0]) and one.final_error.loc[64.0] == 0.5
    assert frequency_exponent(t) == pytest.approx(2.0)


def test_a_relu_critic_learns_low_frequencies_first():
    """The spectral bias the paper's explanation rests on, measured: a ReLU MLP fits sin(x) in far
    fewer Adam steps than sin(8x) (which it does not fit at all in the budget)."""
    critic = C.MlpCritic(name="mlp", widths=[64], activation="relu")
    curves = fit_curves(critic, C.CriticOptim(name="adam"), "sin", [1.0, 8.0], [3e-3], [0], 600, 20, points=128)
    t = fit_times(curves, 0.1).set_index("k")
    assert t.steps_to_fit.loc[1.0] < 600 and math.isnan(t.steps_to_fit.loc[8.0])
    assert t.final_error.loc[8.0] > 0.5


def test_settings_refuse_bad_input_naming_the_field():
    with pytest.raises(C.ConfigError) as e:
        settings(["threshold=1.5"])
    assert e.value.field == "threshold"
    with pytest.raises(C.ConfigError) as e:
        settings(["families=[sin, cos]"])
    assert e.value.field.startswith("families")
    with pytest.raises(C.ConfigError) as e:
        settings(["frequencies=[]"])
    assert e.value.field == "frequencies"


def test_tiny_run_writes_tables_and_figures(tmp_path):
    over = ["critics={relu: {name: mlp, widths: [16]}, rbf: {name: rbf, sigma: 0.5, centers: 16}}",
            "frequencies=[1, 4]", "learning_rates=[0.003]", "steps=40", "log_every=10", "points=64"]
    figs = run(tmp_path / "f", StudyOptions(overrides=over, progress=False, echo=lambda s: None))
    assert [f.name for f in figs] == ["frequency.png", "frequency-curves.png"] and all(f.stat().st_size > 10_000 for f in figs)
    times = pd.read_parquet(tmp_path / "f" / "fit_times.parquet")
    assert set(times.critic) == {"relu", "rbf"} and set(times.family) == {"sin", "bumps"} and len(times) == 2 * 2 * 2 * 3  # critics x families x k x the 3 default seeds
    curves = pd.read_parquet(tmp_path / "f" / "curves.parquet")
    assert curves.step.max() == 40 and np.isfinite(curves.rel_error).all()
