"""Divergences: closed forms by hand, estimators against closed forms (groundwork for the GAN lab)."""

import math

import numpy as np
import pytest
import torch
from scipy.stats import wasserstein_distance

from gandy.core.metrics.divergences import (
    LOG2,
    UniformSegment,
    half_sample_se,
    half_samples,
    knn_log_density,
    sample_divergences,
    segments_divergences,
    sliced_w1,
    w1,
)
from gandy.core.metrics.order import w1_from_cost
from gandy.core.targets import GaussianMixture
from oracles import density_divergences, divergences, gaussian_kl, js_of_densities_1d, knn_divergences, knn_kl, mmd2


def test_two_segments_closed_form():
    data = UniformSegment((0.0, 0.0), (0.0, 1.0))
    far = segments_divergences(data, UniformSegment((0.5, 0.0), (0.5, 1.0)))  # parallel, disjoint
    assert far == {"js": LOG2, "kl_pq": math.inf, "kl_qp": math.inf}
    cross = segments_divergences(data, UniformSegment((-1.0, 0.5), (1.0, 0.5)))  # they meet in one point
    assert cross["js"] == LOG2
    same = segments_divergences(data, UniformSegment((0.0, 0.0), (0.0, 1.0)))
    assert same == {"js": 0.0, "kl_pq": 0.0, "kl_qp": 0.0}
    half = segments_divergences(data, UniformSegment((0.0, 0.5), (0.0, 1.5)))  # overlap 1/2, equal densities
    assert half["js"] == pytest.approx(0.5 * LOG2) and half["kl_pq"] == math.inf
    inner = segments_divergences(UniformSegment((0, 0), (0, 2)), UniformSegment((0, 0.5), (0, 1.5)))  # Q inside P
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
    # (resamples=0: no standard errors, which are not checked here and would double the time)
    est = [sample_divergences(_gauss(8000, 0, 1, 2 * s), _gauss(8000, 1, 1, 2 * s + 1), k=10, mmd=False, resamples=0)
           for s in range(3)]
    assert math.isnan(est[0]["kl_pq_se"])
    assert np.mean([e["js"] for e in est]) == pytest.approx(js, rel=0.05)
    assert np.mean([e["kl_pq"] for e in est]) == pytest.approx(0.5, rel=0.075)
    assert np.mean([e["kl_qp"] for e in est]) == pytest.approx(0.5, rel=0.075)
    assert knn_kl(_gauss(800, 0, 1, 0), _gauss(800, 1, 1, 1), k=10) == knn_divergences(_gauss(800, 0, 1, 0), _gauss(800, 1, 1, 1), k=10)["kl_pq"]


def test_knn_js_is_log2_for_disjoint_samples_and_small_for_equal_laws_in_10d():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(500, 10)), rng.normal(size=(500, 10))
    assert knn_divergences(a, b + 50.0)["js"] == pytest.approx(LOG2, abs=1e-12)  # clipped to log 2
    assert knn_divergences(a, b)["js"] < 0.05
    # a shifted law in 10-D: JS grows with the shift
    js = [knn_divergences(a, b + s / math.sqrt(10))["js"] for s in (0.0, 1.0, 2.0, 4.0)]
    assert js == sorted(js) and js[-1] > 0.5


def test_w1_is_exact_in_every_dimension_and_sliced_w1_is_separate():
    p, q = _gauss(500, 0, 1, 4), _gauss(500, 2, 1, 5)
    v, method = w1(p, q)
    assert method == "exact:emd" and v == pytest.approx(wasserstein_distance(p[:, 0], q[:, 0]), rel=1e-9)
    rng = np.random.default_rng(6)
    a = rng.normal(size=(300, 20))
    # a pure shift of norm 3: the identity pairing is optimal, so W1 is exactly 3 in 20-D
    v, method = w1(a, a + 3.0 / math.sqrt(20))
    assert method == "exact:emd" and v == pytest.approx(3.0, rel=1e-9)
    s, method = sliced_w1(a, a + 3.0 / math.sqrt(20))  # every projection moves by u.shift
    assert method == "estimate:sliced"
    assert s == pytest.approx(3.0 * math.sqrt(2 / math.pi) / math.sqrt(20), rel=0.15)  # E|u.s| for random u
    out = divergences(a, a + 3.0 / math.sqrt(20))
    assert out["w1"]["value"] == pytest.approx(3.0, rel=1e-9) and out["sw1"]["value"] == pytest.approx(s)
    assert "sw1" not in divergences(p, q)


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


