"""gandy never deletes or overwrites what it did not write, and fails before working.

A folder of a user's files is built; every destructive path (``--force``, ``--resume``, ``--out .``,
``--out ''``, an ancestor of the working directory, the home directory, a symbolic link, an existing
file, the demo, damping scans, experiments, reports) is tried on it, and every byte and mode is
checked afterwards. Then: the output location, memory and disk are checked before the simulation;
meaningless input is refused; unexpected errors are one line; files follow the umask.
"""

from __future__ import annotations

import hashlib
import os
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from gandy.runs.config import ConfigError
from gandy.runs.store import MARKER, prepare_out, read_marker

from conftest import TINY

SWEEP = {**TINY, "steps": 20, "log_every": 10, "sweep": {"kernel.g2": [0.1, 0.5]}}


def _user_folder(root: Path) -> Path:
    """A folder of someone's files: text, binary, a subfolder, a hidden file, a gandy-looking name."""
    u = root / "mine"
    (u / "sub").mkdir(parents=True)
    (u / "thesis.tex").write_text("\\section{Results}\n")
    (u / "data.bin").write_bytes(bytes(range(256)) * 10)
    (u / "sub" / "notes.md").write_text("keep me")
    (u / ".hidden").write_text("secret")
    (u / "config.yaml").write_text("not: gandy\n")
    os.chmod(u / "thesis.tex", 0o640)
    return u


def _snapshot(root: Path) -> dict:
    """Every file and folder below ``root``: content hash and mode."""
    out = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        digest = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() and not p.is_symlink() else None
        out[str(p.relative_to(root))] = (digest, stat.S_IMODE(st.st_mode), p.is_symlink())
    return out


def _config(root: Path, data: dict = TINY, name: str = "tiny.yaml") -> Path:
    p = root / name
    p.write_text(yaml.safe_dump(data, sort_keys=False))
    return p


def _one_error(res, field: str = "out") -> str:
    assert res.exit_code == 2, (res.stdout, res.stderr, res.exception)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: {field}"), res.stderr
    return lines[0]


# ----------------------------------------------------------------------------- never delete
def _destructive_cases(root: Path, user: Path):
    cfg, sweep = _config(root), _config(root, SWEEP, "sweep.yaml")
    damping = _config(root, {**TINY, "critic": {"name": "linear"}, "target": {"name": "point_mass", "location": [1.0]},
                             "steps": 5}, "damping.yaml")
    return {
        "force_dot": (user, ["run", cfg, "steps=5", "--out", ".", "--force", "-q"]),
        "force_empty_string": (user, ["run", cfg, "steps=5", "--out", "", "--force", "-q"]),
        "force_parent": (user / "sub", ["run", cfg, "steps=5", "--out", "..", "--force", "-q"]),
        "force_user_folder": (root, ["run", cfg, "steps=5", "--out", user, "--force", "-q"]),
        "no_flag_user_folder": (root, ["run", cfg, "steps=5", "--out", user, "-q"]),
        "resume_run_user_folder": (root, ["run", cfg, "steps=5", "--out", user, "--resume", "-q"]),
        "force_sweep_user_folder": (root, ["run", sweep, "--out", user, "--force", "-q"]),
        "resume_sweep_user_folder": (root, ["run", sweep, "--out", user, "--resume", "-q"]),
        "force_existing_file": (root, ["run", cfg, "steps=5", "--out", user / "thesis.tex", "--force", "-q"]),
        "force_symlink_to_user_folder": (root, ["run", cfg, "steps=5", "--out", root / "link", "--force", "-q"]),
        "demo_into_user_folder": (root, ["demo", "--out", user, "-q"]),
        "damping_force_user_folder": (root, ["damping", damping, "--weights", "0.1,1", "--out", user, "--force"]),
        "experiment_force_user_folder": (root, ["run", "bridge", "--quick", "--out", user, "--force", "-q"]),
        "experiment_resume_user_folder": (root, ["run", "collapse-1d", "--quick", "--out", user, "--resume", "-q"]),
    }


CASES = ["force_dot", "force_empty_string", "force_parent", "force_user_folder", "no_flag_user_folder",
         "resume_run_user_folder", "force_sweep_user_folder", "resume_sweep_user_folder", "force_existing_file",
         "force_symlink_to_user_folder", "demo_into_user_folder", "damping_force_user_folder",
         "experiment_force_user_folder", "experiment_resume_user_folder"]


