"""What a simulation did, in tables: each member's phase (``classify``) and final order parameters,
and the logged series (``member_tables``)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from gandy.core.metrics.order import ORDER_PARAMETERS
from gandy.core.step import Simulation
from gandy.runs import config as C
from gandy.runs.loop import SimOutput

PHASES = ("converged", "collapsed", "oscillating", "diverged")


def classify(series: dict[str, np.ndarray], n_modes: int, scale: float, pcfg: C.PhaseConfig, diverged: bool) -> str:
    """Final phase of one member from its logged order parameters (arrays over logged steps).

    Rule (docs/phases.md): ``diverged`` if the run produced non-finite values or blew up;
    otherwise over the last ``window`` fraction of logged steps (at least two points):
    ``collapsed`` if the mean coverage_kl exceeds ``collapse_kl`` (default 0.5 log K);
    ``converged`` if mean_dist moved by at most ``settle_tol * scale`` and the final
    on_mode fraction is at least ``on_mode``; else ``oscillating`` (not settled on the target).
    Targets without modes (``n_modes = 0``) judge settling on w1 and skip the coverage tests.
    """
    if diverged:
        return "diverged"
    md = np.asarray(series["mean_dist" if n_modes > 0 else "w1"], dtype=float)
    if md.size == 0 or not np.isfinite(md).all():
        return "diverged"
    w = max(2, math.ceil(pcfg.window * md.size))
    w = min(w, md.size)
    kl = np.asarray(series["coverage_kl"], dtype=float)[-w:]
    limit = pcfg.collapse_kl if pcfg.collapse_kl is not None else 0.5 * math.log(max(n_modes, 1))
    if n_modes > 1 and kl.mean() > limit:
        return "collapsed"
    settled = (md[-w:].max() - md[-w:].min()) <= pcfg.settle_tol * scale
    if settled and (n_modes == 0 or float(series["on_mode"][-1]) >= pcfg.on_mode):
        return "converged"
    return "oscillating"


def member_tables(sim: Simulation, raw: SimOutput):
    """``(metrics, results)`` DataFrames of a simulation: the logged series with a ``member``
    column, and one row per member with its final order parameters (the last logged values before
    any divergence), ``final_step``, ``phase`` and ``diverged_step``; for image targets also
    ``samples_uint8``, the member's first 16 final images as 0-255 integers (sample grids of a
    sweep or search, whose store keeps no trajectories)."""
    metrics = pd.DataFrame(raw.metrics)
    target = sim.target
    n_modes = 0 if target.modes is None else int(target.modes.shape[0])
    rows = []
    for i, (seed, series) in enumerate(zip(raw.seeds, (g for _, g in metrics.groupby("member", sort=True)))):
        series = series.sort_values("step")
        div = int(raw.diverged_step[i])
        phase = classify({k: series[k].to_numpy() for k in ORDER_PARAMETERS}, n_modes, target.scale, sim.cfg.phase, div >= 0)
        last = (series if div < 0 else series[series.step < div]).iloc[-1]
        rows.append({"member": i, "seed": seed, **{k: float(last[k]) for k in ORDER_PARAMETERS},
                     "final_step": int(last["step"]), "phase": phase, "diverged_step": div})
    results = pd.DataFrame(rows)
    if target.image_shape is not None:
        x = np.nan_to_num(raw.final_particles[:, :16], nan=0.0)
        results["samples_uint8"] = list(np.round((np.clip(x, -1, 1) + 1) * 127.5).astype(np.uint8).reshape(len(x), -1))
    return metrics, results
