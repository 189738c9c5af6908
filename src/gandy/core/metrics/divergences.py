"""Divergences between a target P and a generated Q: JS, KL(P||Q), KL(Q||P), W1 and MMD.

Each function returns ``(value, method)``; ``method`` names how the number was obtained and
whether it is exact, so that it can be recorded beside the number:

* ``exact:*``: closed forms where both laws are known (two uniform segments, two Gaussians), or
  a quadrature of known densities (``exact:quadrature``, error far below estimation error).
* ``estimate:knn+density``: where the target's log-density is known (every Gaussian-mixture
  target), KL(Q||P) = E_Q[log q - log p] uses it exactly at the generated points, and only log q is
  estimated, by the bias-corrected k-NN density (Kozachenko & Leonenko 1987: the digamma terms make
  its log unbiased for a locally uniform law); :func:`density_divergences`. The same construction
  for JS and KL(P||Q) was measured and is no better than the two-sample one at the logged sizes
  (benchmarks/divergence_bias.py, docs/lab.md), so those stay two-sample.
* ``estimate:knn``: JS, KL(P||Q) and KL(Q||P) in any dimension from k-nearest-neighbour radii
  (Wang, Kulkarni & Verdu 2009; JS as the mean KL of each law to the pooled sample), one pass of
  distance blocks for all three.
* Every estimate comes with a standard error (``*_se``): the standard deviation of its per-point
  terms over the square root of their number (the delta method for the MMD's U-statistic). It
  ignores the dependence between neighbouring points' radii; docs/lab.md gives its measured
  coverage beside the bias. Kernel density plug-ins with one global bandwidth were tried and
  rejected: on 2-D Gaussians at 256 points they were biased by -17 % (Silverman's bandwidth) to
  -177 % (half of it), and a global bandwidth smooths multimodal targets such as ring8 away.
* ``exact:emd``: W1 by exact optimal transport (POT) in every dimension (a few ms for a few hundred
  points); ``estimate:sliced`` is a different quantity, the sliced W1 (mean over random directions
  of the exact 1-D W1 of the projections), reported separately as ``sw1``.
* ``estimate:mmd_unbiased``: squared MMD with a Gaussian kernel (median-distance bandwidth).

Samples are ``(n, d)`` arrays or tensors (one member); all arithmetic is float64.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch

from gandy.core.metrics.order import w1_exact, w1_from_cost
from gandy.core.nets.features import Affine
from gandy.core.targets import Embedded
from gandy.core.targets import Segment as SegmentTarget

LOG2 = math.log(2.0)


def _t(x) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x), dtype=torch.float64)


# ----------------------------------------------------------------------------- exact laws
@dataclass(frozen=True)
class Segment:
    """Uniform law on the segment from ``a`` to ``b`` in R^d."""

    a: tuple
    b: tuple

    @property
    def length(self) -> float:
        return float(np.linalg.norm(np.subtract(self.b, self.a)))


def _collinear_overlap(p: Segment, q: Segment, tol: float = 1e-12) -> float:
    """Length of the overlap of two segments on one line (0 if they are not on one line)."""
    a, b = np.asarray(p.a, float), np.asarray(p.b, float)
    u = (b - a) / p.length
    for point in (q.a, q.b):
        r = np.asarray(point, float) - a
        if np.linalg.norm(r - (r @ u) * u) > tol * max(1.0, p.length):
            return 0.0
    s = sorted([(np.asarray(q.a, float) - a) @ u, (np.asarray(q.b, float) - a) @ u])
    return max(0.0, min(p.length, s[1]) - max(0.0, s[0]))


def segments_divergences(p: Segment, q: Segment) -> dict:
    """JS, KL(P||Q), KL(Q||P) of two uniform segments (1-D laws inside R^d), in closed form.

    Disjoint supports, or supports meeting in a set of zero length: JS = log 2, both KL = inf.
    Collinear with overlap o: densities 1/Lp and 1/Lq on the overlap, each law alone elsewhere.
    """
    lp, lq = p.length, q.length
    o = _collinear_overlap(p, q)
    if o <= 0:
        return {"js": LOG2, "kl_pq": math.inf, "kl_qp": math.inf}
    fp, fq = 1 / lp, 1 / lq
    m = 0.5 * (fp + fq)
    # on the overlap both densities are present; elsewhere each law alone contributes log 2
    js = 0.5 * (o * fp * math.log(fp / m) + (1 - o * fp) * LOG2) + 0.5 * (o * fq * math.log(fq / m) + (1 - o * fq) * LOG2)
    kl_pq = math.inf if o < lp - 1e-12 else math.log(fp / fq)
    kl_qp = math.inf if o < lq - 1e-12 else math.log(fq / fp)
    return {"js": js, "kl_pq": kl_pq, "kl_qp": kl_qp}


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


# ----------------------------------------------------------------------------- estimators
def _pooled_blocks(z: torch.Tensor, chunk: int = 2048):
    """Distances from rows ``i:i + chunk`` of ``z: (n, d)`` to all of ``z`` (self-distance inf),
    as ``(i, block)`` pairs; one block when ``n <= chunk``."""
    for i in range(0, len(z), chunk):
        blk = torch.cdist(z[i:i + chunk], z)
        idx = torch.arange(i, min(i + chunk, len(z)), device=z.device)
        blk[idx - i, idx] = math.inf
        yield i, blk


def _median_distance(z: torch.Tensor, max_points: int = 256) -> float:
    """The median pairwise distance of ``z: (n, d)`` (the MMD bandwidth heuristic), over every
    ``ceil(n / max_points)``-th point so that its cost stays bounded."""
    step = -(-len(z) // max_points)
    return max(float(np.median(torch.pdist(z[::step]).cpu().numpy())), 1e-12)


KNN_KEYS = ("js", "js_se", "kl_pq", "kl_pq_se", "kl_qp", "kl_qp_se")


def _se(terms: torch.Tensor) -> float:
    """Standard error of the mean of ``terms: (n,)`` (sample standard deviation / sqrt(n))."""
    return float(terms.std() / math.sqrt(len(terms))) if len(terms) > 1 else math.nan


def _kth(d: torch.Tensor, k: int) -> torch.Tensor:
    """k-th smallest entry of each row (topk: about ten times faster than kthvalue on CPU)."""
    return d.topk(k, 1, largest=False).values[:, -1]


def knn_divergences(p, q, k: int = 5, chunk: int = 2048) -> dict:
    """JS, KL(P||Q), KL(Q||P) of two samples ``p: (n, d)``, ``q: (m, d)`` by k-nearest neighbours.

    KL(P||Q) is the estimator of Wang, Kulkarni & Verdu (2009): with rho_k the distance from p_i to
    its k-th neighbour among the other p and nu_k to its k-th neighbour among q,
    ``d/n sum log(nu_k / rho_k) + log(m / (n - 1))``. JS = (KL(P||M) + KL(Q||M)) / 2 with the same
    estimator against the pooled sample, which is a sample of the mixture M = (P + Q)/2 when both
    samples have one size (the larger is cut to the smaller for JS); clipped to [0, log 2]. Unlike
    kernel density plug-ins with one global bandwidth, the k-NN radii adapt to the local scale, so
    multimodal targets (ring8, grid25) are not smoothed away (docs/lab.md has the comparison).
    All radii come from one pass over blocks of the pooled distance matrix.
    """
    return sample_divergences(p, q, k, chunk, mmd=False)


def sample_divergences(p, q, k: int = 5, chunk: int = 2048, mmd: bool = True) -> dict:
    """``js``, ``kl_pq``, ``kl_qp`` (:func:`knn_divergences`) and, with ``mmd``, the unbiased squared
    MMD (:func:`mmd2`, median bandwidth), from one pass over the pooled distance matrix; plus
    ``cross``, the ``(n, m)`` distances between the samples when they fit in one block (else None)
    for an exact W1 without a second distance computation."""
    p, q = _t(p), _t(q)
    (n, d), m = p.shape, len(q)
    z = torch.cat([p, q])
    if mmd:
        bw = _median_distance(z)
        ksum = torch.zeros(2, 2, dtype=torch.float64)  # kernel sums over (p|q rows) x (p|q columns)
        rowsum = [[[], []], [[], []]]  # the same per row, for the standard error
    own, other, pool, cross = [], [], [], None
    for i, blk in _pooled_blocks(z, chunk):
        if n + m <= chunk:
            cross = blk[:n, n:]
        cut = min(max(n - i, 0), len(blk))  # rows [0, cut) of the block are p's, the rest q's
        for rows, (a, b) in ((blk[:cut], (slice(0, n), slice(n, None))), (blk[cut:], (slice(n, None), slice(0, n)))):
            if len(rows):
                own.append(_kth(rows[:, a], k))
                other.append(_kth(rows[:, b], k))
                pool.append(_kth(rows, k))
        if mmd:
            kern = torch.exp(blk.square().mul_(-0.5 / bw**2))  # the inf diagonal contributes exp(-inf) = 0
            for r, rows in enumerate((kern[:cut], kern[cut:])):
                for c, cols in enumerate((rows[:, :n].sum(1), rows[:, n:].sum(1))):
                    ksum[r, c] += cols.sum()
                    rowsum[r][c].append(cols)
    own, other, pool = (torch.cat(v).clamp_min(1e-300) for v in (own, other, pool))
    lr = d * torch.log(other / own)
    out = {"kl_pq": float(lr[:n].mean() + math.log(m / (n - 1))), "kl_pq_se": _se(lr[:n]),
           "kl_qp": float(lr[n:].mean() + math.log(n / (m - 1))), "kl_qp_se": _se(lr[n:])}
    if n == m:
        corr = math.log((2 * n - 1) / (n - 1))
        tp, tq = d * torch.log(pool[:n] / own[:n]), d * torch.log(pool[n:] / own[n:])
        js, js_se = float(0.5 * tp.mean() + 0.5 * tq.mean() + corr), 0.5 * math.hypot(_se(tp), _se(tq))
    else:  # the pooled sample must weigh both laws equally
        s = min(n, m)
        cut = sample_divergences(p[:s], q[:s], k, chunk, mmd=False)
        js, js_se = cut["js"], cut["js_se"]
    out["js"], out["js_se"] = min(max(js, 0.0), LOG2), js_se
    if mmd:
        out["mmd"] = float(ksum[0, 0] / (n * (n - 1)) + ksum[1, 1] / (m * (m - 1)) - 2 * ksum[0, 1] / (n * m))
        # delta method for the U-statistic: each point's influence is twice its mean kernel to its
        # own sample minus its mean kernel to the other sample
        hp = 2 * (torch.cat(rowsum[0][0]) / (n - 1) - torch.cat(rowsum[0][1]) / m)
        hq = 2 * (torch.cat(rowsum[1][1]) / (m - 1) - torch.cat(rowsum[1][0]) / n)
        out["mmd_se"] = math.hypot(_se(hp), _se(hq))
        out["mmd_bandwidth"] = bw
    out["cross"] = cross
    return out if mmd else {key: out[key] for key in KNN_KEYS}


def log_ball_volume(d: int) -> float:
    """log of the volume of the unit ball in R^d."""
    return 0.5 * d * math.log(math.pi) - math.lgamma(0.5 * d + 1)


def knn_log_density(at: torch.Tensor, sample: torch.Tensor, k: int = 5, own: bool = False) -> torch.Tensor:
    """Bias-corrected k-NN estimate of log q at ``at: (r, d)`` from ``sample: (m, d)`` of Q.

    The Q-mass u of the ball reaching the k-th of m neighbours is Beta(k, m - k + 1), so
    E log u = psi(k) - psi(m + 1) and ``log q = psi(k) - psi(m + 1) - log V_d - d log r_k`` is
    unbiased where q is flat on the ball. ``own``: ``at`` is ``sample`` itself; each point's
    neighbours are the m - 1 others (psi(m) in place of psi(m + 1)). Returns ``(r,)`` float64.
    """
    dist = torch.cdist(at, sample)
    m, d = len(sample), sample.shape[1]
    if own:
        dist.fill_diagonal_(math.inf)
    r = _kth(dist, k).clamp_min(1e-300)
    psi = torch.special.digamma(torch.tensor([float(k), float(m if own else m + 1)], dtype=torch.float64))
    return psi[0] - psi[1] - log_ball_volume(d) - d * torch.log(r)


def density_divergences(p, q, log_p_p, log_p_q, k: int = 5) -> dict:
    """JS, KL(P||Q), KL(Q||P) and their standard errors when P's log-density is known.

    ``p: (n, d)`` a sample of P, ``q: (m, d)`` one of Q, ``log_p_p: (n,)`` and ``log_p_q: (m,)``
    the exact log p at them. Only log q is estimated (:func:`knn_log_density`, at P's points from
    all of Q, at Q's own points from the other m - 1):
    KL(Q||P) = E_Q[log q - log p] (the first term is minus the Kozachenko-Leonenko entropy),
    KL(P||Q) = E_P[log p - log q], JS = (E_P[log 2p/(p+q)] + E_Q[log 2q/(p+q)]) / 2 (clipped to
    [0, log 2]). Each standard error is that of the mean of the per-point terms.
    """
    p, q, lp_p, lp_q = _t(p), _t(q), _t(log_p_p), _t(log_p_q)
    lq_p, lq_q = knn_log_density(p, q, k), knn_log_density(q, q, k, own=True)
    kl_pq = lp_p - lq_p
    tp = LOG2 + lp_p - torch.logaddexp(lp_p, lq_p)
    tq = LOG2 + lq_q - torch.logaddexp(lp_q, lq_q)
    js = float(0.5 * tp.mean() + 0.5 * tq.mean())
    kl_qp, kl_qp_se = _kl_qp_terms(lq_q, lp_q)
    return {"js": min(max(js, 0.0), LOG2), "js_se": 0.5 * math.hypot(_se(tp), _se(tq)),
            "kl_pq": float(kl_pq.mean()), "kl_pq_se": _se(kl_pq), "kl_qp": kl_qp, "kl_qp_se": kl_qp_se}


def _kl_qp_terms(lq_q: torch.Tensor, lp_q: torch.Tensor) -> tuple[float, float]:
    """KL(Q||P) = mean of log q - log p over Q's points, and its standard error."""
    terms = lq_q - lp_q
    return float(terms.mean()), _se(terms)


def density_kl_qp(q, log_p_q, k: int = 5) -> tuple[float, float]:
    """KL(Q||P) and its standard error from ``q: (m, d)`` alone and the exact log p at it
    (``log_p_q: (m,)``): the one column the lab takes from :func:`density_divergences`, without
    its P-side work (no distances from P's sample are needed)."""
    q = _t(q)
    return _kl_qp_terms(knn_log_density(q, q, k, own=True), _t(log_p_q))


def knn_kl(p, q, k: int = 5) -> float:
    """KL(P||Q) alone by the k-NN estimator of :func:`knn_divergences`."""
    return knn_divergences(p, q, k)["kl_pq"]


def w1(p, q, max_points: int = 2048) -> tuple[float, str]:
    """Exact W1 between the samples (POT's EMD on at most ``max_points`` points of each), in any
    dimension."""
    p, q = np.asarray(p, float)[:max_points], np.asarray(q, float)[:max_points]
    return w1_exact(p, q), "exact:emd"


def sliced_w1(p, q, max_points: int = 2048, projections: int = 128, seed: int = 0) -> tuple[float, str]:
    """Sliced W1: the mean over ``projections`` random unit directions of the exact 1-D W1 of the
    projected samples. Not W1: it is at most W1 and, for a shift s in d dimensions, about
    |s| sqrt(2 / (pi d))."""
    p, q = np.asarray(p, float)[:max_points], np.asarray(q, float)[:max_points]
    g = np.random.default_rng(seed)
    dirs = g.normal(size=(p.shape[1], projections))
    dirs /= np.linalg.norm(dirs, axis=0)
    pp, qq = np.sort(p @ dirs, axis=0), np.sort(q @ dirs, axis=0)
    if len(pp) != len(qq):  # compare quantile functions on a common grid
        t = np.linspace(0, 1, max(len(pp), len(qq)))
        pp = np.quantile(p @ dirs, t, axis=0)
        qq = np.quantile(q @ dirs, t, axis=0)
    return float(np.abs(pp - qq).mean()), "estimate:sliced"


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


# ----------------------------------------------------------------------------- tracking in the loop
DIVERGENCES = ("js", "kl_pq", "kl_qp", "mmd", "high_quality_fraction")
ERRORS = tuple(f"{k}_se" for k in DIVERGENCES)
"""Each tracked divergence's standard error column (``js_se``, ...; NaN where the value is exact)."""
DIVERGENCE_DOCS = {
    "js": "Jensen-Shannon divergence between target P and generated Q, in nats (0 to log 2): exact for "
          "segments, else k-NN estimate (Wang, Kulkarni & Verdu 2009; each law against the pooled sample)",
    "kl_pq": "KL(P || Q), target against generated, in nats: exact for segments, else k-NN estimate",
    "kl_qp": "KL(Q || P), generated against target, in nats: exact for segments; where the target has a "
             "density, E_Q[log q - log p] with the exact log p and the bias-corrected k-NN log q; else k-NN",
    "mmd": "squared MMD, unbiased, Gaussian kernel with the median-distance bandwidth",
    "high_quality_fraction": "fraction of generated samples within the cover radius of a mode (as on_mode)",
    "sw1": "sliced W1 (128 random directions), logged beside the exact w1 above 10 dimensions",
    **{f"{k}_se": f"standard error of {k} (per-point terms; NaN where {k} is exact)" for k in DIVERGENCES},
}
"""What each tracked divergence measures; the run's summary.json names the method used."""


def _segment_of(target) -> Optional[Segment]:
    """The target's law as an exact segment (parallel_lines, possibly embedded), else None."""
    base, q = (target.base, target.q) if isinstance(target, Embedded) else (target, None)
    if not isinstance(base, SegmentTarget):
        return None
    a, b = base.a, base.b
    if q is not None:
        a, b = a @ q.T, b @ q.T
    return Segment(tuple(a.double().cpu().tolist()), tuple(b.double().cpu().tolist()))


def _log_p(target, pts: torch.Tensor) -> Optional[torch.Tensor]:
    """The target's exact log-density at ``pts: (n, d)`` as float64 on the CPU (None: no density)."""
    v = target.log_density(pts.to(target.mean.device, torch.float64))
    return None if v is None else v.double().cpu()


def tracked(sim, st, ref: torch.Tensor, b: int, order: dict) -> tuple[dict, dict]:
    """Divergence columns, their ``*_se`` and ``w1`` (and ``sw1`` above 10 dimensions) for the first
    ``b`` members at this step: ``(values, methods)``, values ``(b,)`` float64 arrays.

    JS and KL are exact where both laws are known in closed form (a segment target and the affine
    generator's segment); estimated with the target's exact log-density where it has one
    (:func:`density_divergences`); else from the two samples (:func:`sample_divergences`, one
    pooled distance matrix per member, whose cross block also gives the exact W1).
    """
    keys = (*DIVERGENCES, *ERRORS, "w1", *(("sw1",) if sim.d > 10 else ()))
    vals = {k: np.full(b, np.nan) for k in keys}
    target_seg = _segment_of(sim.target)
    exact = target_seg is not None and isinstance(sim.generator, Affine)
    x = st.x[:b, :ref.shape[1]].detach().double().cpu()  # as many points as the target sample
    y = ref[:b].detach().double().cpu()
    density = not exact and _log_p(sim.target, y[0, :1]) is not None
    for i in range(b):
        if not bool(st.alive[i]) or not torch.isfinite(x[i]).all():
            continue
        est = sample_divergences(y[i], x[i])
        if density:  # only KL(Q||P) gains from the exact log p (docs/lab.md, the bias table)
            v, se = density_kl_qp(x[i], _log_p(sim.target, x[i]))
            est = {**est, "kl_qp": v, "kl_qp_se": se}
        for k in ("js", "kl_pq", "kl_qp", "mmd"):
            vals[k][i], vals[f"{k}_se"][i] = est[k], est[f"{k}_se"]
        if exact:
            gen = Segment(tuple(st.gen["b"][i].double().cpu().tolist()),
                          tuple((st.gen["a"][i] + st.gen["b"][i]).double().cpu().tolist()))
            for k, v in segments_divergences(target_seg, gen).items():
                vals[k][i], vals[f"{k}_se"][i] = v, np.nan
        cross = est["cross"]
        vals["w1"][i] = w1_from_cost(cross.numpy()) if cross is not None else w1(y[i].numpy(), x[i].numpy())[0]
        if sim.d > 10:
            vals["sw1"][i] = sliced_w1(y[i].numpy(), x[i].numpy())[0]
    how = "exact:segments" if exact else "estimate:knn"
    methods = {"js": how, "kl_pq": how, "kl_qp": "estimate:knn+density (the target's exact log p)" if density else how, "mmd": "estimate:mmd_unbiased(median bandwidth)",
               "w1": "exact:emd (POT) on at most metrics.max_points points of each sample",
               **({"sw1": "estimate:sliced (128 projections), not W1"} if sim.d > 10 else {}),
               **{f"{k}_se": "standard error of the mean of per-point terms" for k in ("js", "kl_pq", "kl_qp", "mmd")}}
    if sim.target.modes is not None:
        m = len(x[0])
        f = np.asarray(order["on_mode"][:b], dtype=float)
        vals["high_quality_fraction"], vals["high_quality_fraction_se"] = f, np.sqrt(f * (1 - f) / m)
        methods["high_quality_fraction"] = "fraction within the cover radius of a mode (as on_mode)"
        methods["high_quality_fraction_se"] = "binomial standard error sqrt(f (1 - f) / n)"
    return vals, methods
