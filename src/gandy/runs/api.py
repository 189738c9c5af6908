"""The Python entry point: config -> simulation -> :class:`RunResult` (-> run directory).

    import gandy
    cfg = gandy.load_config("run.yaml", ["kernel.g2=0.9"])
    res = gandy.run(cfg)                 # in memory
    res = gandy.run(cfg, out="runs/x")   # and written to disk
    res.metrics, res.results             # pandas DataFrames
    res.particles                        # (seeds, snapshots, n, d) numpy array
    res = gandy.sweep("sweep.yaml", out="runs/s")  # a sweep: or search: section: every member
    res.results, res.particles(member=3), res.snapshots(member=3)
"""

from __future__ import annotations

import platform
import sys
import time
from pathlib import Path
from typing import Callable, Optional, Union

import numpy as np
import torch
from tqdm.auto import tqdm

from gandy._version import __version__
from gandy.core.images.evaluate import summarise
from gandy.core.metrics.order import ORDER_PARAMETERS
from gandy.core.metrics.phases import PHASES
from gandy.core.rng import Stream, member_keys
from gandy.runs import config as C
from gandy.runs.budget import output_parts
from gandy.runs.build import build, engine_of, progress_label, run_threads
from gandy.runs.loop import LiveRows, simulate
from gandy.runs.outputs import atomic_dir, scoped_locks
from gandy.runs.results import add_image_metrics, label_changes, member_tables
from gandy.runs.snapshots import density_grid
from gandy.runs.store import RUN_LIVE, RunResult, SweepResult, fill_run, final_rows, prepare_out
from gandy.runs.sweep import run_sweep


@scoped_locks()  # the output's lock is held for the call and given back when it returns
def run(
    config: Union[C.Config, dict, str, Path, None] = None,
    out: Union[str, Path, None] = None,
    overrides: Optional[list[str]] = None,
    progress: bool = False,
    replace: bool = False,
    draw: Optional[Callable[[Path], object]] = None,
    kernel_module: Optional[torch.nn.Module] = None,
    draw_sweep: Optional[Callable[[Path], object]] = None,
    on_log: Optional[Callable[[list], None]] = None,
) -> Union[RunResult, SweepResult]:
    """Run a config for all its seeds; return the result and, with ``out``, write the run directory.

    Everything is validated before anything is written: a bad config, a run that cannot fit in
    memory, or an ``out`` that cannot be written (or that exists and is not a gandy output gandy
    may replace with ``replace``, the CLI's ``--force``) raises :class:`gandy.core.errors.ConfigError` and leaves nothing behind. ``draw(out)``: draws
    the run's figures once it is written (``gandy.run`` passes :func:`gandy.views.plots.plot_run`). ``kernel_module``: a torch
    module for ``kernel: {name: empirical_ntk}`` given directly instead of by import path.

    A config with a ``sweep:`` or ``search:`` section runs every member, as ``gandy run`` does
    (:func:`gandy.runs.sweep.run_sweep`, on this process, one chunk after another); its chunks
    are written to ``out``, which it needs; it returns what :func:`sweep` does, a
    :class:`SweepResult`. ``draw_sweep(out)`` draws its figures (``gandy.run`` passes
    :func:`gandy.views.plots.plot_sweep`).

    ``on_log(rows)``: a logger's hook, told of every log's rows (one dict per seed: ``seed``,
    ``step``, every logged column) as soon as they are measured, while the run goes on (single
    runs; a sweep's chunks write theirs as JSON lines for ``gandy watch``). With ``out``, the
    rows are written as they come to ``live.jsonl`` in the temporary folder the run is written in
    (:data:`gandy.runs.store.RUN_LIVE`: ``gandy watch OUT`` reads it); the finished run replaces it
    with metrics.parquet.
    """
    cfg = config if isinstance(config, C.Config) and not overrides else C.load_config(config, overrides)
    if cfg.sweep or cfg.search:
        if on_log is not None:
            raise C.ConfigError("on_log", "takes a single run's logs; a sweep's running chunks write theirs to "
                                          "OUT/chunks/ID.live.jsonl (gandy watch OUT)")
        return _run_sweep(cfg, out, progress, replace, draw_sweep, kernel_module)
    sim = build(cfg, kernel_module)  # memory for all seeds checked here
    if out is None:
        return _simulate(sim, progress, on_log)
    out = Path(out)
    n_modes = 0 if sim.target.modes is None else int(sim.target.modes.shape[0])
    prepare_out(out, "run", replace=replace, need_parts=output_parts(cfg, sim.d, n_modes, len(cfg.seeds), sweep=False))
    with atomic_dir(out, "run") as tmp:  # the run is written here, then takes out's place
        live = LiveRows(tmp / RUN_LIVE, [], recorded=False)  # gandy watch OUT reads it as the run goes
        try:
            result = _simulate(sim, progress, live.write if on_log is None else lambda rows: (live.write(rows), on_log(rows)))
        finally:
            live.close()
        live.path.unlink()  # metrics.parquet holds its rows
        fill_run(result, tmp, draw)
    result.path = out
    return result


