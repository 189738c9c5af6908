"""Markdown tables of a study's summary (``summary.json``), for a reader or for docs/.

A table is built from the summary's numbers alone, so ``OUT/summary.md`` can be rebuilt from
``OUT/summary.json`` at any time and says nothing the JSON does not. Cells:

* a share (:func:`gandy.runs.summaries.fraction_interval`): ``k/n: 14.5 % [10.3, 20.0]``, its
  interval in percent;
* quartiles (:func:`gandy.runs.summaries.quartiles`): ``median [q25, q75]``;
* a comparison (:func:`gandy.runs.summaries.paired_comparison`, or the unpaired fallback of
  :func:`gandy.runs.summaries.compare_games`): one row per pair of games.

Missing numbers (no draw survived, too few draws for an interval) are shown as an em dash.
"""

from __future__ import annotations

from typing import Optional, Sequence

DASH = "—"


def title(name: str, quick: bool) -> str:
    """A summary's first line: ``# NAME``, said to be a smoke test for a ``--quick`` run."""
    return f"# {name}{' (--quick: a smoke test, its numbers say nothing)' if quick else ''}\n"


def number(value: Optional[float], spec: str) -> str:
    """``value`` formatted by the format ``spec`` (e.g. ``",.0f"``, ``".2f"``), or a dash for None."""
    return DASH if value is None else format(value, spec)


def share(fraction: dict) -> str:
    """A :func:`~gandy.runs.summaries.fraction_interval` as ``k/n: p % [lo, hi]`` (percent, one
    decimal); ``0/0`` where there were no draws."""
    k, n = fraction["k"], fraction["n"]
    if not n:
        return "0/0"
    return f"{k}/{n}: {100 * fraction['fraction']:.1f} % [{100 * fraction['lo']:.1f}, {100 * fraction['hi']:.1f}]"


def spread(q: dict, spec: str) -> str:
    """:func:`~gandy.runs.summaries.quartiles` as ``median [q25, q75]``, each by ``spec``; a dash
    where there were no values."""
    if q["median"] is None:
        return DASH
    return f"{format(q['median'], spec)} [{format(q['q25'], spec)}, {format(q['q75'], spec)}]"


def table(header: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[bool] = ()) -> str:
    """A Markdown table: ``header``, then ``rows`` (each as many cells as the header); column i
    right-aligned where ``right[i]`` (numbers), left otherwise. A ``|`` inside a cell is escaped."""
    width = len(header)
    if any(len(r) != width for r in rows):
        raise ValueError(f"every row needs {width} cells, got {sorted({len(r) for r in rows})}")
    align = [("---:" if i < len(right) and right[i] else "---") for i in range(width)]
    lines = [list(header), align, *[list(r) for r in rows]]
    return "\n".join("| " + " | ".join(str(c).replace("|", "\\|") for c in line) + " |" for line in lines) + "\n"


COMPARISON_HEADER = ("A vs B", "draws", "good: both / A only / B only / neither", "good share A − B [95 %]", "p",
                     "{metric}: A lower / B lower / ties", "sign p", "median {metric} ratio A/B [interval, coverage]")


def _p(p: Optional[float]) -> str:
    return number(p, ".2g")


def comparison_row(c: dict) -> list[str]:
    """One comparison of :func:`gandy.runs.summaries.compare_games` as the cells of
    :data:`COMPARISON_HEADER`: paired (McNemar's p on the good draws, the sign test and the median
    ratio on the scores) or, where the games ran different draws, unpaired (the good counts of
    each, Fisher's p, no score columns)."""
    g = c["good"]
    diff = f"{100 * g['difference']:+.1f} pp [{100 * g['lo']:+.1f}, {100 * g['hi']:+.1f}]" \
        if g["difference"] is not None else DASH
    if not c["paired"]:
        counts = f"unpaired: A {g['a']}/{g['n_a']}, B {g['b']}/{g['n_b']}"
        return [f"{c['a']} vs {c['b']}", DASH, counts, diff, f"{_p(g['p'])} (Fisher)", DASH, DASH, DASH]
    s = c["score"]
    ratio = DASH if s["ratio_median"] is None else (
        f"{s['ratio_median']:.2f} [{number(s['lo'], '.2f')}, {number(s['hi'], '.2f')}, "
        f"{100 * s['coverage']:.1f} %]" if s["coverage"] is not None else f"{s['ratio_median']:.2f}")
    return [f"{c['a']} vs {c['b']}", str(c["draws"]), f"{g['both']} / {g['a_only']} / {g['b_only']} / {g['neither']}",
            diff, f"{_p(g['p'])} (McNemar)", f"{s['a_better']} / {s['b_better']} / {s['ties']}", _p(s["p"]), ratio]


def comparisons_table(comparisons: Sequence[dict]) -> str:
    """The comparisons of one :func:`gandy.runs.summaries.compare_games` call as a table (its
    metric, e.g. fid or w1, named in the header); an empty string for none."""
    if not comparisons:
        return ""
    metric = comparisons[0]["metric"]
    header = [h.format(metric=metric) for h in COMPARISON_HEADER]
    return table(header, [comparison_row(c) for c in comparisons], right=(False, True, False, False, True, False, True))
