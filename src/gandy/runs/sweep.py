"""Sweeps: a grid of configurations x seeds, run as batched simulations in chunks, resumable.

A ``sweep:`` section maps dotted config paths to values::

    sweep:
      kernel.g2: {logspace: [0.01, 1.0], num: 12}     # endpoints are values, not exponents
      optim.critic.lr: [1.0e-4, 1.0e-3, 1.0e-2]
      batch_size: auto                                # members per chunk (auto: sized to memory)

The grid product is crossed with ``seeds``. Members (grid point x seed) that share every key
outside ``gandy.runs.members.PER_MEMBER`` run as one simulation with a leading batch axis; per-member numbers
(learning rates, penalty weight, g1, g2) are ``(B,)`` tensors. Members never interact, and every
random number is keyed by the member's seed, so a member's numbers do not depend on its chunk.

Store (``DIR``): ``config.yaml`` first, then per finished chunk under ``chunks/`` its particle
snapshots (``ID.snapshots.npz``, :func:`gandy.runs.snapshots.sweep_snapshots`; none for image targets) and a
pair of Parquet files (metrics, then results: the results file marks the chunk done), and at the end
``results.parquet``, ``metrics.parquet``, ``summary.json`` and figures. ``--resume`` skips the
chunks already done, so a run killed at any moment finishes with exactly the rows of an
uninterrupted one.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from gandy.core.kernels import TwoNumber
from gandy.core.metrics.phases import PHASES
from gandy.core.resources import host_memory, human
from gandy.runs import config as C
from gandy.runs.budget import output_parts
from gandy.runs.build import build, critic_widths, engine_of, progress_label, resolve_device, run_threads, target_of
from gandy.runs.executors import EXECUTORS
from gandy.runs.loop import Checkpoint, simulate
from gandy.runs.members import get_dotted, member_keys_of, member_values
from gandy.runs.outputs import scoped_locks
from gandy.runs.results import add_image_metrics, member_tables
from gandy.runs.snapshots import sweep_snapshots
from gandy.runs.store import (
    checkpoint_path,
    chunk_done,
    prepare_out,
    read_chunks,
    read_marker,
    remove_output,
    start_sweep,
    sweep_config,
    write_chunk,
    write_marker,
    write_tables,
)

MAX_MEMBERS = 1_000_000
"""The most members (grid points or trials x seeds) a sweep or search may have: every member is
expanded into its own validated config before anything runs (about 3 ms and 8 kB each)."""
MEMBER_BYTES = 16_000
"""Memory one expanded member holds until the sweep ends (its config and bookkeeping; measured
7.5 kB), for the check that a sweep's plan fits in memory before it is expanded."""

SPEC_KEYS = ("linspace", "logspace")
RESERVED = ("batch_size",)


@dataclass(frozen=True)
class Axis:
    """One swept key: its values in grid order and whether the grid is logarithmic."""

    key: str
    values: tuple
    scale: str  # "linear" | "log"


@dataclass
class SweepMember:
    """One member of a sweep or search: a grid point (or trial) with one seed."""

    index: int
    seed: int
    values: dict  # swept key -> value
    config: C.Config  # the member's full config (seeds = [seed], sweep = None)


@dataclass
class Chunk:
    """Members that run as one batched simulation. ``id`` names its files in ``chunks/``."""

    id: str
    config: dict  # the shared config (json dump) the simulation is built from
    members: list  # [(index, seed, {member key: value})]


@dataclass
class Plan:
    axes: list
    members: list
    chunks: list = field(default_factory=list)


# ----------------------------------------------------------------------------- grid
def _flatten(raw: dict, prefix: str = "") -> dict:
    """Nested sweep entries (from dotted CLI overrides) become dotted keys; later ones win."""
    out = {}
    for k, v in raw.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and not any(s in v for s in SPEC_KEYS):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


_NUMBER = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")


