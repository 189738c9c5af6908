"""What every study shares, written once: its packaged config, its output folder, its summary.

A study lives in one folder ``gandy/studies/<name>/``: ``config.yaml`` (its packaged config),
``experiment.py`` (``EXPERIMENT``: the name ``gandy run NAME`` takes, a description and ``run``),
``figures.py`` and, where it has domain code of its own, ``model.py``. ``EXPERIMENTS`` in
``gandy/studies/__init__.py`` lists them (docs/architecture.md, "add an experiment").
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Callable, Optional

import pandas as pd

from gandy.runs.config import load_yaml
from gandy.runs.store import open_output, write_tables


@dataclass(frozen=True)
class Experiment:
    """A named experiment. ``run(out, quick=..., overrides=..., resume=..., force=..., executor=...,
    address=..., progress=..., echo=..., **run_options)`` writes its runs under ``out`` and returns
    the paths of its figures."""

    name: str
    description: str
    run: Callable


def packaged(module: str, name: str = "config.yaml") -> dict:
    """The raw mapping of the YAML file ``name`` beside ``module`` (a study's ``__name__``; its
    ``config.yaml`` by default), parsed like a user's file (duplicate keys refused)."""
    package = module.rpartition(".")[0]
    label = f"{package.replace('.', '/')}/{name}"
    return load_yaml(resources.files(package).joinpath(name).read_text(), label)


def open_study(out: Path, force: bool = False, resume: bool = False) -> Path:
    """Claim ``out`` for a study (new, replaced with ``force`` if gandy wrote it, or resumed)."""
    out = Path(out)
    open_output(out, "experiment", force=force, resume=resume)
    return out


def write_summary(out: Path, summary: dict, tables: Optional[dict[str, pd.DataFrame]] = None) -> None:
    """``OUT/summary.json`` and ``OUT/NAME.parquet`` for each table (:func:`gandy.runs.store.write_tables`)."""
    write_tables(out, tables or {}, summary)
