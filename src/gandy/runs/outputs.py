"""Output folders: what gandy may write, replace and delete, and who may write at a time.

An output folder is gandy's only where gandy wrote it. Every folder gandy creates carries the
marker ``.gandy`` with a manifest of what gandy wrote there (:mod:`gandy.core.atomic`):

* :func:`prepare_out` checks ``--out`` before any work: new or empty, or an earlier gandy output
  that ``replace`` (the CLI's ``--force``) may replace or ``resume`` may finish; never a file, a symbolic link, the current
  directory or an ancestor of it, the home directory, a filesystem root or mount point.
  Replacing refuses an output that holds files or folders gandy did not write (they are listed),
  a symbolic link gandy did not make, or a mount point anywhere inside.
* :func:`remove_output` deletes through folder descriptors, never following a link and never
  crossing onto another filesystem or a mount point, after checking the same again.
* :func:`output_lock`: one writer per output. An exclusive ``flock`` on a lock file kept for the
  output's real path in a per-user folder of the temporary directory (so no file appears beside
  the user's folders, and a not-yet-created output is locked too); a second process is refused
  with the holder's PID. A lock whose process died is released by the kernel: nothing is stale.
"""

from __future__ import annotations

import atexit
import fcntl
import hashlib
import json
import os
import shutil
import stat
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

from gandy._version import __version__
from gandy.core.atomic import (
    MARKER,
    TEMP_SUFFIX,
    follow_umask,
    manifest,
    marker_info,
    marker_lines,
    record,
    recorded,
    write_atomic,
)
from gandy.core.errors import ConfigError, option
from gandy.runs.budget import existing_ancestor, require_disk

RESUMABLE = ("sweep", "experiment", "boundary")
"""Kinds of output that ``--resume`` finishes."""

LEGACY_SUFFIXES = (".parquet", ".json", ".yaml", ".npz", ".npy", ".png", ".pt", ".html", ".csv")
"""What an output of an earlier gandy (a marker without a manifest) may hold and still be replaced:
gandy's own kinds of file. Anything else there (notes, notebooks) is a user's and stops a replace."""

SHOWN = 5
"""Foreign entries named in a refusal (then a count)."""


