"""What a simulation did, in tables: each member's phase (``classify``) and final order parameters,
and the logged series (``member_tables``), with image metrics where they are on
(``add_image_metrics``)."""

from __future__ import annotations

from typing import Optional

import numpy as np
import pandas as pd

from gandy.core.images.evaluate import metric_columns, run_metrics
from gandy.core.metrics.order import ORDER_PARAMETERS
from gandy.core.metrics.phases import SPLIT_FAILED, THRESHOLDS, PhaseRule, classify, scaled_rule
from gandy.core.step import Simulation, State
from gandy.runs.build import image_metrics_spec, phase_rule
from gandy.runs.loop import SimOutput


def member_tables(sim: Simulation, raw: SimOutput):
    """``(metrics, results)`` DataFrames of a simulation: the logged series with a ``member``
    column, and one row per member with its final order parameters (the last logged values before
    any divergence), ``final_step``, ``phase`` (with ``phase_margin`` and ``phase_period``, see
    :class:`gandy.core.metrics.phases.Phase`) and ``diverged_step``. With ``metrics.phase_2x``
    these are judged on the series up to the config's ``steps`` (``sim.loop.horizon``), as a run of
    ``steps`` judges them, and ``phase_2x`` (``phase_2x_margin``, ``phase_2x_period``,
    ``diverged_step_2x``) on the whole series to twice the steps; for image targets also
    ``samples_uint8``, the member's first 16 final images as 0-255 integers (sample grids of a
    sweep or search, whose store keeps no trajectories)."""
    metrics = pd.DataFrame(raw.metrics)
    target = sim.target
    n_modes = 0 if target.modes is None else int(target.modes.shape[0])
    rule, horizon, twice = phase_rule(sim.cfg.phase), sim.loop.horizon, sim.loop.steps > sim.loop.horizon
    rows = []
    for i, (seed, whole) in enumerate(zip(raw.seeds, (g for _, g in metrics.groupby("member", sort=True)))):
        whole = whole.sort_values("step")
        series = whole[whole.step <= horizon]  # what a run of `horizon` steps logged (all of it without phase_2x)
        div_all = int(raw.diverged_step[i])
        div = div_all if div_all <= horizon else -1
        phase = classify({k: series[k].to_numpy() for k in ORDER_PARAMETERS}, n_modes, target.scale, rule,
                         div >= 0, series.step.to_numpy())
        last = (series if div < 0 else series[series.step < div]).iloc[-1]
        row = {"member": i, "seed": seed, **{k: float(last[k]) for k in ORDER_PARAMETERS},
               **{k: float(last[k]) if k in last else float("nan") for k in State.LOGGED},
               "final_step": int(last["step"]), "phase": phase.label, "phase_margin": phase.margin,
               "phase_period": phase.period, "diverged_step": div}
        if twice:
            p2 = classify({k: whole[k].to_numpy() for k in ORDER_PARAMETERS}, n_modes, target.scale, rule,
                          div_all >= 0, whole.step.to_numpy())
            row.update({"phase_2x": p2.label, "phase_2x_margin": p2.margin, "phase_2x_period": p2.period,
                        "diverged_step_2x": div_all})
        rows.append(row)
    results = pd.DataFrame(rows)
    if target.image_shape is not None:
        x = np.nan_to_num(raw.final_particles[:, :16], nan=0.0)
        pixels = np.clip(target.unit_pixels(x), 0.0, 1.0)  # standardised MNIST particles: undo the standardisation
        results["samples_uint8"] = list(np.round(pixels * 255.0).astype(np.uint8).reshape(len(x), -1))
    return metrics, results


def label_changes(results: pd.DataFrame) -> Optional[dict]:
    """How many members' labels changed between ``phase`` (at ``steps``) and ``phase_2x`` (at twice
    the steps): ``{"members", "changed", "split_failed_changed", "transitions": {"transient ->
    converged": k, ...}}``, the transitions sorted by count; ``split_failed_changed``: the members
    that crossed a collapse boundary, failed to split (``SPLIT_FAILED``) at one horizon and not at
    the other. None where the table has no ``phase_2x`` (the option was off)."""
    if "phase_2x" not in results or results.phase_2x.isna().all():
        return None
    r = results.dropna(subset=["phase_2x"])
    moved = r[r.phase != r.phase_2x]
    counts = (moved.phase + " -> " + moved.phase_2x).value_counts()
    return {"members": int(len(r)), "changed": int(len(moved)),
            "split_failed_changed": int((r.phase.isin(SPLIT_FAILED) != r.phase_2x.isin(SPLIT_FAILED)).sum()),
            "transitions": {k: int(v) for k, v in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))}}


