"""Adaptive search for a phase boundary (``gandy boundary``): bisection along one axis of a sweep
config, row by row of the other, on the fraction of seeds that fail; then a logistic fit per row
with a bootstrap interval (:mod:`gandy.core.metrics.boundary`).

The config's ``sweep:`` section gives the two axes: ``x`` (searched: its range, its scale, and by
default its number of values as the search's resolution) and ``y`` (its values are the rows). A
row's candidate positions are the ``resolution`` points of the x range, evenly spaced on the axis's
scale (the grid of a sweep with ``num: resolution``). Round 0 runs both ends of every row; a row
whose ends agree (both fail, or neither) has no crossing in the range and stops there (censored).
Each later round runs, in every open row, the midpoint of its bracket [last position that did not
fail, first that did] and halves it, until the bracket is one position wide; with ``per_round`` K
> 1, K positions evenly spaced inside the bracket, which shrinks it about K + 1 times (fewer,
wider rounds: what a GPU, whose round time hardly grows with its members, wants). All rows and
seeds of a round run as one call of the member-list executor
(:func:`gandy.runs.execute.run_members`), so they share batched chunks.

A row whose ends agree is ``censored`` (``half_failed_at_both_ends`` or
``under_half_failed_at_both_ends``) and has no x50; a fitted x50 outside the positions tried is
``above_range`` or ``below_range`` (:class:`gandy.core.metrics.boundary.Boundary`). A point fails where at least half its seeds ``fail`` (``SPLIT_FAILED`` by default: collapsed or ran
away). The bisection assumes that failing is monotone along a row (the direction is read from
the row's ends); where it is not, it finds one crossing and the fit says how sharp it is.

Store (``DIR``): the marker, ``config.yaml`` (the config with its seeds), ``boundary.json`` (the
search's options), the executor's ``chunks/``, and at the end ``results.parquet`` and
``metrics.parquet`` (every member's rows, with the round that ran it), ``points.parquet`` (per
point: runs, failures), ``boundary.parquet`` (per row: the y key, ``x50``, ``lo``, ``hi``,
``members``, ``seeds``, ...), ``summary.json`` and ``figures/boundary.png``. A search killed at any
moment and resumed (``resume``) replays its rounds from the stored rows: each round's members are
a function of the earlier rounds' outcomes, so it runs the same members under the same numbers
and ends with the rows of an uninterrupted search.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import pandas as pd
import torch

from gandy.core.atomic import write_atomic
from gandy.core.errors import option
from gandy.core.metrics.boundary import LEVEL, METHOD
from gandy.core.metrics.phases import PHASES, SPLIT_FAILED
from gandy.runs import config as C
from gandy.runs.execute import check_members, check_options, run_members
from gandy.runs.executors import EXECUTORS
from gandy.runs.grammar import parse_sweep
from gandy.runs.outputs import scoped_locks
from gandy.runs.plan import members_at
from gandy.runs.store import (
    prepare_out,
    read_json,
    remove_output,
    same_config,
    start_sweep,
    write_marker,
    write_tables,
)
from gandy.runs.tables import boundary_table, point_table

KIND = "boundary"
"""The marker kind of a boundary search's output folder."""


@dataclass(frozen=True)
class Search:
    """What a boundary search runs: the ``x`` key and its ``resolution`` positions ``xs`` (on
    ``scale``), the ``y`` key and its values ``ys`` (the rows), the ``seeds`` of every point and
    the phases that count as failing."""

    x: str
    y: str
    xs: tuple
    ys: tuple
    scale: str  # "log" | "linear"
    seeds: tuple
    fail: tuple = SPLIT_FAILED
    per_round: int = 1  # positions tried inside each open row's bracket per round (1: bisection)

    @property
    def resolution(self) -> int:
        return len(self.xs)

    def options(self) -> dict:
        """The options a resumed search must match (``boundary.json``; ``per_round`` only where it is
        not 1, so a bisection stored before the option existed resumes)."""
        return {"x": self.x, "y": self.y, "resolution": self.resolution, "seeds": list(self.seeds),
                "fail": list(self.fail), "xs": list(self.xs), "ys": list(self.ys), "scale": self.scale} \
            | ({"per_round": self.per_round} if self.per_round != 1 else {})