def _number(v: Any) -> Any:
    """A sweep value as written: PyYAML (YAML 1.1) reads ``1e-05`` or ``1.33352e-05`` as a string
    (its floats need a dot and a signed exponent); such a string is the number it spells."""
    return float(v) if isinstance(v, str) and _NUMBER.match(v.strip()) else v


def _axis(key: str, spec: Any) -> Axis:
    field_ = f"sweep.{key}"
    if isinstance(spec, list):
        if not spec:
            raise C.ConfigError(field_, "needs at least one value")
        vals = tuple(_number(v) for v in spec)
        pos = all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in vals)
        ratios = pos and len(vals) > 2 and np.allclose(np.diff(np.log(vals)), np.log(vals[1] / vals[0]), rtol=1e-6)
        return Axis(key, vals, "log" if ratios else "linear")
    if isinstance(spec, dict):
        kind = [s for s in SPEC_KEYS if s in spec]
        extra = set(spec) - {*SPEC_KEYS, "num"}
        if len(kind) != 1 or extra or "num" not in spec:
            raise C.ConfigError(field_, "expected a list, {linspace: [a, b], num: n} or {logspace: [a, b], num: n}")
        ends, num = spec[kind[0]], spec["num"]
        if not (isinstance(ends, list) and len(ends) == 2 and all(isinstance(e, (int, float)) and not isinstance(e, bool) for e in ends)):
            raise C.ConfigError(field_, f"{kind[0]} needs two numbers [a, b]")
        if not isinstance(num, int) or isinstance(num, bool) or num < 1:
            raise C.ConfigError(field_, "num must be a positive integer")
        if num > MAX_MEMBERS:  # refused before the values are generated
            raise C.ConfigError(field_, f"num {num:,} is more values than a sweep's {MAX_MEMBERS:,} members")
        if kind[0] == "logspace":
            if min(ends) <= 0:
                raise C.ConfigError(field_, "logspace endpoints are values and must be > 0")
            return Axis(key, tuple(float(v) for v in np.geomspace(ends[0], ends[1], num)), "log")
        return Axis(key, tuple(float(v) for v in np.linspace(ends[0], ends[1], num)), "linear")
    raise C.ConfigError(field_, "expected a list, {linspace: ...} or {logspace: ...}")


def parse_sweep(raw: Optional[dict]) -> tuple[list[Axis], Optional[int]]:
    """Axes in the order given and the chunk size (None = auto)."""
    if not raw:
        return [], None
    raw = dict(raw)
    bs = raw.pop("batch_size", "auto")
    if bs != "auto" and (not isinstance(bs, int) or isinstance(bs, bool) or bs < 1):
        raise C.ConfigError("sweep.batch_size", "must be a positive integer or auto")
    axes = [_axis(k, v) for k, v in _flatten(raw).items()]
    for a in axes:
        if a.key == "seeds":
            raise C.ConfigError("sweep.seeds", "seeds are crossed with the grid already; list them under seeds")
    return axes, None if bs == "auto" else bs


DISTRIBUTIONS = ("loguniform", "uniform", "int", "choice")


