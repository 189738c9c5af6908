"""Resource limits and data files (issue 24): a run that cannot fit is refused before it allocates,
whichever limit binds (MemAvailable, a cgroup, ``ulimit -v``); the estimate allocates nothing
itself and blames the field that drives it; a sweep's size is bounded before it is expanded; a
data path must be a regular file, and an array's header is checked before its data is read.

The cases that need a process of their own (an address-space limit, a peak resident set) run in
subprocesses started together, as test_cli.py does.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from gandy.core import resources as R
from gandy.core.datafile import check_data_file
from gandy.core.errors import ConfigError
from gandy.core.nets.dcgan import DcganCritic, DcganGenerator
from gandy.core.nets.features import Affine, Linear, RandomFeatures, Rbf
from gandy.core.nets.mlp import Mlp, MlpNet
from gandy.core.rng import Stream, member_keys
from gandy.core.targets import GaussianMixture
from gandy.runs import budget as B
from gandy.runs import config as C
from gandy.runs.budget import check_size
from gandy.runs.grammar import MAX_MEMBERS
from gandy.runs.plan import expand

from conftest import TINY

GB = 1_000_000_000

# A gandy process that sets its own address-space limit (RLIMIT_AS) to what it maps after its
# imports plus GANDY_TEST_AS_ROOM bytes, as ``ulimit -v`` would, then runs the CLI and reports on
# stdout the seconds the command took, its peak resident set (ru_maxrss, kB) and that peak before the command.
WRAPPER = r"""
import os, resource, sys, time
import gandy.runs.api, gandy.runs.sweep
from gandy.cli import main
room = os.environ.get("GANDY_TEST_AS_ROOM")
if room:
    with open("/proc/self/status") as fh:
        vm = next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmSize:"))
    resource.setrlimit(resource.RLIMIT_AS, (vm + int(room), resource.getrlimit(resource.RLIMIT_AS)[1]))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter()
code = 0
try:
    main(sys.argv[1:])
except SystemExit as e:
    code = e.code
print(f"LIMITS {time.perf_counter() - t:.3f} {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss} {before}")
sys.exit(code)
"""


def _write_cfg(d: Path, data: dict = TINY) -> Path:
    p = d / "tiny.yaml"
    p.write_text(yaml.safe_dump(data, sort_keys=False))
    return p


def _one_error(res, field: str) -> str:
    assert res.exit_code == 2, (res.stdout, res.stderr, res.exception)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: {field}: "), res.stderr
    return lines[0]


# ----------------------------------------------------------------------------- subprocesses
def _subprocess_cases(d: Path) -> dict:
    """name -> (CLI args, extra environment)."""
    cfg = str(_write_cfg(d))
    return {
        "address_space": ([cfg, "particles.n=500000"], {"GANDY_TEST_AS_ROOM": str(int(1.5 * GB))}),
        "wide_critic": ([cfg, "critic.widths=[100000000]"], {}),
    }


@pytest.fixture(scope="module")
def subprocess_runs(tmp_path_factory):
    """Start every case at once (interpreter start-up dominates), then wait for all; a case that
    hangs is killed at the timeout and reported as rc None."""
    d = tmp_path_factory.mktemp("limits")
    procs = {}
    for name, (args, env) in _subprocess_cases(d).items():
        out = d / f"out_{name}"
        cmd = [sys.executable, "-c", WRAPPER, "run", *args, "--out", str(out), "-q"]
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=d,
                             env={**os.environ, "GANDY_THREADS": "1", **env})
        procs[name] = (p, out)
    done = {}
    for name, (p, out) in procs.items():
        try:
            stdout, stderr = p.communicate(timeout=150)
            rc = p.returncode
        except subprocess.TimeoutExpired:
            p.kill()
            stdout, stderr = p.communicate()
            rc = None
        stats = [ln.split() for ln in stdout.splitlines() if ln.startswith("LIMITS ")]
        seconds, maxrss_kb, before_kb = (float(stats[0][1]), int(stats[0][2]), int(stats[0][3])) if stats \
            else (None, None, None)
        done[name] = {"rc": rc, "stderr": stderr, "out": out, "seconds": seconds, "maxrss": (maxrss_kb or 0) * 1024,
                      "grown": ((maxrss_kb or 0) - (before_kb or 0)) * 1024}
    return done


def _subprocess_error(run: dict, field: str) -> str:
    assert run["rc"] == 2, run
    lines = [ln for ln in run["stderr"].splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: {field}: "), run["stderr"]
    assert not run["out"].exists()
    return lines[0]


def test_address_space_limit_refuses_a_run_before_it_starts(subprocess_runs):
    """Under ``ulimit -v`` (1.5 GB of address space left) 500,000 particles (about 4 GB by the
    estimate, far less than MemAvailable) are refused up front, naming the limit, instead of dying
    in torch's allocator."""
    line = _subprocess_error(subprocess_runs["address_space"], "particles.n")
    assert "RLIMIT_AS" in line and "needs about" in line