def plan_search(cfg: C.Config, x: str, y: str, seeds: Optional[int] = None, resolution: Optional[int] = None,
                fail: Sequence[str] = SPLIT_FAILED, per_round: int = 1) -> Search:
    """The search over ``cfg``'s ``sweep:`` section: ``x`` and ``y`` must be its two axes (ConfigError
    naming ``x``, ``y`` or ``sweep`` otherwise); ``seeds`` (K): seeds 0..K-1 (None: the config's);
    ``resolution``: positions along x (None: the x axis's number of values; at least 3);
    ``per_round``: positions per open row and round (a whole number >= 1; 1: bisection)."""
    if not cfg.sweep:
        raise C.ConfigError("sweep", "a boundary search needs a sweep: section with the x and y axes")
    axes, _ = parse_sweep(cfg.sweep)
    keys = [a.key for a in axes]
    for name, key in (("x", x), ("y", y)):
        if key not in keys:
            raise C.ConfigError(name, f"{key!r} is not an axis of the config's sweep: section (axes: {', '.join(keys)})")
    if x == y:
        raise C.ConfigError("y", "must be another axis than x")
    if len(axes) != 2:
        extra = [k for k in keys if k not in (x, y)]
        raise C.ConfigError("sweep", f"a boundary search runs over exactly two axes, x and y; also swept: {', '.join(extra)}")
    ax = next(a for a in axes if a.key == x)
    ay = next(a for a in axes if a.key == y)
    if resolution is None:
        resolution = len(ax.values)
    _whole("resolution", resolution, 3, " (positions along x)")
    if resolution > 1 + 2 ** 20:
        raise C.ConfigError("resolution", f"{resolution} positions is finer than a search needs; at most {1 + 2 ** 20}")
    _whole("per_round", per_round, 1, " (positions per row and round)")
    if seeds is not None:
        _whole("seeds", seeds, 1)
    seed_list = tuple(cfg.seeds) if seeds is None else tuple(range(seeds))
    bad = [p for p in fail if p not in PHASES]
    if bad or not fail:
        raise C.ConfigError("fail", f"unknown phase {bad[0]!r}; phases: {', '.join(PHASES)}" if bad else "needs a phase")
    values = [float(v) for v in ax.values]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in ax.values):
        raise C.ConfigError(f"sweep.{x}", "a boundary search needs a numeric x axis")
    lo, hi = min(values), max(values)
    if not hi > lo:
        raise C.ConfigError(f"sweep.{x}", "needs a range: two different values at least")
    scale = ax.scale  # logspace, or three or more values evenly spaced in log: log
    xs = np.geomspace(lo, hi, resolution) if scale == "log" else np.linspace(lo, hi, resolution)
    return Search(x, y, tuple(float(v) for v in xs), tuple(ay.values), scale, seed_list, tuple(fail), per_round)


