"""The import graph of the package: no cycles, counting imports inside functions too.

Issue 14's layered layout (core, runs, studies, views, imported only downward) is being built one
piece at a time; until every module has its layer, this test holds the part that already holds:
no module imports, directly or through others, a module that imports it back.
"""

from __future__ import annotations

import ast
from pathlib import Path

import gandy

ROOT = Path(gandy.__file__).parent


def _modules() -> dict[str, Path]:
    mods = {}
    for p in ROOT.rglob("*.py"):
        parts = p.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        mods[name] = p
    return mods


def import_graph() -> dict[str, set[str]]:
    """Module -> the gandy modules it imports (anywhere in its body, relative or absolute)."""
    mods = _modules()
    graph = {}
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    mod = ".".join(base + ([node.module] if node.module else []))
                else:
                    mod = node.module or ""
                targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in mods else mod for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            for t in targets:
                while t and t not in mods:
                    t = t.rsplit(".", 1)[0] if "." in t else ""
                if t and t != name:
                    deps.add(t)
        graph[name] = deps
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan's algorithm, iterative)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def test_cycle_finder_finds_a_planted_cycle():
    g = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(g) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_package_has_no_import_cycle():
    graph = import_graph()
    assert "gandy.sweep" in graph and "gandy.executors" in graph["gandy.sweep"]  # the graph is read
    assert cycles(graph) == []


def test_the_core_imports_no_parsing_files_or_plots():
    graph = import_graph()
    core = {m: deps for m, deps in graph.items() if m.startswith("gandy.core")}
    assert core
    for m, deps in core.items():
        for banned in ("gandy.config", "gandy.store", "gandy.plots", "gandy.report", "gandy.cli"):
            assert banned not in deps, (m, banned)


def test_config_choices_are_the_registries():
    """A registry entry is a valid config value with no second list to edit (issue 14's recipe)."""
    from typing import get_args

    from gandy import config as C
    from gandy.core.nets.base import ACTIVATIONS
    from gandy.images.nets import NORMS
    from gandy.objectives import PENALTIES

    assert get_args(C.PenaltyConfig.model_fields["name"].annotation) == tuple(PENALTIES)
    assert get_args(C.MlpCritic.model_fields["activation"].annotation) == tuple(ACTIVATIONS)
    assert get_args(C.MlpGenerator.model_fields["activation"].annotation) == tuple(ACTIVATIONS)
    assert get_args(C.DcganCritic.model_fields["norm"].annotation) == tuple(NORMS)