# ----------------------------------------------------------------------------- bias and error bars
def test_knn_log_density_is_unbiased_for_a_uniform_law():
    """On U[0, 1]^2 the density is 1; away from the edges the digamma-corrected log q-hat averages 0."""
    rng = np.random.default_rng(3)
    est = []
    for s in range(20):
        q = torch.as_tensor(rng.uniform(size=(2000, 2)))
        at = torch.as_tensor(rng.uniform(0.3, 0.7, size=(200, 2)))
        est.append(float(knn_log_density(at, q, 5).mean()))
        est.append(float(knn_log_density(q, q, 5, own=True)[(q - 0.5).abs().max(1).values < 0.2].mean()))
    # without the digamma terms (log k - log m) the bias would be psi(5) - log 5 = -0.11
    assert abs(np.mean(est)) < 0.02


def test_density_kl_qp_matches_the_closed_form_and_its_error_bar_covers():
    """KL(N(1, 1.5^2) || N(0, 1)) = 0.7195 (closed form); the two-sample k-NN estimate is 40 % low at
    256 points (docs/lab.md), the density one within the 10 % the docs state, and its standard error
    is the spread over draws to within the stated factor."""
    p = GaussianMixture([[0.0]], 1.0)  # P; Q = N(1, 1.5^2) is drawn directly below
    truth = gaussian_kl([1.0], [[2.25]], [0.0], [[1.0]])
    rng = np.random.default_rng(5)
    est, se, two = [], [], []
    for _ in range(40):
        y, x = torch.as_tensor(rng.normal(0, 1, (256, 1))), torch.as_tensor(rng.normal(1, 1.5, (256, 1)))
        out = density_divergences(y, x, p.log_density(y), p.log_density(x))
        est.append(out["kl_qp"])
        se.append(out["kl_qp_se"])
        two.append(knn_divergences(y, x)["kl_qp"])
    assert truth == pytest.approx(0.5 * (2.25 - math.log(2.25)), rel=1e-12)
    assert abs(np.mean(est) - truth) < 0.10 * truth
    assert np.mean(two) < 0.75 * truth  # what the density removes
    assert 0.7 < np.mean(se) / np.std(est) < 1.4