def _simulate(sim, progress: bool, on_log: Optional[Callable[[list], None]]) -> RunResult:
    """A built single run's simulation, with its progress bar, as a :class:`RunResult`."""
    t0 = time.perf_counter()
    bar = None
    if progress:
        bar = tqdm(total=sim.loop.steps, desc=f"steps ({progress_label({engine_of(sim)}, sim.cfg.engine == 'auto')})", unit="step", disable=None)
    try:
        with run_threads(sim.cfg):
            raw = simulate(sim, sim.cfg.seeds, progress=bar.update if bar is not None else None, on_log=on_log)
    finally:
        if bar is not None:
            bar.close()
    return assemble(sim, raw, time.perf_counter() - t0)


def _run_sweep(cfg: C.Config, out, progress: bool, replace: bool, draw, kernel_module) -> SweepResult:
    """:func:`run` for a config with a ``sweep:`` or ``search:`` section: all its members."""
    if kernel_module is not None:
        section = "search" if cfg.search else "sweep"
        raise C.ConfigError("kernel_module", f"is given to single runs only, not to a config with a {section}: section")
    return sweep(cfg, out, progress=progress, replace=replace, draw=draw)


@scoped_locks()
def sweep(
    config: Union[C.Config, dict, str, Path, None],
    out: Union[str, Path, None],
    overrides: Optional[list[str]] = None,
    resume: bool = False,
    replace: bool = False,
    executor: str = "local",
    workers: int = 1,
    address: Optional[str] = None,
    progress: bool = False,
    draw: Optional[Callable[[Path], object]] = None,
) -> SweepResult:
    """Run every member of a config with a ``sweep:`` or ``search:`` section into the folder ``out``
    (:func:`gandy.runs.sweep.run_sweep`: checked before anything is written, chunked, resumable)
    and return its :class:`SweepResult`. ``resume``: continue an interrupted sweep of the same
    config in ``out``; ``executor`` (local, processes, ray) and ``workers``: where the chunks run."""
    cfg = config if isinstance(config, C.Config) and not overrides else C.load_config(config, overrides)
    if not (cfg.sweep or cfg.search):
        raise C.ConfigError("config", "has no sweep: or search: section: gandy.sweep runs the members of one "
                                      "(a single config runs with gandy.run)")
    if out is None:
        section = "search" if cfg.search else "sweep"
        raise C.ConfigError("out", f"a config with a {section}: section writes its chunks to a folder: give out=... "
                                   f"(or run it with gandy run CONFIG --out DIR)")
    results, metrics, summary = run_sweep(cfg, Path(out), resume=resume, replace=replace, executor=executor,
                                          workers=workers, address=address, progress=progress, draw=draw)
    return SweepResult(cfg, metrics, results, summary, Path(out))


def assemble(sim, raw, wall: float) -> RunResult:
    """Turn raw simulation output into tables, phases, trajectory arrays and a summary."""
    cfg, target = sim.cfg, sim.target
    metrics, results = member_tables(sim, raw)
    metrics, results = metrics.drop(columns="member"), results.drop(columns="member")  # members = seeds
    n_modes = 0 if target.modes is None else int(target.modes.shape[0])
    ref = target.sample(Stream(member_keys([0], target.mean.device), "plot"), min(2000, sim.critic_batch if target.default_batch else 2000))[0]
    ref_np = ref.cpu().numpy().astype(np.float32)
    traj = {
        "steps": np.asarray(raw.snapshot_steps, dtype=np.int64),
        "seeds": np.asarray(raw.seeds, dtype=np.int64),
        "particles": np.stack(raw.snapshots, axis=1).astype(np.float32),  # (S, T, n, d)
        "target_samples": ref_np,
        **density_grid(target, ref_np),
    }
    if target.modes is not None:
        traj["modes"] = target.modes.cpu().numpy().astype(np.float32)
    if target.image_shape is not None:
        traj["image_shape"] = np.asarray(target.image_shape, dtype=np.int64)
    phases = results.phase.tolist()
    summary = {
        "gandy_version": __version__,
        "torch_version": torch.__version__,
        "engine": engine_of(sim),
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "device": str(sim.device),
        "wall_seconds": wall,
        "member_steps_per_second": sim.loop.steps * len(raw.seeds) / wall if wall > 0 else None,
        "n_particles": sim.n,
        "dim": sim.d,
        "n_modes": n_modes,
        "target_scale": target.scale,
        "cover_radius": target.cover_radius if np.isfinite(target.cover_radius) else None,
        "kernel": sim.kernel.info(),
        "objective": {"name": sim.game.name, "formula": sim.game.formula},
        "phases": {s: p for s, p in zip(map(str, raw.seeds), phases)},
        "phase_counts": {p: phases.count(p) for p in PHASES},
        "final": final_rows(metrics[metrics.step <= sim.loop.horizon])[["seed", *ORDER_PARAMETERS]].to_dict(orient="records"),
        "divergences": raw.divergence_methods,
    }
    changes = label_changes(results)
    if changes is not None:  # metrics.phase_2x
        summary["phases_2x"] = {s: p for s, p in zip(map(str, raw.seeds), results.phase_2x)}
        summary["phase_2x_changes"] = changes
    per_member = add_image_metrics(sim, raw, results)
    if per_member is not None:
        summary.update(summarise(raw.seeds, per_member))
    return RunResult(cfg, metrics, results, traj, summary)
