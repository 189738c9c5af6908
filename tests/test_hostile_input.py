"""Hostile configs and overrides (issue 24): a ``module:`` key runs only the config's own plugins,
YAML alias bombs and deep nesting are refused in milliseconds, and every input problem is one
``error: FIELD: message`` line with its control characters escaped, exit code 2.

The commands go through :func:`gandy.cli.main` in this process (stderr read by ``capsys``): a
subprocess's interpreter start-up would cost more than all these checks together.
"""

from __future__ import annotations

import contextlib
import signal
import time

import pytest
import torch
import yaml

import gandy
from gandy.cli import main
from gandy.core.errors import ConfigError, one_line
from gandy.core.kernels import empirical_ntk, sphere_latents
from gandy.runs import config as C
from gandy.runs.build import build, kernel_of

from conftest import TINY

PLUGIN = '''import torch


def linear(latent_dim, d):
    """A seeded linear generator: (n, latent_dim) -> (n, d)."""
    torch.manual_seed(7)
    return torch.nn.Linear(latent_dim, d)


def no_parameters(latent_dim, d):
    return torch.nn.Identity()
'''

EMPIRICAL = {"name": "empirical_ntk", "module": "nets:linear", "kwargs": {"latent_dim": 4, "d": 1}, "latent_dim": 4}


@contextlib.contextmanager
def _deadline(seconds: int):
    """Fail (not hang) when the block runs past ``seconds``: an alias bomb used to run for hours."""

    def expired(*_):
        raise TimeoutError(f"still running after {seconds} s")

    old = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _config(folder, **changes) -> str:
    p = folder / "cfg.yaml"
    p.write_text(yaml.safe_dump({**TINY, "steps": 4, "log_every": 2, "seeds": [0], **changes}, sort_keys=False))
    return str(p)


def _error_line(capsys, args, field=None) -> str:
    """Run ``gandy ARGS``; assert exit code 2 and exactly one stderr line ``error: FIELD: ...`` with
    no control character but its final newline; return that line."""
    with pytest.raises(SystemExit) as ei:
        main([str(a) for a in args])
    err = capsys.readouterr().err
    assert ei.value.code == 2, err
    assert err.endswith("\n") and err.count("\n") == 1, repr(err)
    line = err[:-1]
    bad = [c for c in line if ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F or c in "\u2028\u2029"]
    assert not bad, repr(line)
    assert line.startswith("error: "), line
    if field is not None:
        assert line.startswith(f"error: {field}: "), line
    return line


# ----------------------------------------------------------------------------- code execution
def test_os_system_module_is_refused_before_it_runs(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    kernel = {"name": "empirical_ntk", "module": "os:system", "kwargs": {"command": "touch pwned"}}
    line = _error_line(capsys, ["run", _config(tmp_path, kernel=kernel), "--out", tmp_path / "o", "-q"],
                       field="kernel.module")
    assert "os" in line and "plugins" in line
    # the same as an override, and listing os as a plugin does not help
    line = _error_line(capsys, ["run", _config(tmp_path), "plugins=[os]",
                                "kernel={name: empirical_ntk, module: 'os:system', kwargs: {command: touch pwned}}",
                                "--out", tmp_path / "o", "-q"], field="plugins")
    assert "standard library" in line
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "o").exists()


def test_the_core_loader_refuses_a_module_outside_the_plugins(tmp_path, monkeypatch):
    """Built without a Config's validation (a section made in Python), the import is refused too."""
    monkeypatch.chdir(tmp_path)
    cfg = C.EmpiricalNtkKernel(name="empirical_ntk", module="os:system", kwargs={"command": "touch pwned"})
    for plugins in ((), ("os",)):
        with pytest.raises(ConfigError) as ei:
            kernel_of(cfg, n=4, d=1, plugins=plugins)
        assert ei.value.field in ("kernel.module", "plugins")
    assert not (tmp_path / "pwned").exists()


STDLIB, OURS = "is the Python standard library", "is gandy or one of its dependencies"


