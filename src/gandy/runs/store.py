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

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import pandas as pd
import torch
import yaml

from gandy.core.atomic import make_dir, write_atomic
from gandy.core.rng import Stream, member_keys
from gandy.core.targets import build_target
from gandy.runs import config as C
from gandy.runs.outputs import (  # noqa: F401  (the output-folder rules, re-exported for callers)
    MARKER,
    RESUMABLE,
    atomic_dir,
    check_writable,
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


def density_grid(target, samples: np.ndarray) -> dict:
    """The target's exact density on a plotting grid (d <= 2), or {} when it has none."""
    d = target.dim
    if d > 2:
        return {}
    lo = samples.min(0) - 0.5 * target.scale
    hi = samples.max(0) + 0.5 * target.scale
    if d == 1:
        g = torch.linspace(float(lo[0]), float(hi[0]), 400)[:, None]
        grids = {"density_x": g[:, 0].numpy()}
    else:
        gx = torch.linspace(float(lo[0]), float(hi[0]), 160)
        gy = torch.linspace(float(lo[1]), float(hi[1]), 160)
        xx, yy = torch.meshgrid(gx, gy, indexing="xy")
        g = torch.stack([xx, yy], -1).reshape(-1, 2)
        grids = {"density_x": gx.numpy(), "density_y": gy.numpy()}
    ld = target.log_density(g.to(target.mean.device))
    if ld is None:
        return {}
    dens = ld.exp().cpu().numpy()
    grids["density"] = dens if d == 1 else dens.reshape(160, 160)
    return grids


def even_indices(n: int, k: int) -> np.ndarray:
    """At most ``k`` evenly spaced indices of ``range(n)``, first and last included."""
    if n <= k:
        return np.arange(n)
    return np.unique(np.round(np.linspace(0, n - 1, k)).astype(int))


def principal_plane(samples: np.ndarray) -> np.ndarray:
    """Basis ``(d, 2)`` of the top two principal axes of ``samples: (M, d)`` (columns orthonormal,
    signs fixed so that each axis's largest entry is positive): the 2-D view of d > 2 clouds."""
    x = np.asarray(samples, dtype=np.float64)
    x = x - x.mean(0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    basis = vt[:2].T
    if basis.shape[1] < 2:  # fewer than two samples: pad with a zero axis
        basis = np.concatenate([basis, np.zeros((basis.shape[0], 2 - basis.shape[1]))], 1)
    flip = np.sign(basis[np.abs(basis).argmax(0), [0, 1]])
    return basis * np.where(flip == 0, 1.0, flip)


SWEEP_FRAMES, SWEEP_PARTICLES, SWEEP_TARGET = 40, 64, 400


def sweep_snapshots(sim, raw, members: list[int]) -> dict:
    """A chunk's particle snapshots for ``chunks/ID.snapshots.npz`` (sweeps keep no trajectory.npz):
    ``members (B,)`` global member indices, ``steps (F,)``, ``particles (B, F, P, min(d, 2))``
    float16 (at most SWEEP_FRAMES evenly spaced snapshots, the last included, and the first
    SWEEP_PARTICLES particles; d > 2 projected on ``projection (d, 2)``, the principal plane of
    ``target_samples``), ``target_samples (M, min(d, 2))`` and ``modes (K, min(d, 2))`` in the same
    coordinates, and for d = 1 the target density (``density_x``, ``density``). Image targets keep
    none (their final samples are in results.parquet): returns {}."""
    target = sim.target
    if target.image_shape is not None or not raw.snapshots:
        return {}
    frames = even_indices(len(raw.snapshot_steps), SWEEP_FRAMES)
    parts = np.stack([raw.snapshots[f][:, :SWEEP_PARTICLES] for f in frames], 1).astype(np.float64)
    ref = target.sample(Stream(member_keys([0], target.mean.device), "plot"), SWEEP_TARGET)[0].cpu().numpy()
    out = {"members": np.asarray(members, dtype=np.int64),
           "steps": np.asarray(raw.snapshot_steps, dtype=np.int64)[frames]}
    modes = None if target.modes is None else target.modes.cpu().numpy().astype(np.float64)
    if target.dim == 1:
        out.update(density_grid(target, ref.astype(np.float32)))
    if target.dim > 2:
        basis = principal_plane(ref)
        out["projection"] = basis.astype(np.float32)
        parts, ref = parts @ basis, ref @ basis
        modes = None if modes is None else modes @ basis
    with np.errstate(over="ignore", invalid="ignore"):
        out["particles"] = parts.astype(np.float16)
    out["target_samples"] = ref.astype(np.float32)
    if modes is not None:
        out["modes"] = modes.astype(np.float32)
    return out


def write_parquet(df: pd.DataFrame, path: Path) -> None:
    """A DataFrame to Parquet through :func:`write_atomic`."""
    write_atomic(path, df.to_parquet(index=False))


def write_npz(path: Path, arrays: dict) -> None:
    """Arrays to a compressed ``.npz`` through :func:`write_atomic`."""
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    write_atomic(path, buf.getvalue())


def write_run(result: RunResult, out: Path, force: bool = False, draw: Optional[Callable[[Path], object]] = None) -> Path:
    """Write ``result`` to ``out`` atomically (a temporary sibling directory, then a rename).
    ``draw(folder)``: figures drawn from the written files before the rename (the store draws
    nothing itself: :func:`gandy.plots.plot_run` is passed in by the API)."""
    out = Path(out)
    prepare_out(out, "run", force=force)
    with atomic_dir(out, "run") as tmp:
        write_atomic(tmp / "config.yaml", C.dump_config(result.config).encode())
        write_parquet(result.metrics, tmp / "metrics.parquet")
        write_parquet(result.results, tmp / "results.parquet")
        write_atomic(tmp / "summary.json", json.dumps(result.summary, indent=2, default=float).encode())
        write_npz(tmp / "trajectory.npz", result.trajectory)
        if draw is not None:
            draw(tmp)
    result.path = out
    return out


DAMPING_COLUMNS = {
    "weight": "penalty weight lambda of this member (all weights run as one batch, same seed)",
    "steps_to_converge": "first step after which |mu_P - mu_Q| stays <= tol_used x its initial value; -1 if never",
    "converged": "steps_to_converge >= 0: the weight converged at the judged tolerance",
    "tol_used": "the tolerance the scan is judged at: the asked tol, or 3 x the median residual floor of the runs "
                "that settled on a plateau below 1 % if larger",
    "residual_floor": "the level |mu_P - mu_Q| / its start settled on over the last 10 % of the run (0 while "
                      "still falling)",
    "decay_rate": "decay per step over the transient: slope of log of the future envelope max_{s>=t} "
                  "|mu_P - mu_Q| from 1e-1 of its start down to 10 x the floor (or 1e-5); NaN where the weight "
                  "never converged or with fewer than 5 such steps",
    "theory_decay_rate": "-log spectral radius of the linear model's one-step map (finite steps)",
    "spectral_radius": "largest |eigenvalue| (other than 1) of the autograd Jacobian of the whole one-step "
                       "update map (critic and particles) at the final state",
    "jacobian_decay_rate": "-log spectral_radius",
    "theory_spectral_radius": "spectral radius of the linear model's one-step map",
    "continuous_decay_rate": "zeta omega_0 (or omega_0 (zeta - sqrt(zeta^2 - 1)) when overdamped) of the "
                             "continuous-time linear model",
    "zeta": "damping ratio (friction lambda + wd) eta_D / (2 omega_0); 1 is critical",
    "diverged": "the member blew up (non-finite particles or critic); its numbers are NaN",
}
"""What each column of damping.parquet measures (docs/damping.md), for reports."""


def write_damping(out: Path, config_text: str, tables: dict[str, pd.DataFrame], summary: dict,
                  draw: Optional[Callable[[Path], object]] = None) -> Path:
    """Write a damping directory atomically: ``config.yaml``, ``NAME.parquet`` for each table
    (``damping``: the columns of ``DAMPING_COLUMNS``; ``trajectories``; ``theory``), ``summary.json``
    and, with ``draw(dir)``, its figures."""
    with atomic_dir(out, "damping") as tmp:
        write_atomic(tmp / "config.yaml", config_text.encode())
        for name, table in tables.items():
            write_parquet(table, tmp / f"{name}.parquet")
        write_atomic(tmp / "summary.json", json.dumps(summary, indent=2).encode())
        if draw is not None:
            draw(tmp)
    return out


def image_target(path: Path):
    """The image target of the run or sweep directory ``path`` (built from its ``config.yaml``); a
    ConfigError naming DIR where the target is not an image target."""
    target = build_target(C.load_config(yaml.safe_load((Path(path) / "config.yaml").read_text())).target)
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
    checkpoint_path(out, chunk_id).unlink(missing_ok=True)  # gandy's own file, no longer needed


def checkpoint_path(out: Path, chunk_id: str) -> Path:
    """Where a chunk's simulation saves its state while it runs."""
    return Path(out) / "chunks" / f"{chunk_id}.checkpoint.pt"


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
    """Read a run directory back into a :class:`RunResult`."""
    path = Path(path)
    return RunResult(
        config=C.load_config(yaml.safe_load(read_config_text(path))),
        metrics=read_parquet(path / "metrics.parquet"),
        results=read_parquet(path / "results.parquet"),
        trajectory=read_npz(path / "trajectory.npz"),
        summary=read_json(path / "summary.json"),
        path=path,
    )


def final_rows(metrics: pd.DataFrame) -> pd.DataFrame:
    """The last logged row of every seed."""
    return metrics.sort_values(["seed", "step"]).groupby("seed", as_index=False).tail(1).reset_index(drop=True)