@pytest.mark.parametrize("case", CASES)
def test_destructive_paths_leave_every_byte(invoke_cli, tmp_path, monkeypatch, case):
    user = _user_folder(tmp_path)
    (tmp_path / "link").symlink_to(user, target_is_directory=True)
    cwd, args = _destructive_cases(tmp_path, user)[case]
    before, around = _snapshot(user), sorted(os.listdir(tmp_path))
    monkeypatch.chdir(cwd)
    t0 = time.perf_counter()
    res = invoke_cli(args)
    line = _one_error(res, field="resume" if case == "resume_run_user_folder" else "out")
    assert time.perf_counter() - t0 < 20  # refused before any work
    assert _snapshot(user) == before, line
    assert sorted(os.listdir(tmp_path)) == around  # nothing created beside it either


@pytest.mark.parametrize("where", ["cwd", "home", "ancestor"])
def test_protected_locations_refused_even_with_a_marker(invoke_cli, tmp_path, monkeypatch, where):
    """A marker cannot make gandy replace the working directory, an ancestor of it or home."""
    user = _user_folder(tmp_path)
    (user / MARKER).write_text('{"kind": "run"}')
    inner = user / "sub"
    monkeypatch.setenv("HOME", str(user))
    monkeypatch.chdir(inner if where == "ancestor" else user if where == "cwd" else tmp_path)
    before = _snapshot(user)
    res = invoke_cli(["run", _config(tmp_path), "steps=5", "--out", user, "--force", "-q"])
    line = _one_error(res)
    assert {"cwd": "current directory", "home": "home directory", "ancestor": "holds the current directory"}[where] in line
    assert _snapshot(user) == before


def test_force_replaces_only_a_marked_gandy_output(invoke_cli, tmp_path):
    cfg = _config(tmp_path)
    out = tmp_path / "runs" / "a"
    assert invoke_cli(["run", cfg, "steps=4", "log_every=2", "--out", out, "-q"]).exit_code == 0
    assert read_marker(out)["kind"] == "run"
    res = invoke_cli(["run", cfg, "steps=4", "log_every=2", "seeds=[7]", "--out", out, "--force", "-q"])
    assert res.exit_code == 0, res.stderr
    assert yaml.safe_load((out / "config.yaml").read_text())["seeds"] == [7]
    assert sorted(os.listdir(tmp_path / "runs")) == ["a"]  # no aside copy left
    (out / MARKER).unlink()  # without its marker it is no longer gandy's to replace
    _one_error(invoke_cli(["run", cfg, "steps=4", "--out", out, "--force", "-q"]))
    assert yaml.safe_load((out / "config.yaml").read_text())["seeds"] == [7]


def test_sweep_force_and_resume_on_gandy_outputs(invoke_cli, tmp_path):
    sweep = _config(tmp_path, SWEEP, "sweep.yaml")
    run_cfg = _config(tmp_path)
    out, single = tmp_path / "s", tmp_path / "r"
    assert invoke_cli(["run", sweep, "--out", out, "-q"]).exit_code == 0
    assert read_marker(out)["kind"] == "sweep"
    assert invoke_cli(["run", sweep, "--out", out, "--resume", "-q"]).exit_code == 0
    assert invoke_cli(["run", sweep, "--out", out, "--force", "-q"]).exit_code == 0
    assert invoke_cli(["run", run_cfg, "steps=3", "--out", single, "-q"]).exit_code == 0
    line = _one_error(invoke_cli(["run", sweep, "--out", single, "--resume", "-q"]))
    assert "not a sweep" in line  # a gandy run is not a sweep to resume
    line = _one_error(invoke_cli(["run", sweep, "kernel.g1=2.0", "--out", out, "--resume", "-q"]))
    assert "different sweep" in line


def test_report_never_overwrites_a_page_it_did_not_write(invoke_cli, tmp_path):
    out = tmp_path / "r"
    assert invoke_cli(["run", _config(tmp_path), "steps=3", "--out", out, "-q"]).exit_code == 0
    (out / "report.html").write_text("<html>my own page</html>")
    _one_error(invoke_cli(["report", out]), field="report")
    assert (out / "report.html").read_text() == "<html>my own page</html>"
    (out / "report.html").unlink()
    assert invoke_cli(["report", out]).exit_code == 0
    assert invoke_cli(["report", out]).exit_code == 0  # its own page it replaces


