"""Named experiments, run by ``gandy run NAME [--quick]`` and listed by ``gandy experiments``.

One registry, ``EXPERIMENTS``: a name maps to an :class:`Experiment` whose ``run(out, quick=...,
overrides=..., resume=..., force=..., executor=..., address=..., progress=..., echo=...)`` writes
its run directories under ``out`` and returns the paths of its figures.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from . import bridge, collapse_1d, damping, kernel_universality, many_paths, mnist_collapse, robustness


@dataclass(frozen=True)
class Experiment:
    name: str
    description: str
    run: Callable


EXPERIMENTS: dict[str, Experiment] = {
    "collapse-1d": Experiment("collapse-1d", collapse_1d.DESCRIPTION, collapse_1d.run),
    "damping": Experiment("damping", damping.DESCRIPTION, damping.run),
    "many-paths": Experiment("many-paths", many_paths.DESCRIPTION, many_paths.run),
    "robustness": Experiment("robustness", robustness.DESCRIPTION, robustness.run),
    "bridge": Experiment("bridge", bridge.DESCRIPTION, bridge.run),
    "mnist-collapse": Experiment("mnist-collapse", mnist_collapse.DESCRIPTION, mnist_collapse.run),
    "kernel-universality": Experiment("kernel-universality", kernel_universality.DESCRIPTION, kernel_universality.run),
}
