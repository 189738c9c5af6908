"""Resumable state that cannot be trusted is never resumed, and nothing is silently lost.

A chunk's checkpoint with one flipped bit, a byte flipped in its file, a tensor of the wrong shape
or no checksum is discarded (the chunk starts over and says so), with tables equal to an
uninterrupted run's; a damaged chunk table is refused with one line naming it and what to delete;
``gandy.run`` on a sweep or search config runs every member; SIGTERM cleans up as Ctrl-C does.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

import gandy
import gandy.runs.loop as loop
from gandy.runs.config import ConfigError, load_config
from gandy.runs.sweep import run_sweep
from interrupts import count_steps

from conftest import TINY

STEPS, EVERY, DEATH = 40, 10, 25  # saves at steps 10, 20, 30 would come; the run dies during step 25
CHUNK = {**TINY, "steps": STEPS, "log_every": 10, "seeds": [0, 1], "sweep": {"kernel.g2": [0.05, 0.6]}}
CKPT = Path("chunks") / "0000000.checkpoint.pt"


def _tables(out: Path):
    return pd.read_parquet(out / "results.parquet"), pd.read_parquet(out / "metrics.parquet")


def _assert_same(a: Path, b: Path) -> None:
    for x, y in zip(_tables(a), _tables(b)):
        pd.testing.assert_frame_equal(x, y, check_exact=True)


@pytest.fixture(scope="module")
def killed(tmp_path_factory):
    """An uninterrupted sweep (one chunk of 4 members) and the same sweep killed during step 25
    after saves every 10 steps: ``(whole, cut, config file)``; ``cut`` holds only the checkpoint and the live rows."""
    root = tmp_path_factory.mktemp("killed")
    cfg_path = root / "chunk.yaml"
    cfg_path.write_text(yaml.safe_dump(CHUNK))
    cfg = load_config(cfg_path)
    run_sweep(cfg, root / "whole")
    with pytest.MonkeyPatch.context() as mp:
        count_steps(mp, die_at=DEATH)
        with pytest.raises(KeyboardInterrupt):
            run_sweep(cfg, root / "cut", checkpoint_steps=EVERY)
    assert sorted(os.listdir(root / "cut" / "chunks")) == [CKPT.name, CKPT.name.replace(".checkpoint.pt", ".live.jsonl")]
    return root / "whole", root / "cut", cfg_path


def _resume(killed, tmp_path, monkeypatch, invoke_cli, damage=None):
    """Copy the killed sweep, ``damage(checkpoint path)``, resume it with ``gandy run --resume``
    (checkpoints every 10 steps); return ``(CLI result, steps made, output folder)``."""
    whole, cut, cfg_path = killed
    out = tmp_path / "cut"
    shutil.copytree(cut, out)
    if damage is not None:
        damage(out / CKPT)
    calls = count_steps(monkeypatch)
    res = invoke_cli(["run", cfg_path, "--out", out, "--resume", "-q", "--checkpoint-every", "3600"])
    assert res.exit_code == 0, res.stderr
    return res, calls["n"], out


def _load(path: Path) -> dict:
    return torch.load(path, weights_only=True)


def test_a_valid_checkpoint_is_resumed_and_the_output_says_so(killed, tmp_path, monkeypatch, invoke_cli):
    res, steps, out = _resume(killed, tmp_path, monkeypatch, invoke_cli)
    assert "chunk 0000000: resumed from its checkpoint at step 20" in res.stdout
    assert steps == STEPS - 20  # only the steps after the last save
    _assert_same(killed[0], out)


def test_a_flipped_bit_in_a_checkpoint_tensor_is_discarded_not_resumed(killed, tmp_path, monkeypatch, invoke_cli):
    """One bit of one particle's float, flipped in the saved data (the stored checksum kept): the
    chunk restarts from step 0 and its numbers equal an uninterrupted run's (resumed, the particle
    would have been ~1e38 and its member's numbers wrong)."""

    def flip(path):
        blob = _load(path)
        assert blob["x"].dtype == torch.float32
        blob["x"].view(torch.int32)[0, 3, 0] ^= 1 << 30  # an exponent bit
        torch.save(blob, path)

    res, steps, out = _resume(killed, tmp_path, monkeypatch, invoke_cli, flip)
    _assert_same(killed[0], out)
    assert "chunk 0000000: checkpoint discarded (checksum mismatch); restarted from step 0" in res.stdout
    assert steps == STEPS