def test_the_estimate_does_not_allocate_the_critic_it_estimates(subprocess_runs):
    """A critic of 10^8 units (300 million parameters per member, 1.2 GB for one member's weights)
    is refused, on its width, in seconds, and the command adds less than 0.2 GB to the peak the
    process had after its imports (which varies with the machine: 1.4-1.5 GB here, so an absolute
    bound on the peak was flaky)."""
    run = subprocess_runs["wide_critic"]
    line = _subprocess_error(run, "critic.widths")
    assert "needs about" in line
    assert run["seconds"] < 5, run
    assert run["grown"] < 0.2 * GB, run


@pytest.mark.parametrize("target", ["images", "empirical"])
def test_a_fifo_as_a_data_path_is_refused_without_blocking(invoke_cli, tmp_path, target):
    """A named pipe is refused from ``os.stat`` alone. The command runs in a thread: were it to open
    the pipe and block, the test opens the writing end to release it, and fails."""
    fifo = tmp_path / "pipe.npy"
    os.mkfifo(fifo)
    box = {}
    args = ["run", _write_cfg(tmp_path), f"target={{name: {target}, path: '{fifo}'}}", "--out", tmp_path / "o", "-q"]
    worker = threading.Thread(target=lambda: box.update(res=invoke_cli(args)), daemon=True)
    worker.start()
    worker.join(60)
    if worker.is_alive():
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))  # the reader sees end of file
        worker.join(30)
        pytest.fail(f"gandy blocked reading the FIFO {fifo}")
    line = _one_error(box["res"], "target.path")
    assert "is a FIFO (named pipe)" in line and not (tmp_path / "o").exists()


# ----------------------------------------------------------------------------- memory sources
def test_host_memory_is_the_smallest_limit_and_names_it(monkeypatch):
    readers = {"MemAvailable": lambda: 8 * GB, "the cgroup memory limit (memory.max)": lambda: None,
               "the cgroup memory limit (memory.limit_in_bytes)": lambda: 5 * GB,
               "the address-space limit RLIMIT_AS (ulimit -v) less what the process maps": lambda: 3 * GB}
    monkeypatch.setattr(R, "SOURCES", readers)
    assert R.host_memory() == (3 * GB, "the address-space limit RLIMIT_AS (ulimit -v) less what the process maps")
    readers["the cgroup memory limit (memory.max)"] = lambda: 2 * GB
    assert R.host_memory() == (2 * GB, "the cgroup memory limit (memory.max)")
    assert B.available_memory(torch.device("cpu")) == (2 * GB, "the cgroup memory limit (memory.max)")
    monkeypatch.setattr(R, "SOURCES", {"MemAvailable": lambda: None})
    assert R.host_memory()[1] == "no known limit"


