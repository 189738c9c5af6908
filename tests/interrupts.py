"""Interrupting a run in tests: count the steps the loop makes, and kill it at one."""

from __future__ import annotations

import gandy.runs.loop as loop


def count_steps(monkeypatch, die_at=None) -> dict:
    """Count the steps the loop makes (``calls["n"]``); raise KeyboardInterrupt at step ``die_at``
    (a kill). Set ``calls["n"]`` far below ``die_at`` to let a resumed run go on and count it."""
    real, calls = loop.advance, {"n": 0}

    def counted(sim, st, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == die_at:
            raise KeyboardInterrupt
        return real(sim, st, *args, **kwargs)

    monkeypatch.setattr(loop, "advance", counted)
    return calls
