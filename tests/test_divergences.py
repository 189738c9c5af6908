"""Divergences: closed forms by hand, estimators against closed forms (groundwork for the GAN lab)."""

import math

import numpy as np
import pytest
import torch
from scipy.stats import wasserstein_distance

from gandy.metrics.divergences import (LOG2, Segment, divergences, gaussian_kl, js_of_densities_1d, kde_divergences,
                                       knn_kl, mmd2, segments_divergences, w1)


def test_two_segments_closed_form():
    data = Segment((0.0, 0.0), (0.0, 1.0))
    far = segments_divergences(data, Segment((0.5, 0.0), (0.5, 1.0)))  # parallel, disjoint
    assert far == {"js": LOG2, "kl_pq": math.inf, "kl_qp": math.inf}
    cross = segments_divergences(data, Segment((-1.0, 0.5), (1.0, 0.5)))  # they meet in one point
    assert cross["js"] == LOG2
    same = segments_divergences(data, Segment((0.0, 0.0), (0.0, 1.0)))
    assert same == {"js": 0.0, "kl_pq": 0.0, "kl_qp": 0.0}
    half = segments_divergences(data, Segment((0.0, 0.5), (0.0, 1.5)))  # overlap 1/2, equal densities
    assert half["js"] == pytest.approx(0.5 * LOG2) and half["kl_pq"] == math.inf
    inner = segments_divergences(Segment((0, 0), (0, 2)), Segment((0, 0.5), (0, 1.5)))  # Q inside P
    # on Q's support p = 1/2, q = 1: KL(Q||P) = log 2; P has mass outside Q: KL(P||Q) = inf
    assert inner["kl_qp"] == pytest.approx(LOG2) and inner["kl_pq"] == math.inf


def test_gaussian_kl_matches_quadrature():
    x = torch.linspace(-30, 30, 400001, dtype=torch.float64)
    lp = -0.5 * x**2 - 0.5 * math.log(2 * math.pi)
    lq = -0.5 * ((x - 1) / 1.5) ** 2 - math.log(1.5) - 0.5 * math.log(2 * math.pi)
    quad = float(torch.trapezoid(lp.exp() * (lp - lq), x))
    assert gaussian_kl([0.0], [[1.0]], [1.0], [[2.25]]) == pytest.approx(quad, rel=1e-8)


def _gauss(n, mu, sd, seed):
    return np.random.default_rng(seed).normal(mu, sd, size=(n, 1))


def test_kde_js_matches_two_gaussians_within_5_percent():
    lp = lambda x: -0.5 * x**2 - 0.5 * math.log(2 * math.pi)  # noqa: E731
    lq = lambda x: -0.5 * ((x - 1) / 1.5) ** 2 - math.log(1.5) - 0.5 * math.log(2 * math.pi)  # noqa: E731
    exact = js_of_densities_1d(lp, lq, -30, 30)
    est = kde_divergences(_gauss(8000, 0, 1, 0), _gauss(8000, 1, 1.5, 1))["js"]
    assert est == pytest.approx(exact, rel=0.05)


def test_knn_kl_matches_two_gaussians_within_10_percent():
    # measured over six seeds at n = 8000: 0.468 to 0.520 for an exact 0.5 (-6.4 % to +4 %), so the
    # GAN lab's 5 % bar for KL is not met yet; this pins the accuracy the estimator has today
    p, q = _gauss(8000, 0, 1, 2), _gauss(8000, 1, 1, 3)
    assert knn_kl(p, q) == pytest.approx(0.5, rel=0.10)
    assert knn_kl(q, p) == pytest.approx(0.5, rel=0.10)


def test_w1_exact_and_sliced():
    p, q = _gauss(500, 0, 1, 4), _gauss(500, 2, 1, 5)
    v, method = w1(p, q)
    assert method == "exact:emd" and v == pytest.approx(wasserstein_distance(p[:, 0], q[:, 0]), rel=1e-9)
    rng = np.random.default_rng(6)
    a = rng.normal(size=(800, 20))
    v, method = w1(a, a + 3.0 / math.sqrt(20))  # a shift of norm 3: every projection moves by u.shift
    assert method == "estimate:sliced"
    assert v == pytest.approx(3.0 * math.sqrt(2 / math.pi) / math.sqrt(20), rel=0.15)  # E|u.s| for random u


def test_mmd_is_unbiased_near_zero_for_equal_laws_and_positive_otherwise():
    same = [mmd2(_gauss(400, 0, 1, s), _gauss(400, 0, 1, s + 100))[0] for s in range(5)]
    assert abs(np.mean(same)) < 3 * np.std(same) / math.sqrt(5) + 1e-3
    assert mmd2(_gauss(400, 0, 1, 7), _gauss(400, 1, 1, 8))[0] > 10 * max(abs(np.mean(same)), 1e-3)


def test_divergences_label_every_number():
    out = divergences(_gauss(500, 0, 1, 9), _gauss(500, 1, 1, 10), exact={"js": 0.1})
    assert out["js"]["method"] == "exact:closed_form" and out["kl_pq"]["method"] == "estimate:knn"
    assert out["w1"]["method"] == "exact:emd" and out["mmd"]["method"].startswith("estimate:mmd")
    hi = divergences(np.random.default_rng(0).normal(size=(300, 4)), np.random.default_rng(1).normal(size=(300, 4)))
    assert math.isnan(hi["js"]["value"]) and hi["js"]["method"] == "unavailable"
