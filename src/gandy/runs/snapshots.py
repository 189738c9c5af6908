"""What a run's files show of its particles, computed from the simulation (the store writes them):
the target's density on a plotting grid (``density_grid``), evenly spaced frames
(``even_indices``), the principal plane that draws d > 2 clouds (``principal_plane``) and a sweep
chunk's particle snapshots (``sweep_snapshots``)."""

from __future__ import annotations

import numpy as np
import torch

from gandy.core.rng import Stream, member_keys


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
