"""The executor of member lists: run members as batched chunks, resumably through the store, and
give back their rows.

:func:`run_members` takes members (:class:`gandy.runs.plan.SweepMember`: an index, a seed, the
values that become its columns and its full config), cuts them into chunks
(:func:`gandy.runs.plan.cut`), runs the chunks not yet done (here, in processes or on Ray:
:mod:`gandy.runs.executors`) and returns every asked member's rows. Its output folder keeps, per
finished chunk, ``chunks/ID.metrics.parquet`` and ``chunks/ID.results.parquet`` (which marks it
done), the snapshots (``ID.snapshots.npz``, ``ID.final.npz``) and, while it runs, its checkpoint
(``ID.checkpoint.pt``); all through :mod:`gandy.runs.store`.

What it runs, given the members asked and the chunks already finished in the folder:

* every asked member already finished (in any chunk) is not run again; its stored row must be
  that member (same seed and column values), or the call is refused before any work;
* the others (the call's round) are cut into chunks, and a call killed at any moment and asked
  again cuts them as its first attempt did (:func:`_resume_cut`): its finished chunks are kept,
  the others run, an interrupted one from its checkpoint. So a sweep, or any round, resumes to
  the rows of an uninterrupted run bit for bit, chunk for chunk.

A member's index names it in the folder: the caller numbers the members of a later round after
those of the earlier ones (:func:`gandy.runs.plan.members_at` with ``first``), which is also how a
resumed round tells its own finished chunks from an earlier round's.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from gandy.core.kernels import TwoNumber
from gandy.runs import config as C
from gandy.runs.build import build, engine_of, progress_label, run_steps, run_threads
from gandy.runs.executors import CONNECT_TIMEOUT, EXECUTORS
from gandy.runs.loop import Checkpoint, simulate
from gandy.runs.members import member_values
from gandy.runs.plan import Chunk, SweepMember, chunk_fingerprint, cut
from gandy.runs.results import add_image_metrics, member_tables
from gandy.runs.snapshots import sweep_snapshots
from gandy.runs.store import (
    checkpoint_path,
    drop_stale_live,
    finished_chunks,
    live_path,
    open_chunks,
    read_chunks,
    write_chunk,
)

MEMORY_BUDGET = 1.0e9
"""Bytes of working memory an auto chunk is sized to (:func:`gandy.runs.budget.chunk_members`)."""


# ----------------------------------------------------------------------------- one chunk
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
    if checkpoint is not None and checkpoint.live is not None:  # the live rows carry the sweep's columns
        checkpoint.live_columns = [{"member": i, **{k: values_by_index[i][k] for k in axes_keys}}
                                   for i, _, _ in chunk.members]
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


# ----------------------------------------------------------------------------- checks
def check_options(executor: str, workers: int) -> None:
    """Refuse an unknown ``executor`` or a ``workers`` that is not a whole number >= 1."""
    if executor not in EXECUTORS:
        raise C.ConfigError("executor", f"unknown executor {executor!r}; valid: {', '.join(EXECUTORS)}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise C.ConfigError("workers", f"must be a whole number >= 1, got {workers!r}")


@dataclass
class Work:
    """Members checked and cut, ready to run (:func:`check_members`)."""

    members: list  # [SweepMember], as asked
    chunks: list  # [Chunk]: the members' own cut
    engines: set  # the engines their chunks run on
    sim: object  # the first chunk's built simulation, for estimates of the output
    chunk: Optional[int] = None  # members per chunk (None: auto)
    workers: int = 1
    memory_budget: float = MEMORY_BUDGET

    @property
    def columns(self) -> list[str]:
        """The members' value keys: the columns after ``member`` in their rows."""
        return list(self.members[0].values)


def check_members(members: Sequence[SweepMember], chunk: Optional[int] = None, workers: int = 1,
                  memory_budget: float = MEMORY_BUDGET) -> Work:
    """Cut ``members`` into chunks (:func:`gandy.runs.plan.cut`: ``chunk`` members each, auto
    where None, at least ``workers`` chunks) and build every chunk's simulation, which checks what
    the members' configs cannot say alone (data files, kernels, dimensions, memory); nothing is
    written. The members need distinct indices and the same value keys (ValueError otherwise)."""
    members = list(members)
    if not members:
        raise ValueError("no members to run")
    if len({m.index for m in members}) != len(members):
        raise ValueError("two members share an index; an index names one member in the output folder")
    keys = list(members[0].values)
    if any(list(m.values) != keys for m in members):
        raise ValueError(f"every member needs the value keys {keys} (the columns of the rows), in this order")
    chunks = cut(members, chunk, memory_budget, min_chunks=workers)
    sim0, engines = None, set()
    for ch in chunks:
        sim = build(C.load_config(ch.config), members=len(ch.members))
        engines.add(engine_of(sim))
        if sim0 is None:
            sim0 = sim  # kept for the output-size estimate; the others are dropped as they are checked
    return Work(members, chunks, engines, sim0, chunk, workers, memory_budget)