@pytest.mark.parametrize("name, k, n, bound", [
    ("1d_var", "kl_qp", 256, 0.10), ("2d_shift", "kl_qp", 256, 0.15), ("ring8", "kl_qp", 256, 0.15),
    ("1d_shift", "js", 256, 0.15), ("2d_shift", "js", 256, 0.20), ("ring8", "js", 256, 0.30),
    ("1d_shift", "kl_pq", 256, 0.20), ("2d_shift", "kl_pq", 256, 0.25),
])
def test_logged_estimators_stay_within_the_bias_docs_lab_states(name, k, n, bound):
    """The bias table of docs/lab.md (benchmarks/divergence_bias.py): the estimator the lab logs
    for each column, at the logged size, against the truth from both exact densities."""
    ring = [[2 * math.cos(2 * math.pi * i / 8), 2 * math.sin(2 * math.pi * i / 8)] for i in range(8)]
    pairs = {"1d_shift": ([[0.0]], 1.0, [[1.0]], 1.0), "1d_var": ([[0.0]], 1.0, [[1.0]], 1.5),
             "2d_shift": ([[0.0, 0.0]], 1.0, [[1.0, 0.0]], 1.0), "ring8": (ring, 0.05, ring, 0.1)}
    mp, sp, mq, sq = pairs[name]
    p, q = GaussianMixture(mp, sp), GaussianMixture(mq, sq)
    g = torch.Generator().manual_seed(17)

    def draw(law, m):
        comp = torch.multinomial(law.weights.double(), m, replacement=True, generator=g)
        return law.modes.double()[comp] + law.stds.double()[comp, None] * torch.randn(m, law.dim, generator=g, dtype=torch.float64)

    big_y, big_x = draw(p, 200_000), draw(q, 200_000)
    lpy, lqy, lpx, lqx = p.log_density(big_y), q.log_density(big_y), p.log_density(big_x), q.log_density(big_x)
    truth = {"kl_qp": float((lqx - lpx).mean()), "kl_pq": float((lpy - lqy).mean()),
             "js": float(0.5 * (LOG2 + lpy - torch.logaddexp(lpy, lqy)).mean() + 0.5 * (LOG2 + lqx - torch.logaddexp(lpx, lqx)).mean())}[k]
    est = []
    for _ in range(30):
        y, x = draw(p, n), draw(q, n)
        out = divergences(y.numpy(), x.numpy(), log_density=p.log_density)[k]
        est.append(out["value"])
    err = abs(np.mean(est) - truth)
    assert err < bound * truth + 2 * np.std(est) / math.sqrt(len(est)), (np.mean(est), truth)


def test_mmd_standard_error_matches_the_spread_over_draws():
    rng = np.random.default_rng(8)
    vals, ses = [], []
    for _ in range(40):
        out = sample_divergences(rng.normal(size=(256, 2)), rng.normal(size=(256, 2)) + [0.5, 0.0])
        vals.append(out["mmd"])
        ses.append(out["mmd_se"])
    assert 0.7 < np.mean(ses) / np.std(vals) < 1.4


# ----------------------------------------------------------------------------- standard errors that cover
def _knn_kl_by_hand(p: np.ndarray, q: np.ndarray, k: int = 5) -> float:
    """KL(P||Q) by the k-NN estimator straight from the definition (numpy, sorted distances)."""
    dpp = np.linalg.norm(p[:, None] - p[None], axis=-1)
    np.fill_diagonal(dpp, np.inf)
    dpq = np.linalg.norm(p[:, None] - q[None], axis=-1)
    rho, nu = np.sort(dpp, 1)[:, k - 1], np.sort(dpq, 1)[:, k - 1]
    return p.shape[1] * np.log(nu / rho).mean() + math.log(len(q) / (len(p) - 1))