def add_image_metrics(sim, raw, results) -> Optional[list]:
    """Where ``metrics.images`` is on, add the sample-quality columns to ``results`` (one row per
    member, in order) and return the per-member values; None where it is off."""
    if not image_metrics_enabled(sim):
        return None
    per_member = run_metrics(sim, raw.state, len(raw.seeds), image_metrics_spec(sim.cfg.metrics.images))
    for k, v in metric_columns(per_member).items():
        results[k] = v
    return per_member


def image_metrics_enabled(sim) -> bool:
    """``metrics.images.enabled``: auto = a network generator on an image target (checked in build)."""
    flag = sim.cfg.metrics.images.enabled
    return flag is True or (flag == "auto" and sim.target.image_shape is not None
                            and sim.generator is not None)


def relabel(metrics: pd.DataFrame, results: pd.DataFrame, n_modes: int, scale: float, rule: PhaseRule,
            upto: Optional[int] = None) -> pd.Series:
    """Every member's phase judged again by ``rule`` from its stored series: ``metrics`` (the
    logged rows) and ``results`` (one row per member, its ``diverged_step``) of a finished run or
    sweep, matched by ``member`` (a sweep's) or else ``seed`` (a run's); only the steps up to
    ``upto`` (the config's ``steps``, where the run went on to twice that with
    ``metrics.phase_2x``; None: all). ``n_modes`` and ``scale``: the target's. With the rule the
    run was labelled by, this gives its ``phase`` column back. A Series of labels on
    ``results``' index."""
    key = "member" if "member" in metrics and "member" in results else "seed"
    m = metrics if upto is None else metrics[metrics.step <= upto]
    groups = {k: g.sort_values("step") for k, g in m.groupby(key, sort=False)}
    labels = []
    for k, div in zip(results[key], results.diverged_step):
        g = groups[k]
        diverged = 0 <= int(div) and (upto is None or int(div) <= upto)
        labels.append(classify({c: g[c].to_numpy() for c in ORDER_PARAMETERS}, n_modes, scale, rule, diverged,
                               g.step.to_numpy()).label)
    return pd.Series(labels, index=results.index, name="phase")


def threshold_sensitivity(metrics: pd.DataFrame, results: pd.DataFrame, n_modes: int, scale: float,
                          rule: PhaseRule, factors: tuple[float, ...] = (0.5, 1.5),
                          upto: Optional[int] = None) -> pd.DataFrame:
    """How many members' labels change when one threshold of the phase rule is scaled, the others
    kept (:func:`gandy.core.metrics.phases.scaled_rule`): for every threshold (``THRESHOLDS``) and
    factor, members relabelled (:func:`relabel`, arguments as there) against their labels under
    ``rule`` itself. Columns ``threshold``, ``factor``, ``value`` (the scaled threshold),
    ``members``, ``changed``, ``split_failed_changed`` (members moved across a collapse boundary:
    into or out of ``SPLIT_FAILED``) and ``transitions`` ("transient -> converged: 3; ..."). Thresholds
    a target never reads (``reach`` with modes, ``on_mode`` and ``collapse_kl`` without) change
    nothing, which the table shows."""
    base = relabel(metrics, results, n_modes, scale, rule, upto)
    rows = []
    for field in THRESHOLDS:
        for f in factors:
            r = scaled_rule(rule, field, f, n_modes)
            new = relabel(metrics, results, n_modes, scale, r, upto)
            moved = base != new
            counts = (base[moved] + " -> " + new[moved]).value_counts()
            rows.append({"threshold": field, "factor": f, "value": float(getattr(r, field)), "members": int(len(base)),
                         "changed": int(moved.sum()),
                         "split_failed_changed": int((base.isin(SPLIT_FAILED) != new.isin(SPLIT_FAILED)).sum()),
                         "transitions": "; ".join(f"{k}: {v}" for k, v in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))})
    return pd.DataFrame(rows)
