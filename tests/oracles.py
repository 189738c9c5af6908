"""Test oracles for the divergence estimators (tests/test_divergences.py; benchmarks/divergence_bias.py
imports ``density_divergences`` from here): the Gaussian KL in closed form (``gaussian_kl``), a 1-D
JS by quadrature (``js_of_densities_1d``), the k-NN estimates alone (``knn_divergences``,
``knn_kl``), JS and both KL with P's density known (``density_divergences``), a direct squared MMD
(``mmd2``) and every divergence of two samples in one call (``divergences``). None of them runs in
gandy itself: :mod:`gandy.core.metrics.divergences` holds what the loop logs."""

from __future__ import annotations

import math
from typing import Callable, Optional

import numpy as np
import torch

from gandy.core.metrics.divergences import (
    LOG2,
    _median_distance,
    _se,
    _t,
    density_kl_qp,
    knn_log_density,
    sample_divergences,
    sliced_w1,
    w1,
)


def gaussian_kl(mu_p, cov_p, mu_q, cov_q) -> float:
    """KL(N(mu_p, cov_p) || N(mu_q, cov_q)) in any dimension (covariances as matrices)."""
    mu_p, mu_q = np.atleast_1d(mu_p).astype(float), np.atleast_1d(mu_q).astype(float)
    cp, cq = np.atleast_2d(cov_p).astype(float), np.atleast_2d(cov_q).astype(float)
    k = len(mu_p)
    iq = np.linalg.inv(cq)
    dm = mu_q - mu_p
    return 0.5 * (np.trace(iq @ cp) + dm @ iq @ dm - k + np.log(np.linalg.det(cq) / np.linalg.det(cp)))


def js_of_densities_1d(logp, logq, lo: float, hi: float, n: int = 200001) -> float:
    """JS of two 1-D laws with known log-densities, by trapezoid quadrature on [lo, hi]."""
    x = torch.linspace(lo, hi, n, dtype=torch.float64)
    lp, lq = logp(x), logq(x)
    lm = torch.logaddexp(lp, lq) - LOG2
    f = 0.5 * (lp.exp() * (lp - lm) + lq.exp() * (lq - lm))
    return float(torch.trapezoid(torch.nan_to_num(f), x))


def knn_divergences(p, q, k: int = 5, chunk: int = 2048) -> dict:
    """JS, KL(P||Q), KL(Q||P) (and their standard errors) of two samples ``p: (n, d)``, ``q: (m, d)``
    by k-nearest neighbours: :func:`gandy.core.metrics.divergences.sample_divergences` without the
    MMD (its docstring gives the estimators)."""
    return sample_divergences(p, q, k, chunk, mmd=False)


def density_divergences(p, q, log_p_p, log_p_q, k: int = 5) -> dict:
    """JS, KL(P||Q), KL(Q||P) and their standard errors when P's log-density is known.

    ``p: (n, d)`` a sample of P, ``q: (m, d)`` one of Q, ``log_p_p: (n,)`` and ``log_p_q: (m,)``
    the exact log p at them. Only log q is estimated (:func:`knn_log_density`, at P's points from
    all of Q, at Q's own points from the other m - 1):
    KL(Q||P) = E_Q[log q - log p] (the first term is minus the Kozachenko-Leonenko entropy),
    KL(P||Q) = E_P[log p - log q], JS = (E_P[log 2p/(p+q)] + E_Q[log 2q/(p+q)]) / 2 (clipped to
    [0, log 2]). KL(Q||P) and its standard error are the lab's :func:`density_kl_qp` (half-sampling);
    the others' standard errors are those of the mean of the per-point terms (too small: they
    ignore the dependence between radii; only these two's bias is used, by the benchmark).
    """
    p, q, lp_p, lp_q = _t(p), _t(q), _t(log_p_p), _t(log_p_q)
    lq_p, lq_q = knn_log_density(p, q, k), knn_log_density(q, q, k, own=True)
    kl_pq = lp_p - lq_p
    tp = LOG2 + lp_p - torch.logaddexp(lp_p, lq_p)
    tq = LOG2 + lq_q - torch.logaddexp(lp_q, lq_q)
    js = float(0.5 * tp.mean() + 0.5 * tq.mean())
    kl_qp, kl_qp_se = density_kl_qp(q, lp_q, k)
    return {"js": min(max(js, 0.0), LOG2), "js_se": 0.5 * math.hypot(_se(tp), _se(tq)),
            "kl_pq": float(kl_pq.mean()), "kl_pq_se": _se(kl_pq), "kl_qp": kl_qp, "kl_qp_se": kl_qp_se}


def knn_kl(p, q, k: int = 5) -> float:
    """KL(P||Q) alone by the k-NN estimator of :func:`knn_divergences`."""
    return knn_divergences(p, q, k)["kl_pq"]


def mmd2(p, q, bandwidth: Optional[float] = None) -> tuple[float, float]:
    """Unbiased squared MMD with a Gaussian kernel; returns (value, bandwidth used). Default
    bandwidth: the median pairwise distance of the pooled sample (:func:`_median_distance`)."""
    p, q = _t(p), _t(q)
    if bandwidth is None:
        bandwidth = _median_distance(torch.cat([p, q]))

    def k(a, b):
        return torch.exp(-torch.cdist(a, b) ** 2 / (2 * bandwidth**2))

    n, m = len(p), len(q)
    kpp, kqq, kpq = k(p, p), k(q, q), k(p, q)
    val = (kpp.sum() - kpp.diagonal().sum()) / (n * (n - 1)) + (kqq.sum() - kqq.diagonal().sum()) / (m * (m - 1)) - 2 * kpq.mean()
    return float(val), bandwidth


def divergences(p, q, exact: Optional[dict] = None, log_density: Optional[Callable] = None) -> dict:
    """Every divergence of two samples (``p`` of the target P, ``q`` generated), each as
    {"value", "method"} and, for estimates, "se"; ``exact`` values (from a closed form of the two
    laws) take precedence over estimates; ``log_density``: P's exact log-density (tensor in, tensor
    out), used for KL(Q||P) (:func:`density_divergences`; the other two gain nothing from it at
    these sizes: docs/lab.md). ``sw1`` (sliced W1) is added above 10 dimensions."""
    p, q = np.asarray(p, float), np.asarray(q, float)
    out = {}
    if exact:
        for key, v in exact.items():
            out[key] = {"value": v, "method": "exact:closed_form"}
    pooled = sample_divergences(p, q)
    for key in ("js", "kl_pq", "kl_qp"):
        out.setdefault(key, {"value": pooled[key], "method": "estimate:knn", "se": pooled[f"{key}_se"]})
    if log_density is not None and "kl_qp" not in (exact or {}):  # the one estimate the density improves
        v, se = density_kl_qp(q, log_density(_t(q)))
        out["kl_qp"] = {"value": v, "method": "estimate:knn+density", "se": se}
    v, method = w1(p, q)
    out["w1"] = {"value": v, "method": method}
    if p.shape[1] > 10:
        v, method = sliced_w1(p, q)
        out["sw1"] = {"value": v, "method": method}
    out["mmd"] = {"value": pooled["mmd"], "method": f"estimate:mmd_unbiased(bandwidth={pooled['mmd_bandwidth']:.4g})",
                  "se": pooled["mmd_se"]}
    return out