def test_a_flipped_byte_in_the_checkpoint_file_is_discarded(killed, tmp_path, monkeypatch, invoke_cli):
    """Raw damage to the file, at the particles' bytes: unreadable or a checksum mismatch, never resumed."""

    def flip(path):
        x = _load(path)["x"]
        raw = bytearray(path.read_bytes())
        at = bytes(raw).find(x.numpy().tobytes())  # torch.save stores a tensor's bytes as they are
        assert at > 0
        raw[at + 5] ^= 0x40
        path.write_bytes(bytes(raw))

    res, steps, out = _resume(killed, tmp_path, monkeypatch, invoke_cli, flip)
    assert re.search(r"chunk 0000000: checkpoint discarded \((checksum mismatch|cannot read it: \w+)\); "
                     r"restarted from step 0", res.stdout), res.stdout
    assert steps == STEPS
    _assert_same(killed[0], out)


def test_a_checkpoint_tensor_of_the_wrong_shape_is_discarded(killed, tmp_path, monkeypatch, invoke_cli):
    """A checkpoint whose checksum is right but whose particles are one short (as another gandy
    might save them) does not crash the resume: it is discarded, and the chunk runs from step 0."""

    def shorten(path):
        blob = _load(path)
        blob.pop("checksum", None)
        blob["x"] = blob["x"][:, :-1].clone()
        blob["checksum"] = loop.digest(blob)
        torch.save(blob, path)

    res, steps, out = _resume(killed, tmp_path, monkeypatch, invoke_cli, shorten)
    assert "chunk 0000000: checkpoint discarded (state.x is float32 (4, 15, 1), expected float32 (4, 16, 1)); " \
           "restarted from step 0" in res.stdout
    assert steps == STEPS
    _assert_same(killed[0], out)


def test_a_checkpoint_without_checksum_is_discarded(killed, tmp_path, monkeypatch, invoke_cli):
    def strip(path):
        blob = _load(path)
        blob.pop("checksum")
        torch.save(blob, path)

    res, steps, out = _resume(killed, tmp_path, monkeypatch, invoke_cli, strip)
    assert "checkpoint discarded (no checksum" in res.stdout and steps == STEPS
    _assert_same(killed[0], out)


def test_the_checksum_sees_every_field():
    """A changed tensor element, dtype, shape, counter, metric value or list length changes the digest."""
    blob = {"x": torch.arange(6, dtype=torch.float32).reshape(2, 3), "t": 3, "m": [{"w1": 0.5}], "none": None,
            "alive": torch.tensor([True, False])}
    ref = loop.digest(blob)
    assert loop.digest({**blob}) == ref
    variants = [
        {**blob, "x": blob["x"].clone().index_put_((torch.tensor(1), torch.tensor(2)), torch.tensor(5.0000005))},
        {**blob, "x": blob["x"].double()},
        {**blob, "x": blob["x"].reshape(3, 2)},
        {**blob, "t": 4},
        {**blob, "m": [{"w1": 0.5000000001}]},
        {**blob, "m": []},
        {**blob, "alive": torch.tensor([True, True])},
    ]
    assert all(loop.digest(v) != ref for v in variants)


