"""The run directory: resolved config, Parquet tables, snapshots and summary, written atomically.

Layout of ``DIR``::

    config.yaml        the fully resolved config
    metrics.parquet    seed, step, every order parameter (and mode_hist, a list per row)
    results.parquet    one row per seed: seed, final order parameters, phase, diverged_step
    summary.json       phases, kernel numbers, target facts, timings, versions
    trajectory.npz     steps (T,), seeds (S,), particles (S, T, n, d), modes, target_samples,
                       and the target density on a grid where d <= 2 and a density exists
    figures/*.png      drawn from the files above, never from live objects

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


__all__ = ["RunResult", "write_run", "load_run", "final_rows", "density_grid", "ORDER_PARAMETERS"]