def test_prepare_out_states(tmp_path):
    assert prepare_out(tmp_path / "new", "run") == "new"
    (tmp_path / "empty").mkdir()
    assert prepare_out(tmp_path / "empty", "run", replace=True) == "new"
    with pytest.raises(ConfigError, match="free"):
        prepare_out(tmp_path / "new", "run", need_bytes=10**18)
    assert not (tmp_path / "new").exists()


# ----------------------------------------------------------------------------- fail before working
@pytest.mark.parametrize("out", ["/proc/gandy-x", "FILE/sub"])
def test_unwritable_out_fails_before_simulating(invoke_cli, tmp_path, out):
    (tmp_path / "FILE").write_text("a file")
    out = out.replace("FILE", str(tmp_path / "FILE"))
    t0 = time.perf_counter()
    res = invoke_cli(["run", _config(tmp_path), "steps=100000", "--out", out, "-q"])  # would take minutes
    _one_error(res)
    assert time.perf_counter() - t0 < 20
    assert (tmp_path / "FILE").read_text() == "a file"


def test_memory_estimate_refuses_a_run_that_cannot_fit(invoke_cli, tmp_path):
    t0 = time.perf_counter()
    res = invoke_cli(["run", _config(tmp_path), "particles.n=100000000", "--out", tmp_path / "big", "-q"])
    line = _one_error(res, field="particles.n")
    assert "needs about" in line and "available" in line and "100,000,000 particles" in line
    assert time.perf_counter() - t0 < 20
    assert not (tmp_path / "big").exists()


def test_memory_estimate_bounds_the_measured_peak():
    """The estimate is an upper bound of a real run's peak resident memory growth, and not wildly
    above it: a collapse-1d chunk (256 members x 64 particles, MLP [128]) in a fresh interpreter
    (benchmarks/memory_estimate.py measures more cases)."""
    sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
    try:
        from memory_estimate import CASES, measure
    finally:
        sys.path.pop(0)
    d = measure(CASES["1-D, 256 members x 64 particles, MLP [128] (collapse-1d chunk)"])
    assert d["measured"] > 50e6
    assert d["measured"] <= d["estimate"] <= 6 * d["measured"], d


# ----------------------------------------------------------------------------- refuse the meaningless
MEANINGLESS = {
    "lr_inf": (["optim.critic.lr=inf"], "optim.critic.lr", "finite"),
    "lr_dot_inf": (["optim.critic.lr=.inf"], "optim.critic.lr", "finite"),
    "lr_nan": (["optim.generator.lr=.nan"], "optim.generator.lr", "nan"),
    "sweep_inf": (["sweep.kernel.g2=[0.1, .inf]"], "sweep.kernel.g2", "finite"),
    "steps_zero": (["steps=0"], "steps", "expected an integer > 0, got 0"),
    "lr_zero": (["optim.critic.lr=0"], "optim.critic.lr", "expected a number > 0, got 0"),
    "width_zero": (["critic={name: rbf, centers: 0}"], "critic.centers", "expected an integer > 0, got 0"),
    "std_negative": (["target={name: gaussian_mixture, means: [[0.0]], std: -0.1}"], "target.std", "a number >= 0 or a list, got -0.1"),
    "wrong_choice": (["device=gpu"], "device", "'cpu', 'cuda' or 'auto', got 'gpu'"),
}


@pytest.mark.parametrize("name", list(MEANINGLESS))
def test_meaningless_values_are_refused_in_words(invoke_cli, tmp_path, name):
    args, field, words = MEANINGLESS[name]
    line = _one_error(invoke_cli(["run", _config(tmp_path), *args, "--out", tmp_path / "o", "-q"]), field=field)
    assert words in line
    for internal in ("function-after", " at 0x", "pydantic", "Input should", "[type=", "validator"):
        assert internal not in line, line
    assert not (tmp_path / "o").exists()


