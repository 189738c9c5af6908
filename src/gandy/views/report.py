"""``gandy report DIR``: one self-contained, interactive HTML file for a run, a sweep, a search,
a damping scan, or a directory of them (an experiment).

The page (``DIR/report.html``) embeds its data and its JavaScript (``report_page.html``): no
network is needed to view it, and it reads only what the store holds, so it works on runs made
before it existed. Data flows one way: the run directory -> :func:`payload` (a JSON-able dict) ->
the page.

What the page shows, by kind of directory (:func:`detect`):

* ``sweep`` (and ``search``): the phase diagram of any order parameter, divergence or image
  metric chosen from a menu (seed mean per cell; ``phase``: the most common phase), any two swept
  keys on the axes (log axes where the grid is logarithmic), a random search as a scatter. A click
  on a cell shows that member's series over time and an animation of its particles (d <= 2, or on
  the target's principal plane) over the target's samples, modes and density.
* ``run``: every series of every seed overlaid (for a GAN-lab run: the divergence traces), and per
  seed its series and its particle (or image sample) snapshots.
* ``damping``: the convergence curve of every penalty weight, decay rates against theory, the
  eigenvalue paths of the one-step map, the table.
* always: the resolved config, the summary, and the protocol of every metric shown.

Size: per-member series and snapshots are downsampled to fit :data:`BUDGET` bytes in all (the page
says by how much), so a 4,096-member sweep stays well under 20 MB. Per-member detail is stored as
one base64 string each (float32 series, then uint8-quantised particles) and decoded on a click.
"""

from __future__ import annotations

import base64
import datetime as _dt
import json
import math
from importlib import resources
from pathlib import Path
from typing import Optional
from urllib.parse import quote

import numpy as np
import pandas as pd
import yaml

from gandy._version import __version__
from gandy.core.errors import ConfigError
from gandy.core.images.evaluate import METRIC_DOCS
from gandy.core.metrics.divergences import DIVERGENCE_DOCS
from gandy.core.metrics.order import ORDER_PARAMETER_DOCS
from gandy.core.metrics.phases import PHASE_RULE, SPLIT_FAILED
from gandy.runs.snapshots import even_indices, principal_plane
from gandy.runs.store import (
    image_shape,
    read_config_text,
    read_json,
    read_npz,
    read_parquet,
    unfinished_sweep,
    write_atomic,
)

BUDGET = {"series": 6.0e6, "particles": 5.0e6, "images": 4.0e6}
"""Bytes (before base64) for all members' series, particle snapshots and image snapshots."""
LIMITS = {"series_points": 400, "frames": 100, "particles": 256, "images": 16, "image_frames": 24,
          "target_points": 400, "curve_points": 600, "figure_bytes": 8_000_000, "table_rows": 2000}
"""Upper limits per member whatever the budget."""
MIN = {"series_points": 16, "frames": 8, "particles": 8}
"""Lower limits the budget may push to (a sweep so large that even these do not fit runs over)."""
ID_COLUMNS = ("member", "seed", "trial", "step", "final_step", "diverged_step")
NAN_CODE = 255  # a non-finite particle coordinate in the uint8 code


# ----------------------------------------------------------------------------- reading the store
def detect(path: Path) -> str:
    """The kind of run directory ``path`` is: ``damping`` (damping.parquet), ``sweep`` (a
    summary.json with a ``sweep`` entry), ``run`` (trajectory.npz), ``collection`` (no run itself,
    but run directories below it) or ``files`` (an experiment's own tables and figures: *.parquet,
    figures/*.png). Raises :class:`ConfigError` for anything else."""
    path = Path(path)
    if not path.is_dir():
        raise ConfigError("DIR", f"{path} is not a directory")
    if (path / "damping.parquet").exists():
        return "damping"
    summary = path / "summary.json"
    if (path / "results.parquet").exists() and summary.exists():
        if "sweep" in read_json(summary):
            return "sweep"
        if (path / "trajectory.npz").exists():
            return "run"
    if (path / "chunks").is_dir() and (path / "config.yaml").exists():
        raise unfinished_sweep("DIR", path)
    if _children(path):
        return "collection"
    if any(path.glob("*.parquet")) or any(path.glob("*.png")) or any(path.glob("figures/*.png")):
        return "files"
    raise ConfigError("DIR", f"{path} holds no gandy run: expected results.parquet and summary.json (a run or "
                             "sweep), damping.parquet (gandy damping), tables and figures of an experiment, or run "
                             "directories below it")