def _whole(field: str, value, least: int, what: str = "") -> None:
    """Refuse a ``value`` that is not a whole number >= ``least`` (ConfigError naming ``field``)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise C.ConfigError(field, f"must be a whole number >= {least}{what}, got {value!r}")


# ----------------------------------------------------------------------------- bisection
@dataclass
class Row:
    """One row's bracket in position indices: ``lo`` (did not fail... or did, see ``up``) and ``hi``.
    ``up``: failing is on the high side of x. ``state``: open, done, or censored (ends agree)."""

    lo: int
    hi: int
    up: bool = True
    state: str = "open"
    censored: str = ""


def bisect(resolution: int, rows: int, evaluate: Callable[[list[tuple[int, int]]], list[float]],
           per_round: int = 1) -> list[Row]:
    """Bisection (``per_round`` 1) or K-section (``per_round`` K) of ``rows`` rows over positions
    0..resolution-1 on the fail fraction that ``evaluate(points)`` gives for points
    ``[(row, position)]`` (one call per round, every open row's points in it). Round 0 asks both
    ends of every row; a row whose ends agree is censored; each later round asks, in every open
    row, the positions ``lo + j (hi - lo) // (K + 1)``, j = 1..K, strictly inside its bracket
    (K = 1: the midpoint), and the bracket becomes the first pair of neighbours, walking from the
    end that does not fail, whose answers change from not failing to failing, until it is one
    position wide. Returns each row's final bracket (``lo``: the side that does not fail)."""
    ends = [(r, i) for r in range(rows) for i in (0, resolution - 1)]
    f = evaluate(ends)
    out = []
    for r in range(rows):
        a, b = f[2 * r] >= 0.5, f[2 * r + 1] >= 0.5
        if a == b:
            out.append(Row(0, resolution - 1, state="censored", censored="half_failed_at_both_ends" if a
                           else "under_half_failed_at_both_ends"))
        else:
            out.append(Row(0, resolution - 1, up=b))
    while True:
        for row in out:
            if row.state == "open" and row.hi - row.lo <= 1:
                row.state = "done"
        active = [r for r, row in enumerate(out) if row.state == "open"]
        if not active:
            return out
        inside = {r: _inside(out[r].lo, out[r].hi, per_round) for r in active}
        asks = [(r, p) for r in active for p in inside[r]]
        f = dict(zip(asks, evaluate(asks)))
        for r in active:
            row = out[r]
            walk = [row.lo, *inside[r], row.hi]
            walk = walk if row.up else walk[::-1]  # from the end that does not fail
            k = [False, *(f[(r, p)] >= 0.5 for p in walk[1:-1]), True].index(True)
            row.lo, row.hi = sorted((walk[k - 1], walk[k]))


def _inside(lo: int, hi: int, k: int) -> list[int]:
    """Up to ``k`` positions evenly spaced strictly between ``lo`` and ``hi`` (no repeats), in order."""
    return sorted({lo + j * (hi - lo) // (k + 1) for j in range(1, k + 1)} - {lo, hi})


# ----------------------------------------------------------------------------- fitting
# ----------------------------------------------------------------------------- running
def _check_resume(out: Path, cfg_text: str, search: Search) -> None:
    opts = read_json(out / "boundary.json") if (out / "boundary.json").is_file() else None
    if not same_config(out, cfg_text) or opts != json.loads(json.dumps(search.options())):
        raise C.ConfigError("out", f"{out} holds another boundary search; {option('resume')} needs the same config, overrides "
                                   "and --x/--y/--seeds/--resolution")


@scoped_locks()
def run_boundary(cfg: C.Config, out: Path, x: str, y: str, seeds: Optional[int] = None,
                 resolution: Optional[int] = None, fail: Sequence[str] = SPLIT_FAILED, per_round: int = 1,
                 resume: bool = False,
                 replace: bool = False, executor: str = "local", address: Optional[str] = None,
                 workers: int = 1, progress: bool = False, echo: Callable[[str], None] = lambda s: None,
                 checkpoint_seconds: float = 60.0, checkpoint_steps: Optional[int] = None,
                 connect_timeout: float = 20.0, draw: Optional[Callable[[Path], object]] = None) -> tuple[pd.DataFrame, dict]:
    """Search ``cfg``'s collapse boundary in ``x`` for every value of ``y`` into ``out`` (see the
    module docstring); return ``(boundary table, summary)``. Checked before anything is written:
    the search (:func:`plan_search`), every position's config (all ``resolution`` x rows points,
    validated), round 0's chunks (built, memory), the output folder and the executor."""
    out = Path(out)
    check_options(executor, workers)
    search = plan_search(cfg, x, y, seeds, resolution, fail, per_round)
    run_cfg = cfg.model_copy(update={"seeds": list(search.seeds)})
    every = [{x: xv, y: yv} for yv in search.ys for xv in search.xs]
    members_at(run_cfg, every, section="sweep")  # every position the search may visit, validated now
    ends = [{x: search.xs[i], y: yv} for yv in search.ys for i in (0, search.resolution - 1)]
    check_members(members_at(run_cfg, ends, section="sweep"), None, workers)  # round 0: built, memory checked
    cfg_text = C.dump_config(run_cfg)
    state = prepare_out(out, KIND, replace=replace, resume=resume)
    if state == "resume":
        _check_resume(out, cfg_text, search)
    EXECUTORS[executor].check(address, connect_timeout)
    if state == "replace":
        remove_output(out)
    out.mkdir(parents=True, exist_ok=True)
    if state != "resume":
        write_marker(out, KIND)
    start_sweep(out, cfg_text)
    if not (out / "boundary.json").exists():
        write_atomic(out / "boundary.json", json.dumps(search.options(), indent=1).encode())

    done: list[pd.DataFrame] = []
    metrics: list[pd.DataFrame] = []
    used = {"members": 0, "rounds": 0, "seconds": 0.0}
    K = len(search.seeds)

    def evaluate(points: list[tuple[int, int]]) -> list[float]:
        pts = [{x: search.xs[i], y: search.ys[r]} for r, i in points]
        members = members_at(run_cfg, pts, first=used["members"], section="sweep")
        echo(f"boundary round {used['rounds']}: {len(pts)} points x {K} seeds")
        rows = run_members(members, out, workers=workers, executor=executor, address=address,
                           connect_timeout=connect_timeout, checkpoint_seconds=checkpoint_seconds,
                           checkpoint_steps=checkpoint_steps, progress=progress, echo=echo)
        res = rows.results.assign(round=used["rounds"])
        done.append(res)
        metrics.append(rows.metrics.assign(round=used["rounds"]))
        used["members"] += len(members)
        used["rounds"] += 1
        used["seconds"] += rows.seconds
        failed = res.phase.isin(list(search.fail)).to_numpy().reshape(len(pts), K)
        return failed.mean(axis=1).tolist()

    brackets = bisect(search.resolution, len(search.ys), evaluate, search.per_round)
    results = pd.concat(done, ignore_index=True)
    table = boundary_table(results, x, y, search.fail, log=search.scale == "log")
    for r, b in enumerate(brackets):  # the table's step bracket is the bisection's final one (step_bracket)
        if b.state == "censored":  # no crossing of one half in the range: no x50, whatever a fit would extrapolate
            table.loc[r, ["x50", "lo", "hi"]] = np.nan
            table.loc[r, "censored"] = b.censored
    full = search.resolution * len(search.ys) * K
    summary = {
        "boundary": {"x": x, "y": y, "scale": search.scale, "resolution": search.resolution, "xs": list(search.xs),
                     "seeds": list(search.seeds), "fail": list(search.fail), "per_round": search.per_round,
                     "level": LEVEL, "method": METHOD,
                     "rounds": used["rounds"], "members": used["members"], "full_grid_members": full,
                     "members_saved": full - used["members"],
                     "rows": json.loads(table.to_json(orient="records"))},
        "sweep": {"axes": [{"key": x, "values": list(search.xs), "scale": search.scale},
                           {"key": y, "values": list(search.ys), "scale": _scale_of(search.ys)}],
                  "seeds": list(search.seeds), "members": used["members"], "executor": executor, "workers": workers,
                  "adaptive": True},
        "wall_seconds_this_invocation": used["seconds"],
        "phase_counts": {ph: int((results.phase == ph).sum()) for ph in PHASES},
        "torch_version": torch.__version__,
        "search": asdict(search) | {"xs": list(search.xs), "ys": list(search.ys)},
    }
    write_tables(out, {"results": results, "metrics": pd.concat(metrics, ignore_index=True),
                       "points": point_table(results, x, y, search.fail), "boundary": table}, summary)
    if draw is not None:
        draw(out)
    echo(f"{out}: {used['members']} members in {used['rounds']} rounds (a full grid at this resolution: {full})")
    return table, summary


def _scale_of(values: Sequence) -> str:
    v = np.asarray([float(a) for a in values])
    if len(v) > 2 and (v > 0).all() and np.allclose(np.diff(np.log(v)), np.log(v[1] / v[0]), rtol=1e-6):
        return "log"
    return "linear"