def _plain(v):
    """A value as plain Python: a Parquet round trip gives arrays for lists, numpy scalars, and NaN
    for a None in a numeric column (a member's value is never NaN: configs refuse it)."""
    if isinstance(v, np.ndarray):
        return [_plain(x) for x in v.tolist()]
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    v = v.item() if isinstance(v, np.generic) else v
    return None if isinstance(v, float) and v != v else v


def _check_stored(out: Path, members: list[SweepMember], chunk_ids: list[str]) -> None:
    """Refuse (ConfigError naming ``out``) where a stored row of an asked member's index is another
    member: another seed or other column values."""
    if not chunk_ids:
        return
    stored, _ = read_chunks(out, chunk_ids)
    rows = {int(r["member"]): r for r in stored.to_dict("records")}
    for m in members:
        row = rows.get(m.index)
        if row is None:
            continue
        want = {"seed": m.seed, **m.values}
        have = {k: _plain(row.get(k)) for k in want}
        if have != {k: _plain(v) for k, v in want.items()}:
            raise C.ConfigError("out", f"{out} holds member {m.index} as {have}, not the asked {want}: number the "
                                       "members of a new round after the ones already there")


# ----------------------------------------------------------------------------- running
def _resume_cut(work: Work, finished: dict[str, list[int]]) -> tuple[dict[str, list[int]], list[Chunk]]:
    """The chunks that hold ``work``'s members (id -> member indices) and those of them to run,
    given the chunks already ``finished`` in the folder (id -> member indices).

    The members are cut as this call's first attempt cut them: a call's round is the asked members
    less those an earlier call finished, and earlier calls numbered their members lower. So for the
    smallest threshold t (0 first: a first round, or a sweep) such that cutting the asked members
    less those finished below t gives back, chunk for chunk, every finished chunk holding one of
    them, that cut is the round's: its finished chunks are kept, the others run (an interrupted one
    from its checkpoint). The largest threshold always fits (nothing of the round finished yet)."""
    done = {i: cid for cid, ms in finished.items() for i in ms}
    asked = [m.index for m in work.members]
    held = {done[i] for i in asked if i in done}
    tries = sorted({0, *(finished[c][0] for c in held), max(asked) + 1})
    for t in tries:
        members = [m for m in work.members if not (m.index in done and m.index < t)]
        cut_t = work.chunks if t == 0 else cut(members, work.chunk, work.memory_budget, min_chunks=work.workers) \
            if members else []
        own = {ch.id: sorted(i for i, _, _ in ch.members) for ch in cut_t}
        in_round = {m.index for m in members}
        if all(own.get(c) == finished[c] for c in held if in_round.intersection(finished[c])):
            earlier = {c: finished[c] for c in sorted(held) if c not in own}
            return {**earlier, **own}, [ch for ch in cut_t if ch.id not in finished]
    raise AssertionError("the last threshold leaves no finished chunk in the round")  # not reached


@dataclass(frozen=True)
class Rows:
    """What :func:`run_members` gives back: every asked member's rows and where they came from."""

    results: pd.DataFrame  # one row per asked member, by member index
    metrics: pd.DataFrame  # the logged series of the asked members, by (member, step)
    chunks: dict  # chunk id -> member indices (sorted), for every chunk holding an asked member
    ran: list  # the ids of the chunks this call ran
    seconds: float  # wall time spent running them


