"""The package's layers, enforced on its import graph (docs/architecture.md).

``cli -> studies -> views -> runs -> core``: a module imports only from its own layer or below,
views read files only through ``runs.store`` (and use ``runs.snapshots``' and ``runs.tables``' computations), a study
imports no other study (only ``studies.base`` and its own folder), the core knows nothing of config
parsing, files or figures, no module imports (directly or through others) one that imports it
back, and imports sit at the top of modules (inside a function only for an optional extra, each
named here).
"""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import gandy
from gandy.runs import config as C

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
    assert "gandy.runs.sweep" in graph and "gandy.runs.executors" in graph["gandy.runs.sweep"]  # the graph is read
    assert cycles(graph) == []


def test_the_core_imports_no_parsing_files_or_plots():
    graph = import_graph()
    core = {m: deps for m, deps in graph.items() if m.startswith("gandy.core")}
    assert core
    for m, deps in core.items():
        for banned in ("gandy.runs", "gandy.views", "gandy.studies", "gandy.cli"):
            assert not any(d.startswith(banned) for d in deps), (m, banned)


def test_config_choices_are_the_registries():
    """A registry entry is a valid config value with no second list to edit (issue 14's recipe)."""
    from typing import get_args

    from gandy.core.nets.base import ACTIVATIONS
    from gandy.core.nets.dcgan import NORMS
    from gandy.core.objectives import PENALTIES
    from gandy.core.optim import OPTIMISERS

    assert get_args(C.PenaltyConfig.model_fields["name"].annotation) == tuple(PENALTIES)
    assert get_args(C.MlpCritic.model_fields["activation"].annotation) == tuple(ACTIVATIONS)
    assert get_args(C.MlpGenerator.model_fields["activation"].annotation) == tuple(ACTIVATIONS)
    assert get_args(C.DcganCritic.model_fields["norm"].annotation) == tuple(NORMS)
    assert get_args(C.CriticOptim.model_fields["name"].annotation) == OPTIMISERS
    assert get_args(C.GeneratorOptim.model_fields["name"].annotation) == OPTIMISERS


LAYERS = {"gandy._version": 0, "gandy.core": 0, "gandy.runs": 1, "gandy.views": 2, "gandy.studies": 3, "gandy.cli": 4, "gandy": 5}
"""Rank of each layer: a module may import modules of its rank or lower."""

DEFERRED = {("gandy.runs.executors", "ray"), ("gandy.core.images.evaluate", "torch_fidelity"),
            ("gandy.runs.loggers", "tensorboard"), ("gandy.runs.loggers", "torch")}
"""The imports allowed inside functions: the optional extras (the loggers' ``torch`` is
``torch.utils.tensorboard``, which imports the tensorboard extra). (Slow required dependencies are
:class:`gandy.core.lazy.LazyModule` s, each with its cost named.)"""


def layer(module: str) -> int:
    parts = module.split(".")
    for k in range(len(parts), 0, -1):
        if ".".join(parts[:k]) in LAYERS:
            return LAYERS[".".join(parts[:k])]
    raise KeyError(f"{module} is in no layer: add its folder to LAYERS and docs/architecture.md")


def test_every_layer_names_a_module_that_exists():
    """A stale entry in LAYERS (a module since removed) would rank nothing and hide a missing one."""
    mods = _modules()
    assert [k for k in LAYERS if not any(m == k or m.startswith(k + ".") for m in mods)] == []


VIEWS_READ = ("gandy.runs.store", "gandy.runs.snapshots", "gandy.runs.tables")
"""What views may import of runs/: the store (every file they read), the snapshot computations
(evenly spaced frames, the principal plane) and the boundary tables, which read no file and run nothing."""


def study_of(module: str) -> str:
    """The study folder a module of gandy.studies belongs to ("" for the registry, ``gandy.studies``,
    and for ``gandy.studies.base``, which every study shares)."""
    parts = module.split(".")
    return parts[2] if len(parts) > 2 and parts[:2] == ["gandy", "studies"] and parts[2] != "base" else ""


