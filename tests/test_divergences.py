"""Divergences: closed forms by hand, estimators against closed forms (groundwork for the GAN lab)."""

import math

import numpy as np
import pytest
import torch
from scipy.stats import wasserstein_distance

from gandy.core.metrics.divergences import (LOG2, Segment, divergences, gaussian_kl, js_of_densities_1d, knn_divergences,
                                       knn_kl, mmd2, sample_divergences, segments_divergences, w1)
from gandy.core.metrics.order import w1_from_cost


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


def test_knn_estimators_match_two_1d_gaussians_within_5_percent():
    # N(0, 1) against N(1, 1): KL = 1/2 both ways, JS by quadrature. One sample of 8,000 points
    # scatters by 2-4 % at k = 10, so the bias is checked on the mean of three seeds. JS meets 5 %;
    # the k-NN KL is biased low in the tails (measured over six seeds at n = 8,000: -2 to -5 % for
    # equal variances, -8 to -12 % against N(1, 1.5^2)), so KL is held to 7.5 % (docs/lab.md).
    lp = lambda x: -0.5 * x**2 - 0.5 * math.log(2 * math.pi)  # noqa: E731
    lq = lambda x: -0.5 * (x - 1) ** 2 - 0.5 * math.log(2 * math.pi)  # noqa: E731
    js = js_of_densities_1d(lp, lq, -30, 30)
    est = [knn_divergences(_gauss(8000, 0, 1, 2 * s), _gauss(8000, 1, 1, 2 * s + 1), k=10) for s in range(3)]
    assert np.mean([e["js"] for e in est]) == pytest.approx(js, rel=0.05)
    assert np.mean([e["kl_pq"] for e in est]) == pytest.approx(0.5, rel=0.075)
    assert np.mean([e["kl_qp"] for e in est]) == pytest.approx(0.5, rel=0.075)
    assert knn_kl(_gauss(8000, 0, 1, 0), _gauss(8000, 1, 1, 1), k=10) == est[0]["kl_pq"]


def test_knn_js_is_log2_for_disjoint_samples_and_small_for_equal_laws_in_10d():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(500, 10)), rng.normal(size=(500, 10))
    assert knn_divergences(a, b + 50.0)["js"] == pytest.approx(LOG2, abs=1e-12)  # clipped to log 2
    assert knn_divergences(a, b)["js"] < 0.05
    # a shifted law in 10-D: JS grows with the shift
    js = [knn_divergences(a, b + s / math.sqrt(10))["js"] for s in (0.0, 1.0, 2.0, 4.0)]
    assert js == sorted(js) and js[-1] > 0.5


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
    assert 0 <= hi["js"]["value"] < 0.1 and hi["js"]["method"] == "estimate:knn"


def test_one_pooled_pass_matches_blockwise_pass_and_the_reference_mmd():
    rng = np.random.default_rng(11)
    p, q = rng.normal(size=(300, 3)), rng.normal(size=(256, 3)) + 0.4
    whole, blocks = sample_divergences(p, q), sample_divergences(p, q, chunk=97)
    for key in ("js", "kl_pq", "kl_qp", "mmd", "mmd_bandwidth"):
        assert whole[key] == pytest.approx(blocks[key], rel=1e-10, abs=1e-12)
    assert blocks["cross"] is None and whole["cross"].shape == (300, 256)
    assert whole["mmd"] == pytest.approx(mmd2(p, q)[0], rel=1e-9)
    # the cross block is the distance matrix: its exact W1 is the exact W1 of the samples
    assert w1_from_cost(whole["cross"].numpy()) == pytest.approx(w1(p, q)[0], rel=1e-12)
    # KL(P||Q) by hand from the k-th neighbour radii (k = 5), straight from the definition
    dpp = np.linalg.norm(p[:, None] - p[None], axis=-1)
    np.fill_diagonal(dpp, np.inf)
    dpq = np.linalg.norm(p[:, None] - q[None], axis=-1)
    rho, nu = np.sort(dpp, 1)[:, 4], np.sort(dpq, 1)[:, 4]
    assert whole["kl_pq"] == pytest.approx(3 * np.log(nu / rho).mean() + math.log(256 / 299), rel=1e-10)