def test_duplicate_yaml_keys_are_refused(invoke_cli, tmp_path):
    p = tmp_path / "dup.yaml"
    p.write_text("steps: 10\noptim:\n  critic:\n    lr: 0.1\n    lr: 0.2\n")
    line = _one_error(invoke_cli(["run", p, "--out", tmp_path / "o", "-q"]), field="optim.critic.lr")
    assert "twice" in line and "lines 4 and 5" in line


def test_one_dimensional_data_is_refused(invoke_cli, tmp_path):
    import numpy as np

    np.save(tmp_path / "flat.npy", np.linspace(-1, 1, 200))
    res = invoke_cli(["run", _config(tmp_path), f"target={{name: empirical, path: '{tmp_path / 'flat.npy'}'}}",
                      "--out", tmp_path / "o", "-q"])
    line = _one_error(res, field="target.path")
    assert "(200,)" in line and "(n, d)" in line and "reshape(-1, 1)" in line


def test_corrupt_and_pickled_arrays_are_described_without_numpy_advice(invoke_cli, tmp_path):
    import numpy as np

    (tmp_path / "garbage.npy").write_bytes(b"\x00\x01 not numpy")
    np.save(tmp_path / "obj.npy", np.array([1, "a"], dtype=object), allow_pickle=True)
    for name, words in (("garbage.npy", "not a .npy or .npz file"), ("obj.npy", "Python objects")):
        res = invoke_cli(["run", _config(tmp_path), f"target={{name: empirical, path: '{tmp_path / name}'}}",
                          "--out", tmp_path / "o", "-q"])
        line = _one_error(res, field="target.path")
        assert words in line and "allow_pickle" not in line


def test_resume_on_a_single_run_is_refused(invoke_cli, tmp_path):
    line = _one_error(invoke_cli(["run", _config(tmp_path), "--out", tmp_path / "o", "--resume", "-q"]), field="resume")
    assert "sweeps" in line


# ----------------------------------------------------------------------------- errors
def test_internal_error_is_one_line_with_a_debug_hint(invoke_cli, tmp_path, monkeypatch):
    import gandy.runs.api

    def broken(*a, **k):
        raise RuntimeError("a bug\nover two lines")

    monkeypatch.setattr(gandy.runs.api, "simulate", broken)
    res = invoke_cli(["run", _config(tmp_path), "--out", tmp_path / "o", "-q"])
    assert res.exit_code == 1
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "internal error: RuntimeError: a bug over two lines" in lines[0] and "--debug" in lines[0]
    assert not (tmp_path / "o").exists()
    res = invoke_cli(["--debug", "run", _config(tmp_path), "--out", tmp_path / "o", "-q"])
    assert isinstance(res.exception, RuntimeError)  # the traceback is shown


def test_help_reads_well(invoke_cli):
    for args in (["--help"], ["run", "--help"], ["damping", "--help"], ["demo", "--help"], ["report", "--help"]):
        res = invoke_cli(args)
        assert res.exit_code == 0
        assert "<bool>" not in res.stdout and "<path>" not in res.stdout.split("Options:")[-1]
        assert "╭" not in res.stdout  # plain help: no boxes cutting docstrings mid-sentence
    top = invoke_cli(["--help"]).stdout
    assert "--threads" in top and "..." not in top.split("Commands:")[1]  # short help never truncated


# ----------------------------------------------------------------------------- permissions
@pytest.mark.parametrize("mask, file_mode, dir_mode", [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700)])
def test_outputs_follow_the_umask(invoke_cli, tmp_path, mask, file_mode, dir_mode):
    old = os.umask(mask)
    try:
        run_out, sweep_out = tmp_path / "r", tmp_path / "s"
        assert invoke_cli(["run", _config(tmp_path), "steps=3", "--out", run_out, "-q", "--report"]).exit_code == 0
        assert invoke_cli(["run", _config(tmp_path, SWEEP, "sweep.yaml"), "--out", sweep_out, "-q"]).exit_code == 0
    finally:
        os.umask(old)
    for root in (run_out, sweep_out):
        for p in [root, *root.rglob("*")]:
            mode = stat.S_IMODE(p.stat().st_mode)
            assert mode == (dir_mode if p.is_dir() else file_mode), (p, oct(mode))
    assert (run_out / "report.html").is_file()