def test_half_sampling_standard_error_is_the_spread_over_halves_by_hand():
    """The k-NN standard errors are sqrt(h / d * var) of the estimate recomputed on each half-sample
    (delete-d jackknife, d = n - h): checked on 13 + 12 points against the estimate by hand on
    every half, and the half-samples are halves without replacement, the same on every call."""
    rng = np.random.default_rng(21)
    p, q = rng.normal(size=(13, 2)), rng.normal(size=(12, 2)) + 0.3
    halves = half_samples((13, 12), 9)
    assert all(torch.equal(a, b) for h, g in zip(halves, half_samples((13, 12), 9)) for a, b in zip(h, g))
    for hp, hq in halves:
        assert len(hp) == 6 and len(hq) == 6 and len(set(hp.tolist())) == 6 and hp.max() < 13 and hq.max() < 12
    on_halves = [(_knn_kl_by_hand(p[hp.numpy()], q[hq.numpy()]), _knn_kl_by_hand(q[hq.numpy()], p[hp.numpy()]))
                 for hp, hq in halves]
    factor = 0.5 * (6 / 7 + 6 / 6)  # h / d for 13 points (6 of 13 kept) and for 12 (6 of 12)
    out = sample_divergences(p, q, k=5, mmd=False, resamples=9)
    assert out["kl_pq"] == pytest.approx(_knn_kl_by_hand(p, q), rel=1e-12)
    assert out["kl_pq_se"] == pytest.approx(math.sqrt(factor * np.var([v[0] for v in on_halves], ddof=1)), rel=1e-10)
    assert out["kl_qp_se"] == pytest.approx(math.sqrt(factor * np.var([v[1] for v in on_halves], ddof=1)), rel=1e-10)
    assert half_sample_se(1.0, [0.1, 0.3], (8,)) == pytest.approx(math.sqrt(0.02))  # h = d = 4: var 0.02
    assert math.isnan(half_sample_se(1.0, [0.1], (8,))) and math.isnan(half_sample_se(math.inf, [0.1, 0.2], (8,)))
    # JS on equal sizes: the same construction; the candidates' shortcut (8 k nearest) is exact
    a, b = rng.normal(size=(40, 2)), rng.normal(size=(40, 2)) + 2.0
    js = [sample_divergences(a[hp.numpy()], b[hq.numpy()], mmd=False, resamples=2)["js"] for hp, hq in half_samples((40, 40))]
    whole = sample_divergences(a, b, mmd=False)
    assert whole["js_se"] == pytest.approx(np.std(js, ddof=1), rel=1e-10)  # none clipped to [0, log 2] here:
    assert 0 < min(js) and max(js) < LOG2


def test_half_samples_with_too_few_candidates_are_recomputed_exactly(monkeypatch):
    """With one candidate per k (5 nearest kept) most half-samples lack a k-th neighbour among
    them and are recomputed from their own distances: the same standard errors as the shortcut."""
    import gandy.core.metrics.divergences as div

    rng = np.random.default_rng(8)
    p, q = rng.normal(size=(60, 2)), rng.normal(size=(60, 2)) + 0.5
    wide = sample_divergences(p, q, mmd=False), div.density_kl_qp(q, np.zeros(60))
    monkeypatch.setattr(div, "CANDIDATES", 1)
    narrow = sample_divergences(p, q, mmd=False), div.density_kl_qp(q, np.zeros(60))
    for key in ("js_se", "kl_pq_se", "kl_qp_se"):
        assert narrow[0][key] == pytest.approx(wide[0][key], rel=1e-10)
    assert narrow[1][1] == pytest.approx(wide[1][1], rel=1e-10) and narrow[1][0] == wide[1][0]


def test_knn_standard_errors_match_the_spread_over_draws_where_the_old_ones_fell_short():
    """Two 2-D Gaussians a unit shift apart (KL = 1/2 both ways): over 60 draws of 256 points the
    mean reported s.e. of both two-sample KL estimates is the spread of the estimates to within the
    issue's band 0.8-1.25 (measured 1.00 and 1.20), while for kl_pq the standard deviation of
    per-point terms over sqrt(n) (the s.e. until 2026-12-03, computed here by hand; blind to Q's
    randomness) was 0.70 of it (kl_qp: 0.84)."""
    rng = np.random.default_rng(4)
    est, se, old = [], [], []
    for _ in range(60):
        p, q = rng.normal(size=(256, 2)), rng.normal(size=(256, 2)) + [1.0, 0.0]
        out = sample_divergences(p, q, mmd=False)
        est.append([out["kl_pq"], out["kl_qp"]])
        se.append([out["kl_pq_se"], out["kl_qp_se"]])
        z = np.concatenate([p, q])
        dz = np.linalg.norm(z[:, None] - z[None], axis=-1)
        np.fill_diagonal(dz, np.inf)
        own = np.r_[np.sort(dz[:256, :256], 1)[:, 4], np.sort(dz[256:, 256:], 1)[:, 4]]
        other = np.r_[np.sort(dz[:256, 256:], 1)[:, 4], np.sort(dz[256:, :256], 1)[:, 4]]
        terms = 2 * np.log(other / own)
        old.append([np.std(terms[:256], ddof=1) / 16, np.std(terms[256:], ddof=1) / 16])
    spread = np.std(est, 0, ddof=1)
    assert np.mean(est, 0) == pytest.approx([gaussian_kl([0, 0], np.eye(2), [1, 0], np.eye(2))] * 2, rel=0.3)
    new_ratio, old_ratio = np.mean(se, 0) / spread, np.mean(old, 0) / spread
    assert ((0.8 < new_ratio) & (new_ratio < 1.25)).all(), (new_ratio, old_ratio)
    assert old_ratio[0] < 0.8, old_ratio


