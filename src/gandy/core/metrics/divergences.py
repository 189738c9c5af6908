"""Divergences between a target P and a generated Q: JS, KL(P||Q), KL(Q||P), W1 and MMD.

The estimators return plain numbers; the caller records beside each one how it was obtained
(:func:`gandy.runs.tracking.tracked` returns ``(values, methods)`` with the method names below):

* ``exact:segments``: :func:`segments_divergences` returns ``{"js", "kl_pq", "kl_qp"}`` (floats,
  inf where a support is not covered) in closed form for two uniform segments (the
  ``parallel_lines`` target against the affine generator's segment).
* ``estimate:knn``: :func:`sample_divergences` returns a dict of floats, ``js``, ``kl_pq``,
  ``kl_qp`` and their standard errors ``*_se``, from k-nearest-neighbour radii in any dimension
  (Wang, Kulkarni & Verdu 2009; JS as the mean KL of each law to the pooled sample), one pass of
  distance blocks for all three; with ``mmd`` also ``mmd``, ``mmd_se``, ``mmd_bandwidth`` and
  ``cross`` (the ``(n, m)`` distance tensor between the samples, or None).
* ``estimate:knn+density``: where the target's log-density is known (every Gaussian-mixture
  target), :func:`density_kl_qp` returns ``(value, se)`` of KL(Q||P) = E_Q[log q - log p] with the
  exact log p at the generated points, only log q estimated, by the bias-corrected k-NN density
  :func:`knn_log_density` (Kozachenko & Leonenko 1987: the digamma terms make its log unbiased for
  a locally uniform law; returns an ``(r,)`` float64 tensor). The same construction for JS and
  KL(P||Q) was measured and is no better than the two-sample one at the logged sizes
  (benchmarks/divergence_bias.py, docs/lab.md), so those stay two-sample.
* Every estimate comes with a standard error (``*_se``). For the k-NN columns (js, kl_pq, kl_qp,
  both constructions) it is a half-sampling (delete-d) jackknife: the spread of the whole
  estimate recomputed on ``RESAMPLES`` random halves of the points (:func:`half_sample_se`); the
  standard deviation of per-point terms over sqrt(n), used until 2026-12-03, ignored the
  dependence between neighbouring points' radii (and, for KL(P||Q), Q's sample altogether) and
  was too small by up to a factor 2. The MMD's is the delta method for its U-statistic.
  docs/lab.md gives the measured calibration beside the bias. Kernel density plug-ins with one
  global bandwidth were tried and rejected: on 2-D Gaussians at 256 points they were biased by
  -17 % (Silverman's bandwidth) to -177 % (half of it), and a global bandwidth smooths multimodal
  targets such as ring8 away.
* ``exact:emd``: :func:`w1` returns ``(value, "exact:emd")``, W1 by exact optimal transport (POT)
  in every dimension (a few ms for a few hundred points); :func:`sliced_w1` returns ``(value,
  "estimate:sliced")``, a different quantity, the sliced W1 (mean over random directions of the
  exact 1-D W1 of the projections), reported separately as ``sw1``.
* ``estimate:mmd_unbiased``: the squared MMD of :func:`sample_divergences` with a Gaussian kernel
  (median-distance bandwidth).

Samples are ``(n, d)`` arrays or tensors (one member); all arithmetic is float64. The tests' exact
references (the Gaussian KL, a quadrature JS, a direct MMD) are in tests/oracles.py.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch

from gandy.core.metrics.order import w1_exact

LOG2 = math.log(2.0)


def _t(x) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x), dtype=torch.float64)


# ----------------------------------------------------------------------------- exact laws
@dataclass(frozen=True)
class UniformSegment:
    """Uniform law on the segment from ``a`` to ``b`` in R^d."""

    a: tuple
    b: tuple

    @property
    def length(self) -> float:
        return float(np.linalg.norm(np.subtract(self.b, self.a)))


def _collinear_overlap(p: UniformSegment, q: UniformSegment, tol: float = 1e-12) -> float:
    """Length of the overlap of two segments on one line (0 if they are not on one line)."""
    a, b = np.asarray(p.a, float), np.asarray(p.b, float)
    u = (b - a) / p.length
    for point in (q.a, q.b):
        r = np.asarray(point, float) - a
        if np.linalg.norm(r - (r @ u) * u) > tol * max(1.0, p.length):
            return 0.0
    s = sorted([(np.asarray(q.a, float) - a) @ u, (np.asarray(q.b, float) - a) @ u])
    return max(0.0, min(p.length, s[1]) - max(0.0, s[0]))


def segments_divergences(p: UniformSegment, q: UniformSegment) -> dict:
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


# ----------------------------------------------------------------------------- estimators
def _pooled_blocks(z: torch.Tensor, chunk: int = 2048):
    """Distances from rows ``i:i + chunk`` of ``z: (B, n, d)`` to all of ``z`` within each member
    (self-distance inf), as ``(i, block)`` pairs, each block ``(B, rows, n)``; one block when
    ``n <= chunk``."""
    n = z.shape[1]
    for i in range(0, n, chunk):
        blk = torch.cdist(z[:, i:i + chunk], z)
        idx = torch.arange(i, min(i + chunk, n), device=z.device)
        blk[:, idx - i, idx] = math.inf
        yield i, blk


def _median_distance(z: torch.Tensor, max_points: int = 256):
    """The median pairwise distance of ``z: (n, d)`` (the MMD bandwidth heuristic; a float), or of
    each member of ``z: (B, n, d)`` (a ``(B,)`` array), over every ``ceil(n / max_points)``-th
    point so that its cost stays bounded. The distances are differences squared and summed, as
    ``torch.pdist`` computes them (not the matrix-product form)."""
    one = z.dim() == 2
    z = z[None] if one else z
    sub = z[:, ::-(-z.shape[1] // max_points)]
    i, j = torch.triu_indices(sub.shape[1], sub.shape[1], 1, device=z.device)
    pairs = torch.cdist(sub, sub, compute_mode="donot_use_mm_for_euclid_dist")[:, i, j]
    med = np.maximum(np.median(pairs.cpu().numpy(), axis=-1), 1e-12)
    return float(med[0]) if one else med


KNN_KEYS = ("js", "js_se", "kl_pq", "kl_pq_se", "kl_qp", "kl_qp_se")


def _se(terms: torch.Tensor) -> float:
    """Standard error of the mean of ``terms: (n,)`` (sample standard deviation / sqrt(n))."""
    return float(terms.std() / math.sqrt(len(terms))) if len(terms) > 1 else math.nan


def _kth(d: torch.Tensor, k: int) -> torch.Tensor:
    """k-th smallest entry of each row (topk: about ten times faster than kthvalue on CPU)."""
    return d.topk(k, 1, largest=False).values[:, -1]


RESAMPLES = 20
"""Half-samples behind each k-NN standard error (:func:`half_samples`): the standard error itself
then scatters by about 1 / sqrt(2 (RESAMPLES - 1)) = 16 % of its value."""


def half_samples(sizes: tuple, resamples: int = RESAMPLES, seed: int = 0) -> list:
    """``resamples`` random half-samples of samples of the given ``sizes`` (one per sample: P's n,
    Q's m): each a tuple of sorted long index tensors, ``size // 2`` of each sample without
    replacement, drawn from a generator seeded with ``seed`` (so the standard errors are a
    deterministic function of the samples)."""
    return [tuple(h.clone() for h in half) for half in _halves(tuple(sizes), resamples, seed)[0]]


@functools.lru_cache(maxsize=16)
def _halves(sizes: tuple, resamples: int, seed: int = 0) -> tuple:
    """:func:`half_samples` and their membership mask ``(resamples, sum(sizes))`` (bool; sample j's
    points at offset ``sum(sizes[:j])``), drawn once per ``(sizes, resamples, seed)``: every log of
    a run asks for the same ones. Shared: the caller must not write into them."""
    g = torch.Generator().manual_seed(seed)
    halves = [tuple(torch.randperm(s, generator=g)[: s // 2].sort().values for s in sizes) for _ in range(resamples)]
    member = torch.zeros(resamples, sum(sizes), dtype=torch.bool)
    offsets = np.cumsum((0, *sizes[:-1])).tolist()
    for b, half in enumerate(halves):
        for off, h in zip(offsets, half):
            member[b, off + h] = True
    return halves, member


def half_sample_se(full: float, halves: list, sizes: tuple) -> float:
    """Standard error of an estimate from its values on half-samples (delete-d jackknife with
    d = n - n // 2, Shao & Wu 1989): ``sqrt(h / d * var(halves))`` with the factor h / d averaged
    over the samples (1 for even sizes; ``sizes`` as in :func:`half_samples`). Each half-sample's
    estimate is recomputed from scratch (every k-NN radius anew), so the dependence between
    neighbouring points' radii is in the spread, unlike the standard deviation of the per-point
    terms over sqrt(n) (measured too small by up to a factor 2: benchmarks/divergence_bias.py).
    ``full`` is unused but for its finiteness: NaN where it or any half-sample is not finite, or
    with fewer than two half-samples."""
    v = np.asarray(halves, float)
    if len(v) < 2 or not math.isfinite(full) or not np.isfinite(v).all():
        return math.nan
    factor = float(np.mean([(s // 2) / (s - s // 2) for s in sizes]))
    return math.sqrt(factor * float(v.var(ddof=1)))


CANDIDATES = 8
"""Each point keeps its ``CANDIDATES * k`` nearest neighbours in every reference set; a half-sample's
k-th neighbour is the k-th of them that it holds (at k = 5, fewer than 5 of 40 lie in a random half
with probability about 1e-7; a half-sample where that happens is recomputed from its own
distances)."""


def _nearest(d: torch.Tensor, width: int, offset: int = 0) -> tuple:
    """The ``width`` smallest entries of each row of ``d: (..., r, c)`` (float64 on the CPU, no
    entry negative or NaN: distances, inf allowed) in ascending order and their column indices plus
    ``offset``: ``(dist, idx)``, each ``(..., r, width)``.

    One sort of integer keys: a non-negative float64's bit pattern read as int64 orders as the
    float does, so each entry's low ``ceil(log2 c)`` bits are replaced by its column and the keys
    sorted as integers (numpy's vectorised sort: 4x faster than ``torch.topk`` on the lab's
    256-column rows; benchmarks/RESULTS.md). The distances returned are the entries themselves,
    not the keys; entries within ``2^(bits - 52)`` of each other (relative) count as ties, which
    go to the lower column."""
    a = d.detach().cpu().numpy().astype(np.float64, copy=False)  # the keys read float64 bits
    bits = max(1, (a.shape[-1] - 1).bit_length())
    mask = (1 << bits) - 1
    key = (a.view(np.int64) & ~mask) | np.arange(a.shape[-1])
    key.sort(axis=-1)
    idx = torch.from_numpy(key[..., :width] & mask)
    # torch's gather: 1.4-3.4x numpy's take_along_axis on the log's shapes (a strided block of columns)
    return torch.from_numpy(a).gather(-1, idx), idx + offset


def _kth_member_positions(bits: np.ndarray, k: int, lanes: int) -> np.ndarray:
    """Where each half-sample's k-th member comes in each point's candidate list, for up to 64
    half-samples at once: ``bits: (L, N)`` uint64, bit b of ``bits[c, i]`` set when candidate c of
    point i belongs to half-sample b. Returns ``(lanes, N)`` int64: the position (0 .. L - 1) of
    the k-th set bit of lane b along c, or L where fewer than k are set.

    Bit-sliced counting: each lane's count is kept in ``k.bit_length()`` bit planes (``(N,)``
    words, one bit per lane) and one candidate added to all 64 lanes by a ripple-carry add; a lane
    whose count reaches k records the position in its bits of ``ceil(log2 L)`` position planes and
    stops counting. O(L log k) word operations per point instead of O(L * lanes) (3x faster than
    a cumulative sum over ``(lanes, N, L)`` on the lab's logs; benchmarks/RESULTS.md)."""
    length, n = bits.shape
    count = [np.zeros(n, np.uint64) for _ in range(k.bit_length())]
    where = [np.zeros(n, np.uint64) for _ in range(max(1, (length - 1).bit_length()))]
    done, add, carry, hit = (np.zeros(n, np.uint64) for _ in range(4))
    for c in range(length):
        np.invert(done, out=hit)  # the lanes still counting ...
        np.bitwise_and(bits[c], hit, out=add)  # ... add this candidate where it is a member
        for plane in count:
            np.bitwise_and(plane, add, out=carry)
            np.bitwise_xor(plane, add, out=plane)
            add, carry = carry, add
        for j, plane in enumerate(count):  # hit: the count is now k (it never passes k)
            np.bitwise_and(hit, plane if (k >> j) & 1 else ~plane, out=hit)
        np.bitwise_or(done, hit, out=done)
        for j, plane in enumerate(where):
            if (c >> j) & 1:
                np.bitwise_or(plane, hit, out=plane)
    lane = np.arange(lanes, dtype=np.uint64)[:, None]
    pos = np.zeros((lanes, n), np.int64)
    for j, plane in enumerate(where):
        pos |= ((plane >> lane) & np.uint64(1)).astype(np.int64) << j
    return np.where((done >> lane) & np.uint64(1) == 1, pos, length)


def _kth_among(dist: torch.Tensor, idx: torch.Tensor, member: torch.Tensor, k: int) -> tuple:
    """The k-th nearest neighbour of every point within each half-sample, from the point's nearest
    candidates ``dist, idx: (..., N, L)`` (ascending; indices into the sample's points, of which
    ``member`` has ``n`` columns) and ``member: (R, n)`` (bool, the points each of R half-samples
    holds; the leading axes of ``dist`` are members, each its own sample of ``n`` points, all with
    the same halves): ``(radius, found)``, each ``(..., R, N)``; radius inf where fewer than k of
    the L candidates are finite members (then ``found`` is False).

    The first ``4 k`` candidates settle almost every (half-sample, point) pair
    (:func:`_kth_member_positions`; a half holds each point with probability about 1/2: at k = 5
    fewer than 5 of 20 are in it for about 0.6 % of the pairs); only the rest look further, so the
    answer is the one the whole list gives. All members are searched at once: their points stacked
    along one axis, each member's indices offset by its place (so few, long array operations)."""
    lead, (rows, width) = dist.shape[:-2], dist.shape[-2:]
    copies = math.prod(lead)
    b, n = member.shape
    d = dist.reshape(-1, width).numpy()
    offset = (np.arange(copies) * n).repeat(rows)[:, None]
    total = copies * n  # the stacked members' points; column ``total``: in no half
    col = np.where(np.isfinite(d), idx.reshape(-1, width).numpy() + offset, total)  # a non-finite candidate is no member
    padded = np.concatenate([np.tile(member.numpy(), copies), np.zeros((b, 1), bool)], 1)
    first = min(4 * k, width)
    head = col[:, :first].T  # (first, copies * rows)
    before = np.empty((b, len(d)), np.int64)
    for g in range(0, b, 64):  # 64 half-samples to a word
        lanes = padded[g:g + 64]
        packed = np.bitwise_or.reduce(lanes.astype(np.uint64) << np.arange(len(lanes), dtype=np.uint64)[:, None], 0)
        before[g:g + 64] = _kth_member_positions(packed[head], k, len(lanes))
    found = before < first
    if first < width and not found.all():
        hb, hi = np.nonzero(~found)  # the pairs whose k-th member lies further
        before[hb, hi] = (np.cumsum(padded[hb[:, None], col[hi]], 1) < k).sum(1)
        found = before < width
    r = torch.from_numpy(d).gather(1, torch.from_numpy(np.minimum(before, width - 1).T)).numpy().T
    r, found = np.where(found, r, math.inf).reshape(b, *lead, rows), found.reshape(b, *lead, rows)
    return torch.from_numpy(np.moveaxis(r, 0, -2)), torch.from_numpy(np.moveaxis(found, 0, -2))


def _knn_values(own: torch.Tensor, other: torch.Tensor, pool: torch.Tensor, n: int, d: int,
                member: torch.Tensor | None = None) -> torch.Tensor:
    """``[js, kl_pq, kl_qp]`` (js unclipped; NaN unless both samples have one size) from the k-th
    neighbour radii of every point (rows ``[0, n)`` P's, the rest Q's) within its own sample, the
    other and both: each ``(N,)``, or ``(B, N)`` with ``member: (B, N)`` (bool) naming the points of
    each of B half-samples (the estimate over them alone). Returns ``(3,)`` or ``(B, 3)``."""
    own, other, pool = (v.clamp_min(1e-300) for v in (own, other, pool))
    if member is None:
        member = torch.ones_like(own, dtype=torch.bool)
    size_p, size_q = member[..., :n].sum(-1).double(), member[..., n:].sum(-1).double()

    def mean(t: torch.Tensor, rows: slice, size: torch.Tensor) -> torch.Tensor:
        return torch.where(member[..., rows], t[..., rows], 0.0).sum(-1) / size

    lr = d * torch.log(other / own)
    kl_pq = mean(lr, slice(0, n), size_p) + torch.log(size_q / (size_p - 1))
    kl_qp = mean(lr, slice(n, None), size_q) + torch.log(size_p / (size_q - 1))
    tj = d * torch.log(pool / own)
    js = 0.5 * mean(tj, slice(0, n), size_p) + 0.5 * mean(tj, slice(n, None), size_q) + torch.log((2 * size_p - 1) / (size_p - 1))
    js = torch.where(size_p == size_q, js, math.nan)
    return torch.stack([js, kl_pq, kl_qp], -1)


def _exact_half(z: torch.Tensor, hp: torch.Tensor, hq: torch.Tensor, n: int, k: int) -> torch.Tensor:
    """``[js, kl_pq, kl_qp]`` of one half-sample (``hp`` of P's indices, ``hq`` of Q's) from its own
    distances: the rare case where a candidate list is too short (:data:`CANDIDATES`)."""
    sub = z[torch.cat([hp, n + hq])]
    dist = torch.cdist(sub, sub)
    dist.fill_diagonal_(math.inf)
    h = len(hp)
    radii = [torch.cat([_kth(dist[:h, a], k), _kth(dist[h:, b], k)])
             for a, b in ((slice(0, h), slice(h, None)), (slice(h, None), slice(0, h)))]
    return _knn_values(radii[0], radii[1], _kth(dist, k), h, z.shape[1])


def sample_divergences(p, q, k: int = 5, chunk: int = 2048, mmd: bool = True, resamples: int = RESAMPLES) -> dict:
    """JS, KL(P||Q), KL(Q||P) of two samples ``p: (n, d)``, ``q: (m, d)`` by k-nearest neighbours
    and, with ``mmd``, the unbiased squared MMD (Gaussian kernel, median-distance bandwidth), from
    one pass over the pooled distance matrix; plus ``cross``, the ``(n, m)`` distances between the
    samples when they fit in one block (else None) for an exact W1 without a second distance
    computation, and ``near_q``, each of Q's points' nearest other points of Q as ``(dist, idx)``,
    each ``(m, L)`` (for :func:`density_kl_qp`). Without ``mmd`` only the keys of ``KNN_KEYS`` are
    returned. One member of :func:`sample_divergences_batch` (which holds the method).
    """
    return sample_divergences_batch(_t(p)[None], _t(q)[None], k, chunk, mmd, resamples)[0]


BATCH_ELEMENTS = 1 << 23
"""The most distance entries (float64: 64 MB) one pass of :func:`sample_divergences_batch` holds;
more members are measured a group at a time."""


def sample_divergences_batch(p, q, k: int = 5, chunk: int = 2048, mmd: bool = True,
                             resamples: int = RESAMPLES) -> list:
    """:func:`sample_divergences` of B pairs of samples at once, ``p: (B, n, d)``, ``q: (B, m, d)``
    (every member's samples of one size): a list of B dicts, each the numbers that member alone
    gives. Every step is one array operation over all members: a few long calls in place of B
    times as many short ones, each of which hands the GIL back and forth with a run stepping on
    another thread (the same compute: 8 members take as long as 8 calls; what it saves is what the
    run's thread pays, benchmarks/lab_step.py).

    KL(P||Q) is the estimator of Wang, Kulkarni & Verdu (2009): with rho_k the distance from p_i to
    its k-th neighbour among the other p and nu_k to its k-th neighbour among q,
    ``d/n sum log(nu_k / rho_k) + log(m / (n - 1))``. JS = (KL(P||M) + KL(Q||M)) / 2 with the same
    estimator against the pooled sample, which is a sample of the mixture M = (P + Q)/2 when both
    samples have one size (the larger is cut to the smaller for JS); clipped to [0, log 2]. Unlike
    kernel density plug-ins with one global bandwidth, the k-NN radii adapt to the local scale, so
    multimodal targets (ring8, grid25) are not smoothed away (docs/lab.md has the comparison).

    The standard errors ``js_se``, ``kl_pq_se``, ``kl_qp_se`` come from ``resamples`` half-samples
    of both samples (:func:`half_samples`, :func:`half_sample_se`): each estimate recomputed on
    half of P and half of Q, every radius anew, from each point's ``CANDIDATES * k`` nearest
    neighbours found in the same pass (no new distances).
    """
    p, q = _t(p), _t(q)
    (bsz, n, d), m = p.shape, q.shape[1]
    group = max(1, BATCH_ELEMENTS // (min(n + m, chunk) * (n + m)))
    if bsz > group:
        return [out for g in range(0, bsz, group)
                for out in sample_divergences_batch(p[g:g + group], q[g:g + group], k, chunk, mmd, resamples)]
    z = torch.cat([p, q], 1)  # (B, N, d)
    halves, member = _halves((n, m), resamples)
    width = min(CANDIDATES * k if halves else k, n, m)  # no reference set has fewer columns (own: n or m, self inf)
    if mmd:
        bw = torch.from_numpy(_median_distance(z))[:, None, None]  # (B, 1, 1)
        ksum = torch.zeros(bsz, 2, 2, dtype=torch.float64)  # kernel sums over (p|q rows) x (p|q columns)
        rowsum = [[[], []], [[], []]]  # the same per row, for the standard error
    near, cross = {"own": [], "other": [], "pool": []}, None  # (dist, idx) of every row's candidates
    for i, blk in _pooled_blocks(z, chunk):
        if n + m <= chunk:
            cross = blk[:, :n, n:]
        cut = min(max(n - i, 0), blk.shape[1])  # rows [0, cut) of the block are p's, the rest q's
        for rows, (a, b) in ((blk[:, :cut], (slice(0, n), slice(n, None))), (blk[:, cut:], (slice(n, None), slice(0, n)))):
            if rows.shape[1]:
                own, other = _nearest(rows[..., a], width, a.start), _nearest(rows[..., b], width, b.start)
                near["own"].append(own)
                near["other"].append(other)
                # the pooled sample's nearest are among the own and the other nearest
                v, j = _nearest(torch.cat([own[0], other[0]], -1), width)
                near["pool"].append((v, torch.cat([own[1], other[1]], -1).gather(-1, j)))
        if mmd:
            def kernel(dist: torch.Tensor) -> torch.Tensor:  # the inf diagonal contributes exp(-inf) = 0
                return (dist.square() * (-0.5 / bw**2)).exp_()

            if n + m <= chunk:  # one block: Q's rows against P are P's rows against Q, transposed
                kpq = kernel(blk[:, :n, n:])
                sums = ((kernel(blk[:, :n, :n]).sum(-1), kpq.sum(-1)), (kpq.sum(-2), kernel(blk[:, n:, n:]).sum(-1)))
            else:
                kern = kernel(blk)
                sums = tuple((rows[..., :n].sum(-1), rows[..., n:].sum(-1)) for rows in (kern[:, :cut], kern[:, cut:]))
            for r in range(2):
                for c, cols in enumerate(sums[r]):
                    ksum[:, r, c] += cols.sum(-1)
                    rowsum[r][c].append(cols)
    near = {key: tuple(torch.cat([v[j] for v in parts], 1) for j in range(2)) for key, parts in near.items()}
    est = _knn_values(*(near[key][0][..., k - 1] for key in ("own", "other", "pool")), n, d).numpy()  # (B, 3)
    # the standard errors: every estimate again on each half-sample (from the candidates)
    sets = ("own", "other", "pool")  # searched in one call: the three candidate lists stacked
    radius, found = _kth_among(*(torch.cat([near[key][j] for key in sets], 1) for j in range(2)), member, k)
    radii, found = radius.chunk(3, -1), found.chunk(3, -1)  # each (B, R, N)
    hal = _knn_values(*radii, n, d, member)  # (B, R, 3)
    short = ~(found[0] & found[1] & found[2] | ~member).all(-1)  # (B, R)
    for g, r in torch.nonzero(short).tolist():
        hal[g, r] = _exact_half(z[g], *halves[r], n, k)
    hal = hal.numpy()
    if n != m:  # the pooled sample must weigh both laws equally
        s = min(n, m)
        cut = sample_divergences_batch(p[:, :s], q[:, :s], k, chunk, mmd=False, resamples=resamples)
    if mmd:
        mmd_value = ksum[:, 0, 0] / (n * (n - 1)) + ksum[:, 1, 1] / (m * (m - 1)) - 2 * ksum[:, 0, 1] / (n * m)
        # delta method for the U-statistic: each point's influence is twice its mean kernel to its
        # own sample minus its mean kernel to the other sample
        hp = 2 * (torch.cat(rowsum[0][0], -1) / (n - 1) - torch.cat(rowsum[0][1], -1) / m)
        hq = 2 * (torch.cat(rowsum[1][1], -1) / (m - 1) - torch.cat(rowsum[1][0], -1) / n)
    outs = []
    for g in range(bsz):
        out = {}
        for j, key in ((1, "kl_pq"), (2, "kl_qp")):
            out[key], out[f"{key}_se"] = float(est[g, j]), half_sample_se(est[g, j], hal[g, :, j], (n, m))
        if n == m:
            js, js_se = float(est[g, 0]), half_sample_se(est[g, 0], hal[g, :, 0], (n, m))
        else:
            js, js_se = cut[g]["js"], cut[g]["js_se"]
        out["js"], out["js_se"] = min(max(js, 0.0), LOG2), js_se
        if not mmd:
            outs.append({key: out[key] for key in KNN_KEYS})
            continue
        out["mmd"], out["mmd_bandwidth"] = float(mmd_value[g]), float(bw[g])
        out["mmd_se"] = math.hypot(_se(hp[g]), _se(hq[g]))  # per member: a batched std rounds with the batch
        out["cross"] = None if cross is None else cross[g]
        out["near_q"] = tuple(v[g, n:] - (n if j else 0) for j, v in enumerate(near["own"]))
        outs.append(out)
    return outs


def log_ball_volume(d: int) -> float:
    """log of the volume of the unit ball in R^d."""
    return 0.5 * d * math.log(math.pi) - math.lgamma(0.5 * d + 1)


def _log_density_at(r: torch.Tensor, size: int, d: int, k: int, own: bool) -> torch.Tensor:
    """:func:`knn_log_density` from the k-th neighbour radii ``r`` (any shape) in a sample of
    ``size`` points."""
    psi = torch.special.digamma(torch.tensor([float(k), float(size if own else size + 1)], dtype=torch.float64))
    return psi[0] - psi[1] - log_ball_volume(d) - d * torch.log(r.clamp_min(1e-300))


def knn_log_density(at: torch.Tensor, sample: torch.Tensor, k: int = 5, own: bool = False) -> torch.Tensor:
    """Bias-corrected k-NN estimate of log q at ``at: (r, d)`` from ``sample: (m, d)`` of Q.

    The Q-mass u of the ball reaching the k-th of m neighbours is Beta(k, m - k + 1), so
    E log u = psi(k) - psi(m + 1) and ``log q = psi(k) - psi(m + 1) - log V_d - d log r_k`` is
    unbiased where q is flat on the ball. ``own``: ``at`` is ``sample`` itself; each point's
    neighbours are the m - 1 others (psi(m) in place of psi(m + 1)). Returns ``(r,)`` float64.
    """
    dist = torch.cdist(at, sample)
    if own:
        dist.fill_diagonal_(math.inf)
    return _log_density_at(_kth(dist, k), len(sample), sample.shape[1], k, own)


def density_kl_qp(q, log_p_q, k: int = 5, resamples: int = RESAMPLES, near: tuple | None = None) -> tuple[float, float]:
    """KL(Q||P) and its standard error from ``q: (m, d)`` alone and the exact log p at it
    (``log_p_q: (m,)``) at Q's own points (:func:`knn_log_density` from the other m - 1): the one
    column the lab takes from the density (no distances from P's sample are needed). ``near``:
    each point's nearest other points of Q as ``(dist, idx)``, each ``(m, L)``, ascending
    (``near_q`` of :func:`sample_divergences`), which spares the distances. One member of
    :func:`density_kl_qp_batch` (which holds the method)."""
    near = None if near is None else tuple(v[None] for v in near)
    return density_kl_qp_batch(_t(q)[None], _t(log_p_q)[None], k, resamples, near)[0]


def density_kl_qp_batch(q, log_p_q, k: int = 5, resamples: int = RESAMPLES, near: tuple | None = None) -> list:
    """:func:`density_kl_qp` of B members at once, ``q: (B, m, d)``, ``log_p_q: (B, m)``, ``near``
    as ``(dist, idx)`` each ``(B, m, L)``: a list of B ``(value, se)`` pairs. The standard error
    comes from ``resamples`` half-samples of Q (:func:`half_sample_se`), each estimate recomputed
    from the half's own k-NN radii (found among each point's ``CANDIDATES * k`` nearest); ``near``
    is used only where L is the width this function takes (``CANDIDATES * k``, at most m)."""
    q, lp = _t(q), _t(log_p_q)
    bsz, m, d = q.shape
    width = min(CANDIDATES * k if resamples else k, m)
    dist = None

    def own_distances() -> torch.Tensor:
        dist = torch.cdist(q, q)
        dist.diagonal(dim1=-2, dim2=-1).fill_(math.inf)
        return dist

    if near is None or near[0].shape != (bsz, m, width):
        dist = own_distances()
        near = _nearest(dist, width)
    value = (_log_density_at(near[0][..., k - 1], m, d, k, own=True) - lp).mean(-1)  # (B,)
    halves, member = _halves((m,), resamples)
    r, found = _kth_among(*near, member, k)  # (B, R, m)
    terms = torch.where(member, _log_density_at(r, m // 2, d, k, own=True) - lp[:, None], 0.0)
    hal = terms.sum(-1) / (m // 2)  # (B, R)
    for g, b in torch.nonzero(~(found | ~member).all(-1)).tolist():  # a candidate list too short
        if dist is None:
            dist = own_distances()
        (h,) = halves[b]
        hal[g, b] = (_log_density_at(_kth(dist[g][h][:, h], k), len(h), d, k, own=True) - lp[g, h]).mean()
    return [(float(value[g]), half_sample_se(float(value[g]), hal[g].tolist(), (m,))) for g in range(bsz)]


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


# ----------------------------------------------------------------------------- the logged columns
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
    **{f"{k}_se": f"standard error of {k} (k-NN columns: half-sampling, the estimate's spread over {RESAMPLES} "
                  f"random halves of the points; mmd: delta method; NaN where {k} is exact)" for k in DIVERGENCES},
}
"""What each tracked divergence measures (logged by :func:`gandy.runs.tracking.tracked`); the run's
summary.json names the method used."""
