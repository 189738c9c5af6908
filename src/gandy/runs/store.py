"""The run directory: resolved config, Parquet tables, snapshots and summary, written atomically.

Layout of ``DIR``::

    config.yaml        the fully resolved config
    metrics.parquet    seed, step, every order parameter (and mode_hist, a list per row)
    results.parquet    one row per seed: seed, final order parameters, phase, diverged_step
    summary.json       phases, kernel numbers, target facts, timings, versions
    trajectory.npz     steps (T,), seeds (S,), particles (S, T, n, d), modes, target_samples,
                       and the target density on a grid where d <= 2 and a density exists
    figures/*.png      drawn from the files above, never from live objects
    report.html        ``gandy report``: the same files as one interactive page (gandy.views.report)

A run is written into a temporary sibling directory and renamed into place at the end, so an
interrupted or failed run leaves no half-written ``DIR``.
"""

from __future__ import annotations

import glob
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import pandas as pd
import yaml

from gandy.core.atomic import make_dir, manifest, relative, write_atomic
from gandy.runs import config as C
from gandy.runs.build import target_of
from gandy.runs.outputs import (  # noqa: F401  (the output-folder rules, re-exported for callers)
    MARKER,
    RESUMABLE,
    atomic_dir,
    check_writable,
    lock_holder,
    open_output,
    output_lock,
    prepare_out,
    read_marker,
    remove_output,
    write_marker,
)


@dataclass
class RunResult:
    """What a run produced, in memory: the same content as its directory."""

    config: C.Config
    metrics: pd.DataFrame
    results: pd.DataFrame
    trajectory: dict
    summary: dict
    path: Optional[Path] = None

    @property
    def particles(self) -> np.ndarray:
        """Snapshots ``(S, T, n, d)``: seed, snapshot, particle, coordinate."""
        return self.trajectory["particles"]


@dataclass
class SweepResult:
    """What a sweep or search produced (``gandy.sweep``, ``gandy.run`` of a config with a ``sweep:``
    or ``search:`` section, ``gandy.load`` of its folder): ``results`` (one row per member:
    ``member``, a column per swept key, ``seed``, phase, final numbers), ``metrics`` (every
    member's logged series), ``summary``, the resolved ``config`` and the folder ``path``. The
    particles stay in ``path/chunks`` and are read on demand: :meth:`particles`, :meth:`snapshots`."""

    config: C.Config
    metrics: pd.DataFrame
    results: pd.DataFrame
    summary: dict
    path: Path

    def particles(self, member: Optional[int] = None) -> np.ndarray:
        """The kept final particles (``metrics.keep_particles: true``): of every member ``(B, n, d)``
        in member order, or of ``member`` ``(n, d)``; NaN for a member that diverged. A sweep that
        kept none raises FileNotFoundError saying so."""
        members, x = final_particles(self.path)
        if member is None:
            return x
        hit = np.flatnonzero(members == member)
        if not hit.size:
            raise self._no_member(member, "final particles")
        return x[hit[0]]

    def snapshots(self, member: int) -> tuple[np.ndarray, np.ndarray]:
        """``(steps (F,), particles (F, P, min(d, 2)))`` of ``member``: the sweep's evenly spaced
        snapshots of its first particles (:func:`gandy.runs.snapshots.sweep_snapshots`; d > 2
        projected on the target's principal plane). Image targets keep none (FileNotFoundError)."""
        files = sorted((self.path / "chunks").glob("*.snapshots.npz"))
        for f in files:
            z = read_npz(f)
            hit = np.flatnonzero(z["members"] == member)
            if hit.size:
                return z["steps"], z["particles"][hit[0]].astype(np.float32)
        if not files:
            raise FileNotFoundError(f"{self.path} keeps no particle snapshots (an image target's sweep keeps "
                                    "none: its final samples are in results.parquet)")
        raise self._no_member(member, "snapshots")

    def _no_member(self, member: int, what: str) -> KeyError:
        shown = ", ".join(map(str, self.results.member.tolist()[:10]))
        return KeyError(f"member {member} is not in this sweep's {what} (members: {shown}"
                        f"{', ...' if len(self.results) > 10 else ''})")