def _children(path: Path, depth: int = 3) -> list[Path]:
    """Run directories below ``path`` (not descending into a run), sorted."""
    found = []
    for sub in sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if (sub / "damping.parquet").exists() or ((sub / "results.parquet").exists() and (sub / "summary.json").exists()):
            found.append(sub)
        elif depth > 1 and sub.name not in ("figures", "chunks"):
            found.extend(_children(sub, depth - 1))
    return found


# ----------------------------------------------------------------------------- encoding helpers
def _clean(v):
    """A JSON-safe scalar: NaN and infinities become None, numpy scalars Python ones."""
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        v = float(v)
        if not math.isfinite(v):
            return None
        return v if v == 0 else round(v, 6 - int(math.floor(math.log10(abs(v)))))  # 7 significant digits
    if isinstance(v, (np.bool_,)):
        return bool(v)
    return v


def _columns(df: pd.DataFrame, columns: list[str]) -> dict:
    return {c: [_clean(v) for v in df[c].tolist()] for c in columns}


def _is_scalar_numeric(s: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s)


def _quantise(p: np.ndarray) -> tuple[np.ndarray, list]:
    """Particles ``p: (F, P, D)`` to uint8 codes 0..254 in their bounding box ``[x0, x1, y0, y1]``
    (over finite values; 255 = non-finite)."""
    finite = np.isfinite(p).all(-1)
    d = p.shape[-1]
    box = []
    codes = np.full(p.shape, NAN_CODE, dtype=np.uint8)
    for j in range(d):
        v = p[..., j][finite]
        lo, hi = (float(v.min()), float(v.max())) if v.size else (0.0, 1.0)
        if hi - lo < 1e-12:
            lo, hi = lo - 0.5, hi + 0.5
        box += [lo, hi]
        q = np.clip(np.round((p[..., j] - lo) / (hi - lo) * 254), 0, 254)
        codes[..., j] = np.where(finite, q, NAN_CODE).astype(np.uint8)
    if d == 1:
        box += [0.0, 1.0]
    return codes, box


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def budget_shape(members: int, n_series: int, logged: int, frames: int, particles: int, dims: int) -> dict:
    """How many series points ``s``, snapshot frames ``f`` and particles ``p`` each member keeps so
    that all members fit :data:`BUDGET` (within :data:`LIMITS`, not below :data:`MIN`)."""
    m = max(members, 1)
    s = min(logged, LIMITS["series_points"], max(MIN["series_points"], int(BUDGET["series"] // (m * (n_series + 1) * 4))))
    f, p = min(frames, LIMITS["frames"]), min(particles, LIMITS["particles"])
    while m * f * p * max(dims, 1) > BUDGET["particles"] and (f > MIN["frames"] or p > MIN["particles"]):
        if p > MIN["particles"] and (p >= 4 * f or f <= MIN["frames"]):
            p = max(MIN["particles"], p // 2)
        else:
            f = max(MIN["frames"], f // 2)
    return {"s": int(s), "f": int(min(f, frames)), "p": int(min(p, particles))}


def image_budget(members: int, frames: int, images: int, pixels: int) -> tuple[int, int]:
    """How many snapshots and images per member fit :data:`BUDGET` ``images`` (uint8 pixels):
    snapshots are thinned first (to 2), then images (to 1)."""
    m = max(members, 1)
    f, n = min(frames, LIMITS["image_frames"]), min(images, LIMITS["images"])
    while m * f * n * pixels > BUDGET["images"] and f > min(2, frames):
        f = max(min(2, frames), f // 2)
    while m * f * n * pixels > BUDGET["images"] and n > 1:
        n = max(1, n // 2)
    return f, n


def member_blob(steps: np.ndarray, series: np.ndarray, frame_steps: np.ndarray, particles: Optional[np.ndarray]) -> str:
    """One member's detail as base64: float32 ``[steps (S), series (k, S) row by row, frame steps
    (F), box (4)]`` then uint8 particles ``(F, P, D)`` (:func:`_quantise`); the page decodes it."""
    if particles is None or particles.size == 0:
        codes, box = np.zeros(0, np.uint8), [0.0, 1.0, 0.0, 1.0]
        frame_steps = np.zeros(0)
    else:
        codes, box = _quantise(particles)
    floats = np.concatenate([np.asarray(steps, np.float32), np.asarray(series, np.float32).reshape(-1),
                             np.asarray(frame_steps, np.float32), np.asarray(box, np.float32)]).astype("<f4")
    return _b64(floats.tobytes() + codes.tobytes())


def _target_view(samples: Optional[np.ndarray], modes: Optional[np.ndarray], basis: Optional[np.ndarray],
                 density_x=None, density=None) -> dict:
    """The target as the page draws it, in the particles' coordinates (projected where ``basis``)."""
    out: dict = {"projected": basis is not None}
    if samples is not None and len(samples):
        s = np.asarray(samples, np.float64)[even_indices(len(samples), LIMITS["target_points"])]
        s = s @ basis if basis is not None and s.shape[1] == basis.shape[0] else s
        out["samples"] = np.round(s, 5).tolist()
    if modes is not None and len(modes):
        m = np.asarray(modes, np.float64)
        m = m @ basis if basis is not None and m.shape[1] == basis.shape[0] else m
        out["modes"] = np.round(m, 5).tolist()
    if density_x is not None and density is not None and np.ndim(density) == 1:
        out["density_x"] = [_clean(v) for v in np.asarray(density_x)]
        out["density"] = [_clean(v) for v in np.asarray(density)]
    return out


def _images_b64(imgs: np.ndarray) -> str:
    """Images in [-1, 1] ``(F, n, C*H*W)`` (or already uint8) as base64 uint8."""
    if imgs.dtype != np.uint8:
        imgs = np.round((np.clip(np.nan_to_num(imgs, nan=0.0), -1, 1) + 1) * 127.5).astype(np.uint8)
    return _b64(imgs.tobytes())


# ----------------------------------------------------------------------------- protocols
def protocols(columns: list[str], summary: dict, cfg_text: str) -> list[list[str]]:
    """``[name, how it is measured]`` for every metric column shown, from the metric modules'
    documentation, the run's recorded methods (summary.json ``divergences``) and image protocols."""
    methods = summary.get("divergences") or {}
    rows = []
    for c in columns:
        if c in summary and isinstance(summary[c], dict) and "protocol" in summary[c]:
            rows.append([c, f"{METRIC_DOCS.get(c, '')}; protocol: {json.dumps(summary[c]['protocol'], default=str)}"])
        elif c in DIVERGENCE_DOCS or c in methods:
            text = DIVERGENCE_DOCS.get(c, ORDER_PARAMETER_DOCS.get(c, ""))
            rows.append([c, text + (f"; method in this run: {methods[c]}" if c in methods else "")])
        elif c in ORDER_PARAMETER_DOCS:
            rows.append([c, ORDER_PARAMETER_DOCS[c]])
        elif c in METRIC_DOCS:
            rows.append([c, METRIC_DOCS[c] + " (end of run; see metrics.images in the config)"])
    try:
        loaded = yaml.safe_load(cfg_text)
    except yaml.YAMLError:
        loaded = None
    phase = loaded.get("phase", {}) if isinstance(loaded, dict) else {}
    rows.append(["phase", f"{PHASE_RULE} This run: {json.dumps(phase)}"])
    return rows


# ----------------------------------------------------------------------------- payloads
def _members_payload(results: pd.DataFrame, metrics: pd.DataFrame, key: str, axes_keys: list[str],
                     n_members: int, snapshots_of, n_snap: int, n_part: int, dims: int) -> tuple[dict, list[str]]:
    """The part shared by runs and sweeps: the per-member table, metric menu and detail blobs.

    ``key``: the column naming a member in both tables (``member`` or ``seed``); ``snapshots_of(i)``
    -> ``(frame_steps (F,), particles (F, P, D), target index)`` or None for member row i."""
    notes = []
    skip = set(ID_COLUMNS) | set(axes_keys)
    menu = [c for c in results.columns if c not in skip and _is_scalar_numeric(results[c])
            and np.isfinite(results[c].to_numpy(dtype=float)).any()]
    series_names = [c for c in metrics.columns if c not in skip and _is_scalar_numeric(metrics[c])
                    and np.isfinite(metrics[c].to_numpy(dtype=float)).any()]
    groups = {k: g.sort_values("step") for k, g in metrics.groupby(key, sort=False)}
    logged = max((len(g) for g in groups.values()), default=0)
    shape = budget_shape(n_members, len(series_names), logged, n_snap, n_part, dims)
    blobs, fcount, pcount, scount, tindex = [], [], [], [], []
    for i, k in enumerate(results[key].tolist()):
        g = groups.get(k)
        if g is None:
            steps, series = np.zeros(0), np.zeros((len(series_names), 0))
        else:
            idx = even_indices(len(g), shape["s"])
            steps = g["step"].to_numpy()[idx]
            series = g[series_names].to_numpy(dtype=np.float64)[idx].T
        snap = snapshots_of(i)
        if snap is None:
            fsteps, parts, t = np.zeros(0), None, -1
        else:
            fsteps, parts, t = snap
            fi = even_indices(len(fsteps), shape["f"])
            fsteps, parts = fsteps[fi], parts[fi][:, :shape["p"]]
        blobs.append(member_blob(steps, series, fsteps, parts))
        scount.append(int(len(steps)))
        fcount.append(int(len(fsteps)))
        pcount.append(int(0 if parts is None else parts.shape[1]))
        tindex.append(int(t))
    if logged > shape["s"]:
        notes.append(f"series downsampled: {shape['s']} of {logged} logged steps per member, evenly spaced (first and last kept)")
    if n_snap > shape["f"] or n_part > shape["p"]:
        notes.append(f"particle snapshots downsampled: {min(shape['f'], n_snap)} of {n_snap} snapshots, "
                     f"the first {min(shape['p'], n_part)} of {n_part} particles per member")
    cols = [c for c in results.columns if c in ("member", "seed", "trial", "phase", "phase_margin", "phase_period", "final_step", "diverged_step")
            or c in axes_keys or c in menu]
    table = _columns(results, cols)
    return {"table": table, "metrics_menu": menu, "series_names": series_names,
            "detail": {"blob": blobs, "s": scount, "f": fcount, "p": pcount, "target": tindex,
                       "dims": int(min(dims, 2))}}, notes


def run_payload(path: Path) -> dict:
    """A single run's (one config, its seeds) page data."""
    summary = read_json(path / "summary.json")
    results = read_parquet(path / "results.parquet")
    metrics = read_parquet(path / "metrics.parquet")
    traj = read_npz(path / "trajectory.npz")
    for col, df, name in (("seed", results, "results.parquet"), ("seed", metrics, "metrics.parquet"), ("step", metrics, "metrics.parquet")):
        if col not in df.columns:
            raise ConfigError(str(path / name), f"has no {col!r} column")
    parts = traj.get("particles")  # (S, T, n, d)
    if parts is None or parts.ndim != 4:
        raise ConfigError(str(path / "trajectory.npz"), "has no particles array of shape (seeds, snapshots, n, d)")
    seeds = [int(s) for s in traj.get("seeds", results.seed.to_numpy())]
    row_of = {s: i for i, s in enumerate(seeds)}
    image_shape = [int(v) for v in traj["image_shape"]] if "image_shape" in traj else None
    d = parts.shape[-1]
    basis = principal_plane(traj["target_samples"]) if d > 2 and image_shape is None and "target_samples" in traj else None
    fsteps = np.asarray(traj.get("steps", np.arange(parts.shape[1])))

    def snapshots_of(i):
        j = row_of.get(int(results.seed.iloc[i]))
        if j is None or image_shape is not None:
            return None
        p = parts[j].astype(np.float64)
        return fsteps, (p @ basis if basis is not None else p), 0

    pay, notes = _members_payload(results, metrics, "seed", [], len(results), snapshots_of, parts.shape[1],
                                  0 if image_shape else parts.shape[2], d)
    pay["targets"] = [] if image_shape else [_target_view(traj.get("target_samples"), traj.get("modes"), basis,
                                                          traj.get("density_x"), traj.get("density"))]
    if image_shape is not None:
        nf, k = image_budget(len(results), parts.shape[1], parts.shape[2], parts.shape[3])
        fi = even_indices(parts.shape[1], nf)
        pay["images"] = {"shape": image_shape, "n": k, "steps": [int(s) for s in fsteps[fi]],
                         "blob": [_images_b64(parts[row_of[int(s)]][fi, :k]) if int(s) in row_of else ""
                                  for s in results.seed]}
        if parts.shape[1] > len(fi) or parts.shape[2] > k:
            notes.append(f"image snapshots downsampled: {len(fi)} of {parts.shape[1]} snapshots, the first {k} of "
                         f"{parts.shape[2]} images of each")
    if basis is not None:
        notes.append(f"d = {d}: particles and target drawn on the target sample's principal plane")
    pay["lab"] = "js" in pay["series_names"]
    return {**pay, "notes": notes, "summary": summary}


def sweep_payload(path: Path) -> dict:
    """A sweep's or search's page data: the member table, the axes, per-member detail."""
    summary = read_json(path / "summary.json")
    results = read_parquet(path / "results.parquet")
    metrics = read_parquet(path / "metrics.parquet")
    sw = summary["sweep"]
    axes = sw.get("axes") or []
    keys = [a["key"] for a in axes]
    for col in ("member", *keys):
        if col not in results.columns:
            raise ConfigError(str(path / "results.parquet"), f"has no {col!r} column (the summary's sweep axes are {keys})")
    if "member" not in metrics.columns or "step" not in metrics.columns:
        raise ConfigError(str(path / "metrics.parquet"), "needs 'member' and 'step' columns")
    results = results.sort_values("member").reset_index(drop=True)
    notes = []
    chunks = sorted((path / "chunks").glob("*.snapshots.npz")) if (path / "chunks").is_dir() else []
    snaps, targets, where = [], [], {}
    for c in chunks:
        z = read_npz(c)
        t = len(targets)
        targets.append(_target_view(z.get("target_samples"), z.get("modes"), None, z.get("density_x"), z.get("density")))
        targets[-1]["projected"] = "projection" in z
        snaps.append(z)
        for j, m in enumerate(z["members"].tolist()):
            where[int(m)] = (len(snaps) - 1, j, t)
    n_snap = max((len(z["steps"]) for z in snaps), default=0)
    n_part = max((z["particles"].shape[2] for z in snaps), default=0)
    dims = max((z["particles"].shape[3] for z in snaps), default=2)

    def snapshots_of(i):
        w = where.get(int(results.member.iloc[i]))
        if w is None:
            return None
        z = snaps[w[0]]
        return z["steps"], z["particles"][w[1]].astype(np.float64), w[2]

    if not chunks:
        notes.append("no particle snapshots in this store (sweeps made before gandy report, or an image target): "
                     "the member view shows series only")
    elif any(t.get("projected") for t in targets):
        notes.append("d > 2: particles and target drawn on the target sample's principal plane")
    pay, more = _members_payload(results, metrics, "member", keys, len(results), snapshots_of, n_snap, n_part, dims)
    pay["targets"] = targets
    if "samples_uint8" in results.columns:
        shape = image_shape(path)
        k = int(np.prod(shape))
        stored = len(results.samples_uint8.iloc[0]) // k
        _, n = image_budget(len(results), 1, stored, k)
        pay["images"] = {"shape": shape, "n": n, "steps": None,
                         "blob": [_images_b64(np.asarray(v, np.uint8).reshape(1, -1, k)[:, :n]) for v in results.samples_uint8]}
        if n < stored:
            notes.append(f"final samples: the first {n} of {stored} stored images per member")
    pay["axes"] = axes
    own = files_payload(path, skip=("results.parquet", "metrics.parquet"))  # a boundary search's table and figure, a phase diagram
    pay["figures"], pay["tables"] = own["figures"], own["tables"]
    notes += own["notes"]
    pay["split_failed"] = list(SPLIT_FAILED)  # the phases the dashed boundary counts
    pay["search"] = "trial" in results.columns
    pay["lab"] = "js" in pay["series_names"]
    return {**pay, "notes": notes + more, "summary": summary}


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
    "curved_decay_rate": "-log spectral radius of the effective theory with the critic's curvature (CurvedModel: "
                         "theta and h the medians of theta_final, curvature_final over the converged weights)",
    "theta_final": "mean eigenvalue of the critic's input-gradient tangent kernel J J^T at the data, final state",
    "curvature_final": "e^ . H e^: the critic's Hessian at the data, final state, along the initial error's direction",
}
"""What each column of damping.parquet (written by :mod:`gandy.studies.damping.model`) measures
(docs/damping.md): the damping page's protocols table."""


def damping_payload(path: Path) -> dict:
    """A damping scan's page data: table, convergence curves, theory curves and eigenvalues."""
    summary = read_json(path / "summary.json")
    table = read_parquet(path / "damping.parquet")
    traj = read_parquet(path / "trajectories.parquet")
    for col in ("weight", "step", "com_error"):
        if col not in traj.columns:
            raise ConfigError(str(path / "trajectories.parquet"), f"has no {col!r} column")
    curves = []
    for w, g in traj.groupby("weight", sort=True):
        g = g.sort_values("step")
        idx = even_indices(len(g), LIMITS["curve_points"])
        curves.append({"weight": float(w), "step": g.step.to_numpy()[idx].tolist(),
                       "com_error": [_clean(v) for v in g.com_error.to_numpy()[idx]]})
    cols = [c for c in table.columns if c != "eigenvalues"]
    out = {"table": _columns(table, cols), "curves": curves, "summary": summary, "notes": [],
           "protocols": [[c, DAMPING_COLUMNS[c]] for c in cols if c in DAMPING_COLUMNS],
           "eigenvalues": [[[_clean(a), _clean(b)] for a, b in (e if e is not None else [])] for e in table.get("eigenvalues", [])]}
    if any(len(c["step"]) < n for c, n in zip(curves, traj.groupby("weight", sort=True).size())):
        out["notes"].append(f"convergence curves downsampled to {LIMITS['curve_points']} points each")
    if (path / "theory.parquet").exists():
        th = read_parquet(path / "theory.parquet")
        out["theory"] = _columns(th, list(th.columns))
    return out


def files_payload(path: Path, skip: tuple = ()) -> dict:
    """An experiment's own outputs beside (or instead of) run directories: its figures
    (``*.png`` and ``figures/*.png``, embedded up to ``LIMITS['figure_bytes']`` in all) and its tables
    (``*.parquet`` but the names in ``skip``, the first ``LIMITS['table_rows']`` rows of each)."""
    notes, figures, tables, used = [], [], [], 0
    for f in [*sorted(path.glob("*.png")), *sorted(path.glob("figures/*.png"))]:
        size = f.stat().st_size
        if used + size > LIMITS["figure_bytes"]:
            notes.append(f"figure {f.name} left out ({size / 1e6:.1f} MB over the page's figure budget); it is in figures/")
            continue
        used += size
        figures.append({"name": f.name, "png": _b64(f.read_bytes())})
    for f in sorted(path.glob("*.parquet")):
        if f.name in skip:
            continue
        df = read_parquet(f)
        cols = [c for c in df.columns if not df[c].map(lambda v: isinstance(v, (list, np.ndarray, dict, bytes))).any()]
        if len(df) > LIMITS["table_rows"]:
            notes.append(f"{f.name}: the first {LIMITS['table_rows']} of {len(df)} rows")
        if len(cols) < len(df.columns):
            notes.append(f"{f.name}: array columns left out ({', '.join(c for c in df.columns if c not in cols)})")
        tables.append({"name": f.name, "columns": cols, "rows": len(df),
                       "data": _columns(df.head(LIMITS["table_rows"]), cols)})
    summary = read_json(path / "summary.json") if (path / "summary.json").exists() else {}
    return {"figures": figures, "tables": tables, "notes": notes, "summary": summary}


def child_href(path: Path, child: Path) -> str:
    """The link from ``path/report.html`` to ``child/report.html``: relative and path-only, every
    folder name percent-quoted (``javascript:alert(1)`` -> ``./javascript%3Aalert%281%29/report.html``),
    so that no name can become a scheme, a query, a fragment or markup."""
    return "./" + "".join(quote(part, safe="") + "/" for part in child.relative_to(path).parts) + "report.html"


def collection_payload(path: Path, children: list[tuple[Path, str]]) -> dict:
    """An index of the run directories below ``path``, with the directory's own figures and tables."""
    return {**files_payload(path),
            "children": [{"href": child_href(path, p), "name": str(p.relative_to(path)), "kind": k}
                         for p, k in children]}


PAYLOADS = {"run": run_payload, "sweep": sweep_payload, "damping": damping_payload, "files": files_payload,
            "collection": lambda path: collection_payload(path, [(c, detect(c)) for c in _children(path)])}
"""Kind of directory (:func:`detect`) -> its page data."""


def payload(path: Path, kind: Optional[str] = None) -> dict:
    """Everything the page shows for the directory ``path`` (see the module docstring)."""
    path = Path(path)
    kind = kind or detect(path)
    data = PAYLOADS[kind](path)
    cfg_text = read_config_text(path)
    shown = data.get("metrics_menu", []) + [c for c in data.get("series_names", []) if c not in data.get("metrics_menu", [])]
    data.update({"kind": kind, "title": path.resolve().name, "path": str(path.resolve()), "config": cfg_text,
                 "created": _dt.datetime.now().isoformat(timespec="seconds"), "gandy_version": __version__,
                 "protocols": data.get("protocols") or (protocols(shown, data.get("summary", {}), cfg_text)
                                                        if kind in ("run", "sweep") else [])})
    return data


def _json_safe(obj):
    """``obj`` with every non-finite float (at any depth, summary.json included) as None."""
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _json_safe(obj.tolist())
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


_SCRIPT_ESCAPES = {ord("<"): "\\u003c", ord(">"): "\\u003e", ord("&"): "\\u0026",
                   0x2028: "\\u2028", 0x2029: "\\u2029"}
"""Characters that may not appear literally in JSON inside a ``<script>`` element, as JSON escapes."""


def embed_json(obj) -> str:
    """``obj`` as JSON text safe inside an HTML ``<script>`` element: ``<``, ``>``, ``&``, U+2028
    and U+2029 written as ``\\uXXXX`` escapes (these occur only inside JSON strings, so the text
    parses back to the same value), so that no string in the data (``</script>``, ``<!--<script>``)
    can end the element or change how the HTML parser reads it."""
    return json.dumps(_json_safe(obj), separators=(",", ":"), allow_nan=False).translate(_SCRIPT_ESCAPES)


def render(data: dict) -> str:
    """The page: the template with ``data`` embedded as JSON (:func:`embed_json`). The template
    takes nothing else from the data: the page writes every string into the DOM as text."""
    page = resources.files("gandy.views").joinpath("report_page.html").read_text()
    return page.replace("/*GANDY_DATA*/null", embed_json(data), 1)


def _ours(page: Path) -> bool:
    """Whether ``page`` is a gandy report (its head holds the template's title)."""
    try:
        with open(page, "rb") as fh:
            return b"<title>gandy report</title>" in fh.read(4096)
    except OSError:
        return False


def write_report(path: Path, echo=lambda s: None) -> Path:
    """Write ``path/report.html`` (atomically); for a collection, each run's report and an index.
    Returns the path of the top page."""
    path = Path(path)
    kind = detect(path)
    if kind == "collection":
        for c in _children(path):
            write_report(c, echo)
    html = render(payload(path, kind))
    out = path / "report.html"
    if out.exists() and not _ours(out):
        raise ConfigError("report", f"{out} exists and was not written by gandy; not overwriting it")
    write_atomic(out, html.encode())
    echo(f"{out}: {kind}, {len(html) / 1e6:.2f} MB")
    return out


__all__ = ["detect", "payload", "render", "embed_json", "child_href", "write_report", "budget_shape", "image_budget", "member_blob", "protocols"]
