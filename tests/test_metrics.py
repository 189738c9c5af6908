"""Order parameters and targets against hand computation and independent methods."""

import math

import numpy as np
import pytest
import torch
from scipy.stats import wasserstein_distance

from gandy.core.metrics.order import (
    cover_radius,
    coverage_kl,
    mean_abs_cos,
    nearest_mode,
    order_parameters,
    w1_exact,
    w1_sorted_1d,
)
from gandy.core.rng import Stream, member_keys
from gandy.core.targets import Empirical, GaussianMixture, mnist_images
from gandy.runs import config as C
from gandy.runs.build import target_of


def test_coverage_kl_hand_values():
    p = torch.tensor([[0.5, 0.5], [1.0, 0.0], [0.7, 0.3]], dtype=torch.float64)
    expect = [0.0, math.log(2), math.log(2) + 0.7 * math.log(0.7) + 0.3 * math.log(0.3)]
    assert torch.allclose(coverage_kl(p), torch.tensor(expect, dtype=torch.float64), atol=1e-12)


def test_nearest_mode_euclidean_and_cosine():
    modes = torch.tensor([[1.0, 0.0], [0.0, 3.0]])
    x = torch.tensor([[[0.9, 0.1], [0.0, 1.0], [2.0, 2.5]]])
    idx, dist, gap = nearest_mode(x, modes, "euclidean")
    assert idx.tolist() == [[0, 0, 1]]  # (0, 1) is 1.41 from mode 0 and 2 from mode 1
    assert dist[0, 0] == pytest.approx(math.hypot(0.1, 0.1), abs=1e-6)
    assert torch.equal(gap, dist)
    idx_c, dist_c, gap_c = nearest_mode(x, modes, "cosine")
    assert idx_c.tolist() == [[0, 1, 1]]  # (0, 1) points along mode 1
    assert dist_c[0, 1] == pytest.approx(2.0, abs=1e-6)  # Euclidean, to the cosine-nearest mode
    # the gap is the cosine distance: 1 - 0.9/|(0.9, 0.1)|, 0, 1 - 2.5/|(2, 2.5)|
    expect = [1 - 0.9 / math.hypot(0.9, 0.1), 0.0, 1 - 2.5 / math.hypot(2.0, 2.5)]
    assert gap_c[0].tolist() == pytest.approx(expect, abs=1e-6)


def test_cosine_cover_radius_and_on_mode_by_hand():
    """Under cosine assignment the cover radius is half the median nearest-neighbour cosine
    distance between modes, and on_mode counts particles within it in that metric (it used to be
    unlimited, so every particle was on a mode)."""
    a = math.pi / 6  # three modes at 0, 30 and 90 degrees: nearest-neighbour angles 30, 30, 60
    modes = torch.tensor([[1.0, 0.0], [math.cos(a), math.sin(a)], [0.0, 1.0]])
    r = cover_radius(modes, "cosine")
    assert r == pytest.approx(0.5 * (1 - math.cos(a)), abs=1e-7)  # float32 modes
    t = Empirical(modes, assign="cosine")
    assert t.cover_radius == pytest.approx(r)
    close, far = 0.05, 0.4  # radians off mode 0: 1 - cos 0.05 = 0.00125 < r = 0.067 < 1 - cos 0.4
    x = torch.tensor([[[3 * math.cos(-close), 3 * math.sin(-close)], [math.cos(-far), math.sin(-far)]]])
    out = order_parameters(x, t, None)
    assert out["on_mode"][0] == pytest.approx(0.5) and out["modes_covered"][0] == 1


def test_displacement_is_the_mean_distance_moved():
    t = GaussianMixture([[-2.0], [2.0]], 0.1)
    x0 = torch.tensor([[[0.0], [1.0]]])
    x = torch.tensor([[[0.3], [0.0]]])
    assert order_parameters(x, t, None, start=x0)["displacement"][0] == pytest.approx((0.3 + 1.0) / 2, abs=1e-6)
    assert math.isnan(order_parameters(x, t, None)["displacement"][0])


