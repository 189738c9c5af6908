"""gandy: the effective (kernel-coupled particle) model of GAN training, and a GAN lab.

Top-level API: :func:`load_config`, :func:`run`, :func:`load_run`, :func:`write_report`. The
package is layered (docs/architecture.md): ``core`` (the numerics), ``runs`` (configs, the loop,
sweeps, the store), ``views`` (figures, the report), ``studies`` (named experiments) and ``cli``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

import torch

from gandy._version import __version__
from gandy.runs import api as _api
from gandy.runs.config import Config, ConfigError, load_config
from gandy.runs.store import RunResult, load_run
from gandy.views.plots import plot_run, plot_sweep
from gandy.views.report import write_report


def run(
    config: Union[Config, dict, str, Path, None] = None,
    out: Union[str, Path, None] = None,
    overrides: Optional[list[str]] = None,
    progress: bool = False,
    force: bool = False,
    figures: bool = True,
    kernel_module: Optional[torch.nn.Module] = None,
) -> RunResult:
    """Run a config for all its seeds; return the result and, with ``out``, write the run directory
    (with its figures unless ``figures=False``). A config with a ``sweep:`` or ``search:`` section
    runs every member into ``out`` (required). ``force``: replace ``out`` if it is an earlier gandy
    output holding only files gandy wrote (the CLI's ``--force``). See :func:`gandy.runs.api.run`."""
    return _api.run(config, out, overrides, progress, replace=force, draw=plot_run if figures else None, kernel_module=kernel_module,
                    draw_sweep=plot_sweep if figures else None)


__all__ = ["Config", "ConfigError", "load_config", "run", "load_run", "RunResult", "write_report", "__version__"]