def test_each_memory_source_reads_its_limit_less_its_usage(monkeypatch):
    files = {"/proc/meminfo": "MemTotal: 100 kB\nMemAvailable:   2048 kB\n",
             "/sys/fs/cgroup/memory.max": "1000000\n", "/sys/fs/cgroup/memory.current": "400000\n",
             "/sys/fs/cgroup/memory/memory.limit_in_bytes": "9223372036854771712\n",
             "/sys/fs/cgroup/memory/memory.usage_in_bytes": "5\n",
             "/proc/self/status": "Name: python\nVmSize:\t  1000 kB\n"}
    monkeypatch.setattr(R, "_read", files.get)
    monkeypatch.setattr(R.resource, "getrlimit", lambda which: (3_000_000, R.resource.RLIM_INFINITY))
    assert R.meminfo_available() == 2048 * 1024
    assert R.cgroup_v2_room() == 600_000
    assert R.cgroup_v1_room() is None  # v1's "no limit" is a huge number
    assert R.address_space_room() == 3_000_000 - 1000 * 1024
    assert R.host_memory() == (600_000, "the cgroup memory limit (memory.max)")
    files["/sys/fs/cgroup/memory.max"] = "max\n"
    files["/sys/fs/cgroup/memory/memory.limit_in_bytes"] = "2000000\n"
    assert R.cgroup_v2_room() is None and R.cgroup_v1_room() == 1_999_995
    monkeypatch.setattr(R.resource, "getrlimit", lambda which: (R.resource.RLIM_INFINITY,) * 2)
    assert R.address_space_room() is None
    assert R.host_memory() == (1_999_995, "the cgroup memory limit (memory.limit_in_bytes)")
    files["/sys/fs/cgroup/memory/memory.limit_in_bytes"] = "4000000\n"
    assert R.host_memory() == (2048 * 1024, "MemAvailable")


# ----------------------------------------------------------------------------- the estimate
def _params(net) -> int:
    return sum(int(v[0].numel()) for v in net.init(Stream(member_keys([0]), "critic"), 1).values())


def test_parameter_counts_from_shapes_match_the_initialised_networks():
    target = GaussianMixture([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]], 0.1)
    nets = [Mlp(3, [5, 7]), Mlp(2, [4], dropout=0.5), MlpNet(4, [6, 5], 3, "tanh"), RandomFeatures(3, 10, 1.0),
            Linear(3, True), Linear(3, False), Rbf(3, 1.0, 6, target, lambda s, n: target.sample(s, n)),
            Affine(torch.ones(2), torch.zeros(2))]
    nets += [DcganCritic(c, 4, norm) for c in (1, 3) for norm in ("none", "layer")]
    nets += [DcganGenerator(8, c, 4, norm) for c in (1, 3) for norm in ("none", "batch")]
    for net in nets:
        assert net.parameter_count() == _params(net), type(net).__name__
        assert B.parameter_count(net) == _params(net)


def test_the_memory_estimate_allocates_no_network(monkeypatch, invoke_cli, tmp_path):
    """The estimate counts parameters from shapes: initialising a network there would fail here."""
    def refuse(*a, **k):
        raise AssertionError("the estimate initialised a network")
    monkeypatch.setattr(Mlp, "init", refuse)
    t0 = time.perf_counter()
    line = _one_error(invoke_cli(["run", _write_cfg(tmp_path), "critic.widths=[100000000]", "--out", tmp_path / "o",
                                  "-q"]), "critic.widths")
    assert time.perf_counter() - t0 < 5
    assert "largest part: critic.widths" in line and not (tmp_path / "o").exists()


def test_a_huge_step_count_is_blamed_on_steps(invoke_cli, tmp_path):
    line = _one_error(invoke_cli(["run", _write_cfg(tmp_path), "steps=1000000000000000000", "--out", tmp_path / "o",
                                  "-q"]), "steps")
    assert "largest part: steps" in line and not (tmp_path / "o").exists()