def test_histogram_and_modes_covered_respect_cover_radius():
    t = GaussianMixture([[-2.0], [2.0]], 0.1)  # cover radius 3 std = 0.3
    x = torch.tensor([[[-2.05], [-1.9], [2.2], [0.1]], [[-2.0], [-2.0], [-2.0], [-2.0]]])
    out = order_parameters(x, t, None)
    assert out["mode_hist"][0].tolist() == [0.5, 0.5]  # 0.1 is nearest to +2
    assert out["modes_covered"].tolist() == [2.0, 1.0]
    assert out["on_mode"][0] == pytest.approx(0.75)
    assert out["coverage_kl"][1] == pytest.approx(math.log(2))
    assert out["mean_dist"][0] == pytest.approx((0.05 + 0.1 + 0.2 + 1.9) / 4, abs=1e-6)
    assert out["com_error"][1] == pytest.approx(2.0)


def test_mean_abs_cos_hand_value():
    x = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]]])
    c = 1 / math.sqrt(2)
    assert mean_abs_cos(x)[0] == pytest.approx((0 + c + c) / 3, abs=1e-6)


def test_w1_exact_matches_1d_closed_form():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(200, 1)), rng.normal(1.0, 2.0, size=(300, 1))
    assert w1_exact(x, y) == pytest.approx(wasserstein_distance(x[:, 0], y[:, 0]), rel=1e-9)


def test_w1_of_shifted_cloud_in_2d_is_the_shift():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(100, 2))
    assert w1_exact(x, x + np.array([0.3, 0.4])) == pytest.approx(0.5, rel=1e-9)


def test_non_finite_member_gets_nan_not_numbers():
    t = GaussianMixture([[-2.0], [2.0]], 0.1)
    x = torch.tensor([[[-2.0], [2.0]], [[float("nan")], [2.0]]])
    ref = torch.tensor([[[-2.0], [2.0]], [[-2.0], [2.0]]])
    out = order_parameters(x, t, ref)
    for k in ("coverage_kl", "modes_covered", "mean_dist", "com_error", "w1"):
        assert math.isfinite(out[k][0]) and math.isnan(out[k][1]), k
    assert out["w1"][0] == pytest.approx(0.0, abs=1e-9)


def test_mixture_sampling_moments_and_density_normalised():
    t = GaussianMixture([[-2.0], [3.0]], [0.5, 1.0], weights=[1.0, 3.0])
    s = t.sample(Stream(member_keys([0, 1]), "data"), 40000)
    assert s.shape == (2, 40000, 1)
    mean = 0.25 * -2 + 0.75 * 3
    var = 0.25 * (0.25 + 4) + 0.75 * (1 + 9) - mean**2
    assert float(s.mean()) == pytest.approx(mean, abs=0.03)
    assert float(s.var()) == pytest.approx(var, rel=0.03)
    g = torch.linspace(-10, 12, 20001)[:, None]
    mass = torch.trapezoid(t.log_density(g).exp(), g[:, 0])
    assert float(mass) == pytest.approx(1.0, abs=1e-5)


def test_point_mass_has_no_density_and_samples_exactly():
    t = target_of(C.PointMassTarget(name="point_mass", location=[1.0, -1.0]))
    assert t.log_density(torch.zeros(3, 2)) is None
    s = t.sample(Stream(member_keys([0]), "data"), 5)
    assert torch.equal(s, torch.tensor([1.0, -1.0]).expand(1, 5, 2))


def test_presets_geometry():
    ring = target_of(C.Ring8Target(name="ring8", radius=2.0))
    assert torch.allclose(ring.modes.norm(dim=1), torch.full((8,), 2.0))
    grid = target_of(C.Grid25Target(name="grid25", spacing=2.0))
    assert grid.modes.shape == (25, 2) and float(grid.modes.abs().max()) == 4.0
    two = target_of(C.TwoModes1dTarget(name="two_modes_1d", separation=4.0))
    assert two.modes[:, 0].tolist() == [-2.0, 2.0]