def upward(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    """Imports that point up the layers, views reading runs other than through the store, and a
    study importing another study (a study may import ``gandy.studies.base`` and its own folder)."""
    bad = [(m, d) for m, deps in graph.items() for d in deps if layer(d) > layer(m)]
    bad += [(m, d) for m, deps in graph.items() if m.startswith("gandy.views")
            for d in deps if d.startswith("gandy.runs") and d not in VIEWS_READ]
    bad += [(m, d) for m, deps in graph.items() if study_of(m)
            for d in deps if d.startswith("gandy.studies") and d != "gandy.studies.base" and study_of(d) != study_of(m)]
    return sorted(bad)


def test_the_layer_check_finds_a_planted_upward_import():
    g = {"gandy.core.step": {"gandy.runs.loop"}, "gandy.runs.loop": {"gandy.core.step"},
         "gandy.views.report": {"gandy.runs.sweep", "gandy.runs.store", "gandy.runs.snapshots"}, "gandy.cli": {"gandy.studies"}}
    assert upward(g) == [("gandy.core.step", "gandy.runs.loop"), ("gandy.views.report", "gandy.runs.sweep")]


def test_the_layer_check_finds_an_import_between_studies():
    g = {"gandy.studies.demo.experiment": {"gandy.studies.base", "gandy.studies.demo.figures",
                                           "gandy.studies.collapse_1d.experiment"},
         "gandy.studies.penalties": {"gandy.studies.many_paths"},
         "gandy.studies": {"gandy.studies.demo.experiment", "gandy.studies.base"},
         "gandy.studies.base": {"gandy.runs.store"}}
    assert upward(g) == [("gandy.studies.demo.experiment", "gandy.studies.collapse_1d.experiment"),
                         ("gandy.studies.penalties", "gandy.studies.many_paths")]


def test_every_import_points_down_the_layers():
    graph = import_graph()
    assert {layer(m) for m in graph} == {0, 1, 2, 3, 4, 5}  # every layer is present and read
    assert upward(graph) == []


def test_imports_sit_at_the_top_of_modules():
    inner = set()
    for name, path in _modules().items():
        tree = ast.parse(path.read_text())
        for fn in ast.walk(tree):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                if isinstance(node, ast.Import):
                    inner |= {(name, a.name.split(".")[0]) for a in node.names}
                elif isinstance(node, ast.ImportFrom):
                    inner.add((name, (node.module or "").split(".")[0]))
    assert inner == DEFERRED


def _tags(union) -> set[str]:
    from typing import get_args

    members = get_args(get_args(union)[0]) if hasattr(union, "__metadata__") else get_args(union)
    return {get_args(m.model_fields["name"].annotation)[0] for m in members}


def test_config_sections_are_the_registries():
    """Every registry entry has its config section and every section its entry (the two places
    of the "add a target / kernel / critic / generator" recipes)."""
    from gandy.core.kernels import KERNELS
    from gandy.core.nets import CRITICS, GENERATORS
    from gandy.core.targets import TARGETS

    assert _tags(C.TargetConfig) == set(TARGETS)
    assert _tags(C.KernelConfig) == set(KERNELS)
    assert _tags(C.CriticConfig) == set(CRITICS)
    assert _tags(C.GeneratorConfig) == set(GENERATORS)


DOTTED = re.compile(r"\bgandy(?:\.[A-Za-z_][A-Za-z0-9_]*)+")


def _resolves(ref: str) -> bool:
    """Whether ``gandy.a.b.c`` names a module, or an attribute reached from the longest importable prefix."""
    parts = ref.split(".")
    for k in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:k]))
        except ImportError:
            continue
        for a in parts[k:]:
            if not hasattr(obj, a):
                return False
            obj = getattr(obj, a)
        return True
    return False


def test_every_dotted_reference_in_code_and_docs_resolves():
    """A docstring or a page that names ``gandy.x.y`` names something that exists: a module moved or
    renamed leaves no stale reference behind (the sources, docs/, README.md, benchmarks/*.md; the
    tests and benchmark scripts also hold JavaScript of the report page, whose ``window.gandy`` is
    another object)."""
    repo = ROOT.parent.parent
    files = [*ROOT.rglob("*.py"), *(repo / "docs").glob("*.md"), repo / "README.md", *(repo / "benchmarks").glob("*.md")]
    stale = sorted({f"{ref} ({p.relative_to(repo)})" for p in files if p.exists()
                    for ref in (m.group(0).rstrip(".") for m in DOTTED.finditer(p.read_text())) if not _resolves(ref)})
    assert stale == []