def test_the_disk_check_blames_steps_for_long_logs(invoke_cli, tmp_path, monkeypatch):
    """200,000 steps logged every 20 write about 7 MB of rows and snapshots: with 1 MB of disk free
    the refusal names ``steps`` (not ``out``), and nothing is written."""
    free = type("Usage", (), {"total": 10**9, "used": 10**9 - 10**6, "free": 10**6})()
    monkeypatch.setattr(shutil, "disk_usage", lambda path: free)
    line = _one_error(invoke_cli(["run", _write_cfg(tmp_path), "steps=200000", "--out", tmp_path / "o", "-q"]), "steps")
    assert "of disk" in line and "1.0 MB free" in line and not (tmp_path / "o").exists()
    parts = B.output_parts(C.load_config(TINY), 1, 2, 2, sweep=False)
    assert set(parts) == {"steps", "out"} and B.output_bytes(C.load_config(TINY), 1, 2, 2, sweep=False) == sum(parts.values())


# ----------------------------------------------------------------------------- sweep size
def test_a_ten_million_member_sweep_is_refused_before_expansion(invoke_cli, tmp_path):
    axis = [round(0.001 * (i + 1), 6) for i in range(60)]
    sweep = {"kernel.g2": [0.1 * v for v in axis], "optim.critic.lr": axis, "optim.generator.lr": axis,
             "penalty.weight": axis}
    cfg = _write_cfg(tmp_path, {**TINY, "seeds": [0], "sweep": sweep})
    t0 = time.perf_counter()
    line = _one_error(invoke_cli(["run", cfg, "--out", tmp_path / "o", "-q"]), "sweep")
    assert time.perf_counter() - t0 < 3
    assert "12,960,000 members" in line and f"at most {MAX_MEMBERS:,}" in line
    assert not (tmp_path / "o").exists()


def test_huge_axes_and_searches_are_refused_before_their_values_are_made():
    t0 = time.perf_counter()
    with pytest.raises(ConfigError) as e:
        expand(C.load_config({**TINY, "sweep": {"kernel.g2": {"linspace": [0.0, 0.5], "num": 10**10}}}))
    assert e.value.field == "sweep.kernel.g2" and "10,000,000,000" in e.value.message
    with pytest.raises(ConfigError) as e:
        expand(C.load_config({**TINY, "search": {"trials": 10**8, "params": {"kernel.g2": {"uniform": [0.0, 0.5]}}}}))
    assert e.value.field == "search" and "200,000,000 members" in e.value.message
    assert time.perf_counter() - t0 < 3


def test_sweep_memory_bound_names_the_larger_part():
    cfg = C.load_config({**TINY, "sweep": {"kernel.g2": [0.1, 0.2]}})
    assert check_size(cfg, 2, available=10**9) == 4
    with pytest.raises(ConfigError) as e:
        check_size(cfg, 1000, available=1_000_000)  # 2,000 members x 16 kB
    assert e.value.field == "sweep" and "2,000 members" in e.value.message
    long = C.load_config({**TINY, "steps": 10**9, "log_every": 1, "sweep": {"kernel.g2": [0.1, 0.2]}})
    with pytest.raises(ConfigError) as e:
        check_size(long, 2, available=10**12)
    assert e.value.field == "steps"


# ----------------------------------------------------------------------------- data files
def _huge_npy(path: Path, shape=(10**6, 10**6)) -> Path:
    """A .npy whose header promises ``shape`` float32 (4 TB) followed by a few bytes of data."""
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_2_0(fh, {"descr": "<f4", "fortran_order": False, "shape": shape})
        fh.write(b"\0" * 16)
    return path


def _run_data(invoke_cli, tmp_path, target: str, **extra):
    cfg = _write_cfg(tmp_path)
    args = ["run", cfg, target, *[f"{k}={v}" for k, v in extra.items()], "--out", tmp_path / "o", "-q"]
    return invoke_cli(args)


@pytest.mark.parametrize("name", ["empirical", "images"])
def test_folders_and_devices_are_not_data_files(invoke_cli, tmp_path, name):
    (tmp_path / "folder.npy").mkdir()
    cases = [("/dev/zero", "is a device"), (tmp_path / "nothing.npy", "no such file")]
    if name == "empirical":  # an images path may be a folder of PNGs
        cases.append((tmp_path / "folder.npy", "is a folder"))
    for path, words in cases:
        line = _one_error(_run_data(invoke_cli, tmp_path, f"target={{name: {name}, path: '{path}'}}"), "target.path")
        assert words in line and str(path) in line
    assert not (tmp_path / "o").exists()


