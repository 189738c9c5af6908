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