def write_parquet(df: pd.DataFrame, path: Path) -> None:
    """A DataFrame to Parquet through :func:`write_atomic`."""
    write_atomic(path, df.to_parquet(index=False))


def write_npz(path: Path, arrays: dict) -> None:
    """Arrays to a compressed ``.npz`` through :func:`write_atomic`."""
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    write_atomic(path, buf.getvalue())


def fill_run(result: RunResult, folder: Path, draw: Optional[Callable[[Path], object]] = None) -> None:
    """A run's files in ``folder``: the temporary folder of :func:`atomic_dir` that then takes the
    run's place (``gandy.run``). ``draw(folder)``: figures drawn from the written files, last (the
    store draws nothing itself: :func:`gandy.views.plots.plot_run` is passed in by the API)."""
    write_atomic(folder / "config.yaml", C.dump_config(result.config).encode())
    write_parquet(result.metrics, folder / "metrics.parquet")
    write_parquet(result.results, folder / "results.parquet")
    write_atomic(folder / "summary.json", json.dumps(result.summary, indent=2, default=float).encode())
    write_npz(folder / "trajectory.npz", result.trajectory)
    if draw is not None:
        draw(folder)


def image_target(path: Path):
    """The image target of the run or sweep directory ``path`` (built from its ``config.yaml``); a
    ConfigError naming DIR where the target is not an image target."""
    target = target_of(C.load_config(yaml.safe_load((Path(path) / "config.yaml").read_text())).target)
    if target.image_shape is None:
        raise C.ConfigError("DIR", f"{path} is not a run against an image target")
    return target


def image_shape(path: Path) -> list[int]:
    """(C, H, W) of the image target of the run or sweep directory ``path``, as the target declares it."""
    return list(image_target(path).image_shape)


# ----------------------------------------------------------------------------- sweep directories
def sweep_config(out: Path) -> Optional[str]:
    """The resolved config a sweep directory was started with (None before it has one)."""
    p = Path(out) / "config.yaml"
    return p.read_text() if p.is_file() else None


RUNTIME_KEYS = ("device", "threads")
"""Config keys that say where a run computes, not what: a resume may change them (a sweep started on
a lent GPU finishes on the CPU; one started before ``device: auto`` became the default resumes
without saying ``device=cpu``). A chunk's checkpoint still records its own device, so a chunk cut
off mid-way on one device restarts on another; finished chunks are kept."""


def resume_identity(resolved: str) -> dict:
    """A resolved config text (:func:`gandy.runs.config.dump_config`) as what a resume must match:
    its mapping without :data:`RUNTIME_KEYS`."""
    d = yaml.safe_load(resolved)
    return {k: v for k, v in d.items() if k not in RUNTIME_KEYS} if isinstance(d, dict) else d


def same_config(out: Path, resolved: str) -> bool:
    """Whether the sweep directory ``out`` was started with the resolved config ``resolved`` (a
    :func:`gandy.runs.config.dump_config` text), :data:`RUNTIME_KEYS` aside: the same text, or a
    config.yaml written by an earlier gandy that lacked keys added since with their defaults, and
    so reads back to the same resolved config. One that no longer validates is another config.
    config.yaml keeps the text the sweep was started with."""
    stored = sweep_config(out)
    if stored is None or stored == resolved:
        return stored is not None
    try:
        return resume_identity(C.dump_config(C.load_config(yaml.safe_load(stored)))) == resume_identity(resolved)
    except (C.ConfigError, yaml.YAMLError, TypeError, ValueError):
        return False


def start_sweep(out: Path, config_text: str) -> None:
    """Give a new or resumed sweep directory its ``chunks/`` folder, marker and ``config.yaml``."""
    Path(out).mkdir(parents=True, exist_ok=True)
    if read_marker(out) is None:
        write_marker(out, "sweep")
    open_chunks(out)
    if sweep_config(out) is None:
        write_atomic(Path(out) / "config.yaml", config_text.encode())


def open_chunks(out: Path) -> Path:
    """The ``chunks/`` folder of the gandy output ``out``, made where it is missing."""
    return make_dir(Path(out) / "chunks")


