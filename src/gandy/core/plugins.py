"""Plugins: the user's own Python code a config may import, and nothing else.

A ``module:`` key (``kernel.module: my_nets:factory``) imports and runs code, so it may name only a
module the config lists itself under ``plugins:``: a module on the Python path (``my_package.nets``,
or a submodule of it), or a ``.py`` file (imported from that file under a name of its own, whatever
else is installed). The standard library (``os``, ``sys``, ``subprocess``, ``builtins``, ...),
gandy itself and the packages gandy depends on are refused as plugins: they are not the user's code,
and their functions (``os:system``, ``numpy:save``, ``torch.hub:load``) would run shell commands,
write files or fetch code for whoever wrote the config.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Optional, Sequence

from gandy.core.errors import ConfigError

NOT_PLUGINS = frozenset({"gandy", "torch", "numpy", "pandas", "pyarrow", "pydantic", "pydantic_core", "yaml",
                         "typer", "click", "matplotlib", "ot", "scipy", "mlxtend", "tqdm", "ray",
                         "torch_fidelity", "setuptools", "pip", "pkg_resources"})
"""Installed packages that are not a user's code: gandy, its dependencies and the installers."""

_FILES: dict[Path, ModuleType] = {}
"""Plugin files imported so far, by resolved path (each file's code runs once per process)."""


def is_file(entry: str) -> bool:
    """Whether a ``plugins:`` entry names a ``.py`` file (else a module name)."""
    return entry.endswith(".py") or "/" in entry or "\\" in entry


def provides(entry: str) -> str:
    """The module name a ``plugins:`` entry gives ``module:`` keys: a file's stem, or the name."""
    return Path(entry).stem if is_file(entry) else entry


def _refused_package(top: str) -> Optional[str]:
    """Why a top-level package may not be a plugin (None: it may)."""
    if top in sys.stdlib_module_names or top in sys.builtin_module_names or top == "builtins":
        return "is the Python standard library"
    if top.startswith("_"):
        return "is an interpreter internal"
    if top in NOT_PLUGINS:
        return "is gandy or one of its dependencies, not your code"
    return None


def problem(entry) -> Optional[str]:
    """Why ``entry`` cannot be a ``plugins:`` entry, in words (None: it can)."""
    if not isinstance(entry, str) or not entry.strip():
        return f"{entry!r} is not a module name or a .py file"
    name = provides(entry)
    if is_file(entry):
        if not entry.endswith(".py"):
            return f"{entry!r}: a plugin file must end in .py"
        if not name.isidentifier():
            return f"{entry!r}: the file's name must be a Python name (letters, digits, _), as kernel.module names it"
    elif not all(part.isidentifier() for part in entry.split(".")):
        return f"{entry!r} is not a module name (package.module) or a .py file"
    why = _refused_package(name.split(".")[0])
    return f"{entry!r} {why}; a plugin is a module or .py file of your own" if why else None


def covering(module: str, plugins: Sequence[str]) -> Optional[str]:
    """The ``plugins:`` entry that allows importing ``module`` (itself, or a package above it; a
    file only as its own stem), or None."""
    for entry in plugins:
        name = provides(entry)
        if module == name or (not is_file(entry) and module.startswith(name + ".")):
            return entry
    return None


def spec_problem(spec: str, plugins: Sequence[str]) -> Optional[str]:
    """Why ``spec`` (``package.module:factory``) may not be imported with these plugins (None: it may)."""
    if not isinstance(spec, str) or spec.count(":") != 1:
        return f"{spec!r} is not of the form package.module:factory"
    module, attr = spec.split(":")
    if not all(part.isidentifier() for part in module.split(".")) or not attr.isidentifier():
        return f"{spec!r} is not of the form package.module:factory"
    why = _refused_package(module.split(".")[0])
    if why:
        return f"{spec!r}: {module!r} {why}; gandy imports only the config's own plugins"
    if covering(module, plugins) is None:
        listed = f" (plugins: {', '.join(map(repr, plugins))})" if plugins else " (the config lists no plugins)"
        return (f"{spec!r}: {module!r} is not among the config's plugins{listed}; list your module or .py file "
                f"under plugins: to let gandy run its code")
    return None


def _import_file(path: Path) -> ModuleType:
    """Import the plugin file ``path`` (resolved) under a name of its own, once per process."""
    if path in _FILES:
        return _FILES[path]
    if not path.is_file():
        raise ConfigError("plugins", f"no such file: {path}")
    name = f"gandy_plugin_{path.stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:12]}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ConfigError("plugins", f"cannot import {path}")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # classes defined in the file pickle by this name
    try:
        spec.loader.exec_module(mod)
    except Exception as e:
        del sys.modules[name]
        raise ConfigError("plugins", f"{path} failed to import: {type(e).__name__}: {e}") from None
    _FILES[path] = mod
    return mod


def load(spec: str, plugins: Sequence[str], field: str) -> object:
    """The object ``spec`` (``package.module:factory``) names, imported from the config's
    ``plugins`` (file entries absolute or relative to the working directory). Runs the plugin's
    code; anything else is refused with a :class:`ConfigError` naming ``field`` (or ``plugins``)."""
    why = spec_problem(spec, plugins)
    if why:
        raise ConfigError(field, why)
    module, attr = spec.split(":")
    entry = covering(module, plugins)
    why = problem(entry)
    if why:
        raise ConfigError("plugins", why)
    if is_file(entry):
        mod = _import_file(Path(entry).resolve())
    else:
        try:
            mod = importlib.import_module(module)
        except ImportError as e:
            raise ConfigError(field, f"cannot import {module!r}: {e}") from None
        except Exception as e:
            raise ConfigError(field, f"{module!r} failed to import: {type(e).__name__}: {e}") from None
    try:
        return getattr(mod, attr)
    except AttributeError:
        raise ConfigError(field, f"{spec!r}: the plugin {entry!r} has no {attr!r}") from None