# ----------------------------------------------------------------------------- the marker
def write_marker(directory: Path, kind: str, manifest: bool = True) -> None:
    """Mark ``directory`` as a gandy output of ``kind`` (run, sweep, damping, experiment, demo), with
    an empty manifest (``manifest=False``: none, for an earlier gandy's output adopted as it is,
    whose files are then judged by their kind)."""
    info = {"kind": kind, "gandy_version": __version__, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    if manifest:
        info["manifest"] = 1
    write_atomic(Path(directory) / MARKER, (json.dumps(info) + "\n").encode())


def read_marker(directory: Path) -> Optional[dict]:
    """The marker of a gandy output directory (its first line), or None where there is none, it
    is unreadable or it is a link."""
    return marker_info(marker_lines(directory))


# ----------------------------------------------------------------------------- what is gandy's
def mount_points_under(path: Path) -> list[str]:
    """Mount points strictly inside ``path`` (its real path), from /proc/self/mountinfo ([] where
    that cannot be read). Bind mounts of the same filesystem show here and nowhere else."""
    real = os.path.realpath(path)
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return []
    found = []
    for line in lines:
        parts = line.split(" ")
        if len(parts) > 4:
            point = parts[4].encode().decode("unicode_escape")  # \040 for a space, \011 for a tab
            if point.startswith(real.rstrip("/") + "/"):
                found.append(point)
    return found


def foreign_entries(root: Path) -> list[str]:
    """Paths inside the gandy output ``root`` (relative, POSIX) that gandy did not write: files and
    folders absent from the manifest, symbolic links, anything on another filesystem. A folder
    with a marker of its own is a nested output and is judged by its own manifest. An output of an
    earlier gandy (no manifest) may hold only gandy's kinds of file (LEGACY_SUFFIXES). Raises
    ConfigError("out") where a mount point lies inside."""
    root = Path(root)
    mounts = mount_points_under(root)
    if mounts:
        raise ConfigError("out", f"{root} has a mount point inside ({mounts[0]}); gandy never deletes "
                                 f"through one: unmount it or move it out first")
    dev = os.lstat(root).st_dev
    found: list[str] = []

    def walk(folder: Path, entries: Optional[set[str]], base: Path) -> None:
        for entry in sorted(os.scandir(folder), key=lambda e: e.name):
            path = Path(entry.path)
            rel = path.relative_to(base).as_posix()
            shown = path.relative_to(root).as_posix()
            if entry.name == MARKER and folder == base:
                continue
            st = entry.stat(follow_symlinks=False)
            if stat.S_ISLNK(st.st_mode):
                found.append(shown)  # gandy never makes links
                continue
            if st.st_dev != dev:
                raise ConfigError("out", f"{root}/{shown} lies on another filesystem; gandy never deletes "
                                         f"through it: move it out first")
            if stat.S_ISDIR(st.st_mode):
                if read_marker(path) is not None:  # a nested output: its own manifest says
                    walk(path, manifest(path), path)
                elif entries is None or recorded(rel, entries):
                    walk(path, entries, base)
                else:
                    found.append(shown + "/")
            elif entries is None:
                if not stat.S_ISREG(st.st_mode) or not _legacy_file(entry.name):
                    found.append(shown)
            elif not recorded(rel, entries):
                found.append(shown)

    walk(root, manifest(root), root)
    return found


def _legacy_file(name: str) -> bool:
    """Whether a file named ``name`` in an earlier gandy's output (no manifest) is of a kind gandy
    writes: a LEGACY_SUFFIXES file, or the temporary file of one."""
    m = TEMP_SUFFIX.match(name)
    return Path(m["name"] if m else name).suffix in LEGACY_SUFFIXES


def refuse_foreign(out: Path, action: str) -> None:
    """ConfigError("out") listing what gandy did not write in the gandy output ``out``, if anything."""
    foreign = foreign_entries(out)
    if foreign:
        more = f" and {len(foreign) - SHOWN} more" if len(foreign) > SHOWN else ""
        raise ConfigError("out", f"{out} holds files gandy did not write ({', '.join(foreign[:SHOWN])}{more}); "
                                 f"gandy does not {action} it: move them out or choose another --out")


# ----------------------------------------------------------------------------- checks before work
def _protected(path: Path) -> Optional[str]:
    """Why ``path`` must never be replaced (None if it may be): the current directory or one of its
    ancestors, the home directory, a filesystem root or a mount point."""
    p = Path(os.path.abspath(path))
    real = p.resolve()
    cwd = Path.cwd().resolve()
    if real == cwd:
        return "is the current directory"
    if real in cwd.parents:
        return "holds the current directory"
    if real == Path.home().resolve():
        return "is the home directory"
    if real == Path(real.anchor) or os.path.ismount(real):
        return "is a filesystem root or mount point"
    return None


def check_writable(out: Path, need_parts: Optional[dict] = None) -> None:
    """Raise ConfigError("out", ...) unless ``out`` can be created (its nearest existing ancestor is a
    folder gandy can write to, probed with a temporary folder it removes again), and, with
    ``need_parts`` (bytes by the config field that drives them: :func:`gandy.runs.budget.output_parts`),
    unless the filesystem has their sum free (:func:`gandy.runs.budget.require_disk`, which names the
    field behind the largest part)."""
    anc = existing_ancestor(out)
    if not anc.is_dir():
        raise ConfigError("out", f"cannot create {out}: {anc} is a file, not a folder")
    try:
        probe = tempfile.mkdtemp(dir=anc, prefix=".gandy-probe-")
        os.rmdir(probe)
    except OSError as e:
        raise ConfigError("out", f"cannot write to {anc}: {e.strerror or e}") from None
    if need_parts:
        require_disk(out, need_parts)


def prepare_out(out: Path, kind: str, replace: bool = False, resume: bool = False, need_bytes: int = 0,
                need_parts: Optional[dict] = None) -> str:
    """Check ``out`` before any work and take its lock (:func:`acquire`): returns ``"new"`` (absent
    or an empty folder), ``"replace"`` (a gandy output that ``replace`` allows to be replaced) or
    ``"resume"`` (a gandy output of this kind to finish). Everything else raises
    ConfigError("out", ...), and nothing is touched:

    * a path that is a file or a symbolic link, the current directory or an ancestor of it, the
      home directory, a filesystem root or mount point;
    * an existing non-empty folder without ``replace``/``resume``;
    * ``replace`` or ``resume`` on a non-empty folder that carries no gandy marker (``.gandy``),
      or ``resume`` on a gandy output of another kind (the caller checks the config matches);
    * ``replace`` on a gandy output holding files gandy did not write, or a mount point;
    * an output another process is writing;
    * a location that cannot be written or lacks free disk for ``need_parts`` (bytes by the field
      that drives them, checked after everything above) or ``need_bytes`` (counted as ``out``).
    """
    out = Path(out)
    if str(out).strip() in ("", "."):
        raise ConfigError("out", f"{str(out)!r} names the current directory; give a new folder for the output")
    if out.is_symlink():
        raise ConfigError("out", f"{out} is a symbolic link (to {os.readlink(out)}); gandy follows no link "
                                 f"for its output: give the folder itself")
    if out.exists():
        if not out.is_dir():
            raise ConfigError("out", f"{out} exists and is not a folder; gandy writes a folder there")
        why = _protected(out)
        if why:
            raise ConfigError("out", f"{out} {why}; gandy writes its output only into a new or empty folder")
        empty = not any(out.iterdir())
        marker = read_marker(out)
        if empty:
            state = "new"
        elif resume:
            if marker is None:
                raise ConfigError("out", f"{out} is not a gandy output (no {MARKER} marker); {option('resume')} finishes only "
                                         f"what gandy started there")
            if marker["kind"] != kind:
                raise ConfigError("out", f"{out} holds a gandy {marker['kind']}, not a {kind}; {option('resume')} needs the same run")
            state = "resume"
        elif replace:
            if marker is None:
                raise ConfigError("out", f"{out} was not written by gandy (no {MARKER} marker); gandy replaces only "
                                         f"its own outputs: choose another --out or remove it yourself")
            refuse_foreign(out, "replace")
            state = "replace"
        else:
            hint = f"{option('force')} replaces a gandy output" + (f", {option('resume')} finishes it" if kind in RESUMABLE else "")
            raise ConfigError("out", f"{out} already exists ({hint})")
    else:
        state = "new"
    need = dict(need_parts or {})
    if need_bytes:
        need["out"] = need.get("out", 0) + need_bytes
    check_writable(out, need)
    acquire(out)
    return state


def open_output(out: Path, kind: str, replace: bool = False, resume: bool = False) -> str:
    """:func:`prepare_out`, then make ``out`` ready to be filled in place: an old gandy output is
    removed when ``replace`` is set, and the folder exists with the marker of ``kind``. For
    outputs written piece by piece (experiments, the demo); returns prepare_out's state."""
    out = Path(out)
    state = prepare_out(out, kind, replace=replace, resume=resume)
    if state == "replace":
        remove_output(out)
    out.mkdir(parents=True, exist_ok=True)
    if read_marker(out) is None:
        write_marker(out, kind)
    return state


# ----------------------------------------------------------------------------- deleting
def remove_output(path: Path) -> None:
    """Delete a gandy output folder, after checking again that it carries the marker, is not a
    protected location and holds nothing gandy did not write (the one place in gandy that deletes
    a folder it did not just create). Deletes through folder descriptors: no link is followed and
    no other filesystem is entered."""
    path = Path(path)
    if path.is_symlink() or _protected(path) or read_marker(path) is None:
        raise ConfigError("out", f"refusing to delete {path}: not a gandy output")
    refuse_foreign(path, "delete")
    _delete_tree(path)


def _delete_tree(path: Path) -> None:
    """``rm -r path`` through descriptors, refusing (before it deletes that part) any folder on
    another device or at a mount point."""
    flags = os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_NOFOLLOW", 0)
    mounts = set(mount_points_under(path))
    fd = os.open(path, flags)
    try:
        dev = os.fstat(fd).st_dev
        _empty_folder(fd, dev, os.path.realpath(path), mounts, flags)
    finally:
        os.close(fd)
    os.rmdir(path)


def _empty_folder(fd: int, dev: int, where: str, mounts: set[str], flags: int) -> None:
    for entry in list(os.scandir(fd)):
        if entry.is_dir(follow_symlinks=False):
            sub_path = f"{where}/{entry.name}"
            sub = os.open(entry.name, flags, dir_fd=fd)
            try:
                if os.fstat(sub).st_dev != dev or sub_path in mounts:
                    raise ConfigError("out", f"{sub_path} is a mount point or another filesystem; not deleting "
                                             f"through it")
                _empty_folder(sub, dev, sub_path, mounts, flags)
            finally:
                os.close(sub)
            os.rmdir(entry.name, dir_fd=fd)
        else:
            os.unlink(entry.name, dir_fd=fd)


@contextmanager
def atomic_dir(out: Path, kind: str):
    """Yield a temporary sibling directory of ``out`` to fill; on success it takes the place of
    ``out`` (an old gandy output there is moved aside, then deleted by :func:`remove_output`; an
    empty folder is simply replaced), on any error it is deleted, so ``out`` is never half written.
    The new directory carries the marker of ``kind``, with everything in it in its manifest.
    Callers check ``out`` first with :func:`prepare_out`."""
    out = Path(out)
    if out.is_symlink():
        raise ConfigError("out", f"{out} is a symbolic link; gandy follows no link for its output")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
    follow_umask(tmp, directory=True)
    old = None
    try:
        write_marker(tmp, kind)
        yield tmp
        _record_tree(tmp)
        if out.exists() and any(out.iterdir()):
            if read_marker(out) is None:
                raise ConfigError("out", f"{out} was not written by gandy (no {MARKER} marker); not replacing it")
            refuse_foreign(out, "replace")
            old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.old-"))
            os.replace(out, old / out.name)
            try:
                os.replace(tmp, out)
            except BaseException:
                os.replace(old / out.name, out)  # put the old output back
                raise
        else:
            os.replace(tmp, out)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)  # gandy's own fresh folder (rmtree follows no link)
        if isinstance(e, OSError) and isinstance(e.filename, str) and e.filename.startswith(str(tmp)):
            # name the file as it would have been in the output, not in the temporary folder
            raise OSError(e.errno, e.strerror, str(out) + e.filename[len(str(tmp)):]) from None
        raise
    finally:
        if old is not None:
            if (old / out.name).exists():  # the new output is in place: delete the old one
                remove_output(old / out.name)
            os.rmdir(old)


