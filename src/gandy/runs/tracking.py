"""The divergence columns the loop logs at each logged step (``metrics.divergences``): which
estimator of :mod:`gandy.core.metrics.divergences` applies to a simulation's target and generator,
run for every member."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from gandy.core.metrics.divergences import (
    DIVERGENCES,
    ERRORS,
    RESAMPLES,
    UniformSegment,
    density_kl_qp_batch,
    sample_divergences_batch,
    segments_divergences,
    sliced_w1,
    w1,
)
from gandy.core.metrics.order import w1_from_cost, w1_sorted_1d
from gandy.core.nets.features import Affine
from gandy.core.targets import Embedded, Segment


def _segment_of(target) -> Optional[UniformSegment]:
    """The target's law as an exact segment (parallel_lines, possibly embedded), else None."""
    base, q = (target.base, target.q) if isinstance(target, Embedded) else (target, None)
    if not isinstance(base, Segment):
        return None
    a, b = base.a, base.b
    if q is not None:
        a, b = a @ q.T, b @ q.T
    return UniformSegment(tuple(a.double().cpu().tolist()), tuple(b.double().cpu().tolist()))


def _log_p(target, pts: torch.Tensor) -> Optional[torch.Tensor]:
    """The target's exact log-density at ``pts: (..., n, d)`` as ``(..., n)`` float64 on the CPU (None:
    no density)."""
    v = target.log_density(pts.to(target.mean.device, torch.float64))
    return None if v is None else v.double().cpu()


W1_METHOD = "exact:emd (POT's network simplex)"
"""How ``w1`` is computed above one dimension: the exact optimal transport, from the pooled distance
matrix's cross block. For two samples of one size it is an assignment problem, but scipy's
linear_sum_assignment was measured slower than POT's network simplex on the lab's clouds, and warm
starts from the previous log's potentials did not help (the target sample is fresh at every log):
benchmarks/lab_step.py prints both."""
W1_LINE = "exact:sorted (the quantile functions on the line)"
"""How ``w1`` is computed in one dimension (:func:`~gandy.core.metrics.order.w1_sorted_1d`)."""

HALVES = f"half_sampling({RESAMPLES} halves, delete-d jackknife)"
"""How the k-NN columns' standard errors are computed (:func:`~gandy.core.metrics.divergences.half_sample_se`)."""


@dataclass(frozen=True)
class Seen:
    """What :func:`tracked` reads of a :class:`~gandy.core.step.State`, copied at the logged step
    (the loop may measure a log on a worker thread while the run steps on): the first ``b``
    members' points ``x: (b, N, d)``, ``alive: (b,)`` and, for the affine generator (exact
    segment divergences), its parameters ``gen`` (else None)."""

    x: torch.Tensor
    alive: torch.Tensor
    gen: Optional[dict]


def seen(sim, st, b: int) -> Seen:
    """The copy of ``st`` that :func:`tracked` needs (see :class:`Seen`)."""
    gen = None
    if isinstance(sim.generator, Affine) and st.gen is not None:
        gen = {k: v[:b].detach().clone() for k, v in st.gen.items()}
    return Seen(st.x[:b].detach().clone(), st.alive[:b].clone(), gen)


def stack(views: list) -> Seen:
    """Several :class:`Seen` copies as one, their members stacked in order (the logs measured in
    one pass: :data:`gandy.runs.loop.LOG_BATCH`)."""
    gen = None if views[0].gen is None else {k: torch.cat([v.gen[k] for v in views]) for k in views[0].gen}
    return Seen(torch.cat([v.x for v in views]), torch.cat([v.alive for v in views]), gen)