def parse_search(raw: dict) -> tuple[list[Axis], list[dict], Optional[int]]:
    """A ``search:`` section -> (one axis per key, the drawn trials ``[{key: value}]``, chunk size).

    ``trials`` draws from ``params`` with ``numpy.random.default_rng(seed)``, key by key in the
    order given, so a trial's values depend only on (seed, trial, params). A comma-joined key
    (``optim.critic.lr,optim.generator.lr``) draws once and sets every path to that value.
    """
    raw = dict(raw)
    unknown = set(raw) - {"trials", "seed", "params", "batch_size"}
    if unknown:
        raise C.ConfigError(f"search.{sorted(unknown)[0]}", "unknown key (expected trials, seed, params, batch_size)")
    trials, seed = raw.get("trials"), raw.get("seed", 0)
    if not isinstance(trials, int) or isinstance(trials, bool) or trials < 1:
        raise C.ConfigError("search.trials", "must be a positive integer")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise C.ConfigError("search.seed", "must be an integer")
    params = raw.get("params")
    if not isinstance(params, dict) or not params:
        raise C.ConfigError("search.params", "needs at least one dotted key -> distribution")
    bs = raw.get("batch_size", "auto")
    if bs != "auto" and (not isinstance(bs, int) or isinstance(bs, bool) or bs < 1):
        raise C.ConfigError("search.batch_size", "must be a positive integer or auto")
    specs = []
    for key, spec in params.items():
        field_ = f"search.params.{key}"
        if not isinstance(spec, dict) or len(spec) != 1 or next(iter(spec)) not in DISTRIBUTIONS:
            raise C.ConfigError(field_, f"expected one of {', '.join('{' + d + ': ...}' for d in DISTRIBUTIONS)}")
        kind, arg = next(iter(spec.items()))
        if kind == "choice":
            if not isinstance(arg, list) or not arg:
                raise C.ConfigError(field_, "choice needs a non-empty list")
        elif not (isinstance(arg, list) and len(arg) == 2 and arg[0] <= arg[1]
                  and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in arg)):
            raise C.ConfigError(field_, f"{kind} needs two numbers [low, high] with low <= high")
        elif kind == "loguniform" and arg[0] <= 0:
            raise C.ConfigError(field_, "loguniform bounds must be > 0")
        elif kind == "int" and (arg[0] != int(arg[0]) or arg[1] != int(arg[1])):
            raise C.ConfigError(field_, "int bounds must be integers")
        specs.append((key, kind, arg))
    points = []
    for t in range(trials):
        rng = np.random.default_rng([seed, t])  # trial t's draws depend on (seed, t, params) only
        point = {"trial": t}
        for key, kind, arg in specs:
            if kind == "choice":
                point[key] = arg[int(rng.integers(len(arg)))]
            elif kind == "loguniform":
                point[key] = float(np.exp(rng.uniform(np.log(arg[0]), np.log(arg[1]))))
            elif kind == "uniform":
                point[key] = float(rng.uniform(arg[0], arg[1]))
            else:
                point[key] = int(rng.integers(int(arg[0]), int(arg[1]) + 1))
        points.append(point)
    axes = [Axis("trial", tuple(range(trials)), "linear")]
    axes += [Axis(k, tuple(p[k] for p in points), "log" if kind == "loguniform" else "linear") for k, kind, _ in specs]
    return axes, points, None if bs == "auto" else bs


