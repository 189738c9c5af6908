"""Studies: named experiments, run by ``gandy run NAME [--quick]`` and listed by ``gandy experiments``.

Each study is one folder (see :mod:`gandy.studies.base`); the one registry, ``EXPERIMENTS``, maps a
name to its :class:`~gandy.studies.base.Experiment`. Adding an experiment = one folder + one line here.
"""

from __future__ import annotations

from gandy.studies.base import Experiment
from gandy.studies.bridge import experiment as bridge
from gandy.studies.collapse_1d import experiment as collapse_1d
from gandy.studies.critic_types import experiment as critic_types
from gandy.studies.damping import experiment as damping
from gandy.studies.frequency import experiment as frequency
from gandy.studies.many_paths import experiment as many_paths
from gandy.studies.mnist_ablation import experiment as mnist_ablation
from gandy.studies.mnist_calibrate import experiment as mnist_calibrate
from gandy.studies.mnist_collapse import experiment as mnist_collapse
from gandy.studies.mnist_slices import experiment as mnist_slices
from gandy.studies.penalties import experiment as penalties
from gandy.studies.robustness import experiment as robustness
from gandy.studies.robustness_2d import experiment as robustness_2d
from gandy.studies.saturation import experiment as saturation
from gandy.studies.universality import experiment as universality

EXPERIMENTS: dict[str, Experiment] = {e.name: e for e in (
    collapse_1d.EXPERIMENT,
    damping.EXPERIMENT,
    many_paths.EXPERIMENT,
    robustness.EXPERIMENT,
    robustness_2d.EXPERIMENT,
    bridge.EXPERIMENT,
    mnist_collapse.EXPERIMENT,
    mnist_ablation.EXPERIMENT,
    mnist_slices.EXPERIMENT,
    mnist_calibrate.EXPERIMENT,
    universality.EXPERIMENT,
    frequency.EXPERIMENT,
    critic_types.EXPERIMENT,
    penalties.EXPERIMENT,
    saturation.EXPERIMENT,
)}
