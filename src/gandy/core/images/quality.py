"""Sample-quality metrics for image GANs (Fedus et al. 2018, "Many paths to equilibrium").

Pure metric mathematics, independent of any feature extractor: the functions take feature arrays,
class probabilities, mode ids or images, numpy or torch, and compute in float64.

* :func:`fid` -- Frechet distance between Gaussian fits of two feature samples (Heusel et al. 2017),
  with the matrix square root from symmetric eigendecompositions (:func:`sqrtm_psd`).
* :func:`kid` -- kernel inception distance (Binkowski et al. 2018): unbiased MMD^2 with the cubic
  polynomial kernel, averaged over random subsets.
* :func:`classifier_score` -- Inception-score style ``exp(E_x KL(p(y|x) || p(y)))`` (Salimans et al.
  2016) from a classifier's probabilities.
* :func:`mode_coverage` -- histogram of predicted modes (e.g. the 1,000 Color MNIST modes), number
  of modes covered and KL divergence of the histogram to the uniform law.
* :func:`ssim`, :func:`ms_ssim`, :func:`ms_ssim_diversity` -- (multi-scale) structural similarity
  (Wang, Simoncelli & Bovik 2003) adapted to 28x28 images, and the mean pairwise MS-SSIM of random
  batches as a diversity score (Odena et al. 2017; lower = more diverse).
* :func:`w_critic` -- an independent Wasserstein critic estimate (Danihelka et al. 2017): a fresh
  critic trained with the WGAN-GP objective on train splits, evaluated on held-out test splits.

Images are ``(n, C, H, W)`` with pixel values in [-1, 1] (data range 2), the convention of
:mod:`gandy.core.images`.
"""

from __future__ import annotations

import math
import time
from typing import Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

ArrayLike = Union[np.ndarray, torch.Tensor]

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
"""The five scale weights of Wang, Simoncelli & Bovik (2003), finest scale first."""


