"""Sample-quality metrics (gandy.core.images.quality) against closed forms and independent computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import torch
from numpy.lib.stride_tricks import sliding_window_view

from gandy.core.images import quality as q


def _spd(rng, f, cond=10.0):
    """A random symmetric positive definite ``(f, f)`` matrix with eigenvalues in [1, cond]."""
    qm, _ = np.linalg.qr(rng.normal(size=(f, f)))
    return (qm * rng.uniform(1.0, cond, f)) @ qm.T


def _orthogonal(rng, f):
    qm, r = np.linalg.qr(rng.normal(size=(f, f)))
    return qm * np.sign(np.diag(r))


# --------------------------------------------------------------------------- FID
def test_sqrtm_psd_matches_scipy_on_random_spd_matrices():
    rng = np.random.default_rng(0)
    for f in (1, 3, 20, 64):
        a = _spd(rng, f, cond=1e4)
        r = q.sqrtm_psd(a)
        ref = scipy.linalg.sqrtm(a)
        np.testing.assert_allclose(r, np.real(ref), rtol=1e-8, atol=1e-8 * np.abs(ref).max())
        np.testing.assert_allclose(r @ r, a, rtol=1e-9, atol=1e-9 * np.abs(a).max())
        np.testing.assert_array_equal(r, r.T)


def test_sqrtm_psd_clips_tiny_negative_eigenvalues():
    rng = np.random.default_rng(1)
    v = rng.normal(size=(6, 2))
    a = v @ v.T  # rank 2: four eigenvalues are 0 up to rounding (some come out negative)
    r = q.sqrtm_psd(a)
    assert np.all(np.isfinite(r))
    assert np.linalg.eigvalsh(r).min() > -1e-12
    np.testing.assert_allclose(r @ r, a, atol=1e-10)


def test_frechet_distance_matches_scipy_formula_for_non_commuting_covariances():
    rng = np.random.default_rng(2)
    for f in (2, 10, 40):
        mu1, mu2 = rng.normal(size=f), rng.normal(size=f)
        s1, s2 = _spd(rng, f, 50.0), _spd(rng, f, 50.0)
        ref = ((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2.0 * np.real(scipy.linalg.sqrtm(s1 @ s2)))
        assert q.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(ref, rel=1e-9, abs=1e-9)


def test_fid_of_gaussian_samples_matches_closed_form():
    rng = np.random.default_rng(3)
    f, n = 5, 40_000
    rot = _orthogonal(rng, f)
    a, b = rng.uniform(0.5, 2.0, f), rng.uniform(0.5, 2.0, f)
    mu1, mu2 = rng.normal(size=f), rng.normal(size=f)
    s1, s2 = (rot * a) @ rot.T, (rot * b) @ rot.T  # commuting: the root has a closed form
    closed = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    x = rng.multivariate_normal(mu1, s1, size=n)
    y = rng.multivariate_normal(mu2, s2, size=n)
    got = q.fid(x, y)
    assert got == pytest.approx(closed, rel=0.03)
    # exactly the Frechet distance of the sample means / covariances (scipy's formula)
    c1, c2 = np.cov(x.T), np.cov(y.T)
    ref = ((x.mean(0) - y.mean(0)) ** 2).sum() + np.trace(c1 + c2 - 2.0 * np.real(scipy.linalg.sqrtm(c1 @ c2)))
    assert got == pytest.approx(ref, rel=1e-9)
    # a mean shift alone adds |delta|^2
    assert q.fid(x, x + 0.5) == pytest.approx(0.25 * f, rel=1e-9)


def test_fid_of_a_sample_with_itself_is_zero_and_torch_inputs_work():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(300, 64)) @ rng.normal(size=(64, 64))
    assert abs(q.fid(x, x)) < 1e-8
    assert abs(q.fid(torch.from_numpy(x), torch.from_numpy(x).float())) < 1e-3
    y = rng.normal(size=(200, 64))
    assert q.fid(torch.from_numpy(x), torch.from_numpy(y)) == pytest.approx(q.fid(x, y), rel=1e-12)
    # more features than samples: singular covariances are fine
    z = rng.normal(size=(20, 64))
    assert abs(q.fid(z, z)) < 1e-8
    assert np.isfinite(q.fid(z, rng.normal(size=(30, 64))))


def test_fid_is_invariant_to_a_common_rotation_and_translation():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(400, 16)) * rng.uniform(0.2, 3.0, 16)
    y = rng.normal(size=(300, 16)) @ rng.normal(size=(16, 16)) * 0.5 + 0.3
    rot, t = _orthogonal(rng, 16), rng.normal(size=16)
    assert q.fid(x @ rot + t, y @ rot + t) == pytest.approx(q.fid(x, y), rel=1e-9)
    assert q.fid(x, y) > 1.0
    assert q.fid(y, x) == pytest.approx(q.fid(x, y), rel=1e-9)


def test_fid_rejects_bad_shapes():
    with pytest.raises(ValueError):
        q.fid(np.zeros((10, 3)), np.zeros((10, 4)))
    with pytest.raises(ValueError):
        q.fid(np.zeros((1, 3)), np.zeros((10, 3)))
    with pytest.raises(ValueError):
        q.fid(np.zeros(10), np.zeros(10))


# --------------------------------------------------------------------------- KID
def _mmd2_direct(x, y):
    """Unbiased MMD^2 with k(a, b) = (a.b / F + 1)^3 by explicit sums over index pairs."""
    f = x.shape[1]
    k = lambda a, b: (float(np.dot(a, b)) / f + 1.0) ** 3  # noqa: E731
    n, m = len(x), len(y)
    sxx = sum(k(x[i], x[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    syy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    sxy = sum(k(x[i], y[j]) for i in range(n) for j in range(m)) / (n * m)
    return sxx + syy - 2.0 * sxy


def test_kid_with_one_full_subset_equals_direct_unbiased_mmd():
    rng = np.random.default_rng(6)
    x, y = rng.normal(size=(30, 4)), rng.normal(0.3, 1.2, size=(30, 4))
    direct = _mmd2_direct(x, y)
    mean, std = q.kid(x, y, subsets=1, subset_size=30)
    assert mean == pytest.approx(direct, rel=1e-10, abs=1e-12)
    assert std == 0.0
    # subset_size is clipped to the sample sizes; any seed draws a permutation of all rows
    assert q.kid(x, y, subsets=1, subset_size=10_000, seed=3)[0] == pytest.approx(direct, rel=1e-10, abs=1e-12)


def test_kid_is_about_zero_for_one_law_and_positive_for_shifted_laws():
    rng = np.random.default_rng(7)
    x, y = rng.normal(size=(600, 8)), rng.normal(size=(600, 8))
    mean, std = q.kid(x, y, subsets=20, subset_size=200)
    assert std > 0
    assert abs(mean) < 3.0 * std
    z = rng.normal(0.5, 1.0, size=(600, 8))
    mean_s, std_s = q.kid(x, z, subsets=20, subset_size=200)
    assert mean_s > 5.0 * std_s
    assert mean_s > 20.0 * abs(mean)


def test_kid_is_deterministic_given_seed():
    rng = np.random.default_rng(8)
    x, y = rng.normal(size=(100, 5)), rng.normal(size=(120, 5))
    a = q.kid(x, y, subsets=5, subset_size=50, seed=1)
    assert q.kid(x, y, subsets=5, subset_size=50, seed=1) == a
    assert q.kid(x, y, subsets=5, subset_size=50, seed=2) != a


# --------------------------------------------------------------------------- classifier score
def test_classifier_score_is_k_for_confident_uniform_predictions():
    k = 10
    probs = np.eye(k)[np.tile(np.arange(k), 30)]  # each of 10 splits holds every class 3 times
    mean, std = q.classifier_score(probs, splits=10)
    assert mean == pytest.approx(k, rel=1e-12)
    assert std == pytest.approx(0.0, abs=1e-12)


def test_classifier_score_is_one_for_identical_predictions():
    row = np.array([0.1, 0.6, 0.3, 0.0])
    mean, std = q.classifier_score(np.tile(row, (50, 1)), splits=5)
    assert mean == pytest.approx(1.0, abs=1e-12)
    assert std == pytest.approx(0.0, abs=1e-12)
    one_hot = np.zeros((40, 3))
    one_hot[:, 2] = 1.0
    assert q.classifier_score(one_hot, splits=4)[0] == pytest.approx(1.0, abs=1e-12)


def test_classifier_score_hand_computed_example_and_bounds():
    p = np.array([[0.5, 0.5], [1.0, 0.0]])
    py = np.array([0.75, 0.25])
    kl1 = 0.5 * math.log(0.5 / py[0]) + 0.5 * math.log(0.5 / py[1])
    kl2 = math.log(1.0 / py[0])
    assert q.classifier_score(p, splits=1) == pytest.approx((math.exp((kl1 + kl2) / 2), 0.0), rel=1e-12)
    rng = np.random.default_rng(9)
    d = rng.dirichlet(np.full(7, 0.3), size=500)
    mean, std = q.classifier_score(d, splits=10)
    assert 1.0 < mean < 7.0 and std > 0
    with pytest.raises(ValueError):
        q.classifier_score(d * 2.0)
    with pytest.raises(ValueError):
        q.classifier_score(d[:5], splits=10)


# --------------------------------------------------------------------------- mode coverage
def test_mode_coverage_hand_computed_histogram():
    out = q.mode_coverage(np.array([0, 0, 1, 3]), n_modes=5)
    np.testing.assert_array_equal(out["histogram"], [2, 1, 0, 1, 0])
    assert out["modes_covered"] == 3
    assert out["n"] == 4
    assert out["kl_to_uniform"] == pytest.approx(math.log(5) + 0.5 * math.log(0.5) + 0.5 * math.log(0.25), rel=1e-12)


def test_mode_coverage_uniform_and_single_mode():
    k = 1000
    uni = q.mode_coverage(np.repeat(np.arange(k), 3), n_modes=k)
    assert uni["modes_covered"] == k
    assert uni["kl_to_uniform"] == pytest.approx(0.0, abs=1e-12)
    one = q.mode_coverage(torch.full((77,), 123), n_modes=k)
    assert one["modes_covered"] == 1
    assert one["kl_to_uniform"] == pytest.approx(math.log(k), rel=1e-12)
    assert one["histogram"][123] == 77 and one["histogram"].sum() == 77
    with pytest.raises(ValueError):
        q.mode_coverage(np.array([0, 5]), n_modes=5)
    with pytest.raises(ValueError):
        q.mode_coverage(np.array([0.5, 1.0]), n_modes=5)


# --------------------------------------------------------------------------- SSIM / MS-SSIM
def _smooth_images(rng, n, c=1, side=28):
    """Random smooth images in [-1, 1] (blurred noise through tanh)."""
    x = torch.from_numpy(rng.normal(size=(n, c, side, side)))
    x = torch.nn.functional.avg_pool2d(x, 5, stride=1, padding=2, count_include_pad=False)
    return np.tanh(3.0 * x.numpy())


def _ref_stats(a, b, win, sigma, c1, c2):
    """Direct per-window SSIM statistics of ``a, b (C, H, W)`` with the 2-D Gaussian window:
    ``(lum map, cs map)``, each ``(C, H - win + 1, W - win + 1)``."""
    r = np.arange(win) - (win - 1) / 2
    g2 = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * sigma ** 2))
    g2 /= g2.sum()
    wa = sliding_window_view(a, (win, win), axis=(1, 2))
    wb = sliding_window_view(b, (win, win), axis=(1, 2))
    ma, mb = (wa * g2).sum((-1, -2)), (wb * g2).sum((-1, -2))
    va = (g2 * (wa - ma[..., None, None]) ** 2).sum((-1, -2))
    vb = (g2 * (wb - mb[..., None, None]) ** 2).sum((-1, -2))
    cov = (g2 * (wa - ma[..., None, None]) * (wb - mb[..., None, None])).sum((-1, -2))
    lum = (2 * ma * mb + c1) / (ma ** 2 + mb ** 2 + c1)
    cs = (2 * cov + c2) / (va + vb + c2)
    return lum, cs


def _ref_ms_ssim(a, b, win=7, sigma=1.5, scales=3, data_range=2.0):
    """MS-SSIM of one pair ``(C, H, W)`` straight from the documented formula."""
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    w = np.array([0.0448, 0.2856, 0.3001, 0.2363, 0.1333][:scales])
    w = w / w.sum()
    val = np.ones(a.shape[0])
    for s in range(scales):
        if s:
            h, wd = a.shape[1] // 2, a.shape[2] // 2
            a = a[:, :2 * h, :2 * wd].reshape(a.shape[0], h, 2, wd, 2).mean((2, 4))
            b = b[:, :2 * h, :2 * wd].reshape(b.shape[0], h, 2, wd, 2).mean((2, 4))
        lum, cs = _ref_stats(a, b, win, sigma, c1, c2)
        term = (lum * cs).mean((1, 2)) if s == scales - 1 else cs.mean((1, 2))
        val = val * np.maximum(term, 0.0) ** w[s]
    return val.mean()


def test_ssim_matches_direct_hand_computation_on_a_tiny_example():
    a = np.array([[[[0.2, -0.5, 0.9, 0.1, -1.0],
                    [0.0, 0.3, -0.2, 0.8, 0.4],
                    [-0.7, 0.6, 1.0, -0.3, 0.2],
                    [0.5, -0.1, -0.9, 0.0, 0.7],
                    [0.3, 0.3, 0.1, -0.6, -0.4]]]])
    b = np.flip(a, axis=3) * 0.8 + 0.1
    win, sigma, data_range = 3, 1.0, 2.0
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    g = np.exp(-np.array([1.0, 0.0, 1.0]) / (2 * sigma ** 2))
    g2 = np.outer(g, g) / g.sum() ** 2
    vals = []
    for r in range(3):  # 3x3 valid positions, every sum written out
        for c in range(3):
            pa, pb = a[0, 0, r:r + 3, c:c + 3], b[0, 0, r:r + 3, c:c + 3]
            ma, mb = (g2 * pa).sum(), (g2 * pb).sum()
            va = (g2 * pa * pa).sum() - ma * ma
            vb = (g2 * pb * pb).sum() - mb * mb
            cov = (g2 * pa * pb).sum() - ma * mb
            vals.append((2 * ma * mb + c1) * (2 * cov + c2) / ((ma * ma + mb * mb + c1) * (va + vb + c2)))
    got = q.ssim(a, b, window_size=win, sigma=sigma, data_range=data_range)
    assert got.shape == (1,)
    assert got[0] == pytest.approx(np.mean(vals), rel=1e-12)
    assert q.ssim(a, a, window_size=win, sigma=sigma)[0] == pytest.approx(1.0, abs=1e-12)


def test_ms_ssim_matches_reference_formula():
    rng = np.random.default_rng(10)
    a, b = _smooth_images(rng, 3, c=3), _smooth_images(rng, 3, c=3)
    b[1] = 0.7 * a[1] + 0.3 * b[1]  # one fairly similar pair
    got = q.ms_ssim(a, b)
    assert got.shape == (3,)
    ref = [_ref_ms_ssim(a[k], b[k]) for k in range(3)]
    np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-12)
    # two scales with an 11x11 window (28 -> 14)
    np.testing.assert_allclose(q.ms_ssim(a, b, window_size=11, scales=2),
                               [_ref_ms_ssim(a[k], b[k], win=11, scales=2) for k in range(3)], rtol=1e-10, atol=1e-12)
    # one scale is the (clamped) single-scale SSIM; the clamp acts per channel, before the channel mean
    per_channel = np.stack([q.ssim(a[:, c:c + 1], b[:, c:c + 1]) for c in range(3)], 1)
    assert per_channel.min() < 0  # the clamp matters for this draw
    np.testing.assert_allclose(q.ms_ssim(a, b, scales=1), np.maximum(per_channel, 0).mean(1), rtol=1e-12)


def test_ms_ssim_identical_symmetric_and_below_one():
    rng = np.random.default_rng(11)
    a = _smooth_images(rng, 6, c=3)
    b = np.clip(rng.uniform(-1, 1, size=a.shape), -1, 1)
    np.testing.assert_allclose(q.ms_ssim(a, a), 1.0, atol=1e-6)
    np.testing.assert_allclose(q.ms_ssim(torch.from_numpy(b).float(), torch.from_numpy(b).float()), 1.0, atol=1e-6)
    ab, ba = q.ms_ssim(a, b), q.ms_ssim(b, a)
    np.testing.assert_array_equal(ab, ba)
    assert np.all(ab < 0.9) and np.all(ab >= 0.0)
    near = q.ms_ssim(a, np.clip(a + 0.05 * rng.normal(size=a.shape), -1, 1))
    assert np.all(near < 1.0) and np.all(near > ab)
    # a blank image against itself (zero local variance everywhere)
    blank = -np.ones((1, 1, 28, 28))
    assert q.ms_ssim(blank, blank)[0] == pytest.approx(1.0, abs=1e-12)


def test_ms_ssim_scale_choice_and_errors():
    x = np.zeros((2, 1, 28, 28))
    assert q._n_scales(28, 28, 7, None) == 3
    assert q._n_scales(28, 28, 11, None) == 2
    assert q._n_scales(256, 256, 11, None) == 5
    np.testing.assert_allclose(q._scale_weights(3, None).numpy(), np.array([0.0448, 0.2856, 0.3001]) / 0.6305)
    with pytest.raises(ValueError):
        q.ms_ssim(x, x, scales=4)
    with pytest.raises(ValueError):
        q.ms_ssim(x, x, window_size=29)
    with pytest.raises(ValueError):
        q.ms_ssim(x, x[:1])


def test_ms_ssim_diversity_identical_noise_and_consistency():
    rng = np.random.default_rng(12)
    same = np.repeat(_smooth_images(rng, 1, c=3), 20, axis=0)
    assert q.ms_ssim_diversity(same, batches=2, batch_size=8) == pytest.approx(1.0, abs=1e-6)
    noise = rng.uniform(-1, 1, size=(100, 3, 28, 28))
    d_noise = q.ms_ssim_diversity(noise, batches=3, batch_size=32)
    assert d_noise < 0.2
    smooth = _smooth_images(rng, 100)
    d_smooth = q.ms_ssim_diversity(smooth, batches=3, batch_size=32, seed=4)
    # the vectorised all-pairs mean equals ms_ssim over the explicit pair list, batch by batch
    draw = np.random.default_rng(4)
    means = []
    for _ in range(3):
        idx = draw.choice(100, 32, replace=False)
        i, j = np.triu_indices(32, k=1)
        means.append(q.ms_ssim(smooth[idx[i]], smooth[idx[j]]).mean())
    assert d_smooth == pytest.approx(np.mean(means), rel=1e-10)
    assert d_noise < d_smooth < 1.0
    # deterministic in seed; batch_size is clipped to the number of images
    assert q.ms_ssim_diversity(smooth, batches=3, batch_size=32, seed=4) == d_smooth
    assert q.ms_ssim_diversity(smooth[:5], batches=1, batch_size=64) == pytest.approx(
        q.ms_ssim(smooth[[0, 0, 0, 0, 1, 1, 1, 2, 2, 3]], smooth[[1, 2, 3, 4, 2, 3, 4, 3, 4, 4]]).mean(), rel=1e-10)


# --------------------------------------------------------------------------- independent critic
def _pixels(rng, n, shift=0.0, side=12):
    return np.clip(rng.normal(shift, 0.5, size=(n, 1, side, side)), -1.0, 1.0)


W_FAST = dict(steps=150, hidden=64)


def test_w_critic_near_zero_for_one_law_and_larger_for_shifted_law():
    rng = np.random.default_rng(13)
    real_tr, real_te = _pixels(rng, 1000), _pixels(rng, 500)
    same = q.w_critic(real_tr, _pixels(rng, 1000), real_te, _pixels(rng, 500), **W_FAST)
    shifted = q.w_critic(real_tr, _pixels(rng, 1000, 0.2), real_te, _pixels(rng, 500, 0.2), **W_FAST)
    assert abs(same["value"]) < 4.0 * same["stderr"] + 0.05
    assert shifted["value"] > 10.0 * shifted["stderr"]
    assert shifted["value"] > 10.0 * abs(same["value"])
    # the train-split estimate of the "same law" critic is biased upwards (it fits noise), the test one is not
    assert same["train_value"] > same["value"]


def test_w_critic_is_deterministic_and_leaves_global_rng_alone():
    rng = np.random.default_rng(14)
    args = (_pixels(rng, 300), _pixels(rng, 300, 0.1), _pixels(rng, 200), _pixels(rng, 200, 0.1))
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a = q.w_critic(*args, steps=60, hidden=32, seed=5)
    assert torch.equal(torch.get_rng_state(), state)
    b = q.w_critic(*args, steps=60, hidden=32, seed=5)
    c = q.w_critic(*args, steps=60, hidden=32, seed=6)
    assert a["value"] == b["value"] and a["train_value"] == b["train_value"]
    assert c["value"] != a["value"]
    with pytest.raises(ValueError):
        q.w_critic(args[0], args[1], args[2], np.zeros((10, 1, 11, 11)))
