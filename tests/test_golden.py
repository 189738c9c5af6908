"""Golden outputs of behaviour-preserving refactors (benchmarks/golden.py): the comparison finds a
one-ulp change, and (slow, given a record of the code before a move) today's outputs equal it bit
for bit:

    python benchmarks/golden.py record golden/before          # on the commit before the move
    GANDY_GOLDEN=golden/before pytest -m slow tests/test_golden.py
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

SPEC = importlib.util.spec_from_file_location("golden", Path(__file__).parents[1] / "benchmarks" / "golden.py")
golden = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(golden)


def _record(root: Path, w1: float, wall: float) -> Path:
    (root / "run").mkdir(parents=True)
    pd.DataFrame({"step": [0, 10], "w1": [0.5, w1]}).to_parquet(root / "run" / "metrics.parquet")
    (root / "run" / "summary.json").write_text(json.dumps({"phase_counts": {"converged": 2}, "wall_seconds": wall}))
    return root


def test_compare_finds_a_one_ulp_difference_and_ignores_timings(tmp_path):
    a = _record(tmp_path / "a", 0.25, 1.0)
    same = _record(tmp_path / "same", 0.25, 7.0)  # only the wall time differs: volatile
    ulp = _record(tmp_path / "ulp", float(np.nextafter(0.25, 1.0)), 1.0)
    assert golden.compare(a, same) == []
    diffs = golden.compare(a, ulp)
    assert len(diffs) == 1 and diffs[0].startswith("run/metrics.parquet")
    shutil.rmtree(same / "run")
    assert golden.compare(a, same) == [f"run/metrics.parquet: missing in {same}", f"run/summary.json: missing in {same}"]


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("GANDY_GOLDEN"), reason="GANDY_GOLDEN names no record of the code before a move")
def test_outputs_are_bit_identical_to_the_golden_record(tmp_path):
    golden.record(tmp_path / "now")
    assert golden.compare(Path(os.environ["GANDY_GOLDEN"]), tmp_path / "now") == []