@pytest.mark.parametrize("plugin, words", [
    ("os", STDLIB), ("sys", STDLIB), ("subprocess", STDLIB), ("builtins", STDLIB), ("os.path", STDLIB),
    ("shutil", STDLIB), ("importlib.util", STDLIB), ("posix.py", STDLIB), ("_posixsubprocess", STDLIB),
    ("__main__", "internal"), ("torch", OURS), ("torch.hub", OURS), ("numpy", OURS), ("gandy.cli", OURS),
    ("my-nets", "not a module name"), ("nets.txt/", "must end in .py"),
])
def test_standard_library_and_gandy_s_own_packages_are_no_plugins(capsys, tmp_path, plugin, words):
    line = _error_line(capsys, ["run", _config(tmp_path, plugins=[plugin]), "--out", tmp_path / "o", "-q"],
                       field="plugins")
    assert words in line
    assert not (tmp_path / "o").exists()


def test_a_plugin_file_beside_the_config_runs(tmp_path, monkeypatch):
    (tmp_path / "exp").mkdir()
    (tmp_path / "exp" / "nets.py").write_text(PLUGIN)
    path = _config(tmp_path / "exp", plugins=["nets.py"], kernel=EMPIRICAL)
    monkeypatch.chdir(tmp_path)  # the file is found beside the config, not in the working directory
    cfg = gandy.load_config(path)
    assert cfg.plugins == [str((tmp_path / "exp" / "nets.py").resolve())]
    torch.manual_seed(7)
    z = sphere_latents(cfg.particles.n, 4, 0).float()
    expected = empirical_ntk(torch.nn.Linear(4, 1), z)
    torch.testing.assert_close(build(cfg).kernel.dense(), expected, rtol=1e-5, atol=1e-6)
    # a stored config (a sweep's chunk) imports the same file from anywhere
    monkeypatch.chdir(tmp_path / "exp")
    again = C.load_config(cfg.model_dump(mode="json"))
    torch.testing.assert_close(build(again).kernel.dense(), expected, rtol=1e-5, atol=1e-6)
    res = gandy.run(again, figures=False)
    assert res.summary["kernel"]["diag_mean"] == pytest.approx(float(expected.diagonal().mean()), rel=1e-5)


