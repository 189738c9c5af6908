"""Order parameters of a particle cloud ``x: (B, N, d)`` against a target (docs/model.md, "Mode collapse").

Every function returns one value per member, ``(B,)`` (the histogram ``(B, K)``). Members whose
particles are not finite get NaN, never a number averaged from garbage.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch

from gandy.core.lazy import LazyModule

ot = LazyModule("ot")  # POT imports scikit-learn: 1.4-2 s of start-up, paid on the first exact W1

ORDER_PARAMETERS = ("coverage_kl", "modes_covered", "on_mode", "mean_dist", "com_error", "mean_abs_cos", "w1",
                    "displacement", "mean_norm")
ORDER_PARAMETER_DOCS = {
    "coverage_kl": "KL(p || uniform) of the particles' nearest-mode histogram p (modes assigned by the "
                   "target's rule, euclidean or cosine): 0 when every mode holds an equal share, log K "
                   "when all particles sit at one mode",
    "modes_covered": "number of modes with at least one particle within the target's cover radius (Euclidean "
                     "distance, or cosine distance 1 - cos under cosine assignment)",
    "on_mode": "fraction of particles within the cover radius of their nearest mode",
    "mean_dist": "mean Euclidean distance from a particle to its nearest mode",
    "com_error": "|mean of the particles - mean of the target| (centre-of-mass error, Euclidean)",
    "mean_abs_cos": "mean |cos(x_i, x_j)| over pairs of distinct particles (at most metrics.max_points)",
    "w1": "exact W1 (optimal transport: POT's network simplex; in 1-D the sorted quantile functions) between the "
          "particles and a fresh target sample, at most metrics.max_points points each (with divergences tracked: "
          "from their pooled distance matrix)",
    "displacement": "mean over particles of |x_i(t) - x_i(0)|: how far the cloud has moved since the start "
                    "(the stalled phase's test)",
    "mean_norm": "mean over particles of |x_i| (in 784-D, standardised pixels: ten digits of each class have norm "
                 "27.3 on average, the first 100 of the class-sorted sample (all zeros) 31.6)",
    "force_norm": "mean over particles (or a network generator's batch) of |F_j| = |grad_x l_G(f(x_j))|, the last "
                  "step's force before the kernel or the generator's Jacobian acts (NaN at step 0; for mm it vanishes "
                  "where the critic saturates)",
}
"""What each order parameter measures, for reports and docs (one line each)."""


def nearest_mode(x: torch.Tensor, modes: torch.Tensor, assign: str = "euclidean"):
    """Each particle's nearest mode ``idx: (B, N)``, its Euclidean distance ``dist: (B, N)`` and its
    gap ``(B, N)`` in the assignment's own metric, which the cover radius is measured in: the
    Euclidean distance again, or under ``assign='cosine'`` the cosine distance 1 - cos(x, mode) to
    the mode of largest cosine similarity (docs/model.md: the 784-D experiment assigns by cosine).
    """
    m = modes.to(x.dtype)
    if assign == "cosine":
        xn = x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        mn = m / m.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        cos, idx = (xn @ mn.T).max(-1)
        dist = (x - m[idx]).norm(dim=-1)
        return idx, dist, 1.0 - cos
    d2 = (x * x).sum(-1, keepdim=True) - 2 * x @ m.T + (m * m).sum(-1)
    dist2, idx = d2.min(-1)
    dist = dist2.clamp_min(0).sqrt()
    return idx, dist, dist


def cover_radius(modes: torch.Tensor, assign: str = "euclidean") -> float:
    """Half the median distance from a mode to its nearest other mode, in the assignment's metric
    (Euclidean, or cosine distance 1 - cos): a particle closer than this to its mode is on it."""
    m = modes.double()
    if assign == "cosine":
        mn = m / m.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        d = 1.0 - mn @ mn.T
    else:
        d = torch.cdist(m, m)
    d = d + torch.eye(m.shape[0], dtype=m.dtype, device=m.device) * 1e30
    return 0.5 * float(d.min(1).values.median())


def mode_histogram(idx: torch.Tensor, k: int) -> torch.Tensor:
    """Fraction of particles per mode, ``(B, K)``."""
    b, n = idx.shape
    h = torch.zeros(b, k, dtype=torch.float64, device=idx.device)
    h.scatter_add_(1, idx, torch.ones(b, n, dtype=torch.float64, device=idx.device))
    return h / n


def coverage_kl(p: torch.Tensor) -> torch.Tensor:
    """KL(p || uniform) = log K + sum_k p_k log p_k: 0 for equal coverage, log K for one mode."""
    k = p.shape[-1]
    plogp = torch.where(p > 0, p * torch.log(p.clamp_min(1e-300)), torch.zeros_like(p))
    return math.log(k) + plogp.sum(-1)


def mean_abs_cos(x: torch.Tensor) -> torch.Tensor:
    """Mean |cos(x_i, x_j)| over pairs i != j, ``(B,)``."""
    n = x.shape[1]
    if n < 2:
        return torch.full((x.shape[0],), float("nan"), device=x.device)
    xn = x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    c = (xn @ xn.transpose(1, 2)).abs()
    return (c.sum((1, 2)) - c.diagonal(dim1=1, dim2=2).sum(-1)) / (n * (n - 1))


def w1_exact(x: np.ndarray, y: np.ndarray) -> float:
    """Exact W1 between two uniform empirical measures ``x: (n, d)``, ``y: (m, d)`` (POT's EMD)."""
    return w1_from_cost(ot.dist(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64), metric="euclidean"))