def _np64(x: ArrayLike, name: str) -> np.ndarray:
    """``x`` as a float64 numpy array (torch tensors are detached and moved to the CPU)."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    a = np.asarray(x, dtype=np.float64)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or Inf")
    return a


def _t64(x: ArrayLike, name: str) -> torch.Tensor:
    """``x`` as a float64 CPU torch tensor."""
    return torch.from_numpy(np.ascontiguousarray(_np64(x, name)))


def _features(x: ArrayLike, name: str) -> np.ndarray:
    a = _np64(x, name)
    if a.ndim != 2:
        raise ValueError(f"{name} must have shape (n, F), got {a.shape}")
    return a


def _pair_of_features(real: ArrayLike, fake: ArrayLike, min_n: int) -> tuple[np.ndarray, np.ndarray]:
    x, y = _features(real, "feat_real"), _features(fake, "feat_fake")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"feature dimensions differ: {x.shape[1]} (real) vs {y.shape[1]} (fake)")
    if len(x) < min_n or len(y) < min_n:
        raise ValueError(f"need at least {min_n} samples on each side, got {len(x)} and {len(y)}")
    return x, y


# --------------------------------------------------------------------------- FID
def sqrtm_psd(a: ArrayLike) -> np.ndarray:
    """Principal square root of a symmetric positive semi-definite matrix ``a (F, F)``.

    ``a`` is symmetrised (``(a + a.T) / 2``), diagonalised with ``numpy.linalg.eigh`` as
    ``V diag(w) V^T``, and ``V diag(sqrt(max(w, 0))) V^T`` is returned: eigenvalues that rounding
    made slightly negative are clipped to 0, so the result is real, (exactly) symmetric and PSD.
    """
    m = _np64(a, "a")
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"expected a square matrix, got shape {m.shape}")
    w, v = np.linalg.eigh(0.5 * (m + m.T))
    r = (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T
    return 0.5 * (r + r.T)


def frechet_distance(mu1: ArrayLike, sigma1: ArrayLike, mu2: ArrayLike, sigma2: ArrayLike) -> float:
    """Squared Frechet (2-Wasserstein) distance between ``N(mu1, sigma1)`` and ``N(mu2, sigma2)``.

    ``mu (F,)``, ``sigma (F, F)`` symmetric PSD::

        d^2 = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1^{1/2} S2 S1^{1/2})^{1/2})

    (Dowson & Landau 1982). ``S1^{1/2} S2 S1^{1/2}`` is symmetric PSD, unlike the ``S1 S2`` of the
    usual ``scipy.linalg.sqrtm`` formulation, so both square roots come from symmetric
    eigendecompositions with tiny negative eigenvalues clipped to 0 (:func:`sqrtm_psd`); the trace
    of the outer root is the sum of the square roots of the eigenvalues. The result is clipped at 0
    (it can only go below through rounding).
    """
    m1, m2 = _np64(mu1, "mu1").reshape(-1), _np64(mu2, "mu2").reshape(-1)
    s1, s2 = _np64(sigma1, "sigma1"), _np64(sigma2, "sigma2")
    f = m1.shape[0]
    if m2.shape != (f,) or s1.shape != (f, f) or s2.shape != (f, f):
        raise ValueError(f"shape mismatch: mu1 {m1.shape}, mu2 {m2.shape}, sigma1 {s1.shape}, sigma2 {s2.shape}")
    r1 = sqrtm_psd(s1)
    mid = r1 @ (0.5 * (s2 + s2.T)) @ r1
    w = np.linalg.eigvalsh(0.5 * (mid + mid.T))
    tr_covmean = float(np.sqrt(np.clip(w, 0.0, None)).sum())
    d = float(((m1 - m2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2.0 * tr_covmean)
    return max(d, 0.0)


def fid(feat_real: ArrayLike, feat_fake: ArrayLike) -> float:
    """Frechet distance between Gaussian fits of two feature samples (Heusel et al. 2017).

    ``feat_real (n, F)``, ``feat_fake (m, F)``, ``n, m >= 2``. The means are sample means and the
    covariances unbiased sample covariances (``ddof=1``, as in the reference implementations);
    the distance is :func:`frechet_distance` of the two fits::

        FID = |mu_r - mu_f|^2 + tr(S_r + S_f - 2 (S_r^{1/2} S_f S_r^{1/2})^{1/2})
    """
    x, y = _pair_of_features(feat_real, feat_fake, 2)
    return frechet_distance(x.mean(0), np.cov(x, rowvar=False).reshape(x.shape[1], x.shape[1]),
                            y.mean(0), np.cov(y, rowvar=False).reshape(y.shape[1], y.shape[1]))


# --------------------------------------------------------------------------- KID
def polynomial_kernel(x: ArrayLike, y: ArrayLike) -> np.ndarray:
    """The KID kernel matrix ``k(x_i, y_j) = (x_i . y_j / F + 1)^3`` of ``x (n, F)``, ``y (m, F)``:
    ``(n, m)`` float64."""
    a, b = _np64(x, "x"), _np64(y, "y")
    return (a @ b.T / a.shape[1] + 1.0) ** 3


def _mmd2_unbiased(kxx: np.ndarray, kyy: np.ndarray, kxy: np.ndarray) -> float:
    """Unbiased MMD^2 from the three kernel matrices (off-diagonal means within each sample)."""
    n, m = kxx.shape[0], kyy.shape[0]
    sxx = (kxx.sum() - np.trace(kxx)) / (n * (n - 1))
    syy = (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
    return float(sxx + syy - 2.0 * kxy.mean())


def kid(feat_real: ArrayLike, feat_fake: ArrayLike, subsets: int = 100, subset_size: int = 1000,
        seed: int = 0) -> tuple[float, float]:
    """Kernel inception distance (Binkowski et al. 2018): ``(mean, std)`` over random subsets.

    ``feat_real (n, F)``, ``feat_fake (m, F)``. For each of ``subsets`` subsets, ``s`` rows are
    drawn without replacement from each sample, ``s = min(subset_size, n, m)`` (as in the authors'
    code), and the unbiased estimate of the squared MMD with the cubic polynomial kernel
    ``k(x, y) = (x . y / F + 1)^3`` is computed::

        MMD^2_u = sum_{i != j} k(x_i, x_j) / (s (s - 1)) + sum_{i != j} k(y_i, y_j) / (s (s - 1))
                  - 2 sum_{i, j} k(x_i, y_j) / s^2

    Returns the mean and the standard deviation (``ddof=0``) of the subset estimates. The subsets
    are a pure function of ``seed`` (``numpy.random.default_rng``). The estimate is unbiased, so it
    can be slightly negative when both samples come from one law.
    """
    if subsets < 1:
        raise ValueError(f"subsets must be >= 1, got {subsets}")
    x, y = _pair_of_features(feat_real, feat_fake, 2)
    s = min(int(subset_size), len(x), len(y))
    if s < 2:
        raise ValueError(f"subset_size must be >= 2, got {subset_size}")
    rng = np.random.default_rng(seed)
    vals = np.empty(subsets)
    for k in range(subsets):
        a = x[rng.choice(len(x), s, replace=False)]
        b = y[rng.choice(len(y), s, replace=False)]
        vals[k] = _mmd2_unbiased(polynomial_kernel(a, a), polynomial_kernel(b, b), polynomial_kernel(a, b))
    return float(vals.mean()), float(vals.std())


# --------------------------------------------------------------------------- classifier score
def classifier_score(probs: ArrayLike, splits: int = 10) -> tuple[float, float]:
    """Inception-score style classifier score (Salimans et al. 2016): ``(mean, std)`` over splits.

    ``probs (n, K)``: class probabilities ``p(y|x)`` (non-negative, rows summing to 1 within 1e-4;
    rows are renormalised). The rows are cut into ``splits`` contiguous, near-equal parts
    (``numpy.array_split``, as in the reference code); in each part, with ``p(y)`` its mean row::

        score = exp( mean_x sum_y p(y|x) (log p(y|x) - log p(y)) )        (0 log 0 = 0)

    Returns the mean and standard deviation (``ddof=0``) of the split scores. The score lies in
    [1, K]: 1 when every prediction is the same, K for confident predictions spread uniformly.
    """
    p = _np64(probs, "probs")
    if p.ndim != 2 or p.shape[1] < 1:
        raise ValueError(f"probs must have shape (n, K), got {p.shape}")
    if splits < 1 or splits > len(p):
        raise ValueError(f"splits must lie in [1, n={len(p)}], got {splits}")
    if p.min() < 0 or np.abs(p.sum(1) - 1.0).max() > 1e-4:
        raise ValueError("probs must be non-negative with rows summing to 1")
    p = p / p.sum(1, keepdims=True)
    scores = []
    for part in np.array_split(p, splits):
        py = part.mean(0, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(part > 0, part * (np.log(part) - np.log(py)), 0.0)
        scores.append(math.exp(terms.sum(1).mean()))
    scores = np.asarray(scores)
    return float(scores.mean()), float(scores.std())


# --------------------------------------------------------------------------- mode coverage
def mode_coverage(mode_ids: ArrayLike, n_modes: int = 1000) -> dict:
    """Mode statistics of predicted mode ids ``(n,)`` (integers in ``[0, n_modes)``).

    Returns ``dict(modes_covered, kl_to_uniform, histogram, n)``: ``histogram (n_modes,)`` int64
    counts, ``modes_covered`` the number of modes with at least one sample (VEEGAN / Fedus et al.
    on Color MNIST), and, with ``p = histogram / n``::

        KL(p || uniform) = log K + sum_k p_k log p_k        (0 log 0 = 0, K = n_modes)

    which is 0 for a uniform histogram and ``log K`` when every sample falls in one mode.
    """
    ids = mode_ids.detach().cpu().numpy() if isinstance(mode_ids, torch.Tensor) else np.asarray(mode_ids)
    if ids.ndim != 1 or ids.size == 0:
        raise ValueError(f"mode_ids must be a non-empty 1-D array, got shape {ids.shape}")
    if ids.dtype.kind not in "iu":
        if ids.dtype.kind != "f" or not np.all(np.isfinite(ids)) or not np.all(ids == np.round(ids)):
            raise ValueError(f"mode_ids must be integers, got dtype {ids.dtype}")
    ids = ids.astype(np.int64)
    if n_modes < 1 or ids.min() < 0 or ids.max() >= n_modes:
        raise ValueError(f"mode_ids must lie in [0, n_modes={n_modes}), got [{ids.min()}, {ids.max()}]")
    hist = np.bincount(ids, minlength=n_modes).astype(np.int64)
    p = hist[hist > 0] / ids.size
    kl = math.log(n_modes) + float((p * np.log(p)).sum())
    return {"modes_covered": int((hist > 0).sum()), "kl_to_uniform": max(kl, 0.0), "histogram": hist,
            "n": int(ids.size)}


# --------------------------------------------------------------------------- SSIM / MS-SSIM
def gaussian_window(size: int = 7, sigma: float = 1.5) -> np.ndarray:
    """The normalised 1-D Gaussian window ``(size,)`` (the 2-D window is its outer product)."""
    r = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-(r ** 2) / (2.0 * sigma ** 2))
    return g / g.sum()


def _images(x: ArrayLike, name: str) -> torch.Tensor:
    t = _t64(x, name)
    if t.ndim != 4:
        raise ValueError(f"{name} must have shape (n, C, H, W), got {tuple(t.shape)}")
    return t


def _n_scales(h: int, w: int, window_size: int, scales: Optional[int]) -> int:
    """The number of scales: ``scales`` if given (checked), else as many as fit (at most 5)."""
    fit = 0
    while fit < len(MS_SSIM_WEIGHTS) and min(h >> fit, w >> fit) >= window_size:
        fit += 1
    if fit == 0:
        raise ValueError(f"images {h}x{w} are smaller than the {window_size}x{window_size} window")
    if scales is None:
        return fit
    if not 1 <= scales <= fit:
        raise ValueError(f"scales must lie in [1, {fit}] for {h}x{w} images and a {window_size}x{window_size} "
                         f"window, got {scales}")
    return int(scales)


def _scale_weights(n_scales: int, weights: Optional[Sequence[float]]) -> torch.Tensor:
    w = np.asarray(MS_SSIM_WEIGHTS[:n_scales] if weights is None else weights, dtype=np.float64)
    if w.shape != (n_scales,) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError(f"weights must be {n_scales} non-negative numbers, got {weights}")
    return torch.from_numpy(w / w.sum())


class _SSIM:
    """Vectorised (MS-)SSIM between pairs of images of one stack ``x (N, C, H, W)``.

    The pyramid and the per-image local means and second moments are computed once; each pair
    ``(i, j)`` then needs only the filtered product ``G * (x_i x_j)`` at each scale.
    """

    def __init__(self, x: torch.Tensor, window_size: int, sigma: float, n_scales: int, data_range: float,
                 k1: float, k2: float):
        self.c1 = (k1 * data_range) ** 2
        self.c2 = (k2 * data_range) ** 2
        self.g = torch.from_numpy(gaussian_window(window_size, sigma))
        self.levels = []  # (image, mean, second moment) per scale, finest first
        for s in range(n_scales):
            if s:
                x = F.avg_pool2d(x, 2)  # 2x2 averages (an odd last row / column is dropped)
            self.levels.append((x, self._filter(x), self._filter(x * x)))

    def _filter(self, x: torch.Tensor) -> torch.Tensor:
        """Separable Gaussian filtering of each channel, 'valid' region only (no padding)."""
        n, c, h, w = x.shape
        y = x.reshape(n * c, 1, h, w)
        k = self.g.numel()
        y = F.conv2d(y, self.g.view(1, 1, 1, k))
        y = F.conv2d(y, self.g.view(1, 1, k, 1))
        return y.reshape(n, c, h - k + 1, w - k + 1)

    def terms(self, i: torch.Tensor, j: torch.Tensor) -> tuple[list, torch.Tensor]:
        """Per scale, the spatial means of the contrast-structure map ``cs`` (scales 1..M-1) and, at
        the coarsest scale M, of the SSIM map ``l * cs``; each ``(P, C)`` for the ``P`` pairs."""
        cs_means = []
        last = len(self.levels) - 1
        for s, (x, mu, m2) in enumerate(self.levels):
            mi, mj = mu[i], mu[j]
            sij = self._filter(x[i] * x[j]) - mi * mj
            sii, sjj = m2[i] - mi * mi, m2[j] - mj * mj
            cs = (2.0 * sij + self.c2) / (sii + sjj + self.c2)
            if s < last:
                cs_means.append(cs.mean((2, 3)))
            else:
                lum = (2.0 * mi * mj + self.c1) / (mi * mi + mj * mj + self.c1)
                ssim_last = (lum * cs).mean((2, 3))
        return cs_means, ssim_last

    def ms_ssim(self, i: torch.Tensor, j: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """``(P,)`` MS-SSIM of the pairs, averaged over channels."""
        cs_means, ssim_last = self.terms(i, j)
        val = torch.relu(ssim_last) ** weights[-1]
        for s, cs in enumerate(cs_means):
            val = val * torch.relu(cs) ** weights[s]
        return val.mean(1)


_PAIR_CHUNK = 512


def _check_window(window_size: int, sigma: float, data_range: float) -> None:
    if window_size < 1 or sigma <= 0 or data_range <= 0:
        raise ValueError(f"need window_size >= 1, sigma > 0 and data_range > 0, got {window_size}, {sigma}, "
                         f"{data_range}")


def _paired(a: ArrayLike, b: ArrayLike) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Stack ``a`` and ``b`` (same shape) and return ``(stack, i, j)`` with pairs ``(a_k, b_k)``."""
    x, y = _images(a, "a"), _images(b, "b")
    if x.shape != y.shape:
        raise ValueError(f"a and b must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    n = x.shape[0]
    return torch.cat([x, y]), torch.arange(n), torch.arange(n, 2 * n)


def ssim(a: ArrayLike, b: ArrayLike, window_size: int = 7, sigma: float = 1.5, data_range: float = 2.0,
         k1: float = 0.01, k2: float = 0.03) -> np.ndarray:
    """Single-scale SSIM (Wang et al. 2004) of image pairs: ``a, b (n, C, H, W)`` -> ``(n,)``.

    Local statistics use a ``window_size`` x ``window_size`` Gaussian window (std ``sigma``) over the
    valid region (no padding); with ``C1 = (k1 L)^2``, ``C2 = (k2 L)^2``, ``L = data_range``::

        SSIM map = (2 mu_a mu_b + C1) (2 s_ab + C2) / ((mu_a^2 + mu_b^2 + C1) (s_a^2 + s_b^2 + C2))

    with ``s`` the local (biased, window-weighted) covariances. Returns the mean of the map over
    positions and channels (no clamping).
    """
    _check_window(window_size, sigma, data_range)
    x, i, j = _paired(a, b)
    _n_scales(x.shape[2], x.shape[3], window_size, 1)
    if len(i) == 0:
        return np.zeros(0)
    m = _SSIM(x, window_size, sigma, 1, data_range, k1, k2)
    return m.terms(i, j)[1].mean(1).numpy()


def ms_ssim(a: ArrayLike, b: ArrayLike, window_size: int = 7, sigma: float = 1.5, scales: Optional[int] = None,
            data_range: float = 2.0, weights: Optional[Sequence[float]] = None, k1: float = 0.01,
            k2: float = 0.03) -> np.ndarray:
    """Multi-scale SSIM (Wang, Simoncelli & Bovik 2003) of image pairs: ``a, b (n, C, H, W)`` -> ``(n,)``.

    Adaptation to 28x28 images: the standard 11x11 window and 5 scales (which need images of at
    least 176x176) do not fit, so the window is a 7x7 Gaussian with sigma 1.5 and the number of
    scales is, by default, as many as fit: scale ``s`` has side ``floor(side / 2^s)`` (2x2 average
    pooling between scales) and must be at least the window size. For 28x28 images and a 7x7
    window that is 3 scales, 28 -> 14 -> 7 (the coarsest scale has a single valid window position).
    The weights are the standard ones ``(0.0448, 0.2856, 0.3001, 0.2363, 0.1333)`` cut to the first
    M scales and renormalised to sum to 1 (for M = 3: 0.0711, 0.4530, 0.4760).

    As in Wang's reference MATLAB code (and pytorch-msssim), per channel::

        MS-SSIM = SSIM_M^{w_M} prod_{s=1}^{M-1} cs_s^{w_s}

    where ``cs_s`` is the mean over valid positions of the contrast-structure map
    ``(2 s_ab + C2) / (s_a^2 + s_b^2 + C2)`` at scale ``s`` and ``SSIM_M`` the mean of the full SSIM
    map (luminance times contrast-structure) at the coarsest scale; ``C1 = (0.01 L)^2``,
    ``C2 = (0.03 L)^2``, ``L = data_range`` (2 for images in [-1, 1]). Negative ``cs_s`` and
    ``SSIM_M`` are clamped to 0 before the power, as common implementations do (a fractional
    power of a negative number is undefined), so values lie in [0, 1]. The result is averaged over
    channels. It is 1 for identical images and symmetric in ``a`` and ``b``.
    """
    _check_window(window_size, sigma, data_range)
    x, y = _images(a, "a"), _images(b, "b")
    if x.shape != y.shape:
        raise ValueError(f"a and b must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    m_scales = _n_scales(x.shape[2], x.shape[3], window_size, scales)
    w = _scale_weights(m_scales, weights)
    out = [np.zeros(0)]
    for k in range(0, len(x), _PAIR_CHUNK):  # bounded memory: one chunk of pairs at a time
        xc, yc = x[k:k + _PAIR_CHUNK], y[k:k + _PAIR_CHUNK]
        n = len(xc)
        m = _SSIM(torch.cat([xc, yc]), window_size, sigma, m_scales, data_range, k1, k2)
        out.append(m.ms_ssim(torch.arange(n), torch.arange(n, 2 * n), w).numpy())
    return np.concatenate(out)


def ms_ssim_diversity(images: ArrayLike, batches: int = 5, batch_size: int = 64, seed: int = 0,
                      **ms_ssim_kwargs) -> float:
    """Mean pairwise MS-SSIM within random batches of ``images (n, C, H, W)``: lower = more diverse.

    Each of ``batches`` batches holds ``min(batch_size, n)`` distinct images drawn without
    replacement (``numpy.random.default_rng(seed)``, so the batches are a pure function of
    ``seed``); the score of a batch is the mean :func:`ms_ssim` over all its ``b (b - 1) / 2``
    distinct pairs, computed at once (in chunks), and the result is the mean over batches. A batch
    of identical images scores 1. ``ms_ssim_kwargs`` go to :func:`ms_ssim` (window, scales, ...).
    """
    x = _images(images, "images")
    if len(x) < 2:
        raise ValueError(f"need at least 2 images, got {len(x)}")
    if batches < 1 or batch_size < 2:
        raise ValueError(f"need batches >= 1 and batch_size >= 2, got {batches} and {batch_size}")
    kw = dict(window_size=7, sigma=1.5, scales=None, data_range=2.0, weights=None, k1=0.01, k2=0.03)
    unknown = set(ms_ssim_kwargs) - set(kw)
    if unknown:
        raise TypeError(f"unknown ms_ssim arguments: {sorted(unknown)}")
    kw.update(ms_ssim_kwargs)
    _check_window(kw["window_size"], kw["sigma"], kw["data_range"])
    m_scales = _n_scales(x.shape[2], x.shape[3], kw["window_size"], kw["scales"])
    w = _scale_weights(m_scales, kw["weights"])
    rng = np.random.default_rng(seed)
    b = min(int(batch_size), len(x))
    i_all, j_all = torch.triu_indices(b, b, offset=1)
    means = []
    for _ in range(batches):
        idx = torch.from_numpy(rng.choice(len(x), b, replace=False))
        m = _SSIM(x[idx], kw["window_size"], kw["sigma"], m_scales, kw["data_range"], kw["k1"], kw["k2"])
        total = 0.0
        for k in range(0, len(i_all), _PAIR_CHUNK):
            total += float(m.ms_ssim(i_all[k:k + _PAIR_CHUNK], j_all[k:k + _PAIR_CHUNK], w).sum())
        means.append(total / len(i_all))
    return float(np.mean(means))


# --------------------------------------------------------------------------- independent critic
class _MLPCritic(nn.Module):
    """``f(x) = W3 lrelu(W2 lrelu(W1 x + b1) + b2) + b3`` on flattened images (LeakyReLU slope 0.2)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, hidden),
                                 nn.LeakyReLU(0.2), nn.Linear(hidden, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)


def _flat_samples(arrays: dict) -> dict:
    out, shape = {}, None
    for name, a in arrays.items():
        t = _t64(a, name)
        if t.ndim < 2 or t.shape[0] < 1:
            raise ValueError(f"{name} must have shape (n, ...) with n >= 1, got {tuple(t.shape)}")
        if shape is None:
            shape = tuple(t.shape[1:])
        elif tuple(t.shape[1:]) != shape:
            raise ValueError(f"{name} has sample shape {tuple(t.shape[1:])}, expected {shape}")
        out[name] = t.reshape(t.shape[0], -1)
    return out


def w_critic(real_train: ArrayLike, fake_train: ArrayLike, real_test: ArrayLike, fake_test: ArrayLike,
             steps: int = 300, lr: float = 1e-3, batch_size: int = 64, gp_weight: float = 10.0, hidden: int = 128,
             seed: int = 0, device: Union[str, torch.device] = "cpu") -> dict:
    """Independent Wasserstein critic estimate (Danihelka et al. 2017; Fedus et al. 2018).

    Samples are ``(n, ...)`` (e.g. images ``(n, C, 28, 28)``), flattened per sample; all four share
    one sample shape. A fresh critic, an MLP ``D -> hidden -> hidden -> 1`` with LeakyReLU(0.2)
    (:class:`_MLPCritic`, PyTorch's default initialisation; ``D = 784`` for MNIST, 2352 for Color
    MNIST), is trained in float64 for ``steps`` Adam steps (``lr``, betas (0.5, 0.9))
    on minibatches of ``batch_size`` drawn with replacement from ``real_train`` and ``fake_train``,
    minimising the WGAN-GP loss (Gulrajani et al. 2017)::

        E f(fake) - E f(real) + gp_weight E (|grad f(x_hat)| - 1)^2,
        x_hat = e real + (1 - e) fake,  e ~ U(0, 1) per sample

    and the estimate is ``value = mean f(real_test) - mean f(fake_test)`` on the held-out test
    splits (a lower bound, up to the Lipschitz penalty, on W1; near 0 when both come from one
    law, where only the finite-test-sample noise ``stderr`` remains).

    Deterministic given ``seed`` on one machine and thread count: the initial weights come from
    ``torch.manual_seed(seed)`` inside ``torch.random.fork_rng`` (the global RNG state is restored
    afterwards) and every minibatch and interpolation from a CPU ``torch.Generator`` seeded with
    ``seed``. Returns ``dict(value, stderr, train_value, real_test_mean, fake_test_mean, steps, lr,
    batch_size, gp_weight, hidden, seed, seconds)``; ``stderr = sqrt(var f(real_test) / n +
    var f(fake_test) / m)`` and ``train_value`` is the same difference on the full train splits
    (biased upwards by overfitting; not the estimate).

    The defaults (300 steps of 64 + 64 samples, 128 hidden units) favour speed over tightness: on
    one CPU thread they take about 3 s for 28x28 grey images. More steps or units give a larger
    (tighter) bound on distinct laws; compare values only at equal settings.
    """
    t0 = time.perf_counter()
    if steps < 0 or batch_size < 1 or lr <= 0 or gp_weight < 0 or hidden < 1:
        raise ValueError("need steps >= 0, batch_size >= 1, lr > 0, gp_weight >= 0 and hidden >= 1")
    d = _flat_samples({"real_train": real_train, "fake_train": fake_train, "real_test": real_test,
                       "fake_test": fake_test})
    dev = torch.device(device)
    dim = d["real_train"].shape[1]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        critic = _MLPCritic(dim, hidden).double()
    critic.to(dev)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(critic.parameters(), lr=lr, betas=(0.5, 0.9))
    xr, xf = d["real_train"].to(dev), d["fake_train"].to(dev)
    critic.train()
    for _ in range(steps):
        ir = torch.randint(0, len(xr), (batch_size,), generator=gen).to(dev)
        jf = torch.randint(0, len(xf), (batch_size,), generator=gen).to(dev)
        e = torch.rand(batch_size, 1, generator=gen, dtype=torch.float64).to(dev)
        r, f = xr[ir], xf[jf]
        x_hat = (e * r + (1.0 - e) * f).requires_grad_(True)
        grad, = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
        gp = ((grad.norm(dim=1) - 1.0) ** 2).mean()
        loss = critic(f).mean() - critic(r).mean() + gp_weight * gp
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    critic.eval()

    def values(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return torch.cat([critic(x[k:k + 1024].to(dev)).cpu() for k in range(0, len(x), 1024)])

    fr, ff = values(d["real_test"]), values(d["fake_test"])
    tr, tf = values(d["real_train"]), values(d["fake_train"])
    var_r = float(fr.var()) if len(fr) > 1 else 0.0
    var_f = float(ff.var()) if len(ff) > 1 else 0.0
    return {"value": float(fr.mean() - ff.mean()), "stderr": math.sqrt(var_r / len(fr) + var_f / len(ff)),
            "train_value": float(tr.mean() - tf.mean()), "real_test_mean": float(fr.mean()),
            "fake_test_mean": float(ff.mean()), "steps": int(steps), "lr": float(lr), "batch_size": int(batch_size),
            "gp_weight": float(gp_weight), "hidden": int(hidden), "seed": int(seed),
            "seconds": time.perf_counter() - t0}
