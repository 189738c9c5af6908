"""Sweeps: a grid of configurations x seeds (or a search's trials x seeds), run as batched
simulations in chunks, resumable.

:func:`run_sweep` plans the config's members (:mod:`gandy.runs.plan`, the grammar of its
``sweep:`` or ``search:`` section in :mod:`gandy.runs.grammar`), runs them with the executor of
member lists (:mod:`gandy.runs.execute`) and writes the sweep's outputs.

Store (``DIR``): ``config.yaml`` first, then per finished chunk under ``chunks/`` its particle
snapshots (``ID.snapshots.npz``, :func:`gandy.runs.snapshots.sweep_snapshots`; none for image targets) and a
pair of Parquet files (metrics, then results: the results file marks the chunk done), and at the end
``results.parquet``, ``metrics.parquet``, ``summary.json`` and figures. ``--resume`` skips the
chunks already done, so a run killed at any moment finishes with exactly the rows of an
uninterrupted one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

import pandas as pd
import torch

from gandy.core.errors import option
from gandy.core.metrics.phases import PHASES
from gandy.runs import config as C
from gandy.runs.budget import output_parts
from gandy.runs.execute import check_members, check_options, execute
from gandy.runs.executors import EXECUTORS
from gandy.runs.outputs import scoped_locks
from gandy.runs.plan import expand
from gandy.runs.results import label_changes
from gandy.runs.store import (
    prepare_out,
    read_marker,
    remove_output,
    same_config,
    start_sweep,
    write_marker,
    write_tables,
)


@scoped_locks()  # the output's lock is held for the call and given back when it returns
def run_sweep(
    cfg: C.Config,
    out: Path,
    resume: bool = False,
    replace: bool = False,
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
    and memory, the output location (:func:`gandy.runs.store.prepare_out`: ``replace`` replaces only a
    gandy output, ``resume`` continues only a gandy sweep of the same config) and the executor's
    cluster. A chunk saves its state every ``checkpoint_seconds`` (or ``checkpoint_steps``) to
    ``chunks/ID.checkpoint.pt``, so a run killed inside a chunk resumes from the last save.
    ``workers``: the sweep is cut into at least this many chunks (where each keeps two members or
    more: :func:`gandy.runs.plan.cut`), which ``executor: processes``
    runs in as many processes (the chunks depend on ``workers``, not on the executor).
    """
    out = Path(out)
    check_options(executor, workers)
    axes, members, bs = expand(cfg)  # validates every member before anything is written
    work = check_members(members, bs, workers)  # and every shared config (dimensions, data files, kernels, memory) too
    resolved = C.dump_config(cfg)
    if resume and out.is_dir() and read_marker(out) is None and (out / "chunks").is_dir() \
            and same_config(out, resolved):
        write_marker(out, "sweep", manifest=False)  # a sweep of an earlier gandy (no marker yet) with this very config
    n_modes = 0 if work.sim.target.modes is None else int(work.sim.target.modes.shape[0])
    state = prepare_out(out, "sweep", replace=replace, resume=resume,
                        need_parts=output_parts(cfg, work.sim.d, n_modes, len(members), sweep=True))
    if state == "resume":
        if not same_config(out, resolved):
            raise C.ConfigError("out", f"{out} holds a different sweep; {option('resume')} needs the same config and overrides")
        # a resume may cut the members otherwise (another --workers, another device's chunk size):
        # execute keeps the finished chunks, reading each first (a damaged one is refused before any
        # work), and cuts the members they do not hold afresh
    EXECUTORS[executor].check(address, connect_timeout)  # an unreachable cluster: refused, nothing written
    if state == "replace":
        remove_output(out)
    start_sweep(out, resolved)
    rows = execute(work, out, executor, address, checkpoint_seconds, checkpoint_steps, progress, echo)
    phases = rows.results.phase.tolist()
    summary = {
        "sweep": {"axes": [{"key": a.key, "values": list(a.values), "scale": a.scale} for a in axes],
                  "seeds": list(cfg.seeds), "members": len(members), "chunks": len(rows.chunks),
                  "chunk_sizes": sorted({len(ms) for ms in rows.chunks.values()}), "executor": executor,
                  "workers": workers},
        "wall_seconds_this_invocation": rows.seconds,
        "phase_counts": {ph: phases.count(ph) for ph in PHASES},
        "torch_version": torch.__version__,
        "engines": sorted(work.engines),
    }
    changes = label_changes(rows.results)
    if changes is not None:  # metrics.phase_2x
        summary["phase_2x_counts"] = {ph: rows.results.phase_2x.tolist().count(ph) for ph in PHASES}
        summary["phase_2x_changes"] = changes
    write_tables(out, {"results": rows.results, "metrics": rows.metrics}, summary)
    if draw is not None:
        draw(out)
    return rows.results, rows.metrics, summary