def w1_sorted_1d(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Exact W1 between uniform empirical measures on the line, for a batch: ``x: (B, n)``,
    ``y: (B, m)`` -> ``(B,)``. W1 = int_0^1 |F^-1(u) - G^-1(u)| du; both quantile functions are
    steps, constant between consecutive points of {i/n} U {j/m}, so the integral is a sum over
    those n + m intervals: O((n + m) log(n + m)), the same number as the optimal transport (POT's
    EMD, scipy's wasserstein_distance) to rounding."""
    x, y = np.sort(np.asarray(x, np.float64), -1), np.sort(np.asarray(y, np.float64), -1)
    n, m = x.shape[-1], y.shape[-1]
    u = np.unique(np.concatenate([np.arange(1, n + 1) / n, np.arange(1, m + 1) / m]))
    width = np.diff(u, prepend=0.0)
    mid = u - width / 2
    i = np.minimum((mid * n).astype(np.int64), n - 1)
    j = np.minimum((mid * m).astype(np.int64), m - 1)
    return (np.abs(x[..., i] - y[..., j]) * width).sum(-1)


def w1_from_cost(cost) -> float:
    """Exact W1 between two uniform empirical measures from their ``(n, m)`` distance matrix."""
    cost = np.ascontiguousarray(np.asarray(cost, dtype=np.float64))
    n, m = cost.shape
    # uniform weights: both sum to one by construction, so POT's check of the marginals is skipped
    return float(ot.emd2(np.full(n, 1 / n), np.full(m, 1 / m), cost, numItermax=1_000_000, check_marginals=False))


def order_parameters(x: torch.Tensor, target, reference: Optional[torch.Tensor], max_points: int = 1024,
                     start: Optional[torch.Tensor] = None) -> dict:
    """All order parameters of ``x: (B, N, d)``.

    ``reference: (B, M, d)`` target samples for W1 (None skips W1); ``start: (B, N, d)`` the
    particles at step 0, for ``displacement`` (None: NaN). The O(N^2) metrics
    (``mean_abs_cos``, ``w1``) use at most ``max_points`` particles and reference points.
    Returns a dict of ``(B,)`` float64 tensors on the CPU, plus ``mode_hist: (B, K)`` when the
    target has modes.
    """
    x = x.detach()
    b = x.shape[0]
    finite = torch.isfinite(x).all(-1).all(-1)  # (B,)
    xs = torch.where(finite[:, None, None], x, torch.zeros_like(x))
    out: dict[str, torch.Tensor] = {}
    nan = torch.full((b,), float("nan"), dtype=torch.float64)
    if target.modes is not None:
        idx, dist, gap = nearest_mode(xs, target.modes, target.assign)
        k = target.modes.shape[0]
        p = mode_histogram(idx, k)
        near = gap <= target.cover_radius
        covered = mode_histogram(torch.where(near, idx, torch.full_like(idx, k)), k + 1)[:, :k] > 0
        out["coverage_kl"] = coverage_kl(p)
        out["modes_covered"] = covered.sum(-1).double()
        out["on_mode"] = near.double().mean(-1)
        out["mean_dist"] = dist.double().mean(-1)
        out["mode_hist"] = p
    else:
        for key in ("coverage_kl", "modes_covered", "on_mode", "mean_dist"):
            out[key] = nan.clone()
    out["com_error"] = (xs.mean(1) - target.mean.to(x.dtype)).norm(dim=-1).double()
    out["mean_abs_cos"] = mean_abs_cos(xs[:, :max_points]).double()
    out["mean_norm"] = xs.norm(dim=-1).mean(-1).double()
    out["displacement"] = nan.clone() if start is None else (xs - start.to(xs)).norm(dim=-1).mean(-1).double()
    if reference is not None:
        xa = xs[:, :max_points].cpu().numpy()
        ya = reference[:, :max_points].detach().cpu().numpy()
        if xa.shape[-1] == 1:  # on the line: sorted quantiles, exact and batched
            out["w1"] = torch.from_numpy(w1_sorted_1d(xa[..., 0], ya[..., 0]))
        else:
            out["w1"] = torch.tensor([w1_exact(xa[i], ya[i]) for i in range(b)], dtype=torch.float64)
    else:
        out["w1"] = nan.clone()
    for key, v in out.items():
        v = v.cpu()
        mask = ~finite.cpu()
        out[key] = torch.where(mask.view(-1, *([1] * (v.ndim - 1))), torch.full_like(v, float("nan")), v)
    return out
