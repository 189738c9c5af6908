"""Loggers for ``gandy.run(on_log=...)``: each is called with a log's rows as they are measured.

A logger is any callable taking ``rows`` (a list of dicts, one per seed: ``member``, ``seed``,
``step`` and every logged column; the rows ``metrics.parquet`` will hold). gandy always writes
them as JSON lines (a sweep's ``chunks/ID.live.jsonl``, a single run's ``live.jsonl``: ``gandy
watch``); :class:`TensorBoard` sends them to TensorBoard as well::

    with TensorBoard("tb/run1") as tb:
        gandy.run(cfg, on_log=tb)      # tensorboard --logdir tb

It imports ``torch.utils.tensorboard``, which needs the ``tensorboard`` package (the
``gandy[tensorboard]`` extra); ``gandy run CONFIG --tensorboard DIR`` does the same.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Union

from gandy.core.errors import ConfigError

IDS = ("member", "seed", "step")
"""The columns that say which row a number belongs to; every other numeric column is a scalar."""


def check_logdir(logdir: Union[str, Path], field: str = "logdir") -> Path:
    """``logdir`` if TensorBoard can write there (a folder, or a path whose nearest existing parent
    is a folder) and the ``tensorboard`` package is installed; otherwise a ConfigError naming
    ``field``. Nothing is created."""
    path = Path(logdir)
    if path.exists() and not path.is_dir():
        raise ConfigError(field, f"{path} exists and is not a folder (TensorBoard writes event files into a folder)")
    parent = path
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(field, f"{path} cannot be made: {parent} is not a folder")
    try:
        import tensorboard  # noqa: F401  (torch.utils.tensorboard needs it)
    except ImportError:
        raise ConfigError(field, "TensorBoard logging needs the tensorboard package: pip install 'gandy[tensorboard]'") from None
    return path


class TensorBoard:
    """A logger writing every logged column as a TensorBoard scalar, tagged ``COLUMN/seed_S`` (one
    chart per column, a curve per seed) at its ``step``, flushed at every log so that a running
    ``tensorboard --logdir`` shows it at once. Non-numeric columns (``mode_hist``) and NaN (a
    diverged member) are left out. Event files are new files in ``logdir``; nothing is replaced."""

    def __init__(self, logdir: Union[str, Path]):
        self.logdir = check_logdir(logdir)
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(self.logdir))

    def __call__(self, rows: list) -> None:
        for row in rows:
            for key, value in row.items():
                if key in IDS or isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
                    continue
                self.writer.add_scalar(f"{key}/seed_{row['seed']}", value, global_step=int(row["step"]))
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()

    def __enter__(self) -> "TensorBoard":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
