"""Shared fixtures: a tiny, fast config, a CLI invoker and one written run directory reused by
several tests."""

from __future__ import annotations

import copy

import pytest
import torch
import yaml

# The tests run tiny problems (16 particles, 32-unit critics): a second intra-op thread gains
# nothing, and on a busy 2-core machine OpenMP threads spinning against other processes made the
# suite several times slower (measured: 54 s vs 18 s for test_run.py under load).
torch.set_num_threads(1)

TINY = {
    "target": {"name": "two_modes_1d"},
    "particles": {"n": 16, "init": {"name": "gaussian", "mean": [0.0], "std": 0.1}},
    "kernel": {"name": "two_number", "g1": 1.0, "g2": 0.3},
    "critic": {"name": "mlp", "widths": [32]},
    "penalty": {"name": "sobolev", "weight": 1.0},
    "optim": {"critic": {"name": "adam", "lr": 0.01}, "generator": {"lr": 0.01}},
    "steps": 60,
    "log_every": 20,
    "seeds": [0, 1],
    "device": "cpu",
}


@pytest.fixture
def tiny_cfg() -> dict:
    """A fresh deep copy of the tiny config dict (safe to mutate)."""
    return copy.deepcopy(TINY)


@pytest.fixture
def tiny_yaml(tmp_path):
    """The tiny config written to ``tmp_path/tiny.yaml``."""
    p = tmp_path / "tiny.yaml"
    p.write_text(yaml.safe_dump(TINY, sort_keys=False))
    return p


def _runner():
    from typer.testing import CliRunner

    try:  # click < 8.2 mixes stderr into output unless asked not to
        return CliRunner(mix_stderr=False)
    except TypeError:  # click >= 8.2: stdout and stderr are always kept apart
        return CliRunner()


@pytest.fixture(scope="session")
def invoke_cli():
    """``invoke_cli(args) -> click Result`` for ``gandy.cli.app`` (``.exit_code``, ``.stdout``,
    ``.stderr``)."""
    from gandy.cli import app

    runner = _runner()
    return lambda args: runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="session")
def cli_run(tmp_path_factory, invoke_cli):
    """``gandy run tiny.yaml kernel.g2=0.5 --out DIR -q`` once.

    Returns ``(result, out_dir, parent_dir)``; ``parent_dir`` held nothing before the run.
    """
    base = tmp_path_factory.mktemp("cli_run")
    cfg = base / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(TINY, sort_keys=False))
    parent = base / "runs"
    parent.mkdir()
    out = parent / "r"
    res = invoke_cli(["run", cfg, "kernel.g2=0.5", "--out", out, "-q"])
    return res, out, parent


@pytest.fixture(scope="session", autouse=True)
def gandy_cache(tmp_path_factory):
    """Every test uses one session cache folder (the digit classifier is trained once, and the
    user's own cache is never touched)."""
    import os

    d = tmp_path_factory.mktemp("gandy_cache")
    old = os.environ.get("GANDY_CACHE")
    os.environ["GANDY_CACHE"] = str(d)
    yield d
    if old is None:
        os.environ.pop("GANDY_CACHE", None)
    else:
        os.environ["GANDY_CACHE"] = old


@pytest.fixture
def hold_at(monkeypatch):
    """``hold_at(step) -> (held, go)``: every run's step from ``step`` waits (up to 60 s) until
    ``go`` is set; ``held`` is set when a run gets there. For reading a run while it is still
    going (the log at ``step`` has been taken by then)."""
    import threading

    import gandy.runs.loop as loop

    def hold(step: int):
        real, held, go = loop.advance, threading.Event(), threading.Event()

        def slow(sim, st, *a, **k):
            if st.t == step:
                held.set()
                go.wait(60)
            return real(sim, st, *a, **k)

        monkeypatch.setattr(loop, "advance", slow)
        return held, go

    return hold


@pytest.fixture
def kill_and_resume(monkeypatch):
    """``kill_and_resume(cfg, tmp, die_at, every, between=None) -> steps``: run the sweep ``cfg``
    whole into ``tmp/whole``; run it again into ``tmp/cut`` with a save every ``every`` steps,
    killed (KeyboardInterrupt) at its ``die_at``-th step; call ``between(tmp/cut)``; resume it; and
    check that both sweeps' results and metrics tables are equal bit for bit. Returns the steps the
    resumed run made (those after its last save)."""
    import pandas as pd

    from gandy.runs.sweep import run_sweep
    from interrupts import count_steps

    def go(cfg, tmp, die_at: int, every: int, between=None) -> int:
        run_sweep(cfg, tmp / "whole")
        calls = count_steps(monkeypatch, die_at)
        with pytest.raises(KeyboardInterrupt):
            run_sweep(cfg, tmp / "cut", checkpoint_steps=every)
        if between is not None:
            between(tmp / "cut")
        calls["n"] = -10**9  # no second death; count the steps the resumed run makes
        run_sweep(cfg, tmp / "cut", resume=True, checkpoint_steps=every)
        for name in ("results", "metrics"):
            pd.testing.assert_frame_equal(pd.read_parquet(tmp / "whole" / f"{name}.parquet"),
                                          pd.read_parquet(tmp / "cut" / f"{name}.parquet"), check_exact=True)
        return calls["n"] + 10**9

    return go
