"""Tests of gandy.core.kernels against hand computation, closed forms and independent numerical methods.

SCIENCE.md section 1.2: K = (g1 - g2) I + g2 J with g1 = Theta(rho=1), g2 = Theta(rho=0), where Theta
is the analytic infinite-width NTK of a fully connected network (NTK parameterisation).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate, special
from torch import nn

from gandy.core.kernels import (
    Dense,
    NtkMlp,
    TwoNumber,
    check_psd,
    empirical_ntk,
    ntk_analytic,
    ntk_g1_g2,
    sphere_latents,
)
from gandy.runs import config as C
from gandy.runs.build import kernel_of

F64 = torch.float64


# ============================================================================ two-number kernel
TWO_NUMBER_CASES = [(5, 1.0, 0.3), (12, 2.5, -0.1), (7, 0.8, 0.8), (40, 1.7, 0.95), (1, 1.3, 0.4)]


@pytest.mark.parametrize("n,g1,g2", TWO_NUMBER_CASES)
def test_two_number_dense_entries_and_spectrum(n, g1, g2):
    k = TwoNumber(n, g1, g2)
    dense = k.dense().double()
    assert dense.shape == (n, n)
    eye = torch.eye(n, dtype=torch.bool)
    torch.testing.assert_close(dense.diagonal(), torch.full((n,), g1, dtype=F64), rtol=0, atol=1e-6)
    if n > 1:
        torch.testing.assert_close(dense[~eye], torch.full((n * n - n,), g2, dtype=F64), rtol=0, atol=1e-6)

    ev = torch.linalg.eigvalsh(dense)  # ascending
    expected = torch.tensor(sorted([g1 + (n - 1) * g2] + [g1 - g2] * (n - 1)), dtype=F64)
    torch.testing.assert_close(ev, expected, rtol=0, atol=1e-5 * max(1.0, n * abs(g2)))

    # eigenvalues(): the centre-of-mass eigenvalue first, then the N - 1 relative ones
    mine = k.eigenvalues()
    assert mine.dtype == F64 and mine.shape == (n,)
    assert mine[0].item() == pytest.approx(g1 + (n - 1) * g2, abs=1e-12)
    torch.testing.assert_close(mine[1:], torch.full((n - 1,), g1 - g2, dtype=F64))
    torch.testing.assert_close(torch.sort(mine).values, ev, rtol=0, atol=1e-5 * max(1.0, n * abs(g2)))

    # the centre-of-mass eigenvector is the all-ones vector; relative modes sum to zero
    ones = torch.ones(n, dtype=F64)
    torch.testing.assert_close(dense @ ones, (g1 + (n - 1) * g2) * ones, rtol=0, atol=1e-5 * n)
    if n > 1:
        shape_mode = torch.zeros(n, dtype=F64)
        shape_mode[0], shape_mode[1] = 1.0, -1.0
        torch.testing.assert_close(dense @ shape_mode, (g1 - g2) * shape_mode, rtol=0, atol=1e-6)


@pytest.mark.parametrize("n,g1,g2", TWO_NUMBER_CASES)
def test_two_number_apply_equals_dense_matmul(n, g1, g2):
    k = TwoNumber(n, g1, g2)
    g = torch.Generator().manual_seed(n)
    f = torch.randn(3, n, 4, generator=g)
    out = k.apply(f)
    assert out.shape == f.shape
    torch.testing.assert_close(out, k.dense() @ f, rtol=0, atol=1e-5 * max(1.0, n))
    # against a float64 hand-built K as well
    hand = (g1 - g2) * torch.eye(n, dtype=F64) + g2 * torch.ones(n, n, dtype=F64)
    torch.testing.assert_close(out.double(), hand @ f.double(), rtol=0, atol=1e-5 * max(1.0, n))


def test_two_number_apply_hand_example():
    k = TwoNumber(3, 2.0, 0.5)
    f = torch.tensor([[[1.0], [2.0], [4.0]]])  # (1, 3, 1)
    # row i: 2 f_i + 0.5 * (sum of the other two)
    expected = torch.tensor([[[2 + 0.5 * 6], [4 + 0.5 * 5], [8 + 0.5 * 3]]])
    torch.testing.assert_close(k.apply(f), expected)


def test_two_number_info():
    info = TwoNumber(4, 2.0, 0.5).info()
    assert info == pytest.approx({"g1": 2.0, "g2": 0.5, "ratio": 0.25})


def test_two_number_negative_g2_not_psd_raises():
    # g1 + (N - 1) g2 = 1 - 9 * 0.2 < 0
    with pytest.raises(C.ConfigError) as ei:
        TwoNumber(10, 1.0, -0.2)
    assert ei.value.field == "kernel.g2"
    # the same through the registry and a validated config
    cfg = C.TwoNumberKernel(name="two_number", g1=1.0, g2=-0.2)
    with pytest.raises(C.ConfigError) as ei:
        kernel_of(cfg, n=10, d=2)
    assert ei.value.field == "kernel.g2"
    # with fewer particles the same (g1, g2) is PSD
    assert isinstance(kernel_of(cfg, n=5, d=2), TwoNumber)


def test_two_number_boundary_singular_kernel_is_accepted():
    # g1 + (N-1) g2 = 0 exactly: PSD with a zero centre-of-mass eigenvalue
    k = TwoNumber(5, 1.0, -0.25)
    ev = torch.linalg.eigvalsh(k.dense().double())
    assert ev[0].item() == pytest.approx(0.0, abs=1e-6)
    assert k.eigenvalues()[0].item() == 0.0


def test_two_number_rejects_g2_above_g1():
    with pytest.raises(C.ConfigError):
        TwoNumber(4, 1.0, 2.0)  # eigenvalues 7 and -1 (x3): not PSD


# ============================================================================ analytic NTK: hand checks
@pytest.mark.parametrize("activation", ["relu", "erf"])
@pytest.mark.parametrize("sb", [0.0, 0.7])
def test_ntk_analytic_depth0_is_linear_kernel(activation, sb):
    rho = torch.tensor([-1.0, -0.3, 0.0, 0.5, 1.0], dtype=F64)
    out = ntk_analytic(rho, 0, activation, weight_var=1.9, bias_var=sb)
    torch.testing.assert_close(out, rho + sb, rtol=0, atol=1e-15)


@pytest.mark.parametrize("sw", [1.0, 2.0, 3.3])
@pytest.mark.parametrize("sb", [0.0, 0.4])
def test_ntk_analytic_relu_depth1_rho1_by_hand(sw, sb):
    # Sigma^0 = Sigma^0_xx = 1 + sb, phi_1 = 0:  Sigma^1 = sw/(2 pi) (1+sb) pi + sb = sw (1+sb)/2 + sb,
    # dSigma^1 = sw/2, Theta^1 = (1 + sb) sw/2 + sw (1+sb)/2 + sb = sw (1 + sb) + sb
    out = ntk_analytic(torch.tensor([1.0], dtype=F64), 1, "relu", sw, sb)
    assert out.item() == pytest.approx(sw * (1 + sb) + sb, rel=1e-12)


def test_ntk_analytic_relu_depth1_other_points_by_hand():
    # sb = 0, rho = 0: phi = pi/2, Sigma^1 = sw/(2 pi), Theta^1 = 0 * sw/4 + sw/(2 pi)
    assert ntk_analytic(torch.tensor(0.0, dtype=F64), 1, "relu", 2.0, 0.0).item() == pytest.approx(1 / math.pi, rel=1e-12)
    # sb = 0, rho = -1: phi = pi, Sigma^1 = 0, dSigma^1 = 0 -> Theta^1 = 0
    assert ntk_analytic(torch.tensor(-1.0, dtype=F64), 1, "relu", 2.0, 0.0).item() == pytest.approx(0.0, abs=1e-12)
    # sw = 2, sb = 1, rho = 0: cos phi = 1/2, phi = pi/3;
    # Sigma^1 = (2/2pi) * 2 * (sqrt3/2 + (2pi/3)(1/2)) + 1 = sqrt3/pi + 5/3; dSigma^1 = 2/3; Theta = 1 * 2/3 + Sigma^1
    out = ntk_analytic(torch.tensor(0.0, dtype=F64), 1, "relu", 2.0, 1.0).item()
    assert out == pytest.approx(7 / 3 + math.sqrt(3) / math.pi, rel=1e-12)


@pytest.mark.parametrize("depth", [0, 1, 2, 3, 4])
@pytest.mark.parametrize("sw", [1.3, 2.0, 3.0])
def test_ntk_analytic_relu_diagonal_closed_form(depth, sw):
    # sb = 0, rho = 1: Sigma^h_xx = (sw/2)^h, dSigma = sw/2  =>  Theta^L(1) = (L + 1) (sw/2)^L
    out = ntk_analytic(torch.tensor([1.0], dtype=F64), depth, "relu", sw, 0.0).item()
    # rel 1e-7, not 1e-12: at rho = 1 arccos(Sigma/Sigma_xx) of a ratio one ulp below 1 is ~1e-8, not 0
    assert out == pytest.approx((depth + 1) * (sw / 2) ** depth, rel=1e-7)


def test_ntk_analytic_erf_by_hand():
    sw = 1.7
    # depth 1, sb = 0, rho = 1: Sigma^0 = 1, den = 3:
    #   Sigma^1 = sw 2/pi asin(2/3), dSigma^1 = sw 4 / (pi sqrt(9 - 4))
    out = ntk_analytic(torch.tensor(1.0, dtype=F64), 1, "erf", sw, 0.0).item()
    assert out == pytest.approx(4 * sw / (math.pi * math.sqrt(5)) + 2 * sw / math.pi * math.asin(2 / 3), rel=1e-12)
    # erf is odd: with sb = 0 the kernel is odd in rho and vanishes at rho = 0 for every depth
    rho = torch.tensor([-0.8, -0.3, 0.0, 0.3, 0.8], dtype=F64)
    for depth in (1, 2, 3):
        t = ntk_analytic(rho, depth, "erf", sw, 0.0)
        assert t[2].item() == 0.0
        torch.testing.assert_close(t, -t.flip(0), rtol=0, atol=1e-14)


def test_ntk_g1_g2_and_shape_handling():
    for act in ("relu", "erf"):
        g1, g2 = ntk_g1_g2(2, act, 1.8, 0.3)
        assert g1 == pytest.approx(ntk_analytic(torch.tensor(1.0, dtype=F64), 2, act, 1.8, 0.3).item(), rel=1e-14)
        assert g2 == pytest.approx(ntk_analytic(torch.tensor(0.0, dtype=F64), 2, act, 1.8, 0.3).item(), rel=1e-14)
        assert 0 < g2 < g1
    assert ntk_g1_g2(1, "relu") == pytest.approx((2.0, 1 / math.pi), rel=1e-12)
    # elementwise on any shape, numpy input accepted
    rho = np.array([[1.0, 0.2], [0.2, 1.0]])
    out = ntk_analytic(rho, 2)
    assert out.shape == (2, 2) and out.dtype == F64
    assert out[0, 1].item() == pytest.approx(ntk_analytic(torch.tensor(0.2, dtype=F64), 2).item(), rel=1e-14)


def test_ntk_analytic_unknown_activation_raises():
    with pytest.raises(C.ConfigError) as ei:
        ntk_analytic(torch.tensor([0.5]), 1, activation="tanh")
    assert ei.value.field == "kernel.activation"


# ---------------------------------------------------------------- analytic NTK vs numerical quadrature
def _relu_moments(a: float, c: float) -> tuple[float, float]:
    """E[relu(u) relu(v)] and E[1(u>0) 1(v>0)] for (u, v) ~ N(0, [[a, c], [c, a]]) by polar quadrature.

    Write u = sqrt(a) r cos(t), v = sqrt(a) r cos(t - phi), cos(phi) = c / a, (r, t) the polar form of a
    standard 2-d normal. The radial integrals are closed (int r^3 e^{-r^2/2} = 2, int r e^{-r^2/2} = 1);
    the angular ones are done numerically.
    """
    phi = math.acos(min(1.0, max(-1.0, c / a)))
    kinks = [p for p in (-math.pi / 2, math.pi / 2, phi - math.pi / 2, phi + math.pi / 2) if -math.pi < p < math.pi]
    opts = dict(points=kinks, epsabs=1e-13, epsrel=1e-12, limit=200)
    pp = integrate.quad(lambda t: max(math.cos(t), 0.0) * max(math.cos(t - phi), 0.0), -math.pi, math.pi, **opts)[0]
    dd = integrate.quad(lambda t: float(math.cos(t) > 0 and math.cos(t - phi) > 0), -math.pi, math.pi, **opts)[0]
    return a / (2 * math.pi) * 2 * pp, dd / (2 * math.pi)


_GH_X, _GH_W = np.polynomial.hermite_e.hermegauss(120)  # weight exp(-x^2/2), sum(w) = sqrt(2 pi)


def _erf_moments(a: float, c: float) -> tuple[float, float]:
    """E[erf(u) erf(v)] and E[erf'(u) erf'(v)] for (u, v) ~ N(0, [[a, c], [c, a]]) by 2-d Gauss-Hermite."""
    r = min(1.0, max(-1.0, c / a))
    x, y = np.meshgrid(_GH_X, _GH_X, indexing="ij")
    w = np.outer(_GH_W, _GH_W) / (2 * math.pi)
    u = math.sqrt(a) * x
    v = math.sqrt(a) * (r * x + math.sqrt(1 - r * r) * y)
    derf = lambda s: 2 / math.sqrt(math.pi) * np.exp(-s * s)  # noqa: E731
    return float((w * special.erf(u) * special.erf(v)).sum()), float((w * derf(u) * derf(v)).sum())


def _ntk_by_quadrature(rho: float, depth: int, activation: str, sw: float, sb: float) -> float:
    moments = _relu_moments if activation == "relu" else _erf_moments
    sig, sxx = rho + sb, 1.0 + sb
    theta = sig
    for _ in range(depth):
        e_pp, e_dd = moments(sxx, sig)
        e_xx, _ = moments(sxx, sxx)
        sig, sxx = sw * e_pp + sb, sw * e_xx + sb
        theta = theta * sw * e_dd + sig
    return theta


@pytest.mark.parametrize("activation", ["relu", "erf"])
@pytest.mark.parametrize("depth,sw,sb", [(1, 2.0, 0.0), (2, 2.0, 0.3), (3, 1.3, 0.0), (2, 0.9, 1.2)])
def test_ntk_analytic_matches_gaussian_quadrature(activation, depth, sw, sb):
    rhos = np.concatenate([np.linspace(-1.0, 1.0, 17), [-0.999, -0.3, 0.999]])
    ref = np.array([_ntk_by_quadrature(float(r), depth, activation, sw, sb) for r in rhos])
    got = ntk_analytic(torch.tensor(rhos, dtype=F64), depth, activation, sw, sb).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-8, atol=1e-9 * np.abs(ref).max())


# ============================================================================ finite-width Monte Carlo
MC_RHOS = (0.0, 0.5, -0.3)


def _block_latents(dim: int) -> torch.Tensor:
    """``(4 * dim/2, dim)`` unit vectors in dim/2 mutually orthogonal planes. In plane p: x_p = e_{2p} and
    y_p(rho) = rho e_{2p} + sqrt(1 - rho^2) e_{2p+1} for rho in MC_RHOS, so x_p . y_p(rho) = rho exactly."""
    rows = []
    for p in range(dim // 2):
        x = torch.zeros(dim, dtype=F64)
        x[2 * p] = 1.0
        rows.append(x)
        for r in MC_RHOS:
            y = torch.zeros(dim, dtype=F64)
            y[2 * p], y[2 * p + 1] = r, math.sqrt(1 - r * r)
            rows.append(y)
    return torch.stack(rows)


def _block_estimates(k: torch.Tensor, dim: int) -> torch.Tensor:
    """From a kernel matrix on ``_block_latents(dim)``: [Theta(1), Theta(rho) for rho in MC_RHOS],
    each averaged over the planes (Theta(1) over all latents)."""
    nb = dim // 2
    est = [k.diagonal().mean()]
    for j in range(1, len(MC_RHOS) + 1):
        est.append(torch.stack([k[4 * p, 4 * p + j] for p in range(nb)]).mean())
    return torch.stack(est).double()


def _finite_ntk(m: NtkMlp, z: torch.Tensor, activation: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact output-averaged NTK of a finite ``NtkMlp`` by explicit back-propagation (no autograd):
    Theta_ij = (1/D) sum_a sum_l (delta^l_{ia} . delta^l_{ja}) (x^l_i . x^l_j + sb^2), x^l the scaled input
    of layer l and delta^l the derivative of output a w.r.t. layer l's pre-activation. Returns (K, output)."""
    with torch.no_grad():
        ws, bs = list(m.weights), list(m.biases)
        z = z.to(ws[0].dtype)
        phi = torch.relu if activation == "relu" else torch.erf
        if activation == "relu":
            dphi = lambda h: (h > 0).to(h.dtype)  # noqa: E731
        else:
            dphi = lambda h: 2 / math.sqrt(math.pi) * torch.exp(-h * h)  # noqa: E731
        xs, hs = [z], []
        h = z @ ws[0].T + m.sb * bs[0]
        for w, b in zip(ws[1:], bs[1:]):
            hs.append(h)
            x = m.sw / math.sqrt(w.shape[1]) * phi(h)
            xs.append(x)
            h = x @ w.T + m.sb * b
        n, d = h.shape
        delta = torch.eye(d, dtype=h.dtype).expand(n, d, d)  # (N, D outputs, units)
        k = torch.zeros(n, n, dtype=F64)
        for layer in range(len(ws) - 1, -1, -1):
            dd = torch.einsum("iak,jak->ij", delta, delta) / d
            k += (dd * (xs[layer] @ xs[layer].T + m.sb**2)).double()
            if layer > 0:
                scale = m.sw / math.sqrt(ws[layer].shape[1])
                delta = (delta @ ws[layer]) * scale * dphi(hs[layer - 1])[:, None, :]
        return k, h