def clock(seconds: float) -> str:
    """A duration as ``h:mm:ss``."""
    s = max(0, round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def execute(work: Work, out: Path, executor: str = "local", address: Optional[str] = None,
            checkpoint_seconds: float = 60.0, checkpoint_steps: Optional[int] = None, progress: bool = False,
            echo: Callable[[str], None] = lambda s: None) -> Rows:
    """Run checked members (:func:`check_members`) into the prepared output folder ``out`` (a
    gandy output whose lock the caller holds, e.g. :func:`gandy.runs.store.prepare_out`); see the
    module docstring for what runs. ``echo`` is told the members, chunks and chunks already done,
    each chunk's checkpoint note, and as each chunk is stored how many of this call's chunks and
    members are done, the time so far and the time left at this call's rate of member-steps (a
    line a background run's log keeps, where no bar is drawn); ``progress`` shows a bar of
    member-steps."""
    out = Path(out)
    open_chunks(out)
    finished = finished_chunks(out)  # every finished chunk's tables read: a damaged one is refused here
    chunks, todo = _resume_cut(work, finished)
    _check_stored(out, work.members, [cid for cid in chunks if cid in finished])
    drop_stale_live(out, {ch.id for ch in todo if checkpoint_path(out, ch.id).exists()})
    echo(f"{len(work.members)} members in {len(chunks)} chunks; {len(chunks) - len(todo)} already done")
    size = {ch.id: len(ch.members) * run_steps(C.load_config(ch.config)) for ch in todo}  # member-steps
    bar = None
    if progress:
        bar = tqdm(total=sum(size.values()),
                   desc=f"member-steps ({progress_label(work.engines)})", unit="", unit_scale=True, disable=None)
    t0 = time.perf_counter()
    done: list[Chunk] = []  # this call's chunks stored so far

    def checkpoints(ch: Chunk) -> Checkpoint:
        return Checkpoint(checkpoint_path(out, ch.id), chunk_fingerprint(ch),
                          every_seconds=checkpoint_seconds, every_steps=checkpoint_steps, live=live_path(out, ch.id))

    def stored(ch: Chunk, result) -> None:
        *tables, note = result
        if note is not None:
            echo(f"chunk {ch.id}: {note}")
        write_chunk(out, ch.id, *tables)
        done.append(ch)
        steps, spent = sum(size[c.id] for c in done), time.perf_counter() - t0
        echo(f"chunk {ch.id} done: {len(done)} of {len(todo)} chunks, {sum(len(c.members) for c in done)} of "
             f"{sum(len(c.members) for c in todo)} members, {clock(spent)} so far, about "
             f"{clock(spent / max(steps, 1) * (sum(size.values()) - steps))} to go at this rate")

    def step(k: int) -> None:
        if bar is not None:
            bar.update(k)

    running = {i for ch in todo for i, _, _ in ch.members}
    values = {m.index: m.values for m in work.members if m.index in running}
    task = functools.partial(run_chunk, axes_keys=work.columns, values_by_index=values)
    if todo:
        EXECUTORS[executor].run(task, todo, stored, address, step, checkpoints, work.workers)
    if bar is not None:
        bar.close()
    seconds = time.perf_counter() - t0
    results, metrics = read_chunks(out, list(chunks))
    asked = [m.index for m in work.members]
    results = results[results["member"].isin(asked)].sort_values("member").reset_index(drop=True)
    metrics = metrics[metrics["member"].isin(asked)].sort_values(["member", "step"]).reset_index(drop=True)
    return Rows(results, metrics, chunks, [ch.id for ch in todo], seconds)


def run_members(members: Sequence[SweepMember], out: Path, *, chunk: Optional[int] = None, workers: int = 1,
                executor: str = "local", address: Optional[str] = None, connect_timeout: float = CONNECT_TIMEOUT,
                checkpoint_seconds: float = 60.0, checkpoint_steps: Optional[int] = None, progress: bool = False,
                echo: Callable[[str], None] = lambda s: None) -> Rows:
    """Run ``members`` into the prepared output folder ``out`` and return their rows.

    Everything is checked before anything runs: the options, the members and every chunk's build
    (:func:`check_members`), the executor's cluster. Then the members not yet done in ``out`` run
    in chunks of ``chunk`` members (auto where None; at least ``workers`` chunks, which
    ``executor: processes`` runs in as many processes), each saving its state every
    ``checkpoint_seconds`` (or ``checkpoint_steps``); members already done cost nothing. A second
    call with more members (numbered after the first ones) runs only the new ones; a call killed
    at any moment and asked again gives the rows of an uninterrupted one. Returns
    :class:`Rows`: every asked member's results and metrics, sorted by member index, with the
    member's value columns after ``member`` (as a sweep's tables)."""
    check_options(executor, workers)
    work = check_members(members, chunk, workers)
    EXECUTORS[executor].check(address, connect_timeout)
    return execute(work, out, executor, address, checkpoint_seconds, checkpoint_steps, progress, echo)