def test_check_data_file_says_what_the_path_is(tmp_path):
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "dir").mkdir()
    (tmp_path / "ok.npy").write_bytes(b"x")
    os.symlink("/dev/null", tmp_path / "link")
    for name, words in (("fifo", "is a FIFO (named pipe)"), ("dir", "is a folder"), ("link", "is a device"),
                        ("missing", "no such file")):
        with pytest.raises(ConfigError) as e:
            check_data_file(tmp_path / name, "kernel.path")
        assert e.value.field == "kernel.path" and words in e.value.message
    assert check_data_file(tmp_path / "ok.npy", "f") == tmp_path / "ok.npy"
    assert check_data_file(tmp_path / "dir", "f", folder_ok=True) == tmp_path / "dir"


@pytest.mark.parametrize("name", ["empirical", "images"])
def test_a_huge_array_header_is_refused_before_its_data_is_read(invoke_cli, tmp_path, name):
    shape = (10**9, 28, 28) if name == "images" else (10**6, 10**6)
    path = _huge_npy(tmp_path / "huge.npy", shape)
    line = _one_error(_run_data(invoke_cli, tmp_path, f"target={{name: {name}, path: '{path}'}}"), "target.path")
    assert "TB" in line and "array of" in line and "of memory" in line and str(shape) in line


def test_a_huge_npz_member_is_refused_from_its_header(invoke_cli, tmp_path):
    head = tmp_path / "head.npy"
    _huge_npy(head)
    with zipfile.ZipFile(tmp_path / "huge.npz", "w") as z:
        z.write(head, "x.npy")
    line = _one_error(_run_data(invoke_cli, tmp_path, f"target={{name: empirical, path: '{tmp_path / 'huge.npz'}'}}"),
                      "target.path")
    assert "array of 4.0 TB" in line


def test_empirical_modes_that_cannot_fit_are_refused_from_the_header(invoke_cli, tmp_path):
    """200,000 points as modes need a 200,000 x 200,000 distance matrix (960 GB): refused on
    ``target.modes`` from the header alone, with the way out."""
    path = _huge_npy(tmp_path / "points.npy", (200_000, 2))
    line = _one_error(_run_data(invoke_cli, tmp_path, f"target={{name: empirical, path: '{path}'}}"), "target.modes")
    assert "200,000 x 200,000" in line and "target.modes: none" in line


def test_a_kernel_matrix_of_the_wrong_shape_is_refused_from_its_header(invoke_cli, tmp_path):
    path = _huge_npy(tmp_path / "k.npy", (17, 17))  # 16 bytes of the 1,156 its header promises
    line = _one_error(_run_data(invoke_cli, tmp_path, f"kernel={{name: matrix, path: '{path}'}}"), "kernel.path")
    assert "(17, 17), expected (16, 16)" in line
    os.mkfifo(tmp_path / "kpipe")
    line = _one_error(_run_data(invoke_cli, tmp_path, f"kernel={{name: matrix, path: '{tmp_path / 'kpipe'}'}}"),
                      "kernel.path")
    assert "FIFO" in line


def test_a_truncated_array_is_refused_from_its_header(invoke_cli, tmp_path):
    path = _huge_npy(tmp_path / "short.npy", (1000, 2))
    line = _one_error(_run_data(invoke_cli, tmp_path, f"target={{name: empirical, path: '{path}', modes: none}}"),
                      "target.path")
    assert "truncated" in line


def test_an_embedding_too_large_to_draw_is_refused(invoke_cli, tmp_path):
    line = _one_error(invoke_cli(["run", _write_cfg(tmp_path), "target.embed_dim=100000000000", "--out",
                                  tmp_path / "o", "-q"]), "target.embed_dim")
    assert "100,000,000,000 x 1" in line and "is available" in line