# ----------------------------------------------------------------------------- ray
def _silent_listener():
    """A TCP port that accepts connections and never answers (no Ray cluster behind it)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(8)
    stop = threading.Event()

    def serve():
        conns = []
        s.settimeout(0.2)
        while not stop.is_set():
            try:
                conns.append(s.accept()[0])
            except OSError:
                pass
        for c in conns:
            c.close()
        s.close()

    threading.Thread(target=serve, daemon=True).start()
    return s.getsockname()[1], stop


@pytest.mark.parametrize("kind", ["closed_port", "silent_port"])
def test_unreachable_ray_cluster_times_out_and_leaves_nothing(invoke_cli, tmp_path, kind):
    pytest.importorskip("ray")
    if kind == "closed_port":
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()  # nothing listens there now
        stop = None
    else:
        port, stop = _silent_listener()
    t0 = time.perf_counter()
    try:
        res = invoke_cli(["run", _config(tmp_path, SWEEP, "sweep.yaml"), "--out", tmp_path / "o", "--executor", "ray",
                          "--address", f"127.0.0.1:{port}", "--connect-timeout", "4", "-q"])
    finally:
        if stop is not None:
            stop.set()
    line = _one_error(res, field="address")
    assert f"127.0.0.1:{port}" in line
    assert time.perf_counter() - t0 < 30
    assert sorted(os.listdir(tmp_path)) == ["sweep.yaml"]


# ----------------------------------------------------------------------------- resume inside a chunk
CHUNK = {**TINY, "steps": 120, "log_every": 10, "seeds": [0, 1], "sweep": {"kernel.g2": [0.05, 0.6], "optim.critic.lr": [0.003, 0.03]}}


def _tables(out: Path):
    import pandas as pd

    return pd.read_parquet(out / "results.parquet"), pd.read_parquet(out / "metrics.parquet")


def _assert_same(a: Path, b: Path) -> None:
    import pandas as pd

    for x, y in zip(_tables(a), _tables(b)):
        pd.testing.assert_frame_equal(x, y, check_exact=True)


def test_a_chunk_killed_midway_resumes_from_its_checkpoint(tmp_path, kill_and_resume):
    """One chunk of 8 members: killed (an exception at step 67) after saves every 20 steps, then
    resumed: only the steps after the last save are made again, and the tables equal an
    uninterrupted run's exactly."""
    from gandy.runs.config import load_config

    def between(cut):
        chunks = sorted(os.listdir(cut / "chunks"))
        assert chunks == ["0000000.checkpoint.pt", "0000000.live.jsonl"]  # one chunk, not done, saved at step 60

    assert kill_and_resume(load_config(CHUNK), tmp_path, 67, 20, between) == 120 - 60
    assert not (tmp_path / "cut" / "chunks" / "0000000.checkpoint.pt").exists()  # removed once done
    _assert_same(tmp_path / "whole", tmp_path / "cut")


def test_sigkill_mid_chunk_then_resume_equals_an_uninterrupted_run(invoke_cli, tmp_path):
    """The real thing: ``gandy run`` in a subprocess, SIGKILL once a checkpoint exists, ``--resume``."""
    import signal

    data = {**CHUNK, "steps": 1500, "log_every": 50}
    cfg = _config(tmp_path, data, "chunk.yaml")
    assert invoke_cli(["run", cfg, "--out", tmp_path / "whole", "-q"]).exit_code == 0
    out = tmp_path / "cut"
    cmd = [sys.executable, "-c", "import sys; from gandy.cli import main; main(sys.argv[1:])",
           "run", str(cfg), "--out", str(out), "--checkpoint-every", "0.5", "-q"]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ckpt = out / "chunks" / "0000000.checkpoint.pt"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and p.poll() is None:
        if ckpt.exists():
            first = ckpt.stat().st_mtime_ns
            while time.monotonic() < deadline and p.poll() is None and ckpt.stat().st_mtime_ns == first:
                time.sleep(0.05)  # wait for a second save, so the kill lands between two of them
            break
        time.sleep(0.05)
    assert p.poll() is None, "the run finished before it could be killed"
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert not (out / "results.parquet").exists() and ckpt.exists()
    res = invoke_cli(["run", cfg, "--out", out, "--resume", "-q"])
    assert res.exit_code == 0, res.stderr
    _assert_same(tmp_path / "whole", out)


