"""The one user-facing error type, bad input named by the field it came from, and the words for a
data file that cannot be read."""

from __future__ import annotations

import difflib
import unicodedata
from pathlib import Path

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_INVISIBLE = {"\u2028", "\u2029", "\u200e", "\u200f", *map(chr, range(0x202A, 0x202F)), *map(chr, range(0x2066, 0x206A))}
"""Characters that end a line or reorder the text a terminal shows, besides the control characters:
the Unicode line and paragraph separators and the bidirectional marks, embeddings and isolates."""


def _escape(ch: str) -> str:
    if ch in _NAMED:
        return _NAMED[ch]
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def one_line(text: str) -> str:
    """``text`` as one line of visible characters: newlines, tabs, escape sequences and every other
    control character (C0, DEL, C1), the Unicode line separators and bidirectional controls written
    as escapes (``\\n``, ``\\x1b``, ``\\u2028``), so a message naming a user's key or value can neither
    break the ``error: FIELD: message`` line nor drive the terminal."""
    text = str(text)
    if text.isprintable():  # the common case, checked in C (every escaped character is unprintable)
        return text
    return "".join(_escape(ch) if ch in _INVISIBLE or unicodedata.category(ch) == "Cc" else ch for ch in text)


CALLER = {"cli": False}
"""Who reads the messages: the ``gandy`` command sets ``cli`` while a command runs (:func:`option`)."""


def option(name: str) -> str:
    """An option as the caller writes it, for messages: ``--force`` on the command line,
    ``force=True`` from Python (``gandy.run``, ``run_sweep``, a study's options)."""
    return f"--{name}" if CALLER["cli"] else f"{name}=True"


def did_you_mean(word: str, choices) -> str:
    """``"; did you mean 'x'?"`` (or ``'x' or 'y'``) naming the ``choices`` closest to ``word`` (a
    misspelling: difflib's ratio >= 0.6, at most two), ``""`` where none is that close."""
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=2, cutoff=0.6)
    return f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


class ConfigError(ValueError):
    """Bad user input. ``field`` is the dotted path of the offending key (may be empty); the CLI
    prints ``error: FIELD: message`` and exits with code 2. Both are kept on one line with their
    control characters escaped (:func:`one_line`): they may quote a user's keys and values."""

    def __init__(self, field: str, message: str):
        self.field = one_line(field)
        self.message = one_line(message)
        super().__init__(f"{self.field}: {self.message}" if self.field else self.message)


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