def test_mnist_target_first_n_normalised():
    x = mnist_images(100)
    assert x.shape == (100, 784)
    raw = x * 0.3081 + 0.1307
    assert raw.min() == pytest.approx(0.0, abs=1e-6) and raw.max() == pytest.approx(1.0, abs=1e-6)
    t = target_of(C.MnistTarget(name="mnist", n=100))
    assert t.assign == "cosine" and t.modes.shape == (100, 784)
    inter = mnist_images(20, "interleaved")
    assert not np.allclose(inter[1], x[1])  # round-robin over classes, not the sorted order


def test_empirical_target_from_npz(tmp_path):
    data = np.random.default_rng(0).normal(size=(30, 3)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=data, other=np.zeros(2))
    t = target_of(C.EmpiricalTarget(name="empirical", path=str(tmp_path / "d.npz"), key="x"))
    assert t.dim == 3 and torch.allclose(t.data, torch.as_tensor(data))
    full = t.sample(Stream(member_keys([0]), "data"), 30)
    assert torch.equal(full[0], t.data)  # the whole data set when the batch is the data set
    assert torch.equal(target_of(C.EmpiricalTarget(name="empirical", path=str(tmp_path / "d.npz"))).data, t.data)
    np.savez(tmp_path / "ab.npz", a=data, b=data)  # ambiguous: no key, no x/data array
    with pytest.raises(C.ConfigError) as e:
        target_of(C.EmpiricalTarget(name="empirical", path=str(tmp_path / "ab.npz")))
    assert e.value.field == "target.path"


def test_parallel_lines_samples_the_data_segment_uniformly():
    t = target_of(C.ParallelLinesTarget(name="parallel_lines", length=2.0))
    s = t.sample(Stream(member_keys([0]), "data"), 20000)[0]
    assert torch.equal(s[:, 0], torch.zeros(20000))
    assert float(s[:, 1].min()) >= 0 and float(s[:, 1].max()) <= 2.0
    assert float(s[:, 1].mean()) == pytest.approx(1.0, abs=0.02)
    assert float(s[:, 1].var()) == pytest.approx(4 / 12, rel=0.03)
    assert t.modes is None and t.log_density(s) is None


def test_embedding_is_an_isometry_and_keeps_modes():
    base = target_of(C.Ring8Target(name="ring8"))
    emb = target_of(C.Ring8Target(name="ring8", embed_dim=6, embed_seed=3))
    assert emb.dim == 6 and emb.modes.shape == (8, 6)
    torch.testing.assert_close(torch.cdist(emb.modes, emb.modes), torch.cdist(base.modes, base.modes), atol=1e-5, rtol=0)
    x = emb.sample(Stream(member_keys([0]), "data"), 50)[0]
    y = base.sample(Stream(member_keys([0]), "data"), 50)[0]

    def dists(a):  # explicit differences: cdist's matmul form rounds near zero in float32
        return (a[:, None] - a[None]).norm(dim=-1)

    torch.testing.assert_close(dists(x), dists(y), atol=1e-5, rtol=0)  # the same draws, mapped
    with pytest.raises(C.ConfigError) as e:
        target_of(C.Ring8Target(name="ring8", embed_dim=1))
    assert e.value.field == "target.embed_dim"


def test_w1_on_the_line_by_sorted_quantiles_equals_scipy_and_pot():
    """The batched 1-D W1 (sorted quantiles) against two independent libraries: scipy's
    wasserstein_distance and POT's exact transport, for unequal sizes and tied points."""
    rng = np.random.default_rng(3)
    for n, m in [(64, 1024), (7, 5), (16, 16), (3, 100), (1, 1)]:
        x, y = rng.normal(size=(4, n)), rng.normal(1.0, 2.0, size=(4, m))
        x[0] = x[0, 0]  # all tied
        got = w1_sorted_1d(x, y)
        np.testing.assert_allclose(got, [wasserstein_distance(x[k], y[k]) for k in range(4)], rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(got, [w1_exact(x[k][:, None], y[k][:, None]) for k in range(4)], rtol=1e-12, atol=1e-14)
