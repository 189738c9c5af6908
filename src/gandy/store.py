"""The run directory: resolved config, Parquet tables, snapshots and summary, written atomically.

Layout of ``DIR``::

    config.yaml        the fully resolved config
    metrics.parquet    seed, step, every order parameter (and mode_hist, a list per row)
    results.parquet    one row per seed: seed, final order parameters, phase, diverged_step
    summary.json       phases, kernel numbers, target facts, timings, versions
    trajectory.npz     steps (T,), seeds (S,), particles (S, T, n, d), modes, target_samples,
                       and the target density on a grid where d <= 2 and a density exists
    figures/*.png      drawn from the files above, never from live objects
    report.html        ``gandy report``: the same files as one interactive page (gandy.report)

A run is written into a temporary sibling directory and renamed into place at the end, so an
interrupted or failed run leaves no half-written ``DIR``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd
import torch
import yaml

from . import config as C
from .metrics.order import ORDER_PARAMETERS


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
    from .rng import Stream, member_keys

    target = sim.target
    if getattr(target, "image_shape", None) is not None or not raw.snapshots:
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


def write_atomic(path: Path, data: bytes) -> None:
    """Write a file through a temporary name and an atomic rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


@contextmanager
def atomic_dir(out: Path):
    """Yield a temporary sibling directory of ``out`` to fill; on success it replaces ``out`` (an
    existing one is removed), on any error it is deleted, so ``out`` is never half written."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
    try:
        yield tmp
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_parquet(df: pd.DataFrame, path: Path) -> None:
    """A DataFrame to Parquet through :func:`write_atomic`."""
    write_atomic(path, df.to_parquet(index=False))


def write_run(result: RunResult, out: Path, force: bool = False, figures: bool = True) -> Path:
    """Write ``result`` to ``out`` atomically (a temporary sibling directory, then a rename)."""
    out = Path(out)
    if out.exists() and not force:
        raise C.ConfigError("out", f"{out} already exists (use --force to replace it)")
    with atomic_dir(out) as tmp:
        (tmp / "config.yaml").write_text(C.dump_config(result.config))
        result.metrics.to_parquet(tmp / "metrics.parquet", index=False)
        result.results.to_parquet(tmp / "results.parquet", index=False)
        (tmp / "summary.json").write_text(json.dumps(result.summary, indent=2, default=float))
        np.savez_compressed(tmp / "trajectory.npz", **result.trajectory)
        if figures:
            from .plots import plot_run

            plot_run(tmp)
    result.path = out
    return out


def load_run(path: Path) -> RunResult:
    """Read a run directory back into a :class:`RunResult`."""
    path = Path(path)
    cfg = C.load_config(yaml.safe_load((path / "config.yaml").read_text()))
    with np.load(path / "trajectory.npz") as z:
        traj = {k: z[k] for k in z.files}
    return RunResult(
        config=cfg,
        metrics=pd.read_parquet(path / "metrics.parquet"),
        results=pd.read_parquet(path / "results.parquet"),
        trajectory=traj,
        summary=json.loads((path / "summary.json").read_text()),
        path=path,
    )


def final_rows(metrics: pd.DataFrame) -> pd.DataFrame:
    """The last logged row of every seed."""
    return metrics.sort_values(["seed", "step"]).groupby("seed", as_index=False).tail(1).reset_index(drop=True)


__all__ = ["RunResult", "write_run", "load_run", "final_rows", "density_grid", "even_indices", "principal_plane", "sweep_snapshots",
           "ORDER_PARAMETERS"]