# ----------------------------------------------------------------------------- first contact
@pytest.mark.slow
def test_demo_phase_diagram_shows_what_the_readme_says(tmp_path):
    """The README: in the demo's phase diagram the particles split (converged, coverage KL near 0)
    at small g2/g1 and collapse (coverage KL near log 2) at large g2/g1. At 1,500 steps no cell was
    converged; the demo now runs 3,000 (about 45 s)."""
    import math

    from gandy.runs.config import load_config
    from gandy.runs.sweep import run_sweep
    from gandy.studies.collapse_1d.experiment import base_config
    from gandy.studies.demo.experiment import PHASE_GRID

    res, _, _ = run_sweep(load_config(base_config(), PHASE_GRID), tmp_path / "phase")
    small, large = res[res["kernel.g2"] < 0.01], res[res["kernel.g2"] > 0.4]
    assert (small.phase == "converged").mean() >= 0.5 and small.coverage_kl.max() < 0.05
    assert (large.phase == "collapsed").all() and (large.coverage_kl > 0.9 * math.log(2)).all()


# ----------------------------------------------------------------------------- hostile and faulty world (#24)
SWEEP2 = {**TINY, "steps": 10, "log_every": 5, "seeds": [0],
          "sweep": {"kernel.g2": [0.1, 0.5], "optim.critic.lr": [0.01, 0.02]}}


def _gandy_output(invoke_cli, root: Path, name: str = "G", data: dict = TINY) -> Path:
    out = root / name
    res = invoke_cli(["run", _config(root, data, f"{name}.yaml"), "steps=4", "log_every=2", "--out", out, "-q"])
    assert res.exit_code == 0, res.stderr
    return out


def test_manifest_lists_what_gandy_wrote(invoke_cli, tmp_path):
    from gandy.core.atomic import manifest

    out = _gandy_output(invoke_cli, tmp_path)
    on_disk = {p.relative_to(out).as_posix() + ("/" if p.is_dir() else "") for p in out.rglob("*")} - {MARKER}
    assert on_disk and on_disk <= manifest(out)


@pytest.mark.parametrize("kind", ["run", "sweep"])
def test_force_refuses_an_output_holding_user_files(invoke_cli, tmp_path, kind):
    """`--force` on a gandy output into which a user put a notebook and a folder: refused, listed."""
    data = TINY if kind == "run" else SWEEP
    out = tmp_path / "G"
    assert invoke_cli(["run", _config(tmp_path, data), "steps=4", "log_every=2", "--out", out, "-q"]).exit_code == 0
    (out / "my_analysis.ipynb").write_text("{}")
    (out / "mine").mkdir()
    (out / "mine" / "a.txt").write_text("keep")
    before = _snapshot(out)
    line = _one_error(invoke_cli(["run", _config(tmp_path, data), "steps=4", "--out", out, "--force", "-q"]))
    assert "my_analysis.ipynb" in line and "mine/" in line and "did not write" in line
    assert _snapshot(out) == before
    assert sorted(os.listdir(tmp_path)) == ["G", "tiny.yaml"]  # no .G.old-* or .G.tmp-* left


def test_demo_rerun_keeps_user_files(tmp_path):
    """`gandy demo` replaces an earlier demo (open_output with force): not one holding a user's notes."""
    from gandy.core.atomic import write_atomic
    from gandy.runs.store import open_output

    out = tmp_path / "gandy-demo"
    open_output(out, "demo", replace=True)
    write_atomic(out / "summary.json", b"{}")
    assert open_output(out, "demo", replace=True) == "replace"  # its own output: replaced
    write_atomic(out / "summary.json", b"{}")
    (out / "notes.txt").write_text("my notes")
    with pytest.raises(ConfigError, match="notes.txt"):
        open_output(out, "demo", replace=True)
    assert (out / "notes.txt").read_text() == "my notes" and (out / "summary.json").exists()