def _record_tree(folder: Path) -> None:
    """Put every file and folder below ``folder`` (which gandy just created) in its manifest."""
    entries = manifest(folder) or set()
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = p.relative_to(folder).as_posix()
            if name != MARKER and not recorded(rel, entries):
                record(p, directory=name in dirnames)


# ----------------------------------------------------------------------------- one writer
_HELD: dict[str, list] = {}
"""Locks this process holds: real output path -> [descriptor, lock file, depth]."""


def lock_file(out: Path) -> Path:
    """The lock file of the output ``out``: named by a hash of its real path (links in its parents
    resolved, so two names of one folder share one lock), in a per-user folder of the temporary
    directory."""
    real = str(Path(os.path.abspath(out)).resolve())
    uid = os.getuid() if hasattr(os, "getuid") else 0
    folder = Path(tempfile.gettempdir()) / f"gandy-locks-{uid}"
    folder.mkdir(mode=0o700, exist_ok=True)
    return folder / (hashlib.sha256(real.encode()).hexdigest()[:32] + ".lock")


def acquire(out: Path) -> None:
    """Take the exclusive lock of ``out`` for this process (again: a count), or raise
    ConfigError("out", "... is in use by process PID"). Released by :func:`release` or at exit."""
    key = str(Path(os.path.abspath(out)).resolve())
    if key in _HELD:
        _HELD[key][2] += 1
        return
    path = lock_file(out)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode("utf-8", "replace").split("\n")
            os.close(fd)
            pid = holder[0].strip() or "?"
            what = f" ({holder[1].strip()})" if len(holder) > 1 and holder[1].strip() else ""
            raise ConfigError("out", f"{out} is in use by process {pid}{what}; wait for it to finish "
                                     f"or choose another --out") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the holder removed the file as we opened it: take the new one
    command = " ".join(["gandy", *sys.argv[1:]])[:200].replace("\n", " ")
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n{command}\n{key}\n".encode(), 0)
    _HELD[key] = [fd, path, 1]