def test_nearest_candidates_are_each_rows_smallest_entries_by_hand():
    """The keyed integer sort behind the candidate lists: each row's ``width`` smallest entries in
    ascending order, the indices pointing at them (plus the offset), with ties (which go to the
    lower column), zeros, inf (the self-distances) and a strided column block as given by the
    pooled matrix."""
    import gandy.core.metrics.divergences as div

    rng = np.random.default_rng(3)
    full = np.round(rng.random((40, 90)) * 5, 1)  # many ties
    full[:, 7] = 0.0
    np.fill_diagonal(full, np.inf)
    block = torch.from_numpy(full)[:, 30:]  # a strided view, columns 30..89
    dist, idx = div._nearest(block, 12, offset=30)
    for i in range(40):
        row = full[i, 30:]
        order = sorted(range(60), key=lambda j: (row[j], j))[:12]
        assert dist[i].tolist() == [row[j] for j in order]
        assert idx[i].tolist() == [30 + j for j in order]
    assert torch.equal(dist, torch.from_numpy(full).gather(1, idx))


@pytest.mark.parametrize("halves", [7, 70])
def test_kth_member_search_matches_a_sort_per_half_by_hand(halves):
    """The k-th nearest member of each half-sample among a point's candidates, against sorting each
    half's candidates one by one: with tied distances, non-finite candidates, halves whose k-th
    member lies beyond the first 4 k candidates (the second stage) and halves with fewer than k;
    at 70 halves two 64-half words are counted."""
    import gandy.core.metrics.divergences as div

    g = torch.Generator().manual_seed(5)
    n, width, k = 60, 30, 3
    dist, idx = (torch.rand(n, n, generator=g, dtype=torch.float64) * 4).round().topk(width, 1, largest=False)
    dist[:5, -4:] = math.inf  # a short list: its last candidates are not points
    member = torch.rand(halves, n, generator=g) < 0.5
    member[0] = False
    member[0, idx[10, -6:]] = True  # point 10 in half 0: its first members come late (stage 2)
    member[1] = False
    member[1, idx[11, 0]] = True  # point 11 in half 1: one member only, no k-th
    radius, found = div._kth_among(dist, idx, member, k)
    for b in range(halves):
        for i in range(n):
            own = sorted(float(d) for d, j in zip(dist[i], idx[i]) if member[b, j] and math.isfinite(d))
            assert bool(found[b, i]) == (len(own) >= k)
            assert float(radius[b, i]) == (own[k - 1] if len(own) >= k else math.inf)
    assert bool(found[0, 10]) and not bool(found[1, 11])


def test_density_kl_qp_from_the_pooled_candidates_is_the_one_from_its_own_distances():
    rng = np.random.default_rng(11)
    p, q = rng.normal(size=(120, 2)), np.round(rng.normal(size=(120, 2)), 1)  # ties in Q
    lp = -0.5 * (q**2).sum(1)
    est = sample_divergences(p, q)
    from gandy.core.metrics.divergences import density_kl_qp

    alone, pooled = density_kl_qp(q, lp), density_kl_qp(q, lp, near=est["near_q"])
    assert pooled == pytest.approx(alone, rel=1e-12)