def test_an_earlier_gandys_output_without_manifest_is_judged_by_kind(invoke_cli, tmp_path):
    out = _gandy_output(invoke_cli, tmp_path)
    (out / MARKER).write_text('{"kind": "run"}\n')  # as gandy 0.1 wrote it: no manifest
    assert invoke_cli(["run", _config(tmp_path), "steps=4", "--out", out, "--force", "-q"]).exit_code == 0
    (out / MARKER).write_text('{"kind": "run"}\n')
    (out / "notes.txt").write_text("mine")
    assert "notes.txt" in _one_error(invoke_cli(["run", _config(tmp_path), "steps=4", "--out", out, "--force", "-q"]))


def _bind_mount(source: Path, target: Path):
    if sys.platform != "linux" or os.geteuid() != 0:
        pytest.skip("bind mounts need root on Linux")
    res = subprocess.run(["mount", "--bind", str(source), str(target)], capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"mount --bind is not allowed here: {res.stderr.strip()}")


@pytest.mark.parametrize("inside", ["data", "figures"])
def test_force_never_deletes_through_a_mount_point(invoke_cli, tmp_path, inside):
    """`mkdir G/data; mount --bind V G/data; gandy run ... --out G --force` once emptied V. A mount on
    a folder gandy made itself (figures/) is refused too."""
    out = _gandy_output(invoke_cli, tmp_path)
    user = _user_folder(tmp_path)
    before = _snapshot(user)
    (out / inside).mkdir(exist_ok=True)
    _bind_mount(user, out / inside)
    try:
        line = _one_error(invoke_cli(["run", _config(tmp_path), "steps=4", "--out", out, "--force", "-q"]))
        assert "mount point" in line
        from gandy.runs.store import remove_output
        with pytest.raises(ConfigError, match="mount point"):
            remove_output(out)
    finally:
        subprocess.run(["umount", str(out / inside)], check=True)
    assert _snapshot(user) == before
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".G.")]


def test_delete_never_enters_another_device(tmp_path, monkeypatch):
    """The descriptor walk itself stops at a folder on another device (st_dev), mountinfo aside."""
    from gandy.runs import outputs

    out = tmp_path / "G"
    outputs.open_output(out, "run")
    from gandy.core.atomic import make_dir, write_atomic

    make_dir(out / "sub")
    write_atomic(out / "sub" / "f.txt", b"x")
    real_fstat = os.fstat

    def fstat(fd):
        st = real_fstat(fd)
        if os.path.realpath(f"/proc/self/fd/{fd}").endswith("/sub"):
            return os.stat_result((st.st_mode, st.st_ino, st.st_dev + 1, *tuple(st)[3:]))
        return st

    monkeypatch.setattr(outputs.os, "fstat", fstat)
    with pytest.raises(ConfigError, match="another filesystem"):
        outputs._delete_tree(out)
    assert (out / "sub" / "f.txt").read_bytes() == b"x"


def test_figures_replace_links_never_write_through(invoke_cli, tmp_path):
    """With S/figures/phase_coverage_kl.png a link to a user's file, `gandy plot phase S` wrote the PNG
    into the user's file. Now the link is replaced; a user's own file at a figure's name is refused."""
    out = tmp_path / "S"
    assert invoke_cli(["run", _config(tmp_path, SWEEP2, "s.yaml"), "--out", out, "-q"]).exit_code == 0
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    fig = out / "figures" / "phase_coverage_kl.png"
    fig.parent.mkdir(exist_ok=True)
    fig.unlink(missing_ok=True)
    fig.symlink_to(victim)
    res = invoke_cli(["plot", "phase", out, "--x", "kernel.g2", "--y", "optim.critic.lr"])
    assert res.exit_code == 0, res.stderr
    assert victim.read_text() == "precious"
    assert not fig.is_symlink() and fig.read_bytes()[:4] == b"\x89PNG"
    mine = out / "figures" / "phase_w1.png"
    mine.unlink(missing_ok=True)
    mine.write_text("my own figure")
    _one_error(invoke_cli(["plot", "phase", out, "--x", "kernel.g2", "--y", "optim.critic.lr", "--color", "w1"]),
               field=str(mine))
    assert mine.read_text() == "my own figure"