def test_a_plugin_package_and_its_submodules_run_and_nothing_else(capsys, tmp_path, monkeypatch):
    pkg = tmp_path / "site" / "my_plugin_pkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "nets.py").write_text(PLUGIN)
    other = tmp_path / "site" / "other_pkg_24.py"
    other.write_text("open('imported', 'w').close()\ndef linear(latent_dim, d):\n    raise AssertionError\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.chdir(tmp_path)
    kernel = {**EMPIRICAL, "module": "my_plugin_pkg.nets:linear"}
    cfg = gandy.load_config(_config(tmp_path, plugins=["my_plugin_pkg"], kernel=kernel))
    assert build(cfg).kernel.dense().shape == (16, 16)
    line = _error_line(capsys, ["run", _config(tmp_path, plugins=["my_plugin_pkg"],
                                               kernel={**EMPIRICAL, "module": "other_pkg_24:linear"}),
                                "--out", tmp_path / "o", "-q"], field="kernel.module")
    assert "my_plugin_pkg" in line
    assert not (tmp_path / "imported").exists()  # refused before its import ran


def test_a_plugin_s_failures_are_input_errors(capsys, tmp_path):
    (tmp_path / "nets.py").write_text(PLUGIN)
    bad_kwargs = {**EMPIRICAL, "kwargs": {"width": 3}}
    line = _error_line(capsys, ["run", _config(tmp_path, plugins=["nets.py"], kernel=bad_kwargs),
                                "--out", tmp_path / "o", "-q"], field="kernel.kwargs")
    assert "TypeError" in line
    no_params = {**EMPIRICAL, "module": "nets:no_parameters"}
    _error_line(capsys, ["run", _config(tmp_path, plugins=["nets.py"], kernel=no_params),
                         "--out", tmp_path / "o", "-q"], field="kernel.module")
    _error_line(capsys, ["run", _config(tmp_path, plugins=["missing.py"], kernel={**EMPIRICAL, "module": "missing:linear"}),
                         "--out", tmp_path / "o", "-q"], field="plugins")
    assert not (tmp_path / "o").exists()


def test_a_module_given_from_python_needs_no_import_path():
    res = gandy.run({**TINY, "steps": 4, "log_every": 2, "seeds": [0]},
                    overrides=["kernel={name: empirical_ntk, latent_dim: 4}"],
                    kernel_module=torch.nn.Linear(4, 1), figures=False)
    assert res.summary["kernel"]["diag_mean"] > 0
    with pytest.raises(ConfigError) as ei:
        build(C.load_config({**TINY, "kernel": {"name": "empirical_ntk"}}))
    assert ei.value.field == "kernel.module"


# ----------------------------------------------------------------------------- hangs
def _bomb(levels: int = 9) -> str:
    """About 300 bytes of YAML whose aliases expand to 9 ** levels strings."""
    names = "abcdefghijklmnop"[:levels]
    lines = [f'{names[0]}: &{names[0]} ["x","x","x","x","x","x","x","x","x"]']
    lines += [f"{n}: &{n} [{','.join([f'*{p}'] * 9)}]" for p, n in zip(names, names[1:])]
    return "\n".join(lines) + "\n"


def test_an_alias_bomb_is_refused_at_once(capsys, tmp_path):
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(_bomb())
    assert len(bomb.read_bytes()) < 1024
    with _deadline(20):
        t0 = time.perf_counter()
        line = _error_line(capsys, ["run", bomb, "--out", tmp_path / "o", "-q"], field="config")
        assert "aliases" in line and str(bomb) in line
        value = "{" + _bomb().replace("\n", ", ") + "}"
        line = _error_line(capsys, ["run", _config(tmp_path), f"target={value}", "--out", tmp_path / "o", "-q"],
                           field="target")
        assert "aliases" in line and len(line) < 300
        assert time.perf_counter() - t0 < 2
    assert not (tmp_path / "o").exists()


def test_a_few_aliases_still_work():
    data = C.load_yaml("base: &b {name: mlp, widths: [8]}\ncritic: *b\nseeds: &s [0, 1]\nsweep: {seeds: [*s]}\n")
    assert data["critic"] == {"name": "mlp", "widths": [8]} and data["sweep"] == {"seeds": [[0, 1]]}
    assert C.load_yaml("[" * C.MAX_DEPTH + "]" * C.MAX_DEPTH) is not None


@pytest.mark.parametrize("text, words", [
    ("steps: " + "[" * 10000 + "]" * 10000 + "\n", "deeper than 50"),
    ("steps: " + "{a: " * 3000 + "1" + "}" * 3000 + "\n", "deeper than 50"),
    ("a:\n" + "".join("  " * i + "- b:\n" for i in range(1, 500)) + "  " * 500 + "c: 1\n", "deeper than 50"),
    ("a: &a [" + "[" * 40 + "1" + "]" * 40 + "]\nb: &b [" + "[" * 40 + "*a" + "]" * 40 + "]\n", "aliases are expanded"),
    ("a: &a [*a]\n", "refers to a section that holds it"),
    ("a: &a {b: *a}\n", "refers to a section that holds it"),
], ids=["flow lists", "flow mappings", "block", "through aliases", "list in itself", "mapping in itself"])
def test_deep_or_self_referring_yaml_is_an_input_error(capsys, tmp_path, text, words):
    p = tmp_path / "deep.yaml"
    p.write_text(text)
    with _deadline(20):
        line = _error_line(capsys, ["run", p, "--out", tmp_path / "o", "-q"])
    assert words in line and str(p) in line
    assert not (tmp_path / "o").exists()


def test_deep_overrides_are_input_errors(capsys, tmp_path):
    with _deadline(20):
        _error_line(capsys, ["run", _config(tmp_path), "steps=" + "[" * 10000, "--out", tmp_path / "o", "-q"], field="steps")
        line = _error_line(capsys, ["run", _config(tmp_path), "sweep" + ".a" * 1500 + "=1", "--out", tmp_path / "o", "-q"])
        assert "deeper than 50" in line


# ----------------------------------------------------------------------------- messages
@pytest.mark.parametrize("char", ["\x07", "\x00", "\x1b", "\x7f"], ids=["bell", "nul", "esc", "del"])
def test_a_control_character_in_the_file_names_the_file_and_line(capsys, tmp_path, char):
    p = tmp_path / "ctl.yaml"
    p.write_text(f"steps: 4\nseeds: [0]{char}\n")
    line = _error_line(capsys, ["run", p, "--out", tmp_path / "o", "-q"], field="config")
    assert str(p) in line and "control character" in line and "line 2" in line
    line = _error_line(capsys, ["run", _config(tmp_path), f"target.path=x{char}y", "--out", tmp_path / "o", "-q"],
                       field="target.path")
    assert "control character" in line


@pytest.mark.parametrize("key, shown", [
    ('"a\\nb"', "a\\nb"),                        # a newline in a key
    ('"a[0]"', "a[0]"),                          # brackets, once taken for pydantic's own names
    ("int", "int"),
    ('"\\e]0;owned\\a"', "\\x1b]0;owned\\x07"),  # a terminal's title-setting sequence
    ('"\\e[31mred"', "\\x1b[31mred"),
    ('"x\\u2028y\\rz"', "x\\u2028y\\rz"),
], ids=["newline", "brackets", "type name", "osc", "csi", "separators"])
def test_a_strange_key_is_named_on_one_escaped_line(capsys, tmp_path, key, shown):
    for where, prefix in (("{text}: 1\n", ""), ("critic:\n  name: mlp\n  {text}: 1\n", "critic.")):
        p = tmp_path / "keys.yaml"
        p.write_text(where.format(text=key))
        line = _error_line(capsys, ["run", p, "--out", tmp_path / "o", "-q"], field=prefix + shown)
        assert line.endswith("unknown key")


def test_strange_values_and_override_keys_stay_on_one_line(capsys, tmp_path):
    line = _error_line(capsys, ["run", _config(tmp_path), 'target={name: empirical, path: "x\\r\\e]0;t\\a\\ny"}',
                                "--out", tmp_path / "o", "-q"], field="target.path")
    assert "x\\r\\x1b]0;t\\x07\\ny" in line
    _error_line(capsys, ["run", _config(tmp_path), "a\nb=1", "--out", tmp_path / "o", "-q"], field="a\\nb")
    _error_line(capsys, ["run", _config(tmp_path), "objective=\"\\e[2J\"", "--out", tmp_path / "o", "-q"],
                field="objective")
    assert not (tmp_path / "o").exists()


def test_one_line_escapes_every_control_character():
    assert one_line("plain text, é ü 中") == "plain text, é ü 中"
    assert one_line("a\nb\r\tc\x1b[31m\x00\x7f\x85\u2028\u2029\u202e") == \
        "a\\nb\\r\\tc\\x1b[31m\\x00\\x7f\\x85\\u2028\\u2029\\u202e"
    e = ConfigError("a\nb", "bad \x1b[2J value")
    assert e.field == "a\\nb" and e.message == "bad \\x1b[2J value" and "\n" not in str(e)


def test_a_config_path_that_is_no_regular_file_is_named_without_opening_it(tmp_path, capsys, monkeypatch):
    """A FIFO or a device as the config file was 'no such file'. Now each is said for what it is, at
    once and without opening it, and a config too large to be one is refused before it is read."""
    import os

    monkeypatch.chdir(tmp_path)
    fifo = tmp_path / "cfg.yaml"
    os.mkfifo(fifo)
    with _deadline(20):
        assert "FIFO" in _error_line(capsys, ["run", fifo, "--out", tmp_path / "o"], field="config")
    assert "folder" in _error_line(capsys, ["run", tmp_path, "--out", tmp_path / "o"], field="config")
    assert "device" in _error_line(capsys, ["run", "/dev/null", "--out", tmp_path / "o"], field="config")
    big = tmp_path / "big.yaml"
    with open(big, "wb") as fh:
        fh.truncate(C.MAX_CONFIG_BYTES + 1)
    assert "at most" in _error_line(capsys, ["run", big, "--out", tmp_path / "o"], field="config")
    assert sorted(os.listdir(tmp_path)) == ["big.yaml", "cfg.yaml"]  # no output begun