def test_half_samples_are_drawn_once_and_callers_cannot_change_them():
    first = half_samples((30, 20), 5)
    first[0][0][:] = 0  # a caller writing into its copy
    again = half_samples((30, 20), 5)
    assert all(len(torch.unique(hp)) == 15 and len(torch.unique(hq)) == 10 for hp, hq in again)
    fresh = [tuple(torch.randperm(s, generator=g)[: s // 2].sort().values for s in (30, 20))
             for g in [torch.Generator().manual_seed(0)] for _ in range(5)]
    assert all(torch.equal(a, b) for h, f in zip(again, fresh) for a, b in zip(h, f))


def test_a_batch_of_members_gives_each_member_what_it_gives_alone():
    """sample_divergences_batch / density_kl_qp_batch stack B members' points along one axis (each
    member's neighbour indices offset by its place): each member's numbers must be exactly those of
    the member alone (whose values the tests above check against the oracles), with members
    that would be each other's nearest neighbours if the offsets leaked (the same points shifted
    by 1e-9), ties, a member of another scale, and groups of members (BATCH_ELEMENTS) split."""
    import gandy.core.metrics.divergences as div

    rng = np.random.default_rng(5)
    p, q = rng.normal(size=(60, 2)), np.round(rng.normal(size=(60, 2)), 1)
    ps = np.stack([p, p + 1e-9, 3 * p, rng.normal(size=(60, 2))])
    qs = np.stack([q, q + 1e-9, 3 * q + 0.5, rng.normal(size=(60, 2)) + 1.0])
    alone = [sample_divergences(a, b) for a, b in zip(ps, qs)]
    keys = ("js", "js_se", "kl_pq", "kl_pq_se", "kl_qp", "kl_qp_se", "mmd", "mmd_se", "mmd_bandwidth")
    for group in (None, 1 << 14):  # all at once; two members to a group
        saved = div.BATCH_ELEMENTS
        div.BATCH_ELEMENTS = group or saved
        try:
            batch = div.sample_divergences_batch(ps, qs)
        finally:
            div.BATCH_ELEMENTS = saved
        assert len(batch) == 4
        for one, many in zip(alone, batch):
            assert {k: one[k] for k in keys} == {k: many[k] for k in keys}
            assert torch.equal(one["cross"], many["cross"])
            assert all(torch.equal(a, b) for a, b in zip(one["near_q"], many["near_q"]))
    assert alone[0]["kl_pq"] != alone[2]["kl_pq"] or alone[0]["mmd"] != alone[2]["mmd"]
    lp = -0.5 * (qs**2).sum(-1)
    near = tuple(torch.stack([a["near_q"][j] for a in alone]) for j in range(2))
    assert div.density_kl_qp_batch(qs, lp, near=near) == [div.density_kl_qp(b, v) for b, v in zip(qs, lp)]
    # unequal sizes (JS on the samples cut to one size) and blocks of rows (chunk)
    cut = div.sample_divergences_batch(ps, qs[:, :45], chunk=37, mmd=False)
    assert cut == [sample_divergences(a, b[:45], chunk=37, mmd=False) for a, b in zip(ps, qs)]


def test_the_kth_member_search_over_stacked_members_is_each_members_own():
    """_kth_among with leading member axes: (M, rows, L) candidates, each member's indices into its
    own n points, equal to the search of each member alone."""
    import gandy.core.metrics.divergences as div

    rng = np.random.default_rng(3)
    n, width, k = 40, 12, 3
    member = torch.from_numpy(rng.random((70, n)) < 0.5)
    dist = torch.from_numpy(np.sort(rng.random((3, 2 * n, width)), -1))
    dist[1, 5, 8:] = math.inf  # a short candidate list
    idx = torch.from_numpy(np.stack([np.stack([rng.permutation(n)[:width] for _ in range(2 * n)]) for _ in range(3)]))
    radius, found = div._kth_among(dist, idx, member, k)
    assert radius.shape == found.shape == (3, 70, 2 * n)
    for m in range(3):
        r, f = div._kth_among(dist[m], idx[m], member, k)
        assert torch.equal(radius[m], r) and torch.equal(found[m], f)
