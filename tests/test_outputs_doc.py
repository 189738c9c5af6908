"""docs/outputs.md documents every table gandy writes and every column of a run's and a sweep's tables.

The table names are read from the source (no list kept by hand): the keys of the dicts passed to
``write_summary``/``write_tables`` or built in a variable named ``tables``, and every literal
``*.parquet`` name (f-strings included, e.g. ``{chunk_id}.results.parquet``). The columns are read
from a tiny run and a tiny sweep (with ``metrics.phase_2x`` and ``metrics.divergences`` on) and
from the column-name constants the tables are built from.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import gandy
from gandy.core.images.evaluate import METRICS
from gandy.core.metrics.divergences import DIVERGENCES, ERRORS
from gandy.core.metrics.order import ORDER_PARAMETERS
from gandy.core.metrics.phases import PHASES
from gandy.core.step import State

ROOT = Path(gandy.__file__).parent
DOC = Path(__file__).resolve().parents[1] / "docs" / "outputs.md"
WRITERS = {"write_summary": 2, "write_tables": 1}
"""The writers of an output's tables, and the position of their ``{name: table}`` argument (also
accepted as the keyword ``tables``)."""


def doc_text() -> str:
    return DOC.read_text(encoding="utf-8")


def named(name: str, text: str) -> bool:
    """Whether ``name`` appears in ``text`` as a code span of its own (`name`), or as the first
    word of one (`name/...`, `name (`...)."""
    return re.search(r"`" + re.escape(name) + r"(`|[ /])", text) is not None


def _keys(d: ast.Dict) -> list[str]:
    return [k.value for k in d.keys if isinstance(k, ast.Constant) and isinstance(k.value, str)]


def written_tables(tree: ast.AST) -> set[str]:
    """Names ``NAME.parquet`` of the tables a module's source writes (see the module docstring)."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            fn = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if fn in WRITERS:
                args = node.args[WRITERS[fn]:WRITERS[fn] + 1] + [k.value for k in node.keywords if k.arg == "tables"]
                for arg in args:
                    if isinstance(arg, ast.Dict):
                        found.update(f"{k}.parquet" for k in _keys(arg))
        elif isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict) and \
                any(isinstance(t, ast.Name) and t.id == "tables" for t in node.targets):
            found.update(f"{k}.parquet" for k in _keys(node.value))
        elif isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Subscript) and isinstance(t.value, ast.Name) and t.value.id == "tables"
                and isinstance(t.slice, ast.Constant) for t in node.targets):
            found.update(f"{t.slice.value}.parquet" for t in node.targets if isinstance(t, ast.Subscript))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.endswith(".parquet"):
            name = node.value.rsplit("/", 1)[-1].lstrip(".")
            if re.fullmatch(r"[\w-]+(\.[\w-]+)*\.parquet", name):  # not a glob, a bare suffix or a message
                found.add(name)
    return found


def source_tables() -> dict[str, str]:
    """Every table name the package writes or reads -> the first module that names it."""
    out: dict[str, str] = {}
    for path in sorted(ROOT.rglob("*.py")):
        for name in written_tables(ast.parse(path.read_text(encoding="utf-8"))):
            out.setdefault(name, str(path.relative_to(ROOT)))
    return out


def experiment_names() -> list[str]:
    """The names ``gandy run NAME`` takes, from each study's ``Experiment("NAME", ...)``."""
    names = []
    for path in sorted((ROOT / "studies").glob("*/experiment.py")):
        names += re.findall(r'Experiment\(\s*"([^"]+)"', path.read_text(encoding="utf-8"))
    return names


def test_finder_sees_what_each_writer_writes():
    """The source reader itself: dict keys of write_summary/write_tables, a ``tables`` dict and
    its later entries, literal and f-string names."""
    src = ('write_summary(out, {"experiment": "x"}, {"cells": a, "fit_times": b})\n'
           'write_tables(out, {"points": p}, summary)\n'
           'tables = {"damping": t}\n'
           'tables["theory"] = u\n'
           'p = out / "boundary.parquet"\n'
           'q = chunks / f"{cid}.results.parquet"\n'
           'g = out.glob("*.parquet")\n'
           'raise ConfigError("DIR", f"{d} holds no results.parquet")\n'
           'write_summary(out, {"rows": 1}, tables={"exponents": e})\n')
    assert written_tables(ast.parse(src)) == {"cells.parquet", "fit_times.parquet", "points.parquet", "damping.parquet",
                                              "theory.parquet", "boundary.parquet", "results.parquet", "exponents.parquet"}


