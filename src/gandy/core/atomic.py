"""Files gandy writes, in one place: a file appears whole under its name or not at all, with the
mode an ordinary ``open`` would give it, and every file written inside a gandy output is recorded
in that output's marker, so that gandy knows what it wrote (and what it did not).

The marker ``OUT/.gandy`` is a text file: its first line is a JSON object (the output's kind,
gandy's version, the creation time and ``"manifest": 1``), each further line one JSON string, the
path relative to ``OUT`` of a file gandy wrote there (``"figures/a.png"``) or of a folder it made
(``"chunks/"``). Lines are appended with ``O_APPEND`` (atomic for lines this short, so worker
processes of one sweep may append side by side) and the marker is never followed through a
symbolic link. A file is recorded *before* it is written, so a temporary file left by a killed
write (``.NAME.XXXXXXXX`` beside ``NAME``) is recognised as gandy's too.

Run directories go through :mod:`gandy.runs.outputs` and :mod:`gandy.runs.store`, which build on
these; the core uses them for its data caches (MNIST, the classifier), which lie in no output and
record nothing.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Optional

from gandy.core.errors import ConfigError

MARKER = ".gandy"
"""The file that makes a folder a gandy output (see the module docstring for its format)."""

TEMP_SUFFIX = re.compile(r"^\.(?P<name>.+)\.[a-z0-9_]{8}$")
"""A temporary file of :func:`write_atomic` (``tempfile.mkstemp``'s eight random characters)."""


def umask() -> int:
    """The process umask (read without changing it for longer than one call)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def follow_umask(path: Path, directory: bool) -> None:
    """Give ``path`` the mode an ordinary ``open``/``mkdir`` would: 0o666 or 0o777 less the umask
    (``tempfile`` makes its files 0600 and folders 0700 whatever the umask)."""
    os.chmod(path, (0o777 if directory else 0o666) & ~umask())


# ----------------------------------------------------------------------------- the manifest
def owner(path: Path) -> Optional[Path]:
    """The gandy output ``path`` lies in: the nearest folder above it whose marker is a regular
    file of this user (a link named ``.gandy`` does not count); None outside every output."""
    p = Path(os.path.abspath(path)).parent
    uid = os.getuid() if hasattr(os, "getuid") else None
    while True:
        try:
            st = os.lstat(p / MARKER)
        except OSError:
            st = None
        if st is not None and (st.st_mode & 0o170000) == 0o100000 and (uid is None or st.st_uid == uid):
            return p
        if p.parent == p:
            return None
        p = p.parent


def marker_lines(root: Path) -> Optional[list[str]]:
    """The lines of ``root``'s marker (None where it cannot be read); never through a link."""
    try:
        fd = os.open(Path(root) / MARKER, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return None
    with os.fdopen(fd, "rb") as fh:
        data = fh.read(64 << 20)
    return data.decode("utf-8", "replace").splitlines()


def marker_info(lines: Optional[list[str]]) -> Optional[dict]:
    """The JSON object on a marker's first line (kind, version, ...), None where there is none."""
    if not lines:
        return None
    try:
        info = json.loads(lines[0])
    except ValueError:
        return None
    return info if isinstance(info, dict) and "kind" in info else None


def manifest(root: Path) -> Optional[set[str]]:
    """What gandy recorded writing in the output ``root``: relative POSIX paths of files, and of
    folders with a trailing ``/``. None for a marker without a manifest (an earlier gandy's) or
    no marker at all."""
    lines = marker_lines(root)
    info = marker_info(lines)
    if info is None or not info.get("manifest"):
        return None
    entries = set()
    for line in lines[1:]:
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # a line cut by a crash: the write it announced never happened
        if isinstance(entry, str):
            entries.add(entry)
    return entries


def relative(root: Path, path: Path) -> str:
    """``path`` relative to ``root`` as a POSIX string (both made absolute, links not resolved)."""
    return Path(os.path.abspath(path)).relative_to(os.path.abspath(root)).as_posix()


def recorded(rel: str, entries: set[str]) -> bool:
    """Whether the relative path ``rel`` is gandy's by the manifest ``entries``: recorded itself, a
    folder recorded or holding a recorded entry, or the temporary file of a recorded file."""
    if rel in entries or rel + "/" in entries:
        return True
    head, _, name = rel.rpartition("/")
    m = TEMP_SUFFIX.match(name)
    if m and (f"{head}/{m['name']}" if head else m["name"]) in entries:
        return True
    prefix = rel + "/"
    return any(e.startswith(prefix) for e in entries)


def record(path: Path, directory: bool = False) -> None:
    """Add ``path`` to the manifest of the output it lies in (nothing outside every output, and
    nothing for a marker without a manifest)."""
    path = Path(path)
    if path.name == MARKER:
        return
    root = owner(path)
    if root is None or manifest(root) is None:
        return
    _append(root, relative(root, path) + ("/" if directory else ""))


def _append(root: Path, entry: str) -> None:
    """Append ``entry`` (a relative path, ``/``-terminated for a folder) to ``root``'s manifest."""
    line = json.dumps(entry) + "\n"
    fd = os.open(root / MARKER, os.O_WRONLY | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0))
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def make_dir(path: Path) -> Path:
    """``mkdir -p`` that records the folders it makes in the manifest of the output around them."""
    path = Path(path)
    missing = []
    p = path
    while not p.exists() and p.parent != p:
        missing.append(p)
        p = p.parent
    path.mkdir(parents=True, exist_ok=True)
    for p in reversed(missing):
        record(p, directory=True)
    return path


# ----------------------------------------------------------------------------- writing
def write_atomic(path: Path, data: bytes) -> None:
    """Write a file through a temporary name in the same folder and an atomic rename (mode as the
    umask says). The rename replaces a symbolic link at ``path`` rather than writing through it.

    Inside a gandy output the file is recorded in its manifest first, and a file already there
    that gandy did not write is never replaced (ConfigError naming it). A failed write (a full
    disk, a read-only folder) raises OSError naming ``path``."""
    path = Path(path)
    root = owner(path) if path.name != MARKER else None
    if root is not None:
        entries = manifest(root)
        if entries is not None:
            rel = relative(root, path)
            if os.path.lexists(path) and not recorded(rel, entries):
                raise ConfigError(str(path), "exists and was not written by gandy; not overwriting it "
                                             "(move it out of the output)")
            if rel not in entries:  # a checkpoint rewritten every step is recorded once
                _append(root, rel)  # root and manifest known: no second walk up or read
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    except OSError as e:
        raise OSError(e.errno, e.strerror, str(path)) from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        follow_umask(Path(tmp), directory=False)
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.errno is not None and e.filename is None:
            raise OSError(e.errno, e.strerror or os.strerror(e.errno), str(path)) from None
        raise


__all__ = ["MARKER", "owner", "manifest", "record", "recorded", "relative", "make_dir", "write_atomic",
           "follow_umask", "umask"]
