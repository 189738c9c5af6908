"""The one user-facing error type, bad input named by the field it came from, and the words for a
data file that cannot be read."""

from __future__ import annotations

from pathlib import Path


class ConfigError(ValueError):
    """Bad user input. ``field`` is the dotted path of the offending key (may be empty); the CLI
    prints ``error: FIELD: message`` and exits with code 2."""

    def __init__(self, field: str, message: str):
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}" if field else message)


def unreadable_array(e: Exception, path: Path) -> str:
    """Why numpy could not load the array file ``path``, in words (never numpy's advice about
    pickles: gandy loads with ``allow_pickle=False`` and says so)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(6)
    except OSError as err:
        return err.strerror or str(err)
    if head != b"\x93NUMPY" and not head.startswith(b"PK"):
        return "not a .npy or .npz file (it does not begin with numpy's or zip's signature)"
    text = str(e)
    if "allow_pickle" in text or "pickled" in text or "Object arrays" in text:
        return "it holds Python objects (a pickled object array), which gandy never loads; save a numeric array"
    if "EOF" in text or "fully written" in text or "reshape" in text or "could only read" in text:
        return "the file is truncated (its data is shorter than its header says)"
    return f"the file is damaged ({type(e).__name__}: {text})"