# ----------------------------------------------------------------------------- damaged chunk tables
@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished sweep of two chunks: ``(folder, config file)``."""
    root = tmp_path_factory.mktemp("finished")
    cfg_path = root / "two.yaml"
    cfg_path.write_text(yaml.safe_dump({**CHUNK, "steps": 20, "sweep": {**CHUNK["sweep"], "batch_size": 2}}))
    run_sweep(load_config(cfg_path), root / "s")
    assert len(list((root / "s" / "chunks").glob("*.results.parquet"))) == 2
    return root / "s", cfg_path


def _snapshot(folder: Path) -> dict:
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("kind", ["results", "metrics"])
def test_a_damaged_chunk_table_is_refused_naming_it_and_deleting_it_recovers(finished, tmp_path, invoke_cli, kind):
    """A chunk's table that Parquet cannot read: one ``error:`` line naming it and saying what to
    delete, exit 2, nothing touched; once that file is deleted, --resume recomputes the chunk and
    the tables equal the undamaged sweep's."""
    src, cfg_path = finished
    out = tmp_path / "s"
    shutil.copytree(src, out)
    bad = out / "chunks" / f"0000002.{kind}.parquet"
    raw = bytearray(bad.read_bytes())
    raw[len(raw) // 2: len(raw) // 2 + 64] = b"\xff" * 64
    raw[-8:-4] = b"\xff\xff\xff\x7f"  # the footer's length: nonsense
    bad.write_bytes(bytes(raw))
    before = _snapshot(out)
    res = invoke_cli(["run", cfg_path, "--out", out, "--resume", "-q"])
    assert res.exit_code == 2, (res.stdout, res.stderr)
    err = res.stderr.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"error: {bad}: cannot read it as Parquet")
    done = out / "chunks" / "0000002.results.parquet"
    assert ("delete this file" if kind == "results" else f"delete {done}") in err
    assert "rerun with --resume to recompute chunk 0000002" in err
    assert _snapshot(out) == before
    done.unlink()
    res = invoke_cli(["run", cfg_path, "--out", out, "--resume", "-q"])
    assert res.exit_code == 0, res.stderr
    assert "4 members in 2 chunks; 1 already done" in res.stdout
    _assert_same(src, out)


# ----------------------------------------------------------------------------- the Python API
GRID = {**TINY, "steps": 10, "log_every": 5, "seeds": [0],
        "sweep": {"kernel.g2": [0.1, 0.5], "optim.critic.lr": [0.001, 0.01]}}


def test_gandy_run_on_a_sweep_config_runs_every_member(tmp_path):
    p = tmp_path / "sweep.yaml"
    p.write_text(yaml.safe_dump(GRID))
    res = gandy.run(str(p), out=tmp_path / "s", figures=False)
    assert len(res.results) == 4
    assert sorted(zip(res.results["kernel.g2"], res.results["optim.critic.lr"])) == \
        [(0.1, 0.001), (0.1, 0.01), (0.5, 0.001), (0.5, 0.01)]
    assert sorted(res.metrics.member.unique()) == [0, 1, 2, 3] and len(res.metrics) == 4 * 3  # steps 0, 5, 10
    assert res.path == tmp_path / "s" and res.summary["sweep"]["members"] == 4
    pd.testing.assert_frame_equal(res.results, pd.read_parquet(tmp_path / "s" / "results.parquet"))


def test_gandy_run_on_a_search_config_runs_every_trial(tmp_path):
    cfg = {**GRID, "sweep": None, "search": {"trials": 3, "seed": 1, "params": {"kernel.g2": {"uniform": [0.1, 0.5]}}}}
    res = gandy.run(cfg, out=tmp_path / "s", figures=False)
    assert sorted(res.results.trial) == [0, 1, 2]