def finished_chunks(out: Path) -> dict[str, list[int]]:
    """The finished chunks of ``out`` (those with a results table), by id: their members' indices,
    sorted. Every finished chunk's tables are read here, so a damaged one is a ConfigError naming it
    and saying what to delete, as is a results table that holds no members."""
    found = {}
    for f in sorted((Path(out) / "chunks").glob("*.results.parquet")):
        cid = f.name.removesuffix(".results.parquet")
        results, _ = read_chunks(out, [cid])  # the metrics too: a damaged one is refused here
        members = sorted(int(m) for m in results["member"].unique()) if "member" in results.columns else []
        if not members:
            raise C.ConfigError(str(f), f"holds no members: not a chunk's results; delete this file and rerun "
                                        f"with --resume to recompute chunk {cid}")
        found[cid] = members
    return found


def chunk_done(out: Path, chunk_id: str) -> bool:
    """A chunk is done once its results table exists (written last)."""
    return (Path(out) / "chunks" / f"{chunk_id}.results.parquet").exists()


def final_particles(run_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """A sweep's kept final particles (``metrics.keep_particles``): global member indices ``(B,)``
    and particles ``(B, N, d)`` float32, in member order, NaN for members that diverged. Raises
    FileNotFoundError where the sweep kept none."""
    files = sorted((Path(run_dir) / "chunks").glob("*.final.npz"))
    if not files:
        raise FileNotFoundError(f"{run_dir} kept no final particles (run the sweep with metrics.keep_particles: true)")
    parts = [read_npz(f) for f in files]
    members = np.concatenate([p["members"] for p in parts])
    x = np.concatenate([p["final_particles"] for p in parts])
    order = np.argsort(members)
    return members[order], x[order]


def write_chunk(out: Path, chunk_id: str, metrics: pd.DataFrame, results: pd.DataFrame, snapshots: dict) -> None:
    """A finished chunk's files: ``ID.snapshots.npz`` (if any), ``ID.final.npz`` (the kept final
    particles, which ``snapshots`` carries under the key ``final``), ``ID.metrics.parquet`` and,
    last, ``ID.results.parquet`` (which marks it done); its checkpoint is then removed."""
    chunks = Path(out) / "chunks"
    snapshots = dict(snapshots)
    final = snapshots.pop("final", None)
    for name, arrays in (("snapshots", snapshots), ("final", final)):
        if arrays:
            write_npz(chunks / f"{chunk_id}.{name}.npz", arrays)
    write_parquet(metrics, chunks / f"{chunk_id}.metrics.parquet")
    write_parquet(results, chunks / f"{chunk_id}.results.parquet")
    checkpoint_path(out, chunk_id).unlink(missing_ok=True)  # gandy's own files, no longer needed
    live_path(out, chunk_id).unlink(missing_ok=True)


def checkpoint_path(out: Path, chunk_id: str) -> Path:
    """Where a chunk's simulation saves its state while it runs."""
    return Path(out) / "chunks" / f"{chunk_id}.checkpoint.pt"


def live_path(out: Path, chunk_id: str) -> Path:
    """Where a running chunk writes its logged rows as JSON lines (:class:`gandy.runs.loop.LiveRows`)."""
    return Path(out) / "chunks" / f"{chunk_id}.live.jsonl"


def drop_stale_live(out: Path, resuming: set[str]) -> None:
    """Remove the live rows of every unfinished chunk of ``out`` that will not resume from them:
    ``chunks/ID.live.jsonl`` whose ID is not in ``resuming`` (a chunk of an earlier cut, which a
    resume with other workers or another device cuts afresh, or one without a checkpoint, which
    starts again at step 0 and writes its rows anew), so that ``gandy watch`` shows no rows of a
    chunk that will not run. Only files the output's manifest records (gandy wrote them)."""
    mine = manifest(Path(out)) or set()
    for p in sorted((Path(out) / "chunks").glob("*.live.jsonl")):
        if p.name.removesuffix(".live.jsonl") not in resuming and relative(out, p) in mine:
            p.unlink(missing_ok=True)


RUN_LIVE = "live.jsonl"
"""A running single run's logged rows as JSON lines, in the temporary folder it is being written
in (``.OUT.tmp-*/live.jsonl``) until the finished run takes ``OUT``'s place (its metrics.parquet
holds the same rows)."""


def run_live_files(out: Path) -> list[Path]:
    """The live rows of single runs being written to ``out`` (at most one holds its lock)."""
    out = Path(out)
    return sorted(out.parent.glob(f".{glob.escape(out.name)}.tmp-*/{RUN_LIVE}"))


def read_live(path: Path) -> pd.DataFrame:
    """A live JSON-lines file as a table; a last line cut by a write in progress is skipped."""
    rows = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            break  # a line being written
    return pd.DataFrame(rows)


def latest_rows(out: Path) -> tuple[pd.DataFrame, int, int]:
    """The newest logged row of every member of a sweep or single run at ``out``, running or
    finished: ``(rows, parts stored, parts running)``. A sweep's parts are its chunks (stored:
    their metrics tables; running: their live rows, ``chunks/ID.live.jsonl``); a single run is one
    part, running while its live rows are written (:data:`RUN_LIVE`), stored once ``out`` holds it."""
    out = Path(out)
    lives = run_live_files(out)
    if lives or output_kind(out) == "run":
        if lives:
            return _newest(read_live(lives[-1]), "member"), 0, 1
        return _newest(read_parquet(out / "metrics.parquet"), "seed"), 1, 0
    chunks = out / "chunks"
    frames, done, running = [], 0, 0
    for p in sorted(chunks.glob("*.metrics.parquet")):
        if chunk_done(out, p.name.removesuffix(".metrics.parquet")):
            frames.append(read_parquet(p))
            done += 1
    for p in sorted(chunks.glob("*.live.jsonl")):
        rows = read_live(p)
        if len(rows):
            frames.append(rows)
            running += 1
    return _newest(pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(), "member"), done, running


def _marked_kind(p: Path) -> Optional[str]:
    """The kind a folder ``p``'s marker says (:func:`output_kind`), None for a link, a file, a
    missing or unmarked folder."""
    if not p.is_dir() or p.is_symlink() or read_marker(p) is None:
        return None
    return output_kind(p)


def output_parts(path: Path, depth: int = 2) -> list[Path]:
    """The sweeps and runs inside an experiment's folder ``path``: every sub-folder, down to
    ``depth`` levels (an experiment may group them, e.g. TARGET/GAME), whose marker says sweep or
    run, in path order; a marked sub-folder of another kind is not entered; links are skipped."""
    found = []
    for p in sorted(Path(path).iterdir()):
        if not p.is_dir() or p.is_symlink():
            continue
        kind = _marked_kind(p)
        if kind in ("sweep", "run"):
            found.append(p)
        elif kind is None and depth > 1:
            found += output_parts(p, depth - 1)
    return found


PLANNED_PARTS = "parts.json"
"""An experiment's list of the parts it will run (``{"parts": ["ns", "ring8/gan_gp", ...]}``, paths
relative to its folder), written when it opens, before any part begins."""


def _inside(names) -> bool:
    """Whether every entry of ``names`` is a non-empty relative path that stays inside its folder."""
    return all(isinstance(n, str) and n and not Path(n).is_absolute() and ".." not in Path(n).parts for n in names)


def write_planned_parts(out: Path, parts) -> None:
    """Record in the experiment folder ``out`` the sweeps and runs it will write, in order (paths
    relative to ``out``, e.g. ``TARGET/GAME``), so that a watcher lists those not begun yet."""
    names = [str(p) for p in parts]
    if not _inside(names):
        raise ValueError(f"planned parts must be relative paths inside the experiment, got {names}")
    write_atomic(Path(out) / PLANNED_PARTS, (json.dumps({"parts": names}, indent=1) + "\n").encode())


def planned_parts(path: Path) -> Optional[list[str]]:
    """The parts an experiment folder ``path`` said it will write (:func:`write_planned_parts`), or
    None where it said nothing (a study that does not list them, or an earlier gandy); a damaged
    file is a ConfigError naming it."""
    f = Path(path) / PLANNED_PARTS
    if not f.is_file():
        return None
    data = read_json(f)
    parts = data.get("parts") if isinstance(data, dict) else None
    if not isinstance(parts, list) or not _inside(parts):
        raise C.ConfigError(str(f), f"needs {{\"parts\": [a relative path inside the folder, ...]}}, got {parts!r}")
    return parts


def experiment_parts(path: Path) -> tuple[list[tuple[str, Optional[Path]]], bool]:
    """The parts of an experiment folder ``path`` as ``(name, folder)`` pairs, ``name`` its path
    relative to ``path``, ``folder`` None for a part not begun; and whether the experiment listed
    them (:func:`planned_parts`). Listed: its parts in its order (at any depth), then any other
    sweep or run found inside (:func:`output_parts`); not listed: those found, in path order."""
    path = Path(path)
    found = {p.relative_to(path).as_posix(): p for p in output_parts(path)}
    planned = planned_parts(path)
    if planned is None:
        return list(found.items()), False
    out = []
    for name in planned:
        p = path / name
        out.append((name, p if _marked_kind(p) in ("sweep", "run") else None))
    return out + [(n, p) for n, p in found.items() if n not in planned], True


def _newest(rows: pd.DataFrame, key: str) -> pd.DataFrame:
    """The last logged row of each ``key``."""
    if not len(rows):
        return rows
    return rows.sort_values([key, "step"]).groupby(key, as_index=False).tail(1)


def read_chunks(out: Path, chunk_ids: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(results, metrics)`` of the chunks, concatenated in the order given. A missing or damaged
    table is a ConfigError naming it and saying how to have its chunk computed again."""
    chunks = Path(out) / "chunks"

    def read(chunk_id: str, kind: str) -> pd.DataFrame:
        try:
            return read_parquet(chunks / f"{chunk_id}.{kind}.parquet")
        except C.ConfigError as e:
            done = chunks / f"{chunk_id}.results.parquet"  # marks the chunk done: without it, it runs again
            what = "delete this file" if kind == "results" else f"delete {done}"
            raise C.ConfigError(e.field, f"{e.message}; {what} and rerun with --resume to recompute "
                                         f"chunk {chunk_id}") from None

    return (pd.concat([read(i, "results") for i in chunk_ids]), pd.concat([read(i, "metrics") for i in chunk_ids]))


def write_tables(out: Path, tables: dict[str, pd.DataFrame], summary: Optional[dict] = None) -> None:
    """``OUT/NAME.parquet`` for each table and ``OUT/summary.json`` (indented JSON; numpy numbers as
    floats), each written atomically."""
    for name, table in tables.items():
        write_parquet(table, Path(out) / f"{name}.parquet")
    if summary is not None:
        write_atomic(Path(out) / "summary.json", json.dumps(summary, indent=2, default=float).encode())


# ----------------------------------------------------------------------------- reading
def read_json(path: Path) -> dict:
    """A JSON file of an output directory; a damaged one is a ConfigError naming it."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise C.ConfigError(str(path), f"cannot read it as JSON: {e}") from None


def read_parquet(path: Path) -> pd.DataFrame:
    """A Parquet table of an output directory; a missing or damaged one is a ConfigError naming it."""
    if not Path(path).exists():
        raise C.ConfigError(str(path), "missing")
    try:
        return pd.read_parquet(path)
    except Exception as e:  # pyarrow raises several types for a damaged file
        raise C.ConfigError(str(path), f"cannot read it as Parquet: {type(e).__name__}: {e}") from None


def read_npz(path: Path) -> dict:
    """The arrays of an ``.npz`` file of an output directory (no pickles); a damaged one is a
    ConfigError naming it."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except Exception as e:
        raise C.ConfigError(str(path), f"cannot read it as .npz: {type(e).__name__}: {e}") from None


def read_config_text(path: Path) -> str:
    """The ``config.yaml`` of an output directory as text ("" where there is none); YAML that does
    not parse is a ConfigError naming the file."""
    p = Path(path) / "config.yaml"
    if not p.exists():
        return ""
    text = p.read_text()
    try:
        yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise C.ConfigError(str(p), f"cannot read it as YAML: {e}") from None
    return text


def load_run(path: Path) -> RunResult:
    """Read a run directory back into a :class:`RunResult` (any other output: :func:`load`)."""
    path = Path(path)
    marker = read_marker(path) if path.is_dir() else None
    if marker is not None and marker["kind"] != "run":
        raise C.ConfigError("path", f"{path} holds a gandy {marker['kind']}, not a run: read it with gandy.load")
    return RunResult(
        config=C.load_config(yaml.safe_load(read_config_text(path))),
        metrics=read_parquet(path / "metrics.parquet"),
        results=read_parquet(path / "results.parquet"),
        trajectory=read_npz(path / "trajectory.npz"),
        summary=read_json(path / "summary.json"),
        path=path,
    )


@dataclass
class Output:
    """A gandy output other than a run or a sweep, read back by :func:`load`: ``kind`` (its marker's:
    boundary, damping, experiment, demo), ``path``, the resolved ``config`` (None where it holds
    none), ``summary`` (its summary.json; {} where none), every Parquet table in it by file stem
    (``tables``: results, metrics, boundary, points, damping, ...) and the gandy outputs in its
    sub-folders by folder name (``parts``: an experiment's runs and sweeps, each as :func:`load`
    reads it)."""

    kind: str
    path: Path
    config: Optional[C.Config]
    summary: dict
    tables: dict
    parts: dict

    def __getattr__(self, name: str):
        tables = self.__dict__.get("tables", {})
        if name in tables:  # out.boundary, out.results, ...: the table of that name
            return tables[name]
        raise AttributeError(f"this {self.__dict__.get('kind', 'output')} has no table or field {name!r}; "
                             f"tables: {', '.join(sorted(tables)) or 'none'}")


def unfinished_sweep(field: str, path: Path) -> C.ConfigError:
    """The error for a sweep folder that has no results.parquet yet, saying how to finish it."""
    return C.ConfigError(field, f"{path} is an unfinished sweep (no results.parquet): finish it with "
                                f"gandy run CONFIG --out {path} --resume")


def output_kind(path: Path) -> Optional[str]:
    """The kind of gandy output the folder ``path`` holds: its marker's (run, sweep, boundary,
    damping, experiment, demo) or, for a run or a sweep of an earlier gandy without a marker, the
    kind its files say (trajectory.npz: run; chunks/: sweep); None for anything else."""
    marker = read_marker(path)
    if marker is not None:
        return marker["kind"]
    return "run" if (path / "trajectory.npz").exists() else "sweep" if (path / "chunks").is_dir() else None


def load(path) -> "RunResult | SweepResult | Output":
    """Any gandy output directory as Python objects: a run as :func:`load_run` reads it (what
    ``gandy.run`` returns); a sweep or search as the :class:`SweepResult` ``gandy.sweep`` returns
    (every member's ``results`` and ``metrics``, the ``summary``, ``config``, particles on demand);
    a boundary search, damping scan,
    experiment or demo as an :class:`Output`. The kind comes from the folder's marker (a run or a
    sweep of an earlier gandy without one: from its files); a folder that is no gandy output is a
    ConfigError naming it."""
    path = Path(path)
    if not path.is_dir():
        raise C.ConfigError("path", f"{path} is not a folder (gandy.load reads a run, sweep, boundary, damping, "
                                    "experiment or demo folder)")
    kind = output_kind(path)
    if kind is None:
        raise C.ConfigError("path", f"{path} is not a gandy output (no {MARKER} marker, no trajectory.npz or chunks/)")
    if kind == "run":
        return load_run(path)
    text = read_config_text(path)
    config = C.load_config(yaml.safe_load(text)) if text else None
    summary = read_json(path / "summary.json") if (path / "summary.json").exists() else {}
    if kind == "sweep":
        if not (path / "results.parquet").exists():
            raise unfinished_sweep("path", path)
        return SweepResult(config, read_parquet(path / "metrics.parquet"), read_parquet(path / "results.parquet"),
                           summary, path)
    tables = {p.stem: read_parquet(p) for p in sorted(path.glob("*.parquet"))}
    parts = {p.name: load(p) for p in sorted(path.iterdir())
             if p.is_dir() and not p.is_symlink() and read_marker(p) is not None}
    return Output(kind, path, config, summary, tables, parts)


def final_rows(metrics: pd.DataFrame) -> pd.DataFrame:
    """The last logged row of every seed."""
    return metrics.sort_values(["seed", "step"]).groupby("seed", as_index=False).tail(1).reset_index(drop=True)