def _autograd_ntk(module: nn.Module, z: torch.Tensor) -> torch.Tensor:
    """Output-averaged NTK from per-(latent, output) autograd gradients over all trainable parameters."""
    params = [p for p in module.parameters() if p.requires_grad]
    out = module(z)
    n, d = out.shape
    rows = []
    for i in range(n):
        for a in range(d):
            grads = torch.autograd.grad(out[i, a], params, retain_graph=True, allow_unused=True)
            rows.append(torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1) for g, p in zip(grads, params)]))
    jac = torch.stack(rows).reshape(n, d, -1)
    return torch.einsum("iap,jap->ij", jac, jac).detach() / d


@pytest.mark.parametrize("activation", ["relu", "erf"])
@pytest.mark.parametrize("depth", [1, 2, 3])
def test_finite_ntk_reference_matches_autograd(activation, depth):
    """Validates the explicit-backprop reference used by the Monte-Carlo test (and NtkMlp's forward)."""
    g = torch.Generator().manual_seed(depth)
    m = NtkMlp(4, 24, depth, out_dim=3, activation=activation, weight_var=1.7, bias_var=0.3, generator=g, dtype=F64)
    z = _block_latents(4)
    k, out = _finite_ntk(m, z, activation)
    torch.testing.assert_close(out, m(z).detach(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(k, _autograd_ntk(m, z), rtol=1e-10, atol=1e-12)


# (activation, weight_var, bias_var, depth); relative tolerance 2 % (ReLU) / 3 % (erf)
MC_CASES = [
    ("relu", 2.0, 0.0, 1),
    ("relu", 2.0, 0.2, 1),
    ("relu", 2.0, 0.0, 2),
    ("relu", 2.0, 0.2, 2),
    ("erf", 1.5, 0.0, 1),
    ("erf", 1.5, 0.2, 1),
    ("erf", 1.5, 0.0, 2),
    ("erf", 1.5, 0.2, 2),
]
MC_DIM, MC_OUT = 16, 2


def _mc_setup(depth, activation):
    """(width, number of networks). width x networks sets the noise. At width 2048, depth 2, one ReLU
    network scatters by up to ~4 % of max(|Theta(rho)|, Theta(1)/4) (erf: ~1.5 %), so 80 (erf: 40) networks
    bring the standard error to <= 0.45 %, i.e. the 2 % (3 %) tolerance is >= 4.5 standard errors; no
    finite-width bias was measurable at that level (widths 512-2048). Depth 1 is cheap, so it runs wider."""
    if depth == 1:
        return 16384, 16
    return 2048, (80 if activation == "relu" else 40)


def _mc_check(est: torch.Tensor, activation, sw, sb, depth):
    ana = ntk_analytic(torch.tensor((1.0,) + MC_RHOS, dtype=F64), depth, activation, sw, sb)
    rtol = 0.02 if activation == "relu" else 0.03
    # relative error of Theta(rho); for values much smaller than Theta(1) (e.g. erf with sb = 0 at rho = 0,
    # where Theta = 0, or ReLU at rho = -0.3) the error is measured against Theta(1)/4 instead
    scale = torch.maximum(ana.abs(), ana[0] / 4)
    rel = (est - ana).abs() / scale
    assert bool((rel <= rtol).all()), f"analytic {ana.tolist()}, Monte Carlo {est.tolist()}, rel err {rel.tolist()}"


@pytest.mark.parametrize("activation,sw,sb,depth", MC_CASES)
def test_ntk_analytic_matches_wide_network_monte_carlo(activation, sw, sb, depth):
    width, nets = _mc_setup(depth, activation)
    z = _block_latents(MC_DIM)
    gen = torch.Generator().manual_seed(1234 + depth)
    ests = []
    for _ in range(nets):
        m = NtkMlp(MC_DIM, width, depth, out_dim=MC_OUT, activation=activation, weight_var=sw, bias_var=sb, generator=gen)
        k, _ = _finite_ntk(m, z, activation)
        ests.append(_block_estimates(k, MC_DIM))
    _mc_check(torch.stack(ests).mean(0), activation, sw, sb, depth)


# Regression: NtkMlp.forward once sliced its ParameterLists (``self.weights[1:]``); under
# torch.func.functional_call (used by empirical_ntk) the slices held the original, unswapped parameters,
# so empirical_ntk(NtkMlp) saw only the first layer's gradients (about half the ReLU NTK, and exactly 0 at
# rho = 0 with sb = 0). Fixed in 7772480; these two tests pin it.
@pytest.mark.parametrize("depth", [1, 2])
def test_empirical_ntk_of_ntkmlp_matches_autograd(depth):
    g = torch.Generator().manual_seed(7)
    m = NtkMlp(4, 16, depth, out_dim=2, activation="relu", weight_var=2.0, bias_var=0.3, generator=g, dtype=F64)
    z = _block_latents(4)
    torch.testing.assert_close(empirical_ntk(m, z), _autograd_ntk(m, z), rtol=1e-10, atol=1e-12)


def test_empirical_ntk_of_wide_ntkmlp_matches_analytic():
    activation, sw, sb, depth = "relu", 2.0, 0.2, 1
    width, nets = _mc_setup(depth, activation)
    z = _block_latents(MC_DIM).float()
    gen = torch.Generator().manual_seed(99)
    ests = []
    for _ in range(nets):
        m = NtkMlp(MC_DIM, width, depth, out_dim=MC_OUT, activation=activation, weight_var=sw, bias_var=sb, generator=gen)
        ests.append(_block_estimates(empirical_ntk(m, z), MC_DIM))
    _mc_check(torch.stack(ests).mean(0), activation, sw, sb, depth)


# ============================================================================ empirical NTK vs finite differences
def _fd_jacobian(module: nn.Module, z: torch.Tensor, h: float = 1e-6) -> torch.Tensor:
    """``(N, d, P)`` central-difference Jacobian over the flattened trainable parameters."""
    params = [p for p in module.parameters() if p.requires_grad]
    theta0 = nn.utils.parameters_to_vector(params).detach().clone()
    cols = []
    with torch.no_grad():
        for p in range(theta0.numel()):
            e = torch.zeros_like(theta0)
            e[p] = h
            nn.utils.vector_to_parameters(theta0 + e, params)
            plus = module(z)
            nn.utils.vector_to_parameters(theta0 - e, params)
            minus = module(z)
            cols.append((plus - minus) / (2 * h))
        nn.utils.vector_to_parameters(theta0, params)
    return torch.stack(cols, dim=-1)


@pytest.mark.parametrize("freeze_first_bias", [False, True])
def test_empirical_ntk_matches_finite_difference_jacobian(freeze_first_bias):
    with torch.random.fork_rng():
        torch.manual_seed(3)
        module = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 2)).double()
        z = torch.randn(4, 3, dtype=F64)
    if freeze_first_bias:  # frozen parameters are not part of the NTK
        module[0].bias.requires_grad_(False)
    jac = _fd_jacobian(module, z)
    n_params = sum(p.numel() for p in module.parameters() if p.requires_grad)
    assert jac.shape == (4, 2, n_params)
    theta = torch.einsum("iap,jbp->ijab", jac, jac)

    full = empirical_ntk(module, z, full=True)
    assert full.shape == (4, 4, 2, 2)
    scale = theta.abs().max()
    torch.testing.assert_close(full, theta, rtol=0, atol=1e-6 * scale)

    avg = empirical_ntk(module, z)
    assert avg.shape == (4, 4)
    ref = theta.diagonal(dim1=2, dim2=3).mean(-1)
    torch.testing.assert_close(avg, ref, rtol=0, atol=1e-6 * scale)
    torch.testing.assert_close(avg, avg.T)
    assert torch.linalg.eigvalsh(avg).min() > -1e-10 * scale
    # the module's parameters are untouched and still trainable afterwards
    assert module[2].weight.requires_grad and module[2].weight.grad is None


