"""Golden outputs for behaviour-preserving refactors: record them before a move, compare after.

    python benchmarks/golden.py record golden/before     # on the code before the move
    python benchmarks/golden.py record golden/after      # on the code after it (same machine)
    python benchmarks/golden.py compare golden/before golden/after

``record`` runs, through the installed ``gandy`` command at one thread, the five outputs the
restructuring contract names: ``gandy demo``, a small sweep (collapse-1d, 3 x 2 grid, 2 seeds,
200 steps), a GAN-lab run (parallel_lines, ns, 100 steps), a damping scan (2 weights, 100 steps)
and an image run (MNIST DCGAN, 4 steps, its sample-quality metrics). ``compare`` checks that every
``results.parquet``, ``metrics.parquet``, ``damping.parquet`` and ``summary.json`` is bit-identical
(timings, dates and the folders' own paths excepted) and exits 1 naming each difference.

Floating-point results can differ between CPUs, so record and compare on one machine; the folder
(``golden/``) is ignored by git.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from importlib import resources
from pathlib import Path

import pandas as pd
import yaml

GANDY = [sys.executable, "-c", "import sys; from gandy.cli import main; main(sys.argv[1:])", "--threads", "1"]
VOLATILE = ("wall", "seconds", "per_second", "created", "written", "path")
TABLES = ("results.parquet", "metrics.parquet", "damping.parquet")


def _configs(tmp: Path) -> dict:
    root = resources.files("gandy").joinpath("studies")
    lab = yaml.safe_load(root.joinpath("many_paths", "config.yaml").read_text())["parallel_lines"]
    image = {
        "target": {"name": "mnist"}, "generator": {"name": "dcgan", "latent_dim": 8, "width": 4},
        "critic": {"name": "dcgan", "width": 4}, "objective": "ns", "penalty": None,
        "optim": {"critic": {"name": "adam", "lr": 2e-4, "betas": [0.5, 0.999]},
                  "generator": {"name": "adam", "lr": 2e-4, "betas": [0.5, 0.999]}},
        "particles": {"n": 16}, "batch_size": 16, "steps": 4, "log_every": 2, "seeds": [0, 1],
        "metrics": {"images": {"n_fake": 256, "n_real": 256, "w_critic_steps": 20}},
    }
    paths = {}
    for name, data in (("lab", lab), ("image", image)):
        paths[name] = tmp / f"{name}.yaml"
        paths[name].write_text(yaml.safe_dump(data, sort_keys=False))
    paths["sweep"] = Path(str(root.joinpath("collapse_1d", "config.yaml")))
    paths["damping"] = Path(str(root.joinpath("damping", "config.yaml")))
    return paths


def record(out: Path) -> None:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=False)
    with tempfile.TemporaryDirectory() as t:
        c = _configs(Path(t))
        runs = {
            "demo": ["demo", "--out", out / "demo", "-q"],
            "sweep": ["run", c["sweep"], "steps=200", "seeds=[0, 1]", "sweep.kernel.g2=[0.01, 0.1, 0.5]",
                      "sweep.optim.critic.lr=[0.001, 0.01]", "--out", out / "sweep", "-q"],
            "lab": ["run", c["lab"], "objective=ns", "steps=100", "--out", out / "lab", "-q"],
            "damping": ["damping", c["damping"], "steps=100", "--weights", "0.1,1", "--out", out / "damping"],
            "image": ["run", c["image"], "--out", out / "image", "-q"],
        }
        for name, args in runs.items():
            print(f"golden: {name}", flush=True)
            subprocess.run([*GANDY, *map(str, args)], check=True, stdout=subprocess.DEVNULL)


def _clean(obj):
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items() if not any(w in k for w in VOLATILE)}
    if isinstance(obj, list):
        return [_clean(v) for v in obj]
    return obj


def compare(a: Path, b: Path) -> list[str]:
    """The differences between two recorded folders (empty: bit-identical)."""
    a, b = Path(a), Path(b)
    diffs = []
    files = sorted({p.relative_to(a) for p in a.rglob("*") if p.name in (*TABLES, "summary.json")})
    if not files:
        return [f"{a}: nothing recorded"]
    for rel in files:
        pa, pb = a / rel, b / rel
        if not pb.exists():
            diffs.append(f"{rel}: missing in {b}")
            continue
        if rel.name == "summary.json":
            ja, jb = (_clean(json.loads(p.read_text())) for p in (pa, pb))
            if ja != jb:
                diffs.append(f"{rel}: differs")
            continue
        try:
            pd.testing.assert_frame_equal(pd.read_parquet(pa), pd.read_parquet(pb), check_exact=True)
        except AssertionError as e:
            diffs.append(f"{rel}: {' '.join(str(e).split())[:200]}")
    return diffs


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "record":
        record(Path(argv[1]))
        return 0
    if len(argv) == 3 and argv[0] == "compare":
        diffs = compare(Path(argv[1]), Path(argv[2]))
        for d in diffs:
            print(d)
        print("bit-identical" if not diffs else f"{len(diffs)} differences")
        return 1 if diffs else 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
