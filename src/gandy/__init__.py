"""gandy: the effective (kernel-coupled particle) model of GAN training, and a GAN lab.

Top-level API: :func:`load_config`, :func:`run`, :func:`load_run`, :func:`write_report`.
"""

from ._version import __version__  # noqa: E402

from .config import Config, ConfigError, load_config  # noqa: E402
from .api import run  # noqa: E402
from .store import RunResult, load_run  # noqa: E402
from .report import write_report  # noqa: E402

__all__ = ["Config", "ConfigError", "load_config", "run", "load_run", "RunResult", "write_report", "__version__"]
