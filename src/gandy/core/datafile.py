"""Checks on a user's data file made before it is opened or read: it must be a regular file (a
FIFO would block the reader forever, a device such as /dev/zero never ends, a folder is not an
array), and an array's header must promise no more than memory can hold.

:func:`check_data_file` looks at the path with ``os.stat`` only (it never opens it);
:func:`npy_header` reads a ``.npy`` header (or an ``.npz`` member's) without the data, and
:func:`check_array_header` refuses an array whose bytes cannot be held. Every refusal is one
:class:`gandy.core.errors.ConfigError` naming the config field the path came from.
"""

from __future__ import annotations

import math
import os
import stat
import zipfile
from pathlib import Path
from typing import BinaryIO, Callable, Optional

import numpy as np

from gandy.core.errors import ConfigError
from gandy.core.resources import host_memory, human


def _kind(mode: int) -> str:
    """What a non-regular ``st_mode`` is, in words."""
    if stat.S_ISDIR(mode):
        return "is a folder"
    if stat.S_ISFIFO(mode):
        return "is a FIFO (named pipe), which gandy does not read from"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "is a device, not a regular file"
    if stat.S_ISSOCK(mode):
        return "is a socket, not a regular file"
    return "is not a regular file"


def check_data_file(path, field: str, folder_ok: bool = False, expected: str = "a .npy or .npz file") -> Path:
    """``path`` (``~`` expanded) as a Path, once ``os.stat`` shows it is a regular file (or, with
    ``folder_ok``, a folder); otherwise a ConfigError naming ``field`` that says what it is (missing,
    a folder, a FIFO, a device, a socket) and what was ``expected``. It is never opened here, and a
    symbolic link is judged by what it points to."""
    p = Path(path).expanduser()
    try:
        st = os.stat(p)
    except FileNotFoundError:
        raise ConfigError(field, f"no such file{' or folder' if folder_ok else ''}: {p}") from None
    except OSError as e:  # a parent that is a file, a loop of links, no permission to look
        raise ConfigError(field, f"cannot look at {p}: {e.strerror or e}") from None
    if stat.S_ISREG(st.st_mode) or (folder_ok and stat.S_ISDIR(st.st_mode)):
        return p
    raise ConfigError(field, f"{p} {_kind(st.st_mode)}; expected {expected}")


def npy_header(fh: BinaryIO) -> tuple[tuple[int, ...], np.dtype, int]:
    """``(shape, dtype, offset)`` from the ``.npy`` header at the start of ``fh``, whose data is not
    read; ``offset``: the header's length in bytes. Raises ValueError for a stream that is not a
    .npy file."""
    version = np.lib.format.read_magic(fh)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
    else:
        shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
    return tuple(int(s) for s in shape), np.dtype(dtype), fh.tell()


def file_header(p: Path, key: Optional[str] = None) -> Optional[tuple[tuple[int, ...], np.dtype, int]]:
    """``(shape, dtype, data bytes present)`` of the .npy file ``p`` or of member ``key`` of the .npz
    archive ``p``, read from the header alone; None where the file is no readable array (the loader
    then says why)."""
    try:
        if zipfile.is_zipfile(p):
            with zipfile.ZipFile(p) as z:
                name = f"{key}.npy"
                if key is None or name not in z.namelist():
                    return None
                with z.open(name) as fh:
                    shape, dtype, offset = npy_header(fh)
                return shape, dtype, z.getinfo(name).file_size - offset
        with open(p, "rb") as fh:
            shape, dtype, offset = npy_header(fh)
        return shape, dtype, p.stat().st_size - offset
    except Exception:  # not numpy's or zip's format, a damaged header
        return None


ARRAY_COPIES_PER_VALUE = 5
"""Bytes per value that reading an array needs beside the array itself: a float32 copy of the
points and the one-byte mask of the finiteness check."""


def check_array_header(p: Path, field: str, key: Optional[str] = None,
                       check_shape: Optional[Callable[[tuple], None]] = None, available: Optional[int] = None) -> None:
    """Refuse (ConfigError naming ``field``) an array file ``p`` (member ``key`` of an .npz) whose
    header promises more bytes than the host can hold (:func:`gandy.core.resources.host_memory`, or
    ``available``), gives a shape ``check_shape(shape)`` refuses (it raises ConfigError), or promises
    more bytes than the file holds, in that order and before any of its data is read. A file whose
    header cannot be read, or that holds Python objects, passes: the loader says what is wrong with it."""
    head = file_header(p, key)
    if head is None or head[1].hasobject:  # pickled objects: the loader refuses them in its own words
        return
    shape, dtype, present = head
    count = math.prod(shape)
    nbytes = count * dtype.itemsize
    need = nbytes + ARRAY_COPIES_PER_VALUE * count
    have, source = (available, "given") if available is not None else host_memory()
    if need > have:
        raise ConfigError(field, f"{p} holds a {shape} {dtype} array of {human(nbytes)}; reading it needs about "
                                 f"{human(need)} of memory but {human(have)} is available ({source})")
    if check_shape is not None:
        check_shape(shape)
    if present < nbytes:
        raise ConfigError(field, f"cannot read {p}: the file is truncated (its data is shorter than its header says: "
                                 f"{human(max(present, 0))} of the {human(nbytes)} of a {shape} {dtype} array)")


__all__ = ["check_data_file", "npy_header", "file_header", "check_array_header"]
