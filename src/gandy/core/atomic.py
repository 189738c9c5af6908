"""Atomic file writes, in one place: a file appears whole under its name or not at all, with the
mode an ordinary ``open`` would give it. Run directories go through :mod:`gandy.runs.store`, which
builds on these; the core uses them for its data caches (MNIST, the classifier)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def umask() -> int:
    """The process umask (read without changing it for longer than one call)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def follow_umask(path: Path, directory: bool) -> None:
    """Give ``path`` the mode an ordinary ``open``/``mkdir`` would: 0o666 or 0o777 less the umask
    (``tempfile`` makes its files 0600 and folders 0700 whatever the umask)."""
    os.chmod(path, (0o777 if directory else 0o666) & ~umask())


def write_atomic(path: Path, data: bytes) -> None:
    """Write a file through a temporary name and an atomic rename (mode as the umask says)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        follow_umask(Path(tmp), directory=False)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
