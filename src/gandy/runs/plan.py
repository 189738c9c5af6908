"""The planner of sweeps and searches: a config -> its members -> chunks. Nothing runs or is written.

A sweep's grid product (or a search's drawn trials, :mod:`gandy.runs.grammar`) is crossed with
``seeds``; each grid point x seed is a :class:`SweepMember` with its own validated config. Members
that share every key outside ``gandy.runs.members.PER_MEMBER`` can run as one simulation with a
leading batch axis: :func:`cut` groups them so and cuts each group into :class:`Chunk` s sized to
memory (:func:`gandy.runs.budget.chunk_members`). Members never interact, and every random number
is keyed by the member's seed, so a member's numbers do not depend on its chunk.
:mod:`gandy.runs.execute` runs members; :mod:`gandy.runs.sweep` ties the two together.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from dataclasses import dataclass, field
from typing import Optional, Sequence

from gandy.runs import config as C
from gandy.runs.budget import check_size, chunk_budget, chunk_members
from gandy.runs.build import resolve_device, target_of
from gandy.runs.grammar import Axis, parse_search, parse_sweep
from gandy.runs.members import get_dotted, per_member_keys


@dataclass(frozen=True)
class SweepMember:
    """One member of a sweep or search: a grid point (or trial) with one seed. ``index`` names it in
    an output folder (its rows' ``member`` column, its chunk's id): one index, one member."""

    index: int
    seed: int
    values: dict  # swept key -> value: the member's columns in the tables, in this order
    config: C.Config  # the member's full config (seeds = [seed], sweep = None)


@dataclass
class Chunk:
    """Members that run as one batched simulation. ``id`` names its files in ``chunks/``."""

    id: str
    config: dict  # the shared config (json dump) the simulation is built from
    members: list  # [(index, seed, {member key: value})]


@dataclass
class Plan:
    """A sweep or search config's axes (:class:`gandy.runs.grammar.Axis`), members and chunks."""

    axes: list
    members: list
    chunks: list = field(default_factory=list)


# ----------------------------------------------------------------------------- members
def _points(cfg: C.Config) -> tuple[list[Axis], list[dict], Optional[int]]:
    """The configurations to run: a sweep's grid product or a search's trials, as ``[{key: value}]``;
    their number is bounded (:func:`gandy.runs.budget.check_size`) before any is made."""
    if cfg.search:
        trials = cfg.search.get("trials") if isinstance(cfg.search, dict) else None
        if isinstance(trials, int) and not isinstance(trials, bool) and trials >= 1:
            check_size(cfg, trials)  # before the trials are drawn
        return parse_search(cfg.search)
    axes, bs = parse_sweep(cfg.sweep)
    check_size(cfg, math.prod(len(a.values) for a in axes))
    return axes, [dict(zip((a.key for a in axes), p)) for p in itertools.product(*(a.values for a in axes))], bs


def members_at(cfg: C.Config, points: Sequence[dict], first: int = 0, section: Optional[str] = None) -> list[SweepMember]:
    """The members of ``points`` (``[{key: value}]``; a key may join several dotted paths with
    commas, and a ``trial`` key is a label only) x ``cfg.seeds``, point by point, numbered from
    ``first``: each point's values set on ``cfg`` (its sweep and search sections dropped) and
    validated. A bad point is a ConfigError naming ``section.FIELD`` (``section``: the config's
    ``search`` or ``sweep``) and the point's values."""
    section = section or ("search" if cfg.search else "sweep")
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
            members.append(SweepMember(first + len(members), seed, dict(point), mc))
    return members


def expand(cfg: C.Config) -> tuple[list[Axis], list[SweepMember], Optional[int]]:
    """All members of a sweep or search config, validated: points x seeds, in a fixed order; with
    the axes and the section's chunk size (None: auto)."""
    axes, points, bs = _points(cfg)
    return axes, members_at(cfg, points), bs


# ----------------------------------------------------------------------------- chunks
def _shared(cfg: C.Config) -> dict:
    """What members must share to run in one batch: the config without its per-member keys."""
    d = cfg.model_dump(mode="json")
    d.pop("seeds", None)
    d.pop("sweep", None)
    d.pop("search", None)
    for key in per_member_keys(cfg):
        *path, last = key.split(".")
        node = d
        for p in path:
            node = node[p]
        node.pop(last, None)
    return d


def cut(members: Sequence[SweepMember], chunk: Optional[int] = None, memory_budget: float = 1.0e9,
        min_chunks: int = 1) -> list[Chunk]:
    """Group ``members`` by what they share, then cut each group into chunks of ``chunk`` members
    (auto: :func:`gandy.runs.budget.chunk_members` for ``memory_budget`` bytes, on a GPU for a
    share of its memory: :func:`gandy.runs.budget.chunk_budget`), and into a
    multiple of ``min_chunks`` chunks (one round per worker) where it has that many members; auto
    chunks of a group are balanced (sizes differ by at most one), so that workers finish together
    and a compiled step meets at most two batch shapes, and hold two members or more where the
    group has two: :func:`gandy.runs.loop.simulate` pads a chunk of one member to two (its numbers
    bit for bit those it gets beside others), so a chunk of one costs what a chunk of two does, in
    time and memory. A chunk's id is its first member's index.
    A function of the list alone: the same members give the same chunks."""
    groups: dict[str, list[SweepMember]] = {}
    for m in members:
        groups.setdefault(json.dumps(_shared(m.config), sort_keys=True), []).append(m)
    chunks = []
    for ms in groups.values():
        target = target_of(ms[0].config.target)
        n_target, d = int(target.default_batch or 0), target.dim
        device = resolve_device(ms[0].config.device)
        size = chunk or chunk_members(ms[0].config, n_target, d, device.type == "cpu", chunk_budget(device, memory_budget))
        count = min(len(ms), -(-max(-(-len(ms) // size), 1) // min_chunks) * min_chunks)  # a multiple of min_chunks
        count = min(count, max(1, len(ms) // 2))  # no chunk of one from two or more: simulate pads it to two
        bounds = [round(i * len(ms) / count) for i in range(count + 1)] if not chunk else \
            [*range(0, len(ms), size), len(ms)]
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            part = ms[lo:hi]
            values = [(m.index, m.seed, {k: float(get_dotted(m.config, k)) for k in per_member_keys(m.config)}) for m in part]
            chunks.append(Chunk(f"{part[0].index:07d}", part[0].config.model_dump(mode="json"), values))
    return chunks


def plan(cfg: C.Config, chunk: Optional[int] = None, memory_budget: float = 1.0e9, min_chunks: int = 1) -> Plan:
    """A sweep or search config's axes, members (:func:`expand`) and chunks (:func:`cut`; ``chunk``
    None: the section's ``batch_size``)."""
    axes, members, bs = expand(cfg)
    return Plan(axes, members, cut(members, chunk or bs, memory_budget, min_chunks))


def chunk_fingerprint(chunk: Chunk) -> str:
    """What a chunk's checkpoint must match: its shared config and its members."""
    blob = json.dumps({"config": chunk.config, "members": chunk.members}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()