def test_gandy_run_on_a_sweep_without_out_is_refused(tmp_path, monkeypatch):
    """Never a silent subset (the base point): a sweep writes its chunks to a folder, so it needs one."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as e:
        gandy.run(GRID)
    assert e.value.field == "out" and "sweep:" in e.value.message
    assert os.listdir(tmp_path) == []


# ----------------------------------------------------------------------------- SIGTERM
SLOW_DRAW = ("import sys, time; import gandy.views.plots as P; real = P.plot_run; "
             "P.plot_run = lambda d: (real(d), time.sleep(120)); "
             "from gandy.cli import main; main(sys.argv[1:])")


CLI = "import sys; from gandy.cli import main; main(sys.argv[1:])"


def _terminated(script: str, args: list, ready, timeout: float = 120.0) -> tuple[int, str]:
    """Run ``python -c script *args``, send SIGTERM once ``ready()`` holds; ``(exit code, stderr)``."""
    proc = subprocess.Popen([sys.executable, "-c", script, *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and proc.poll() is None and not ready():
            time.sleep(0.02)
        assert proc.poll() is None and ready(), "the process ended before the moment to stop it"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, err


def test_sigterm_while_a_run_is_written_leaves_nothing_behind(tmp_path):
    """``kill`` while a single run writes its temporary folder (its figures take two minutes
    here): the folder is removed, nothing takes the output's name, exit 143 with one line."""
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(TINY))
    parent = tmp_path / "runs"
    parent.mkdir()
    code, err = _terminated(SLOW_DRAW, ["run", cfg, "--out", parent / "r", "-q"],
                            lambda: any((d / "figures").is_dir() for d in parent.glob(".r.tmp-*")))
    assert code == 143, err
    assert err.strip() == "error: terminated (a sweep resumes with --resume)"
    assert os.listdir(parent) == []


@pytest.mark.slow
def test_sigterm_during_a_sweep_leaves_it_resumable(tmp_path, invoke_cli):
    """``kill`` inside a chunk that saves often: exit 143, no stray temporary files, and --resume
    continues from the checkpoint to the tables of an uninterrupted run."""
    cfg = tmp_path / "long.yaml"
    cfg.write_text(yaml.safe_dump({**CHUNK, "steps": 300, "log_every": 50}))
    out = tmp_path / "s"
    code, err = _terminated(CLI, ["run", cfg, "--out", out, "--checkpoint-every", "0", "-q"], (out / CKPT).exists)
    assert code == 143, err
    assert "terminated" in err
    # no half-written file under a temporary name: the checkpoint and the chunk's live rows (gandy's,
    # rewritten from the checkpoint's rows on --resume: gandy watch)
    assert sorted(os.listdir(out / "chunks")) == [CKPT.name, "0000000.live.jsonl"]
    assert not (out / "results.parquet").exists()
    saved = _load(out / CKPT)["t_next"]
    assert 0 < saved < 300
    res = invoke_cli(["run", cfg, "--out", out, "--resume", "-q", "--checkpoint-every", "3600"])
    assert res.exit_code == 0, res.stderr
    assert f"chunk 0000000: resumed from its checkpoint at step {saved}" in res.stdout
    ref = tmp_path / "ref"
    run_sweep(load_config(cfg), ref)
    _assert_same(ref, out)


@pytest.mark.slow
def test_sigterm_stops_the_worker_processes_of_a_sweep_at_once(tmp_path):
    """``--executor processes``: SIGTERM to the driver stops its workers too (they would otherwise
    go on computing, and saving, chunks nobody collects): exit 143, the checkpoints stop changing,
    no file is left under a temporary name."""
    cfg = tmp_path / "two.yaml"
    cfg.write_text(yaml.safe_dump({**CHUNK, "steps": 20000, "log_every": 1000}))
    out = tmp_path / "s"
    ckpts = [out / "chunks" / "0000000.checkpoint.pt", out / "chunks" / "0000002.checkpoint.pt"]
    code, err = _terminated(CLI, ["run", cfg, "--out", out, "--executor", "processes", "--workers", "2",
                                  "--checkpoint-every", "0", "-q"], lambda: all(c.exists() for c in ckpts), timeout=240)
    assert code == 143, err
    stamps = [c.stat().st_mtime_ns for c in ckpts]
    time.sleep(3)
    assert [c.stat().st_mtime_ns for c in ckpts] == stamps  # no worker saves any more
    # the checkpoints and the two running chunks' live rows; nothing under a temporary name
    assert sorted(os.listdir(out / "chunks")) == sorted([c.name for c in ckpts] + [c.name.replace("checkpoint.pt", "live.jsonl")
                                                                                    for c in ckpts])
