"""What every study shares, written once: how it is run (``StudyOptions``), its packaged config,
its output folder, its summary.

A study lives in one folder ``gandy/studies/<name>/``: ``config.yaml`` (its packaged config),
``experiment.py`` (``EXPERIMENT``: the name ``gandy run NAME`` takes, a description and ``run``),
``figures.py`` and, where it has domain code of its own, ``model.py``. ``EXPERIMENTS`` in
``gandy/studies/__init__.py`` lists them (docs/architecture.md, "add an experiment"). A study
imports only this module and its own folder; what several studies use lives in runs/ or core/
(tests/test_architecture.py).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Callable, Optional, Sequence

import pandas as pd

from gandy.core.atomic import write_atomic
from gandy.core.errors import ConfigError
from gandy.core.objectives import GAMES
from gandy.runs.config import Config, load_config, load_yaml
from gandy.runs.store import open_output, write_planned_parts, write_tables


@dataclass(frozen=True)
class StudyOptions:
    """How to run a study: the flags of ``gandy run NAME`` (the CLI builds one; Python callers too).

    ``quick``: the reduced version (``--quick``); ``overrides``: ``KEY=VALUE`` strings applied to
    each of the study's configs after its own; ``resume`` (``--resume``) finishes an interrupted
    study in ``out``; ``replace`` (the CLI's ``--force``) replaces ``out`` if it is an earlier gandy
    output; ``progress`` (not ``--quiet``) draws progress bars and ``echo`` prints a study's lines.
    The sweeps a study runs take ``executor`` (``--executor``: local, processes or ray), ``address``
    (``--address``, a Ray cluster), ``workers`` (``--workers``, at least this many chunks),
    ``checkpoint_seconds`` (``--checkpoint-every``) and ``connect_timeout`` (``--connect-timeout``);
    the defaults are :func:`gandy.runs.sweep.run_sweep`'s."""

    quick: bool = False
    overrides: Sequence[str] = ()
    resume: bool = False
    replace: bool = False
    executor: str = "local"
    address: Optional[str] = None
    progress: bool = True
    echo: Callable[[str], None] = print
    workers: int = 1
    checkpoint_seconds: float = 60.0
    connect_timeout: float = 20.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "overrides", tuple(self.overrides))  # a list given is frozen too

    def sweep(self) -> dict:
        """The keywords of :func:`gandy.runs.sweep.run_sweep` that these options set (all but the
        config, the folder, ``force`` and ``draw``)."""
        return {"resume": self.resume, "executor": self.executor, "address": self.address,
                "progress": self.progress, "echo": self.echo, "workers": self.workers,
                "checkpoint_seconds": self.checkpoint_seconds, "connect_timeout": self.connect_timeout}


@dataclass(frozen=True)
class Experiment:
    """A named experiment. ``run(out, options)`` (``options`` a :class:`StudyOptions`, default
    ``StudyOptions()``) writes its runs under ``out`` and returns the paths of its figures."""

    name: str
    description: str
    run: Callable[[Path, StudyOptions], list[Path]]
    sweep_config: Optional[Callable[[], dict]] = None
    """The raw config of the study's phase diagram (a two-axis ``sweep:``), where it has one:
    what ``gandy boundary EXPERIMENT`` searches."""
    boundary_figures: Optional[Callable[[Path], list[Path]]] = None
    """The study's own figures of a finished ``gandy boundary EXPERIMENT`` folder (beside the
    search's generic one), where it has some; their paths."""
    boundary_fail: Optional[tuple] = None
    """The phases that count as failing in ``gandy boundary EXPERIMENT`` without ``--fail``, where
    the study's diagram needs other ones than :data:`gandy.core.metrics.phases.SPLIT_FAILED`."""


def packaged(module: str, name: str = "config.yaml") -> dict:
    """The raw mapping of the YAML file ``name`` beside ``module`` (a study's ``__name__``; its
    ``config.yaml`` by default), parsed like a user's file (duplicate keys refused)."""
    package = module.rpartition(".")[0]
    label = f"{package.replace('.', '/')}/{name}"
    return load_yaml(resources.files(package).joinpath(name).read_text(), label)


def open_study(out: Path, options: StudyOptions, parts: Sequence[str] = ()) -> Path:
    """Claim ``out`` for a study (new, replaced with ``options.replace`` if gandy wrote it, or
    resumed with ``options.resume``). ``parts``: the sweeps and runs it will write, as paths
    relative to ``out`` in the order it runs them (``OUT/parts.json``, read by ``gandy watch`` to
    list the parts not begun yet; :func:`gandy.runs.store.write_planned_parts`)."""
    out = Path(out)
    open_output(out, "experiment", replace=options.replace, resume=options.resume)
    if parts:
        write_planned_parts(out, parts)
    return out


def write_summary(out: Path, summary: dict, tables: Optional[dict[str, pd.DataFrame]] = None,
                  markdown: Optional[str] = None) -> None:
    """``OUT/summary.json`` and ``OUT/NAME.parquet`` for each table (:func:`gandy.runs.store.write_tables`);
    with ``markdown`` (the summary as Markdown tables, :mod:`gandy.views.markdown`) also ``OUT/summary.md``."""
    write_tables(out, tables or {}, summary)
    if markdown is not None:
        write_atomic(Path(out) / "summary.md", markdown.encode())


def check_comparisons(spec: dict) -> list[tuple[str, str]]:
    """A robustness-style study's ``comparisons`` (its config.yaml): pairs ``[A, B]`` of two
    different names of its ``games``, each game A compared with game B on the same draws; none when
    the key is absent. A ConfigError naming ``comparisons`` otherwise."""
    pairs = spec.get("comparisons", [])
    games = spec["games"]
    ok = isinstance(pairs, list) and all(isinstance(p, list) and len(p) == 2 and p[0] != p[1]
                                         and all(isinstance(g, str) and g in games for g in p) for p in pairs)
    if not ok:
        raise ConfigError("comparisons", f"needs a list of pairs [A, B] of two different games of {games}, got {pairs!r}")
    return [tuple(p) for p in pairs]


def search_config(spec: dict, game: str, quick: bool = False, overrides: Sequence[str] = ()) -> Config:
    """The validated random-search config of one ``game`` in a robustness-style study's ``spec``
    (its config.yaml's mapping): ``spec["base"]`` with ``objective: game`` and the game's own
    penalty (none for an unpenalised game, whose ``penalty.weight`` draw is dropped from
    ``spec["search"]["params"]``), ``search: spec["search"]``; with ``quick``, ``spec["quick_trials"]``
    trials, the ``optim.critic.steps`` draw capped at ``spec["quick_critic_steps_max"]`` and the
    overrides ``spec["quick"]`` first; then ``overrides``. ``spec`` is not changed."""
    base = copy.deepcopy(spec["base"])
    search = copy.deepcopy(spec["search"])
    base["objective"] = game
    if GAMES[game].penalty:
        base["penalty"] = {"name": GAMES[game].penalty}
    else:
        base["penalty"] = None
        search["params"].pop("penalty.weight", None)
    if quick:
        search["trials"] = spec["quick_trials"]
        lo, hi = search["params"]["optim.critic.steps"]["int"]
        search["params"]["optim.critic.steps"] = {"int": [lo, min(hi, spec["quick_critic_steps_max"])]}
    base["search"] = search
    return load_config(base, [*(spec["quick"] if quick else []), *overrides])
