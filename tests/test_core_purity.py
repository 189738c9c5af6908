"""The core reads no config: every module under gandy/core takes what it needs as explicit,
typed arguments (frozen specs built by gandy.runs.build), and the registries say what others
would otherwise guess (a critic's size and widths, the engines of a critic and a penalty)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import gandy
from gandy.core.errors import ConfigError
from gandy.core.nets import CRITICS, GENERATORS, critic_entry
from gandy.core.objectives import ENGINES, PENALTIES, SQUARED_GRADIENT
from gandy.runs import budget
from gandy.runs import config as C

CORE = Path(gandy.__file__).parent / "core"
FORBIDDEN = {"cfg", "pcfg", "ocfg", "Config", "model_dump"}


def config_reads(source: str) -> list[str]:
    """Every place in ``source`` that names a config: a name, attribute, argument or import in FORBIDDEN,
    or ``getattr(x, ...)`` on an expression that mentions ``cfg``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Name) and node.id in FORBIDDEN:
            found.append(f"line {node.lineno}: name {node.id}")
        elif isinstance(node, ast.Attribute) and node.attr in FORBIDDEN:
            found.append(f"line {node.lineno}: attribute .{node.attr}")
        elif isinstance(node, ast.arg) and node.arg in FORBIDDEN:
            found.append(f"line {node.lineno}: argument {node.arg}")
        elif isinstance(node, ast.alias) and (node.asname or node.name).split(".")[-1] in FORBIDDEN:
            found.append(f"import {node.name}")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getattr" and node.args \
                and "cfg" in ast.unparse(node.args[0]).lower():
            found.append(f"line {node.lineno}: {ast.unparse(node)}")
    return found


def test_the_check_catches_config_reads():
    """The AST check finds each kind of config read (so that its silence below means something)."""
    assert config_reads("def f(sim):\n    return sim.cfg.penalty.name")
    assert config_reads("def f(cfg):\n    return 1")
    assert config_reads("def f(sim):\n    return getattr(sim.ocfg, 'reset', False)")
    assert config_reads("x = section.model_dump()")
    assert config_reads("from gandy.runs.config import Config")
    assert not config_reads("def f(spec):\n    return getattr(spec, 'data', None)")


def test_no_core_module_reads_a_config():
    bad = {str(p.relative_to(CORE)): hits for p in sorted(CORE.rglob("*.py"))
           if (hits := config_reads(p.read_text()))}
    assert bad == {}


def test_every_critic_and_generator_entry_says_its_size():
    """Every registered critic gives its units and widths from its default options, and lists the
    engines that run it; an unknown critic is a ConfigError on critic.name, not a fallback size."""
    for name, entry in CRITICS.items():
        section = C.load_config({"critic": {"name": name}}).critic
        opts = section.model_dump(exclude={"name"})
        assert entry.units(5, **opts) >= 1 and all(w >= 1 for w in entry.widths(**opts))
        assert "eager" in entry.engines and set(entry.engines) <= set(ENGINES)
        assert entry.size is None or entry.size in opts  # the option a memory refusal names
    for name, entry in GENERATORS.items():
        opts = C.load_config({"generator": {"name": name}}).generator.model_dump(exclude={"name"})
        assert entry.units(5, **opts) >= 1 and entry.engines == ("eager",)
        assert entry.size is None or entry.size in opts
    cfg = C.load_config({"critic": {"name": "mlp", "widths": [7, 3]}})
    assert budget.critic_units(cfg, 2) == 11 and budget.critic_field(cfg) == "critic.widths"
    assert budget.critic_field(C.load_config({"critic": {"name": "linear"}})) == "critic.name"
    with pytest.raises(ConfigError) as e:
        critic_entry("no_such_critic")
    assert e.value.field == "critic.name"


def test_penalty_engines_are_one_registry():
    """The compiled engine runs the penalties that draw no random numbers; the closed form the
    squared-gradient ones (and none); every penalty runs eager."""
    for name, pen in PENALTIES.items():
        assert "eager" in pen.engines
        assert ("closed_form" in pen.engines) == (name == "none" or name in SQUARED_GRADIENT)
        assert ("compiled" in pen.engines) == (name not in ("wgan_gp", "dragan"))
