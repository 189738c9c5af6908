"""Bias, spread and standard-error coverage of gandy's divergence estimators at the sizes the lab
logs (64, 256, 1,024 points of each law), against truths computed from both exact densities.

    python benchmarks/divergence_bias.py [--draws 100] [--sizes 64 256 1024]
    python benchmarks/divergence_bias.py --cost [--repeats 5]

Targets P and generated laws Q are Gaussian mixtures (their densities are known, so the truth is a
Monte-Carlo average of exact log-density ratios over 400,000 points, standard error about 0.3 % of
every value here). Two estimators: ``knn`` (both laws from samples only: gandy's fallback where
the target has no density) and ``density`` (the target's exact log p, the k-NN log q: what the lab
uses for KL(Q||P) on every Gaussian-mixture target). Prints one markdown table with a row per
column and construction (``ROWS``: the three the lab logs on a target with a density, plus the
two-sample KL(Q||P) it logs on targets without one) and size: mean relative bias, relative standard
deviation over draws, the mean reported standard error relative to that spread ("se/sd", with a
95 % interval from the chi-square law of the spread over the draws), the coverage of +-1.96 se
intervals, and for js and kl_pq the bias of the density construction the lab does not use. The
standard errors are gandy's half-sampling ones (gandy.core.metrics.divergences.half_sample_se).
One torch thread.

``--cost`` instead times one log's k-NN work (``sample_divergences`` with the MMD, plus
``density_kl_qp``) with and without the standard errors (``resamples=0``: no half-samples and only
k neighbours per point, the same work as before the standard errors were half-sampled) at the
logged sizes, 256 to 2,048 points in 2 and 784 dimensions: the best of ``--repeats`` interleaved
calls.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import chi2

from gandy.core.metrics.divergences import LOG2, RESAMPLES, density_kl_qp, sample_divergences
from gandy.core.targets import GaussianMixture

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from oracles import density_divergences  # noqa: E402  (the tests' oracle: one copy)

PAIRS = {
    "1-D N(0,1) vs N(1,1)": (GaussianMixture([[0.0]], 1.0), GaussianMixture([[1.0]], 1.0)),
    "1-D N(0,1) vs N(1,1.5^2)": (GaussianMixture([[0.0]], 1.0), GaussianMixture([[1.0]], 1.5)),
    "2-D N(0,I) vs N((1,0),I)": (GaussianMixture([[0.0, 0.0]], 1.0), GaussianMixture([[1.0, 0.0]], 1.0)),
    "two_modes_1d vs modes at +-1.5": (GaussianMixture([[-2.0], [2.0]], 0.1), GaussianMixture([[-1.5], [1.5]], 0.1)),
    "ring8 std 0.05 vs 0.1": None,  # built below
}
_a = [2 * math.pi * k / 8 for k in range(8)]
_ring = [[2 * math.cos(t), 2 * math.sin(t)] for t in _a]
PAIRS["ring8 std 0.05 vs 0.1"] = (GaussianMixture(_ring, 0.05), GaussianMixture(_ring, 0.1))
KEYS = ("js", "kl_pq", "kl_qp")
ROWS = (("js", "knn"), ("kl_pq", "knn"), ("kl_qp", "density"), ("kl_qp", "knn"))
"""(column, construction) per table row: the lab logs ``density`` for kl_qp on a target with a
density, ``knn`` otherwise (gandy.runs.tracking.tracked)."""


def draw(law: GaussianMixture, n: int, g: torch.Generator) -> torch.Tensor:
    comp = torch.multinomial(law.weights.double(), n, replacement=True, generator=g)
    return law.modes.double()[comp] + law.stds.double()[comp, None] * torch.randn(n, law.dim, generator=g, dtype=torch.float64)


def truth(p: GaussianMixture, q: GaussianMixture, n: int = 400_000, seed: int = 123) -> dict:
    g = torch.Generator().manual_seed(seed)
    y, x = draw(p, n, g), draw(q, n, g)
    lpy, lqy, lpx, lqx = p.log_density(y), q.log_density(y), p.log_density(x), q.log_density(x)
    js = 0.5 * (LOG2 + lpy - torch.logaddexp(lpy, lqy)).mean() + 0.5 * (LOG2 + lqx - torch.logaddexp(lpx, lqx)).mean()
    return {"js": float(js), "kl_pq": float((lpy - lqy).mean()), "kl_qp": float((lqx - lpx).mean())}


def measure(p, q, n: int, draws: int, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed + n)
    est = {m: {k: [] for k in KEYS} for m in ("knn", "density")}
    se = {m: {k: [] for k in KEYS} for m in ("knn", "density")}
    for _ in range(draws):
        y, x = draw(p, n, g), draw(q, n, g)
        dens = density_divergences(y, x, p.log_density(y), p.log_density(x))
        v, e = density_kl_qp(x, p.log_density(x))  # what the lab logs (the oracle returns the same)
        assert v == dens["kl_qp"] and e == dens["kl_qp_se"]
        for m, out in (("knn", sample_divergences(y, x, mmd=False)), ("density", dens)):
            for k in KEYS:
                est[m][k].append(out[k])
                se[m][k].append(out[f"{k}_se"])
    return {m: {k: (np.array(est[m][k]), np.array(se[m][k])) for k in KEYS} for m in est}


def ratio(se: np.ndarray, est: np.ndarray) -> tuple[float, float, float]:
    """Mean reported standard error over the spread of the estimates, with a 95 % interval from the
    chi-square law of the sample variance over ``len(est)`` draws (the mean s.e. taken as exact)."""
    r, k = len(est) - 1, se.mean() / est.std(ddof=1)
    return k, k * math.sqrt(chi2.ppf(0.025, r) / r), k * math.sqrt(chi2.ppf(0.975, r) / r)


def cost(repeats: int) -> None:
    """Print the time of one log's k-NN work with and without its standard errors (``--cost``)."""
    g = np.random.default_rng(0)
    print("| n | d | without s.e. | with s.e. | ratio |\n|---|---|---|---|---|")
    for n, d in ((256, 2), (1024, 2), (2048, 2), (256, 784), (1024, 784), (2048, 784)):
        p, q, lp = g.normal(size=(n, d)), g.normal(size=(n, d)), np.zeros(n)
        best = {0: math.inf, RESAMPLES: math.inf}
        for _ in range(repeats):
            for r in best:
                t = time.perf_counter()
                sample_divergences(p, q, resamples=r)
                density_kl_qp(q, lp, resamples=r)
                best[r] = min(best[r], time.perf_counter() - t)
        print(f"| {n} | {d} | {1000 * best[0]:.0f} ms | {1000 * best[RESAMPLES]:.0f} ms | {best[RESAMPLES] / best[0]:.1f}x |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--draws", type=int, default=100)
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 256, 1024])
    ap.add_argument("--cost", action="store_true", help="time the standard errors instead")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.cost:
        return cost(args.repeats)
    t0 = time.perf_counter()
    print(f"{args.draws} draws per cell, k = 5, 1 torch thread\n")
    print("| P vs Q | div | truth | n | bias | sd | se/sd [95 %] | 95 % coverage | bias of the density construction |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, (p, q) in PAIRS.items():
        tr = truth(p, q)
        for n in args.sizes:
            res = measure(p, q, n, args.draws)
            for k, used in ROWS:
                t = tr[k]
                est, se = res[used][k]
                cover = float(np.mean(np.abs(est - t) <= 1.96 * se))
                r, lo, hi = ratio(se, est) if est.std() > 0 else (math.nan,) * 3  # e.g. every draw clipped to 0
                other = f"{100 * (res['density'][k][0].mean() - t) / t:+.0f} %" if used == "knn" and k != "kl_qp" else "—"
                print(f"| {name} | {k} ({used}) | {t:.4f} | {n} | {100 * (est.mean() - t) / t:+.0f} % | {100 * est.std(ddof=1) / t:.0f} % | "
                      f"{f'{r:.2f} [{lo:.2f}, {hi:.2f}]' if r == r else 'no spread'} | {cover:.2f} | {other} |", flush=True)
    print(f"\n{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
