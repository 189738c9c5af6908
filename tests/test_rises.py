"""many-paths' rise count (:func:`gandy.studies.many_paths.experiment.increases`): a rise counts
only beyond twice the combined standard error of the two logged values."""

import math

import numpy as np
import pandas as pd
import pytest

from gandy.studies.many_paths.experiment import increases


def _log(values: np.ndarray, se: np.ndarray, seeds: int) -> pd.DataFrame:
    """Rows (seed, step, js, js_se) with ``values: (seeds, steps)`` and ``se`` the same shape."""
    s, t = np.meshgrid(np.arange(seeds), np.arange(values.shape[1]), indexing="ij")
    return pd.DataFrame({"seed": s.ravel(), "step": 10 * t.ravel(), "js": values.ravel(), "js_se": se.ravel()})


def test_a_constant_noisy_estimate_rarely_rises_and_a_trend_always_does():
    rng = np.random.default_rng(0)
    se = np.full((4, 500), 0.02)
    flat = _log(0.3 + se * rng.normal(size=se.shape), se, 4)
    # a rise of N(0, 2 se^2) beyond 2 sqrt(2) se: P(Z > 2) = 2.3 %; any rise at all: 50 %
    assert increases(flat)["js"] == pytest.approx(0.023, abs=0.012)
    assert increases(flat.drop(columns="js_se"))["js"] == pytest.approx(0.5, abs=0.05)  # no s.e.: as before
    steps = np.arange(500)
    # +0.2 a step against a bar of 2 sqrt(2) 0.02 = 0.057 and noise sd 0.028: every step counts
    trend = _log(0.3 + 0.2 * steps + se * rng.normal(size=se.shape), se, 4)
    assert increases(trend)["js"] > 0.99


def test_the_bar_is_twice_the_combined_error_per_pair_and_exact_columns_count_any_rise():
    # one seed; steps rise by 1.0, 0.5, 1.0; s.e. 0.3, 0.3, 0.1, 0.1: bars 2 sqrt(0.18) = 0.85,
    # 2 sqrt(0.1) = 0.63, 2 sqrt(0.02) = 0.28: the first and third rises count, the second not
    m = pd.DataFrame({"seed": 0, "step": [0, 10, 20, 30], "js": [0.0, 1.0, 1.5, 2.5], "js_se": [0.3, 0.3, 0.1, 0.1],
                      "kl_pq": [0.0, 1e-9, 1e-9, 0.0], "kl_pq_se": math.nan, "w1": [1.0, 0.9, 0.95, 0.9]})
    assert 2 * math.sqrt(0.1) > 0.5 and 2 * math.sqrt(0.18) < 1.0
    out = increases(m.sample(frac=1.0, random_state=1))  # row order does not matter
    assert out["js"] == pytest.approx(2 / 3)
    assert out["kl_pq"] == pytest.approx(1 / 3)  # exact (se NaN): any rise beyond 1e-12
    assert out["w1"] == pytest.approx(1 / 3)  # no s.e. column
    assert "kl_qp" not in out