@pytest.mark.parametrize("target", ["empty", "gandy_output"])
def test_out_as_a_symbolic_link_is_refused_before_work(invoke_cli, tmp_path, target):
    """`--out L` a link to an empty folder ran the whole run and then failed; a link to a gandy output
    with --force was replaced by a folder after the run, leaving .old-*."""
    if target == "empty":
        dest = tmp_path / "empty"
        dest.mkdir()
    else:
        dest = _gandy_output(invoke_cli, tmp_path)
    before = _snapshot(dest)
    link = tmp_path / "L1"
    link.symlink_to(dest, target_is_directory=True)
    t0 = time.perf_counter()
    line = _one_error(invoke_cli(["run", _config(tmp_path), "steps=100000", "--out", link, "--force", "-q"]))
    assert "symbolic link" in line and time.perf_counter() - t0 < 20
    assert link.is_symlink() and _snapshot(dest) == before
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".L1")]


HOLD_LOCK = """
import sys, time
from gandy.runs.outputs import acquire
acquire(sys.argv[1]); print("held", flush=True); time.sleep(60)
"""


def test_one_writer_per_output(invoke_cli, tmp_path):
    """Two processes on one --out mixed silently; now the second is refused with the holder's PID,
    and a lock left by a dead process does not stop anyone."""
    from gandy.runs.outputs import lock_file, lock_holder

    out = tmp_path / "S"
    assert lock_holder(out) is None  # no lock file
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert lock_holder(out) == holder.pid  # what gandy watch reports as the writer
        for args in (["run", _config(tmp_path, SWEEP), "--out", out, "--force", "-q"],
                     ["run", _config(tmp_path), "steps=4", "--out", out, "-q"]):
            line = _one_error(invoke_cli(args))
            assert f"in use by process {holder.pid}" in line
        assert not out.exists()
    finally:
        holder.kill()
        holder.wait()
    # the holder died without cleaning up: its lock file (with its PID) is left, and is no obstacle
    assert str(holder.pid) in lock_file(out).read_text() and lock_holder(out) is None  # a dead holder holds nothing
    assert invoke_cli(["run", _config(tmp_path, SWEEP), "--out", out, "-q"]).exit_code == 0
    assert not lock_file(out).exists()  # given back when the command returned
    # a second name for the same folder shares its lock
    (tmp_path / "alias").symlink_to(tmp_path, target_is_directory=True)
    assert lock_file(tmp_path / "alias" / "S") == lock_file(out)


def test_report_and_plots_take_the_lock(invoke_cli, tmp_path):
    out = tmp_path / "S"
    assert invoke_cli(["run", _config(tmp_path, SWEEP2, "s.yaml"), "--out", out, "-q"]).exit_code == 0
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert "in use" in _one_error(invoke_cli(["report", out]))
        assert "in use" in _one_error(invoke_cli(["plot", "phase", out, "--x", "kernel.g2", "--y", "optim.critic.lr"]))
    finally:
        holder.kill()
        holder.wait()
    assert not (out / "report.html").exists()


def test_a_full_disk_names_the_file(invoke_cli, tmp_path, monkeypatch):
    """Disk full said `error: system: No space left on device`, without the path."""
    import errno

    from gandy.core import atomic

    real = atomic.os.fdopen

    class Full:
        def __init__(self, fh):
            self.fh = fh

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

        def write(self, data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(atomic.os, "fdopen", lambda fd, mode="r", *a, **k: Full(real(fd, mode, *a, **k)))
    res = invoke_cli(["run", _config(tmp_path), "steps=4", "--out", tmp_path / "r", "-q"])
    assert res.exit_code == 2
    line = res.stderr.strip()
    assert line.startswith(f"error: {tmp_path / 'r'}/") and line.endswith(": No space left on device"), line
    assert not (tmp_path / "r").exists() and not [p for p in os.listdir(tmp_path) if p.startswith(".r.")]


def test_python_calls_give_their_output_locks_back(tmp_path):
    """gandy.run and run_sweep lock their output for the call only: a long notebook session holds
    no lock on a folder it finished writing."""
    import gandy
    from gandy.runs.outputs import _HELD, lock_file

    held = set(_HELD)
    gandy.run(dict(TINY, steps=4, log_every=2), out=tmp_path / "r")
    gandy.run(dict(SWEEP, steps=4, log_every=2), out=tmp_path / "s")
    assert set(_HELD) == held
    assert not lock_file(tmp_path / "r").exists() and not lock_file(tmp_path / "s").exists()