def check_size(cfg: C.Config, points: int, available: Optional[int] = None) -> int:
    """Refuse a sweep or search of ``points`` grid points (or trials) x ``cfg.seeds`` before it is
    expanded: more than :data:`MAX_MEMBERS` members, or members whose configs
    (:data:`MEMBER_BYTES` each) and metric rows (``steps / log_every`` rows each, collected at the
    end) cannot be held in the memory available (:func:`gandy.core.resources.host_memory`, or
    ``available``). The error names ``sweep`` (``search``), or ``steps`` where the rows dominate.
    Returns the number of members."""
    section = "search" if cfg.search else "sweep"
    seeds = len(cfg.seeds)
    members = points * seeds
    what = f"{points:,} {'trials' if cfg.search else 'grid points'} x {seeds} seed{'s' if seeds != 1 else ''}"
    if members > MAX_MEMBERS:
        raise C.ConfigError(section, f"{what} = {members:,} members; at most {MAX_MEMBERS:,} (split it into several sweeps)")
    parts = {section: members * MEMBER_BYTES, "steps": members * (cfg.steps // cfg.log_every + 2) * 40 * 8}
    have, source = (available, "given") if available is not None else host_memory()
    need = sum(parts.values())
    if need > have:
        field_ = max(parts, key=parts.get)
        raise C.ConfigError(field_, f"{what} = {members:,} members need about {human(need)} of memory for their "
                                    f"configs and metric rows (largest part: {field_} {human(parts[field_])}) but "
                                    f"{human(have)} is available ({source})")
    return members


def _points(cfg: C.Config) -> tuple[list[Axis], list[dict], Optional[int]]:
    """The configurations to run: a sweep's grid product or a search's trials, as ``[{key: value}]``;
    their number is bounded (:func:`check_size`) before any is made."""
    if cfg.search:
        trials = cfg.search.get("trials") if isinstance(cfg.search, dict) else None
        if isinstance(trials, int) and not isinstance(trials, bool) and trials >= 1:
            check_size(cfg, trials)  # before the trials are drawn
        return parse_search(cfg.search)
    axes, bs = parse_sweep(cfg.sweep)
    check_size(cfg, math.prod(len(a.values) for a in axes))
    return axes, [dict(zip((a.key for a in axes), p)) for p in itertools.product(*(a.values for a in axes))], bs


def expand(cfg: C.Config) -> tuple[list[Axis], list[SweepMember], Optional[int]]:
    """All members of a sweep or search config, validated: points x seeds, in a fixed order."""
    axes, points, bs = _points(cfg)
    section = "search" if cfg.search else "sweep"
    base = cfg.model_dump(mode="json")
    base.pop("sweep", None)
    base.pop("search", None)
    members: list[SweepMember] = []
    for point in points:
        data = json.loads(json.dumps(base))
        for key, v in point.items():
            for path in key.split(",") if key != "trial" else ():  # a search's trial number is a label
                C._set_dotted(data, path.strip(), v)
        try:
            pcfg = C.load_config(data)
        except C.ConfigError as e:
            vals = ", ".join(f"{k}={v}" for k, v in point.items())
            raise C.ConfigError(f"{section}.{e.field}" if e.field else section, f"at {vals}: {e.message}") from None
        for seed in cfg.seeds:
            mc = pcfg.model_copy(update={"seeds": [seed]})
            members.append(SweepMember(len(members), seed, dict(point), mc))
    return axes, members, bs


def _shared(cfg: C.Config) -> dict:
    """What members must share to run in one batch: the config without its per-member keys."""
    d = cfg.model_dump(mode="json")
    d.pop("seeds", None)
    d.pop("sweep", None)
    d.pop("search", None)
    for key in member_keys_of(cfg):
        *path, last = key.split(".")
        node = d
        for p in path:
            node = node[p]
        node.pop(last, None)
    return d


def _critic_widths(cfg: C.Config) -> list[int]:
    """The critic's hidden sizes (an MLP's widths; features or centres for the kernel critics): its
    registry entry's ``widths`` (ConfigError on ``critic.name`` for an unknown critic)."""
    return critic_widths(cfg)


def member_bytes(cfg: C.Config, n_target: int, d: int = 1) -> int:
    """A generous estimate of one member's working memory in bytes (activations of the forward,
    backward and double backward, critic parameters with gradients and Adam moments), in ``d``
    dimensions."""
    n = cfg.particles.n
    widths = _critic_widths(cfg)
    points = n + (cfg.batch_size or n_target or n)
    act = 16 * points * sum(widths)
    n_params = sum(a * b for a, b in zip([d, *widths], [*widths, 1])) + sum(widths)
    return 4 * (act + 8 * n_params + 8 * n * max(d, 1))


FAST_TENSOR_BYTES = 24e6
"""Auto chunks keep every batched weight matrix of the critic (with its gradient and Adam moments,
fresh or rewritten at every step) below this size. Larger ones are allocated by mmap (glibc's limit
is 32 MB) and page-faulted afresh at every step: in 784-D at width 512 a chunk of 112 members spent
40 % of its time in the kernel and took 18 ms per member-step against 11 ms in chunks of 16
(benchmarks/RESULTS.md, "784-D"). Activations are not counted: the compiled engine fuses most of
them away, and capping them cut a 1-D sweep's chunks from 940 to 341 members and slowed it 28 %."""


def fast_chunk(cfg: C.Config, d: int) -> int:
    """The most members per chunk whose largest critic weight stays under FAST_TENSOR_BYTES
    (CPU runs only: a GPU wants its chunks as large as memory allows)."""
    widths = _critic_widths(cfg)
    dims = [d, *widths, 1]
    largest = max(a * b for a, b in zip(dims[:-1], dims[1:]))
    return max(1, int(FAST_TENSOR_BYTES // (4 * largest)))


def plan(cfg: C.Config, chunk: Optional[int] = None, memory_budget: float = 1.0e9, min_chunks: int = 1) -> Plan:
    """Group members by what they share, then cut each group into chunks of ``chunk`` members
    (auto: as many as fit ``memory_budget`` bytes by :func:`member_bytes`, at most 1024 and at most
    :func:`fast_chunk`), and into
    a multiple of ``min_chunks`` chunks (one round per worker) where it has that many members; auto chunks of
    a group are balanced (sizes differ by at most one), so that workers finish together and a
    compiled step meets at most two batch shapes."""
    axes, members, bs = expand(cfg)
    chunk = chunk or bs
    groups: dict[str, list[SweepMember]] = {}
    for m in members:
        groups.setdefault(json.dumps(_shared(m.config), sort_keys=True), []).append(m)
    chunks = []
    for ms in groups.values():
        target = target_of(ms[0].config.target)
        n_target, d = int(target.default_batch or 0), target.dim
        fast = fast_chunk(ms[0].config, d) if resolve_device(ms[0].config.device).type == "cpu" else 1024
        size = chunk or int(max(1, min(1024, memory_budget // max(member_bytes(ms[0].config, n_target, d), 1), fast)))
        count = min(len(ms), -(-max(-(-len(ms) // size), 1) // min_chunks) * min_chunks)  # a multiple of min_chunks
        bounds = [round(i * len(ms) / count) for i in range(count + 1)] if not chunk else \
            [*range(0, len(ms), size), len(ms)]
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            part = ms[lo:hi]
            values = [(m.index, m.seed, {k: float(get_dotted(m.config, k)) for k in member_keys_of(m.config)}) for m in part]
            chunks.append(Chunk(f"{part[0].index:07d}", part[0].config.model_dump(mode="json"), values))
    return Plan(axes, members, chunks)


# ----------------------------------------------------------------------------- execution
def run_chunk(chunk: Chunk, axes_keys: list[str], values_by_index: dict,
              on_step: Optional[Callable[[int], None]] = None,
              checkpoint: Optional[Checkpoint] = None) -> tuple[pd.DataFrame, pd.DataFrame, dict, Optional[str]]:
    """Simulate one chunk; return its ``(metrics, results, snapshots, note)``: the two tables with
    sweep columns, the particle snapshots of :func:`gandy.runs.snapshots.sweep_snapshots` and a line on
    its checkpoint (None where there was none). Pure: plain data in, DataFrames and arrays out, so
    that it can run in another process (Ray). ``on_step(k)`` is told of every step, with k = the
    number of member-steps it made. ``checkpoint``: save the chunk's state at intervals, and
    continue from a save left by a killed run; a save that cannot be trusted is discarded (the
    chunk starts over) and ``note`` says so."""
    base = C.load_config(chunk.config)
    sim = build(base, members=len(chunk.members))
    cfgs = []
    for _, seed, vals in chunk.members:
        d = base.model_dump(mode="json")
        for k, v in vals.items():
            C._set_dotted(d, k, v)
        cfgs.append(C.Config.model_validate(d))
    for c in cfgs:  # per-member kernel checks (PSD for this N) that pydantic cannot make
        if c.kernel.name == "two_number":
            TwoNumber(sim.n, c.kernel.g1, c.kernel.g2)
    seeds = [s for _, s, _ in chunk.members]
    step = (lambda _: on_step(len(seeds))) if on_step is not None else None
    with run_threads(base):
        raw = simulate(sim, seeds, progress=step, members=member_values(cfgs, sim.device),
                       checkpoint=checkpoint)
    metrics, results = member_tables(sim, raw)
    add_image_metrics(sim, raw, results)
    index = [i for i, _, _ in chunk.members]
    for df in (metrics, results):
        df["member"] = [index[j] for j in df["member"]]
        for k in reversed(axes_keys):
            df.insert(1, k, [values_by_index[i][k] for i in df["member"]])
    snapshots = sweep_snapshots(sim, raw, index)
    if base.metrics.keep_particles:
        snapshots["final"] = {"members": np.asarray(index, dtype=np.int64), "final_particles": raw.final_particles.astype(np.float32)}
    return metrics, results, snapshots, checkpoint_note(raw)


def checkpoint_note(raw) -> Optional[str]:
    """What a simulation did with a checkpoint it found: resumed from it, or discarded it."""
    if raw.discarded is not None:
        return f"checkpoint discarded ({raw.discarded}); restarted from step 0"
    if raw.resumed_from:
        return f"resumed from its checkpoint at step {raw.resumed_from}"
    return None


def chunk_fingerprint(chunk: Chunk) -> str:
    """What a chunk's checkpoint must match: its shared config and its members."""
    blob = json.dumps({"config": chunk.config, "members": chunk.members}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def check_chunking(out: Path, p: Plan) -> None:
    """Refuse to resume a sweep whose finished chunks were cut otherwise than ``p`` (it ran with
    another ``workers``): a chunk is known as done by its id alone, so a different cut would count
    members as done that never ran, or run some twice. Every finished chunk's tables are read
    here, so that a damaged one is refused (a ConfigError naming it and saying what to delete)
    before any work, not after the sweep's last chunk."""
    planned = {ch.id: [i for i, _, _ in ch.members] for ch in p.chunks}
    for f in sorted((Path(out) / "chunks").glob("*.results.parquet")):
        cid = f.name.removesuffix(".results.parquet")
        results, _ = read_chunks(out, [cid])
        members = sorted(int(m) for m in results["member"].unique()) if "member" in results.columns else []
        if not members:
            raise C.ConfigError(str(f), f"holds no members: not a chunk's results; delete this file and rerun "
                                        f"with --resume to recompute chunk {cid}")
        if planned.get(cid) != members:
            raise C.ConfigError("workers", f"{out} was cut into other chunks than this run would cut it (chunk {cid} "
                                           f"holds members {members[0]}..{members[-1]}): resume with the --workers "
                                           "it started with")


@scoped_locks()  # the output's lock is held for the call and given back when it returns
def run_sweep(
    cfg: C.Config,
    out: Path,
    resume: bool = False,
    force: bool = False,
    executor: str = "local",
    address: Optional[str] = None,
    progress: bool = False,
    draw: Optional[Callable[[Path], object]] = None,
    echo: Callable[[str], None] = lambda s: None,
    checkpoint_seconds: float = 60.0,
    checkpoint_steps: Optional[int] = None,
    connect_timeout: float = 20.0,
    workers: int = 1,
) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Run a sweep config into ``out``; return ``(results, metrics, summary)``.

    Everything is checked before anything is written: every member's config, every chunk's build
    and memory, the output location (:func:`gandy.runs.store.prepare_out`: ``force`` replaces only a
    gandy output, ``resume`` continues only a gandy sweep of the same config) and the executor's
    cluster. A chunk saves its state every ``checkpoint_seconds`` (or ``checkpoint_steps``) to
    ``chunks/ID.checkpoint.pt``, so a run killed inside a chunk resumes from the last save.
    ``workers``: the sweep is cut into at least this many chunks, which ``executor: processes``
    runs in as many processes (the chunks, hence the numbers, depend on ``workers``, not on the
    executor).
    """
    out = Path(out)
    if executor not in EXECUTORS:
        raise C.ConfigError("executor", f"unknown executor {executor!r}; valid: {', '.join(EXECUTORS)}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise C.ConfigError("workers", f"must be a whole number >= 1, got {workers!r}")
    p = plan(cfg, min_chunks=workers)  # validates every member before anything is written
    sim0, engines = None, set()
    for ch in p.chunks:  # and every shared config (dimensions, data files, kernels, memory) too
        sim = build(C.load_config(ch.config), members=len(ch.members))
        engines.add(engine_of(sim))
        if sim0 is None:
            sim0 = sim  # kept for the output-size estimate; the others are dropped as they are checked
    resolved = C.dump_config(cfg)
    if resume and out.is_dir() and read_marker(out) is None and (out / "chunks").is_dir() \
            and sweep_config(out) == resolved:
        write_marker(out, "sweep", manifest=False)  # a sweep of an earlier gandy (no marker yet) with this very config
    n_modes = 0 if sim0.target.modes is None else int(sim0.target.modes.shape[0])
    state = prepare_out(out, "sweep", force=force, resume=resume,
                        need_parts=output_parts(cfg, sim0.d, n_modes, len(p.members), sweep=True))
    if state == "resume":
        if sweep_config(out) != resolved:
            raise C.ConfigError("out", f"{out} holds a different sweep; --resume needs the same config and overrides")
        check_chunking(out, p)
    EXECUTORS[executor].check(address, connect_timeout)  # an unreachable cluster: refused, nothing written
    if state == "replace":
        remove_output(out)
    start_sweep(out, resolved)
    keys = [a.key for a in p.axes]
    values = {m.index: m.values for m in p.members}
    todo = [ch for ch in p.chunks if not chunk_done(out, ch.id)]
    echo(f"{len(p.members)} members in {len(p.chunks)} chunks; {len(p.chunks) - len(todo)} already done")
    bar = None
    if progress:
        bar = tqdm(total=sum(len(ch.members) for ch in todo) * cfg.steps, desc=f"member-steps ({progress_label(engines)})", unit="",
                   unit_scale=True, disable=None)
    t0 = time.perf_counter()

    def checkpoints(ch: Chunk) -> Checkpoint:
        return Checkpoint(checkpoint_path(out, ch.id), chunk_fingerprint(ch),
                          every_seconds=checkpoint_seconds, every_steps=checkpoint_steps)

    def done(ch: Chunk, result) -> None:
        *tables, note = result
        if note is not None:
            echo(f"chunk {ch.id}: {note}")
        write_chunk(out, ch.id, *tables)

    def step(k: int) -> None:
        if bar is not None:
            bar.update(k)

    task = functools.partial(run_chunk, axes_keys=keys, values_by_index=values)
    EXECUTORS[executor].run(task, todo, done, address, step, checkpoints, workers)
    if bar is not None:
        bar.close()
    wall = time.perf_counter() - t0
    results, metrics = read_chunks(out, [ch.id for ch in p.chunks])
    results = results.sort_values("member").reset_index(drop=True)
    metrics = metrics.sort_values(["member", "step"]).reset_index(drop=True)
    phases = results.phase.tolist()
    summary = {
        "sweep": {"axes": [{"key": a.key, "values": list(a.values), "scale": a.scale} for a in p.axes],
                  "seeds": list(cfg.seeds), "members": len(p.members), "chunks": len(p.chunks),
                  "chunk_sizes": sorted({len(ch.members) for ch in p.chunks}), "executor": executor,
                  "workers": workers},
        "wall_seconds_this_invocation": wall,
        "phase_counts": {ph: phases.count(ph) for ph in PHASES},
        "torch_version": torch.__version__,
        "engines": sorted(engines),
    }
    write_tables(out, {"results": results, "metrics": metrics}, summary)
    if draw is not None:
        draw(out)
    return results, metrics, summary