def lock_holder(out: Path) -> Optional[int]:
    """The process id of the live process that holds ``out``'s lock (a gandy command writing it), or
    None: no lock file, or its process has ended (a killed command leaves its lock file behind).
    Read without taking the lock, so that looking never blocks a command about to start."""
    try:
        first = lock_file(out).read_text(encoding="utf-8", errors="replace").split("\n", 1)[0]
        pid = int(first)
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:  # alive, another user's
        pass
    return pid


def release(out: Path) -> None:
    """Give back one hold of ``out``'s lock; the last removes the lock file and unlocks it."""
    key = str(Path(os.path.abspath(out)).resolve())
    held = _HELD.get(key)
    if held is None:
        return
    held[2] -= 1
    if held[2] > 0:
        return
    del _HELD[key]
    fd, path, _ = held
    try:
        os.unlink(path)
    except OSError:
        pass
    os.close(fd)


@atexit.register
def _release_all() -> None:
    for key in list(_HELD):
        _HELD[key][2] = 1
        release(Path(key))


@contextmanager
def scoped_locks() -> Iterator[None]:
    """Every output lock taken inside the block (by :func:`prepare_out` or :func:`acquire`) is given
    back when it ends; locks held before it stay held. Each CLI command and each ``gandy.run``
    runs inside one, so a long-lived Python session holds no lock past the call that took it."""
    before = set(_HELD)
    try:
        yield
    finally:
        for key in list(_HELD):
            if key not in before:
                _HELD[key][2] = 1
                release(Path(key))


@contextmanager
def output_lock(out: Optional[Path]) -> Iterator[None]:
    """Hold ``out``'s lock for the block (None: lock nothing more), and give back, at its end,
    every lock taken inside it (:func:`scoped_locks`)."""
    with scoped_locks():
        if out is not None:
            acquire(Path(out))
        yield


__all__ = ["MARKER", "RESUMABLE", "write_marker", "read_marker", "foreign_entries", "prepare_out", "open_output",
           "remove_output", "atomic_dir", "check_writable", "output_lock", "scoped_locks", "acquire", "release", "lock_file",
           "mount_points_under"]