def test_empirical_ntk_linear_model_closed_form():
    # G(z) = W z + b: dG^a/dW_{ck} = delta_{ac} z_k, dG^a/db_c = delta_{ac}  =>  Theta^{ab}_{ij} = delta_ab (z_i.z_j + 1)
    lin = nn.Linear(5, 3).double()
    z = sphere_latents(6, 5, seed=1)
    full = empirical_ntk(lin, z, full=True)
    expected = (z @ z.T + 1)[:, :, None, None] * torch.eye(3, dtype=F64)
    torch.testing.assert_close(full, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(empirical_ntk(lin, z), z @ z.T + 1, rtol=1e-12, atol=1e-12)


def test_empirical_ntk_kernel_through_registry():
    with torch.random.fork_rng():
        torch.manual_seed(0)
        module = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 2))
    cfg = C.EmpiricalNtkKernel(name="empirical_ntk", module="unused:factory", latent_dim=6, latent_seed=4)
    k = kernel_of(cfg, n=5, d=2, module=module)
    z = sphere_latents(5, 6, seed=4).float()
    torch.testing.assert_close(k.dense(), empirical_ntk(module, z).float(), rtol=1e-5, atol=1e-6)
    f = torch.randn(2, 5, 2, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(k.apply(f), k.dense() @ f)
    with pytest.raises(C.ConfigError) as ei:
        kernel_of(cfg, n=5, d=3, module=module)
    assert ei.value.field == "kernel.module"
    bad_dim = C.EmpiricalNtkKernel(name="empirical_ntk", module="unused:factory", latent_dim=4)
    with pytest.raises(C.ConfigError) as ei:
        kernel_of(bad_dim, n=5, d=2, module=module)
    assert ei.value.field == "kernel.latent_dim"


# ============================================================================ check_psd and the matrix kernel
def _matrix(values):
    return C.MatrixKernel(name="matrix", values=values)


@pytest.mark.parametrize(
    "values,n,why",
    [
        ([[1.0, 0.5], [0.0, 1.0]], 2, "not symmetric"),
        ([[1.0, 2.0], [2.0, 1.0]], 2, "not positive semi-definite"),  # eigenvalues 3, -1
        ([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], 4, "expected (4, 4)"),
        ([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], 2, "shape"),
        ([[1.0, float("nan")], [float("nan"), 1.0]], 2, "NaN"),
        ([[float("inf"), 0.0], [0.0, 1.0]], 2, "Inf"),
        ([[1.0, 0.0], [0.0]], 2, "same length"),
    ],
)
def test_matrix_kernel_rejects_bad_matrices(values, n, why):
    with pytest.raises(C.ConfigError) as ei:
        kernel_of(_matrix(values), n=n, d=1)
    assert ei.value.field == "kernel.values"
    assert why in str(ei.value)


def test_matrix_kernel_valid_psd_apply_equals_matmul():
    g = torch.Generator().manual_seed(5)
    a = torch.randn(6, 3, generator=g, dtype=F64)
    kmat = a @ a.T + 0.1 * torch.eye(6, dtype=F64)  # PSD, full rank
    k = kernel_of(_matrix(kmat.tolist()), n=6, d=2)
    assert isinstance(k, Dense)
    torch.testing.assert_close(k.dense().double(), kmat, rtol=1e-6, atol=1e-6)
    f = torch.randn(4, 6, 2, generator=g)
    out = k.apply(f)
    assert out.shape == (4, 6, 2)
    torch.testing.assert_close(out.double(), kmat @ f.double(), rtol=1e-5, atol=1e-5)
    info = k.info()
    off = kmat[~torch.eye(6, dtype=torch.bool)]
    assert info["diag_mean"] == pytest.approx(kmat.diagonal().mean().item(), rel=1e-6)
    assert info["offdiag_mean"] == pytest.approx(off.mean().item(), rel=1e-5, abs=1e-6)


def test_matrix_kernel_accepts_singular_psd():
    v = torch.tensor([1.0, -2.0, 0.5], dtype=F64)
    k = kernel_of(_matrix(torch.outer(v, v).tolist()), n=3, d=1)  # rank 1, eigenvalues 0, 0, 5.25
    torch.testing.assert_close(k.apply(torch.ones(1, 3, 1)).double(), torch.outer(v, v).sum(1).reshape(1, 3, 1))


def test_check_psd_direct():
    check_psd(torch.eye(3), "f")  # fine
    # round-off sized asymmetry / negative eigenvalue is tolerated (1e-6 relative)
    eps = torch.tensor([[1.0, 1e-9], [0.0, 1.0]], dtype=F64)
    check_psd(eps, "f")
    check_psd(torch.diag(torch.tensor([1.0, -1e-8], dtype=F64)), "f")
    # a clear negative eigenvalue is not, and the field is passed through
    with pytest.raises(C.ConfigError) as ei:
        check_psd(torch.diag(torch.tensor([1.0, -1e-3], dtype=F64)), "my.field")
    assert ei.value.field == "my.field"
    for bad in (torch.ones(3), torch.ones(2, 3), torch.ones(2, 2, 2)):
        with pytest.raises(C.ConfigError):
            check_psd(bad, "f")
    # Dense() goes through check_psd
    with pytest.raises(C.ConfigError) as ei:
        Dense(torch.tensor([[0.0, 1.0], [1.0, 0.0]]), "kernel.x")
    assert ei.value.field == "kernel.x"


# ============================================================================ the ntk kernel (registry)
def test_sphere_latents():
    z = sphere_latents(50, 7, seed=3)
    assert z.shape == (50, 7) and z.dtype == F64
    torch.testing.assert_close(z.norm(dim=1), torch.ones(50, dtype=F64))
    torch.testing.assert_close(z, sphere_latents(50, 7, seed=3), rtol=0, atol=0)
    assert not torch.allclose(z, sphere_latents(50, 7, seed=4))
    # cosines of independent uniform points on S^{d-1}: mean 0, variance 1/d
    zz = sphere_latents(400, 50, seed=0)
    cos = (zz @ zz.T)[~torch.eye(400, dtype=torch.bool)]
    assert abs(cos.mean().item()) < 0.01
    assert cos.var().item() == pytest.approx(1 / 50, rel=0.05)


def test_ntk_kernel_built_from_config():
    cfg = C.NtkKernel(name="ntk", depth=2, latent_dim=200)
    k = kernel_of(cfg, n=32, d=1)
    dense = k.dense()
    assert dense.shape == (32, 32)
    torch.testing.assert_close(dense, dense.T, rtol=0, atol=0)
    ev = torch.linalg.eigvalsh(dense.double())
    assert ev.min().item() > -1e-6 * ev.max().item()

    g1, g2 = ntk_g1_g2(2, "relu", 2.0, 0.0)
    assert g1 == pytest.approx(3.0, rel=1e-12)  # (L + 1) (sw/2)^L for ReLU, sw = 2, sb = 0
    assert (k.g1, k.g2) == (g1, g2)
    assert k.info()["ratio"] == pytest.approx(g2 / g1)
    # latents on the unit sphere: every diagonal entry is Theta(1) = g1 (float32 storage)
    torch.testing.assert_close(dense.diagonal().double(), torch.full((32,), g1, dtype=F64), rtol=1e-6, atol=0)
    # the entries are Theta(z_i . z_j) at the seeded latents
    z = sphere_latents(32, 200, cfg.latent_seed)
    torch.testing.assert_close(dense.double(), ntk_analytic(z @ z.T, 2), rtol=1e-6, atol=1e-6)
    # apply is the dense product
    f = torch.randn(3, 32, 1, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(k.apply(f), dense @ f)


def test_ntk_kernel_options_are_used():
    cfg = C.NtkKernel(name="ntk", depth=3, activation="erf", weight_var=1.3, bias_var=0.4, latent_dim=30, latent_seed=9)
    k = kernel_of(cfg, n=10, d=2)
    z = sphere_latents(10, 30, 9)
    torch.testing.assert_close(k.dense().double(), ntk_analytic(z @ z.T, 3, "erf", 1.3, 0.4), rtol=1e-6, atol=1e-6)
    assert (k.g1, k.g2) == ntk_g1_g2(3, "erf", 1.3, 0.4)


def test_ntk_kernel_universality_two_number_limit():
    """Off-diagonal entries concentrate on g2 as latent_dim grows (cosines are O(latent_dim^-1/2))."""
    n = 32
    g1, g2 = ntk_g1_g2(2)
    offmask = ~torch.eye(n, dtype=torch.bool)
    dev = {}
    for dim in (20, 2000):
        dense = kernel_of(C.NtkKernel(name="ntk", depth=2, latent_dim=dim), n=n, d=1).dense().double()
        dev[dim] = (dense[offmask] - g2).abs().mean().item()
    assert dev[2000] < 0.2 * dev[20]  # expected ratio ~ sqrt(20/2000) = 0.1
    assert dev[2000] < 0.02 * g1

    # quantitatively: at dim = 2000, Theta(rho) - g2 ~ Theta'(0) rho, so mean |.| ~ |Theta'(0)| mean |rho|
    z = sphere_latents(n, 2000, 0)
    mean_abs_rho = (z @ z.T)[offmask].abs().mean().item()
    h = 1e-5
    slope = (ntk_analytic(torch.tensor(h, dtype=F64), 2) - ntk_analytic(torch.tensor(-h, dtype=F64), 2)).item() / (2 * h)
    assert dev[2000] == pytest.approx(abs(slope) * mean_abs_rho, rel=0.1)
    # and the kernel is then close to the two-number kernel in operator norm (relative to g1)
    dense = kernel_of(C.NtkKernel(name="ntk", depth=2, latent_dim=2000), n=n, d=1).dense().double()
    two = TwoNumber(n, g1, g2).dense().double()
    assert torch.linalg.matrix_norm(dense - two, ord=2).item() < 0.1 * g1