def test_found_tables_include_the_known_ones():
    """The reader finds the tables named in the issue (so an empty result cannot pass)."""
    found = source_tables()
    for name in ("results.parquet", "metrics.parquet", "boundary.parquet", "points.parquet", "cells.parquet",
                 "curves.parquet", "fit_times.parquet", "exponents.parquet", "saturation.parquet",
                 "calibration.parquet", "damping.parquet", "trajectories.parquet", "theory.parquet"):
        assert name in found, name


def test_every_table_is_documented():
    text = doc_text()
    missing = {name: where for name, where in source_tables().items() if not named(name, text)}
    assert not missing, f"tables written but not in docs/outputs.md: {missing}"


def test_every_experiment_has_a_section():
    text = doc_text()
    names = experiment_names()
    assert len(names) >= 10
    missing = [n for n in names if not re.search(rf"^### {re.escape(n)}$", text, re.M)]
    assert not missing, f"experiments without a section in docs/outputs.md: {missing}"


def test_column_constants_are_documented():
    """The columns the run tables are built from: order parameters, logged fields, divergences and
    their standard errors, image metrics, phases (mnist-collapse's count columns)."""
    text = doc_text()
    names = [*ORDER_PARAMETERS, *State.LOGGED, *DIVERGENCES, *ERRORS, *METRICS, *PHASES, "sw1", "fid_inception"]
    missing = [n for n in names if not named(n, text)]
    assert not missing, f"columns not in docs/outputs.md: {missing}"


def test_named_rejects_a_missing_entry():
    text = "- `steps_to_fit` — x\n- `phase_2x`, `phase_2x_margin` — y\n| `diverged_step` (run) |"
    assert named("steps_to_fit", text) and named("phase_2x", text) and named("diverged_step", text)
    assert not named("phase", text) and not named("fit_times.parquet", text)
    assert not named("steps_to", text)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A 4-step run and a 2-member sweep (phase_2x and divergences on), written to disk."""
    import torch

    torch.set_num_threads(1)
    base = {"target": {"name": "two_modes_1d", "separation": 4.0, "std": 0.1}, "particles": {"n": 16},
            "steps": 4, "log_every": 2, "snapshot_every": 2, "seeds": [0],
            "metrics": {"phase_2x": True, "divergences": True}}
    root = tmp_path_factory.mktemp("outputs")
    run = gandy.run(gandy.load_config(base), out=root / "run")
    sweep = gandy.run(gandy.load_config({**base, "sweep": {"optim.generator.lr": [0.001, 0.01]}}), out=root / "sweep")
    return root, run, sweep


def test_run_and_sweep_columns_are_documented(tiny):
    import pandas as pd

    root, run, sweep = tiny
    text = doc_text()
    swept = {"optim.generator.lr"}
    for kind in ("run", "sweep"):
        for table in ("results", "metrics"):
            cols = list(pd.read_parquet(root / kind / f"{table}.parquet").columns)
            assert "seed" in cols and ("phase" in cols or "step" in cols)
            missing = [c for c in cols if c not in swept and not named(c, text)]
            assert not missing, f"{kind}/{table}.parquet columns not in docs/outputs.md: {missing}"
    res = pd.read_parquet(root / "sweep" / "results.parquet")
    for c in ("phase_2x", "diverged_step_2x", "js_se"):  # the options took effect: their columns are checked
        assert c in res or c in pd.read_parquet(root / "sweep" / "metrics.parquet"), c
    assert named("optim.generator.lr", text)  # the doc's example of a swept key's column


def test_run_and_sweep_files_are_documented(tiny):
    root, _, _ = tiny
    text = doc_text()
    for kind in ("run", "sweep"):
        for p in (root / kind).rglob("*"):
            if p.is_file() and p.name != ".gandy":
                name = re.sub(r"^\d+\.", "ID.", p.name)  # chunk files: chunks/ID.results.parquet
                rel = p.relative_to(root / kind).parent / name
                assert named(rel.as_posix(), text) or named(name, text), f"{kind}: {rel} not in docs/outputs.md"