def tracked(sim, st, ref: torch.Tensor, b: int, order: dict) -> tuple[dict, dict]:
    """Divergence columns, their ``*_se`` and ``w1`` (and ``sw1`` above 10 dimensions) for the first
    ``b`` members of ``st`` (a State or its :func:`seen` copy) at this step: ``(values, methods)``,
    values ``(b,)`` float64 arrays.

    JS and KL are exact where both laws are known in closed form (a segment target and the affine
    generator's segment); KL(Q||P) is estimated with the target's exact log-density where it has
    one (:func:`~gandy.core.metrics.divergences.density_kl_qp`); else they come from the two
    samples (:func:`~gandy.core.metrics.divergences.sample_divergences_batch`, one pooled distance
    matrix per member, every member in one pass, whose cross block also gives the exact W1).
    """
    keys = (*DIVERGENCES, *ERRORS, "w1", *(("sw1",) if sim.d > 10 else ()))
    vals = {k: np.full(b, np.nan) for k in keys}
    target_seg = _segment_of(sim.target)
    exact = target_seg is not None and isinstance(sim.generator, Affine)
    x = st.x[:b, :ref.shape[1]].detach().double().cpu()  # as many points as the target sample
    y = ref[:b].detach().double().cpu()
    live = [i for i in range(b) if bool(st.alive[i]) and bool(torch.isfinite(x[i]).all())]
    density = None if not exact else False  # whether the target has a log-density
    # every live member's estimates at once (a few long array operations: see sample_divergences_batch)
    ests = sample_divergences_batch(y[live], x[live]) if live else []
    if live and density is not False:
        log_p = _log_p(sim.target, x[live])
        density = log_p is not None
        if density:  # only KL(Q||P) gains from the exact log p (docs/lab.md, the bias table)
            near = tuple(torch.stack([e["near_q"][j] for e in ests]) for j in range(2))
            for e, (v, se) in zip(ests, density_kl_qp_batch(x[live], log_p, near=near)):
                e["kl_qp"], e["kl_qp_se"] = v, se
    for i, est in zip(live, ests):
        for k in ("js", "kl_pq", "kl_qp", "mmd"):
            vals[k][i], vals[f"{k}_se"][i] = est[k], est[f"{k}_se"]
        if exact:
            gen = UniformSegment(tuple(st.gen["b"][i].double().cpu().tolist()),
                          tuple((st.gen["a"][i] + st.gen["b"][i]).double().cpu().tolist()))
            for k, v in segments_divergences(target_seg, gen).items():
                vals[k][i], vals[f"{k}_se"][i] = v, np.nan
        cross = est["cross"]
        if sim.d > 1:
            vals["w1"][i] = w1_from_cost(cross.numpy()) if cross is not None else w1(y[i].numpy(), x[i].numpy())[0]
        if sim.d > 10:
            vals["sw1"][i] = sliced_w1(y[i].numpy(), x[i].numpy())[0]
    if sim.d == 1 and live:  # on the line: the sorted quantile functions, exact in O(n log n)
        vals["w1"][live] = w1_sorted_1d(y[live].numpy()[..., 0], x[live].numpy()[..., 0])
    if density is None:  # no member was alive: ask the target itself
        density = _log_p(sim.target, y[0, :1]) is not None
    how = "exact:segments" if exact else f"estimate:knn, s.e. by {HALVES}"
    knn_se = "NaN (exact)" if exact else HALVES
    methods = {"js": how, "kl_pq": how,
               "kl_qp": f"estimate:knn+density (the target's exact log p), s.e. by {HALVES}" if density else how,
               "mmd": "estimate:mmd_unbiased(median bandwidth)",
               "w1": f"{W1_METHOD if sim.d > 1 else W1_LINE} on at most metrics.max_points points of each sample",
               **({"sw1": "estimate:sliced (128 projections), not W1"} if sim.d > 10 else {}),
               **{f"{k}_se": knn_se for k in ("js", "kl_pq", "kl_qp")},
               "mmd_se": "delta method for the U-statistic (per-point kernel means)"}
    if sim.target.modes is not None:
        m = len(x[0])
        f = np.asarray(order["on_mode"][:b], dtype=float)
        vals["high_quality_fraction"], vals["high_quality_fraction_se"] = f, np.sqrt(f * (1 - f) / m)
        methods["high_quality_fraction"] = "fraction within the cover radius of a mode (as on_mode)"
        methods["high_quality_fraction_se"] = "binomial standard error sqrt(f (1 - f) / n)"
    return vals, methods
