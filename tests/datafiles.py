"""Data files, good and malformed, for the bad-input tests (one factory for every test module)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np


def write_data_file(d: Path, kind: str) -> Path:
    """Write a data file of the given kind into ``d``; return its path (not written for ``missing``)."""
    p = d / f"{kind}.npy"
    if kind == "good":
        np.save(p, np.array([[-2.0], [2.0], [-1.9], [2.1]]))
    elif kind == "nan":
        np.save(p, np.array([[0.0], [np.nan]]))
    elif kind == "inf":
        np.save(p, np.array([[0.0], [np.inf]]))
    elif kind == "scalar":
        np.save(p, np.array(3.0))
    elif kind == "strings":
        np.save(p, np.array([["a"], ["b"]]))
    elif kind == "bool":
        np.save(p, np.array([[True], [False]]))
    elif kind == "empty":
        np.save(p, np.zeros((0, 1)))
    elif kind == "missing":
        pass
    elif kind == "garbage":
        p.write_bytes(b"\x00\x01 definitely not numpy")
    elif kind in ("truncated", "corrupt"):
        np.save(p, np.arange(20.0).reshape(10, 2))
        p.write_bytes(p.read_bytes()[:-7])
    elif kind == "truncated_header":
        np.save(p, np.arange(20.0).reshape(10, 2))
        p.write_bytes(p.read_bytes()[:40])
    elif kind == "npz_two":
        p = d / "two.npz"
        np.savez(p, a=np.ones((3, 1)), b=np.ones((3, 1)))
    elif kind == "npz_object":
        p = d / "obj.npz"
        np.savez(p, x=np.array([1, "a"], dtype=object))
    elif kind == "npz_corrupt_member":
        p = d / "corrupt.npz"
        with zipfile.ZipFile(p, "w") as z:
            z.writestr("x.npy", b"garbage")
    elif kind == "kernel_strings":
        np.save(p, np.array([["a"] * 16] * 16))
    elif kind == "kernel_neg":
        np.save(p, -np.eye(16))
    else:  # pragma: no cover
        raise ValueError(kind)
    return p


def synthetic_sweep(out: Path, side: int = 64, logged: int = 200, frames: int = 40, particles: int = 64, dim: int = 2) -> Path:
    """A finished sweep store of ``side * side`` members (one seed, two log axes) with the layout
    run_sweep writes, filled with synthetic numbers: for report size and speed at scales that take
    minutes to simulate. ``logged`` metric rows, ``frames`` snapshots of ``particles`` particles in
    ``dim`` dimensions per member (4 chunks)."""
    import json

    import pandas as pd

    from gandy.core.metrics.order import ORDER_PARAMETERS
    from gandy.runs import config as C

    out.mkdir(parents=True)
    (out / "chunks").mkdir()
    g2 = np.geomspace(1e-3, 0.9, side)
    lr = np.geomspace(1e-4, 1e-1, side)
    cfg = C.load_config({"target": {"name": "ring8"} if dim == 2 else {"name": "two_modes_1d"}, "particles": {"n": particles},
                         "steps": logged * 10, "log_every": 10, "seeds": [0],
                         "sweep": {"kernel.g2": {"logspace": [1e-3, 0.9], "num": side},
                                   "optim.critic.lr": {"logspace": [1e-4, 1e-1], "num": side}}})
    (out / "config.yaml").write_text(C.dump_config(cfg))
    rng = np.random.default_rng(0)
    m = side * side
    member = np.arange(m)
    a, b = g2[member // side], lr[member % side]
    steps = np.arange(logged) * 10
    results = pd.DataFrame({"member": member, "kernel.g2": a, "optim.critic.lr": b, "seed": 0})
    final = rng.random((m, len(ORDER_PARAMETERS)))
    for j, k in enumerate(ORDER_PARAMETERS):
        results[k] = final[:, j] + (np.log(a) if k == "coverage_kl" else 0)
    results["final_step"] = steps[-1]
    results["phase"] = np.where(a > 0.1, "collapsed", "converged")
    results["diverged_step"] = -1
    metrics = pd.DataFrame({"member": np.repeat(member, logged), "kernel.g2": np.repeat(a, logged),
                            "optim.critic.lr": np.repeat(b, logged), "seed": 0, "step": np.tile(steps, m)})
    for k in (*ORDER_PARAMETERS, "js", "kl_pq", "kl_qp", "mmd"):
        metrics[k] = rng.random(m * logged)
    results.to_parquet(out / "results.parquet", index=False)
    metrics.to_parquet(out / "metrics.parquet", index=False)
    for c in range(4):
        idx = member[c::4]
        np.savez_compressed(out / "chunks" / f"{c:07d}.snapshots.npz", members=idx, steps=np.linspace(0, steps[-1], frames).astype(int),
                            particles=rng.normal(size=(len(idx), frames, particles, min(dim, 2))).astype(np.float16),
                            target_samples=rng.normal(size=(400, min(dim, 2))).astype(np.float32))
    summary = {"sweep": {"axes": [{"key": "kernel.g2", "values": g2.tolist(), "scale": "log"},
                                  {"key": "optim.critic.lr", "values": lr.tolist(), "scale": "log"}],
                         "seeds": [0], "members": m, "chunks": 4, "chunk_sizes": [m // 4], "executor": "local"},
               "phase_counts": results.phase.value_counts().to_dict()}
    (out / "summary.json").write_text(json.dumps(summary))
    return out
