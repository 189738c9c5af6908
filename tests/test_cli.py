"""The ``gandy`` command: ``gandy run CONFIG.yaml [key=value ...] --out DIR``.

A few bad inputs go through the installed console script in a subprocess (exit code and stderr as
a user sees them); the rest use typer's CliRunner on ``gandy.cli.app`` to keep the suite fast.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml

from gandy.core.atomic import write_atomic
from gandy.core.metrics.order import ORDER_PARAMETERS
from gandy.runs.config import dump_config, load_config

from conftest import TINY
from datafiles import write_data_file

PHASES = {"converged", "collapsed", "oscillating", "diverged"}


def _gandy_cmd() -> list[str]:
    exe = shutil.which("gandy")
    if exe:
        return [exe]
    return [sys.executable, "-c", "import sys; from gandy.cli import main; main(sys.argv[1:])"]


def _assert_nothing_written(out, parent, before: set[str]) -> None:
    """No run directory and no leftover temporary directory next to it."""
    assert not out.exists()
    assert set(os.listdir(parent)) == before


def _one_error_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error:"), stderr
    assert "Traceback" not in stderr
    return lines[0]


# ----------------------------------------------------------------------------- subprocess
SUBPROCESS_CASES = {
    # name: (extra args builder, words that must appear in the message)
    "g2_above_g1": (lambda d: ["kernel.g2=1.5"], ["kernel", "g2"]),
    "unknown_target": (lambda d: ["target={name: bogus}"], ["target", "bogus", "two_modes_1d", "ring8", "empirical"]),
    "nan_data": (lambda d: [f"target={{name: empirical, path: '{d / 'nan.npy'}'}}"], ["target.path", "NaN"]),
}


@pytest.fixture(scope="module")
def subprocess_runs(tmp_path_factory):
    """Start every subprocess case at once (interpreter start-up dominates), then wait for all."""
    cmd = _gandy_cmd()
    procs = {}
    for name, (extra, _) in SUBPROCESS_CASES.items():
        d = tmp_path_factory.mktemp(f"sub_{name}")
        np.save(d / "nan.npy", np.array([[0.0], [np.nan], [1.0]]))
        cfg = d / "tiny.yaml"
        cfg.write_text(yaml.safe_dump(TINY))
        parent = d / "runs"
        parent.mkdir()
        out = parent / "out"
        p = subprocess.Popen(
            [*cmd, "run", str(cfg), *extra(d), "--out", str(out), "-q"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=d,
        )
        procs[name] = (p, out, parent)
    done = {}
    for name, (p, out, parent) in procs.items():
        stdout, stderr = p.communicate(timeout=120)
        done[name] = (p.returncode, stdout, stderr, out, parent)
    return done


@pytest.mark.parametrize("name", list(SUBPROCESS_CASES))
def test_subprocess_bad_input(subprocess_runs, name):
    rc, stdout, stderr, out, parent = subprocess_runs[name]
    assert rc == 2, (stdout, stderr)
    line = _one_error_line(stderr)
    for w in SUBPROCESS_CASES[name][1]:
        assert w in line
    _assert_nothing_written(out, parent, set())
    assert not (parent.parent / "runs" / "out").exists()


# ----------------------------------------------------------------------------- CliRunner: bad input
_data = write_data_file


def _emp(d, kind):
    return [f"target={{name: empirical, path: '{_data(d, kind)}'}}"]


BAD_INPUTS = {
    # name: (args builder given the data dir, words that must appear in the error line)
    "wrong_type_n": (lambda d: ["particles.n=abc"], ["particles.n"]),
    "wrong_type_steps": (lambda d: ["steps=1.5"], ["steps"]),
    "negative_generator_lr": (lambda d: ["optim.generator.lr=-1"], ["optim.generator.lr"]),
    "negative_critic_lr": (lambda d: ["optim.critic.lr=-0.5"], ["optim.critic.lr"]),
    "g2_above_g1": (lambda d: ["kernel.g1=0.5", "kernel.g2=0.6"], ["kernel", "g2"]),
    "two_number_not_psd": (lambda d: ["kernel.g2=-0.5"], ["kernel.g2", "PSD"]),
    "matrix_not_psd": (lambda d: ["kernel=" + yaml.safe_dump({"name": "matrix", "values": (-np.eye(16)).tolist()}, default_flow_style=True).strip()], ["kernel.values", "positive semi-definite"]),
    "matrix_file_not_psd": (lambda d: [f"kernel={{name: matrix, path: '{_data(d, 'kernel_neg')}'}}"], ["kernel.path", "positive semi-definite"]),
    "dim_mismatch": (lambda d: ["particles.init.mean=[0.0, 0.0]"], ["particles.init", "dimension"]),
    "dim_mismatch_target": (lambda d: ["target={name: ring8}"], ["particles.init", "dimension"]),
    "data_nan": (lambda d: _emp(d, "nan"), ["target.path", "NaN"]),
    "data_0d": (lambda d: _emp(d, "scalar"), ["target.path", "scalar"]),
    "data_non_numeric": (lambda d: _emp(d, "strings"), ["target.path", "numeric"]),
    "data_missing": (lambda d: _emp(d, "missing"), ["target.path", "no such file"]),
    "data_corrupt": (lambda d: _emp(d, "corrupt"), ["target.path"]),
    "data_garbage": (lambda d: _emp(d, "garbage"), ["target.path"]),
    "unknown_critic": (lambda d: ["critic.name=bogus"], ["critic", "bogus", "mlp", "rbf", "random_features", "linear"]),
    "unknown_objective": (lambda d: ["objective=bogus"], ["objective", "ipm", "hinge"]),
    "unknown_key": (lambda d: ["kernel.g3=1"], ["kernel.g3", "unknown key"]),
    "malformed_override": (lambda d: ["kernel.g2"], ["kernel.g2", "key=value"]),
    "duplicate_seeds": (lambda d: ["seeds=[1, 1]"], ["seeds"]),
    "bfloat16_under_eager": (lambda d: ["matmul=bfloat16", "engine=eager"], ["matmul", "closed form", "eager"]),
    "unknown_matmul": (lambda d: ["matmul=fp8"], ["matmul", "float32", "bfloat16"]),
}

# data files that once escaped as tracebacks (exit 1) instead of a ConfigError naming the field
MALFORMED_FILES = {
    "data_npz_object": lambda d: _emp(d, "npz_object"),
    "data_npz_corrupt_member": lambda d: _emp(d, "npz_corrupt_member"),
    "kernel_file_non_numeric": lambda d: [f"kernel={{name: matrix, path: '{_data(d, 'kernel_strings')}'}}"],
}


def _bad_run(invoke_cli, tmp_path, args):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(TINY))
    data = tmp_path / "data"
    data.mkdir()
    parent = tmp_path / "runs"
    parent.mkdir()
    out = parent / "out"
    res = invoke_cli(["run", cfg, *args(data), "--out", out, "-q"])
    return res, out, parent


@pytest.mark.parametrize("name", list(BAD_INPUTS))
def test_bad_input_exit_2_and_nothing_written(invoke_cli, tmp_path, name):
    args, words = BAD_INPUTS[name]
    res, out, parent = _bad_run(invoke_cli, tmp_path, args)
    assert res.exit_code == 2, (res.stdout, res.stderr, res.exception)
    line = _one_error_line(res.stderr)
    for w in words:
        assert w in line, line
    assert res.stdout == ""
    _assert_nothing_written(out, parent, set())


@pytest.mark.parametrize("name", list(MALFORMED_FILES))
def test_malformed_data_file_is_a_clean_error(invoke_cli, tmp_path, name):
    res, out, parent = _bad_run(invoke_cli, tmp_path, MALFORMED_FILES[name])
    _assert_nothing_written(out, parent, set())
    assert res.exit_code == 2, repr(res.exception)
    assert "target.path" in res.stderr or "kernel.path" in res.stderr


def test_missing_config_file(invoke_cli, tmp_path):
    out = tmp_path / "out"
    res = invoke_cli(["run", tmp_path / "nope.yaml", "--out", out, "-q"])
    assert res.exit_code == 2
    assert "config" in _one_error_line(res.stderr)
    assert not out.exists()


def test_bad_input_without_out_creates_no_runs_dir(invoke_cli, tmp_path, monkeypatch):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(TINY))
    monkeypatch.chdir(tmp_path)
    res = invoke_cli(["run", cfg, "kernel.g2=2.0", "-q"])
    assert res.exit_code == 2
    assert sorted(os.listdir(tmp_path)) == ["tiny.yaml"]


# ----------------------------------------------------------------------------- CliRunner: a good run
def test_run_writes_the_directory(cli_run):
    res, out, parent = cli_run
    assert res.exit_code == 0, (res.stdout, res.stderr, res.exception)
    assert sorted(os.listdir(parent)) == ["r"]  # renamed into place, no temporary sibling left
    for f in ("config.yaml", "metrics.parquet", "results.parquet", "summary.json", "trajectory.npz"):
        assert (out / f).is_file(), f
    pngs = sorted((out / "figures").glob("*.png"))
    assert pngs and all(p.stat().st_size > 0 for p in pngs)
    assert [p.name for p in out.rglob(".*")] == [".gandy"]  # the marker, and no hidden temporary files


def test_run_stdout_reports_phases(cli_run):
    res, out, _ = cli_run
    results = pd.read_parquet(out / "results.parquet")
    for r in results.itertuples():
        assert f"seed {r.seed}: {r.phase}" in res.stdout


def test_run_config_yaml_is_resolved_with_overrides(cli_run):
    _, out, _ = cli_run
    text = (out / "config.yaml").read_text()
    expected = load_config(TINY, ["kernel.g2=0.5"])
    assert text == dump_config(expected)
    data = yaml.safe_load(text)
    assert data["kernel"]["g2"] == 0.5
    assert data["phase"]["window"] == expected.phase.window  # defaults are written out too


def test_run_tables(cli_run):
    _, out, _ = cli_run
    m = pd.read_parquet(out / "metrics.parquet")
    assert {"seed", "step", *ORDER_PARAMETERS} <= set(m.columns)
    assert sorted(m.seed.unique()) == TINY["seeds"]
    assert sorted(m.step.unique()) == [0, 20, 40, 60]
    assert len(m) == 2 * 4
    r = pd.read_parquet(out / "results.parquet")
    assert {"seed", "phase", *ORDER_PARAMETERS} <= set(r.columns)
    assert sorted(r.seed) == TINY["seeds"] and len(r) == 2
    assert set(r.phase) <= PHASES


def test_existing_out_is_refused(cli_run, invoke_cli, tmp_path):
    _, out, parent = cli_run
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(TINY))
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    res = invoke_cli(["run", cfg, "--out", out, "-q"])
    assert res.exit_code == 2
    line = _one_error_line(res.stderr)
    assert "out" in line and "exists" in line
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
    assert sorted(os.listdir(parent)) == ["r"]


def test_force_replaces_existing_out(invoke_cli, tmp_path):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(TINY))
    out = tmp_path / "runs" / "out"
    res = invoke_cli(["run", cfg, "steps=2", "log_every=1", "seeds=[3]", "--out", out, "-q"])
    assert res.exit_code == 0, (res.stderr, res.exception)
    write_atomic(out / "stale.txt", b"old")  # written by gandy inside its output: replaced with it
    res = invoke_cli(["run", cfg, "steps=2", "log_every=1", "seeds=[5]", "--out", out, "--force", "-q"])
    assert res.exit_code == 0, (res.stderr, res.exception)
    assert not (out / "stale.txt").exists()
    assert (out / "results.parquet").is_file()
    assert sorted(os.listdir(out.parent)) == ["out"]
    assert yaml.safe_load((out / "config.yaml").read_text())["seeds"] == [5]


@pytest.mark.parametrize("code", [
    "import gandy",
    "from gandy.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass",
    "from gandy.cli import main\ntry:\n    main(['run', '--help'])\nexcept SystemExit:\n    pass",
])
def test_import_and_help_do_not_load_torch(code):
    """``import gandy`` and ``gandy [COMMAND] --help`` stay light (~0.2-0.5 s, not ~4 s): torch and
    the studies load when a command runs or a top-level name is first used."""
    probe = code + "\nimport sys\nprint('torch' in sys.modules, 'gandy.studies' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "False False"


def test_top_level_names_load_on_first_use():
    """The lazy top-level names are the real objects (the same class, the same function)."""
    code = ("import gandy, sys\nassert 'torch' not in sys.modules\n"
            "from gandy.runs.config import load_config, ConfigError\n"
            "assert gandy.load_config is load_config and gandy.ConfigError is ConfigError\n"
            "assert 'load_run' in dir(gandy) and callable(gandy.load_run) and callable(gandy.write_report)\n"
            "try:\n    gandy.no_such_name\nexcept AttributeError as e:\n    print('ok', e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.startswith("ok") and "no_such_name" in out


@pytest.mark.parametrize("args", [["run", "colapse-1d"], ["run", "colapse-1d", "--quick"],
                                  ["boundary", "critc-types", "--x", "a", "--y", "b", "--out", "o"]])
def test_a_misspelt_experiment_gets_the_nearest_name(invoke_cli, args, tmp_path, monkeypatch):
    """One line naming the experiment it resembles (with --quick too: it said --quick needs an
    experiment, not that the name was misspelt), exit 2, nothing written."""
    monkeypatch.chdir(tmp_path)
    r = invoke_cli(args)
    assert r.exit_code == 2
    want = "critic-types" if "critc-types" in args else "collapse-1d"
    assert f"did you mean '{want}'?" in r.output and not os.listdir(tmp_path)


def test_run_prints_the_files_and_figures_it_wrote(invoke_cli, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({**TINY, "steps": 6, "seeds": [0]}))
    r = invoke_cli(["run", cfg, "--out", tmp_path / "o", "-q"])
    assert r.exit_code == 0, r.output
    assert f"wrote {tmp_path / 'o'}/: config.yaml, metrics.parquet, results.parquet, summary.json, trajectory.npz" in r.output
    drawn = sorted((tmp_path / "o" / "figures").glob("*.png"))
    assert drawn and all(f"  {p}" in r.output for p in drawn)


def test_plot_phase_on_a_single_run_says_it_needs_a_sweep(invoke_cli, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({**TINY, "steps": 6, "seeds": [0]}))
    assert invoke_cli(["run", cfg, "--out", tmp_path / "o", "-q"]).exit_code == 0
    r = invoke_cli(["plot", "phase", tmp_path / "o", "--x", "kernel.g2", "--y", "optim.critic.lr"])
    assert r.exit_code == 2 and "is a single run, not a sweep" in r.output


def test_messages_name_options_as_the_caller_writes_them(invoke_cli, tmp_path):
    """An existing output: the CLI says --force, Python says force=True (it said --force to both)."""
    import gandy
    from gandy.runs.config import ConfigError

    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({**TINY, "steps": 4, "seeds": [0]}))
    assert invoke_cli(["run", cfg, "--out", tmp_path / "o", "-q"]).exit_code == 0
    r = invoke_cli(["run", cfg, "--out", tmp_path / "o", "-q"])
    assert r.exit_code == 2 and "(--force replaces a gandy output)" in r.output
    with pytest.raises(ConfigError) as e:
        gandy.run(str(cfg), out=tmp_path / "o", figures=False)
    assert "(force=True replaces a gandy output)" in e.value.message


def test_a_python_run_takes_the_default_thread_count_and_gives_it_back(monkeypatch):
    """gandy.run without GANDY_THREADS or a threads key runs at DEFAULT_THREADS (the CLI's too) and
    leaves torch's thread count as it found it."""
    import torch

    import gandy
    import gandy.cli as cli
    from gandy.runs import build as B

    assert cli.DEFAULT_THREADS == B.DEFAULT_THREADS
    monkeypatch.delenv("GANDY_THREADS", raising=False)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        res = gandy.run({**TINY, "steps": 3, "seeds": [0]}, figures=False)
        assert torch.get_num_threads() == 2 and len(res.results) == 1
        with B.run_threads(res.config):
            assert torch.get_num_threads() == B.DEFAULT_THREADS
    finally:
        torch.set_num_threads(before)
