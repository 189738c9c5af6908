"""gandy: the effective (kernel-coupled particle) model of GAN training, and a GAN lab.

Top-level API: :func:`load_config`, :func:`run`, :func:`sweep`, :func:`load` (any output folder), :func:`load_run`,
:func:`write_report`. The package is layered (docs/architecture.md): ``core`` (the numerics), ``runs`` (configs, the loop,
sweeps, the store), ``views`` (figures, the report), ``studies`` (named experiments) and ``cli``.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Union

from gandy._version import __version__
from gandy.core.lazy import LazyModule

if TYPE_CHECKING:  # the names below are imported on first use (PEP 562): ``import gandy`` stays light
    import torch

    from gandy.runs.config import Config, ConfigError, load_config
    from gandy.runs.store import Output, RunResult, SweepResult, load, load_run
    from gandy.views.report import write_report

_LAZY = {"Config": "gandy.runs.config", "ConfigError": "gandy.runs.config", "load_config": "gandy.runs.config",
         "RunResult": "gandy.runs.store", "SweepResult": "gandy.runs.store", "load_run": "gandy.runs.store", "load": "gandy.runs.store",
         "Output": "gandy.runs.store", "write_report": "gandy.views.report"}
"""Where each top-level name lives: imported when first asked for, so that ``import gandy`` (and
``gandy --help``) do not load torch (~1.5 s) until something needs it (benchmarks/RESULTS.md)."""


_api = LazyModule("gandy.runs.api")  # torch and the run machinery: ~1.5-3 s, paid by the first run
_plots = LazyModule("gandy.views.plots")


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'gandy' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


def run(
    config: Union["Config", dict, str, Path, None] = None,
    out: Union[str, Path, None] = None,
    overrides: Optional[list[str]] = None,
    progress: bool = False,
    force: bool = False,
    figures: bool = True,
    kernel_module: Optional["torch.nn.Module"] = None,
    on_log=None,
) -> "RunResult | SweepResult":
    """Run a config for all its seeds; return the result and, with ``out``, write the run directory
    (with its figures unless ``figures=False``). A config with a ``sweep:`` or ``search:`` section
    runs every member into ``out`` (required) and returns a :class:`SweepResult`, as :func:`sweep`
    does. ``force``: replace ``out`` if it is an earlier gandy
    output holding only files gandy wrote (the CLI's ``--force``). ``on_log(rows)``: called with each
    log's rows as the run goes (a logger's hook: print them, send them to TensorBoard or W&B). See
    :func:`gandy.runs.api.run`."""
    return _api.run(config, out, overrides, progress, replace=force, draw=_plots.plot_run if figures else None,
                    kernel_module=kernel_module, draw_sweep=_plots.plot_sweep if figures else None, on_log=on_log)


def sweep(
    config: Union["Config", dict, str, Path],
    out: Union[str, Path],
    overrides: Optional[list[str]] = None,
    resume: bool = False,
    force: bool = False,
    executor: str = "local",
    workers: int = 1,
    progress: bool = False,
    figures: bool = True,
    address: Optional[str] = None,
) -> "SweepResult":
    """Run every member of a config with a ``sweep:`` or ``search:`` section into the folder ``out``
    and return its :class:`SweepResult` (``.results``, ``.metrics``, ``.summary``; particles on
    demand: ``.particles(member)``, ``.snapshots(member)``). ``resume=True`` continues an
    interrupted sweep of the same config (the CLI's ``--resume``), ``force=True`` replaces an
    earlier gandy output; ``executor`` (``local``, ``processes``, ``ray``) and ``workers`` say where
    its chunks run (``address``: a Ray cluster's). See :func:`gandy.runs.api.sweep`."""
    return _api.sweep(config, out, overrides, resume=resume, replace=force, executor=executor, workers=workers,
                      address=address, progress=progress, draw=_plots.plot_sweep if figures else None)


__all__ = ["Config", "ConfigError", "load_config", "run", "sweep", "load", "load_run", "RunResult", "SweepResult",
           "Output", "write_report", "__version__"]
