"""docs/reproduce.md: every figure and claim of the two papers that gandy addresses -> the command
that reproduces it -> its time on this machine (measured here, never typed) -> its output -> how
well it matches, read from the output.

    python scripts/reproduce.py --run NAME [NAME ...]   # run entries, time them, record them
    python scripts/reproduce.py --run all               # every entry (hours: the MNIST ones are GPU-sized)
    python scripts/reproduce.py --write                 # docs/reproduce.md and README's numbers from the record
    python scripts/reproduce.py --check                 # exit 1 if docs/reproduce.md or README is stale

Each run is recorded in docs/reproduce.json (command, seconds, date, machine, cores, torch
threads, the load average before and after, exit status, and the verdict read from its output);
the outputs go to runs/reproduce/NAME (never committed). An entry not yet run says so in the table.
The README's test count and time come from the ``tests`` entry (the README's test command).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

ROOT = Path(__file__).resolve().parents[1]
RECORD = ROOT / "docs" / "reproduce.json"
DOC = ROOT / "docs" / "reproduce.md"
README = ROOT / "README.md"
OUT = Path(os.environ.get("GANDY_REPRODUCE_OUT", ROOT / "runs" / "reproduce"))


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def wilson(k: int, n: int) -> str:
    """k/n as a percentage with its Wilson 95 % interval."""
    from gandy.runs.summaries import wilson_interval

    lo, hi = wilson_interval(k, n)
    return f"{k}/{n} = {100 * k / n:.0f} % [{100 * lo:.0f}, {100 * hi:.0f}]"


# ----------------------------------------------------------------------------- verdicts
# Each reads an entry's output folder and says, in one line, what it measured against the paper's
# claim, with n and an interval where the output has one.

def verdict_demo(out: Path) -> str:
    runs = []
    for name in ("small_ratio", "large_ratio"):
        s = read_json(out / name / "summary.json")
        runs.append(f"g2/g1 {s['kernel']['ratio']:g}: " + ", ".join(sorted(set(s["phases"].values())))
                    + f" ({len(s['phases'])} seeds)")
    counts = read_json(out / "phase" / "summary.json")["phase_counts"]
    grid = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()) if v)
    return (f"{'; '.join(runs)} (the paper: split at small g2/g1, collapse at large); phase grid of "
            f"{sum(counts.values())} members: {grid}")


def verdict_collapse(out: Path) -> str:
    s = read_json(out / "summary.json")
    parts = []
    for critic, c in s["critics"].items():
        rows = [r for r in c["boundary"] if r.get("x50") is not None and r["x50"] == r["x50"]]  # finite x50
        if not rows:
            parts.append(f"{critic}: no row crossed half collapsed")
            continue
        lo, hi = rows[0], rows[-1]
        ends = [f"{r['x50']:.3g} [{r['lo']:.3g}, {r['hi']:.3g}] at critic lr {r['optim.critic.lr']:.3g}" for r in (lo, hi)]
        parts.append(f"{critic} critic: g2/g1 at half collapsed {ends[0]}, {ends[1]} ({len(rows)} of "
                     f"{len(c['boundary'])} rows crossed; {lo['seeds']} seeds x {lo['points']} g2/g1 points a row)")
    return "; ".join(parts) + " (95 % intervals)"


def verdict_bridge(out: Path) -> str:
    s = read_json(out / "summary.json")
    rows = [r for r in s["summary"] if r["eta"] == min(r["eta"] for r in s["summary"])]
    ntk = {r["width"]: r["mean_discrepancy"] for r in rows if r["side"] == "empirical_ntk"}
    two = {r["width"]: r["mean_discrepancy"] for r in rows if r["side"] == "two_number"}
    widths = sorted(ntk)
    return (f"network vs particles at eta {rows[0]['eta']:g}, time-averaged discrepancy by width "
            f"{'/'.join(map(str, widths))}: empirical NTK {' / '.join(f'{ntk[w]:.3f}' for w in widths)}, "
            f"two numbers {' / '.join(f'{two[w]:.3f}' for w in widths)} (the NTK side shrinks with width, "
            f"as the effective model predicts)")


def verdict_universality(out: Path) -> str:
    s = read_json(out / "summary.json")
    parts = []
    for act in dict.fromkeys(r["activation"] for r in s["rows"]):
        rows = [r for r in s["rows"] if r["activation"] == act]
        dz = max(r["latent_dim"] for r in rows)
        big = [r for r in rows if r["latent_dim"] == dz]
        lo, hi = min(big, key=lambda r: r["width"]), max(big, key=lambda r: r["width"])
        parts.append(f"{act}: at the largest d_z, |mean diagonal / g1 - 1| (rms over {s['grid']['networks']} networks) "
                     f"{lo['diag_rel_error']:.3f} at width {lo['width']} -> {hi['diag_rel_error']:.3f} at {hi['width']}, "
                     f"off-diagonal vs g2 {lo['offdiag_rel_error']:.3f} -> {hi['offdiag_rel_error']:.3f}")
    return "; ".join(parts)


def verdict_frequency(out: Path) -> str:
    s = read_json(out / "summary.json")
    parts = [f"{e['critic']}/{e['family']} {e['exponent']:.2f} ({e['fitted']} of {e['members']} fits reached)"
             for e in s["exponents"]]
    return ("median slope of log steps-to-fit against log k (> 0: higher frequencies are fitted later, the "
            "frequency principle): " + ", ".join(parts))


def verdict_critic_types(out: Path) -> str:
    s = read_json(out / "summary.json")
    rows = [r for r in s["boundary"] if r.get("x50") is not None and r["x50"] == r["x50"]]
    parts = {}
    for r in rows:
        parts.setdefault(f"{r['target']}/{r['critic']}", []).append(r["x50"])
    return "g2/g1 at half collapsed, range over critic lr rows: " + ", ".join(
        f"{k} {min(v):.3g}-{max(v):.3g}" for k, v in parts.items())


def verdict_damping(out: Path) -> str:
    s = read_json(out / "summary.json")
    parts = []
    for name, r in s["runs"].items():
        q = r["ratio"]
        if q.get("mean") is None:
            parts.append(f"{name}: no linear theory to compare")
            continue
        parts.append(f"{name} {q['mean']:.2f} [{q['lo']:.2f}, {q['hi']:.2f}]" if q.get("lo") is not None
                     else f"{name} {q['mean']:.2f}")
    return (f"measured best penalty weight / the linear theory's critical damping (geometric mean over "
            f"{len(s['seeds'])} seeds, 95 % interval; 1 = the theory): " + ", ".join(parts))


def verdict_saturation(out: Path) -> str:
    cells = read_json(out / "summary.json")["cells"]
    seen, parts = set(), []
    for c in cells:
        key = (c["critic"], c["generator"])
        if key in seen:
            continue
        seen.add(key)
        lo, hi = c.get("mm_over_ns_first_force_lo"), c.get("mm_over_ns_first_force_hi")
        iv = f" [{lo:.2g}, {hi:.2g}]" if lo is not None and hi is not None and lo == lo else ""
        parts.append(f"{c['critic']} / {c['generator']}: {c['mm_over_ns_first_force']:.2g}{iv}")
    return ("mm's first generator gradient / ns's (median over seeds, 95 % interval; << 1: mm saturates): "
            + "; ".join(parts))


def verdict_penalties(out: Path) -> str:
    cells = read_json(out / "summary.json")["cells"]
    parts = []
    for target in dict.fromkeys(c["target"] for c in cells):
        for game in dict.fromkeys(c["game"] for c in cells if c["target"] == target):
            mine = [c for c in cells if c["target"] == target and c["game"] == game]
            reached = sum(c["reached"] for c in mine)
            seeds = sum(c["seeds"] for c in mine)
            means = [c["final_w1_mean"] for c in mine if c.get("final_w1_mean") == c.get("final_w1_mean")]
            best = f" (best cell {min(means):.2f})" if means else ""
            parts.append(f"{target}/{game} {reached}/{seeds}{best}")
    return ("runs reaching W1 < 0.1, of all grid points and seeds, and in brackets the lowest mean final W1 "
            "of a cell (3 seeds): " + ", ".join(parts))


def _shares(games: dict, key: str) -> str:
    """``game k/n [lo, hi] %`` of each game's ``key`` share (a fraction_interval)."""
    return ", ".join(f"{g} {v[key]['k']}/{v[key]['n']} [{100 * v[key]['lo']:.0f}, {100 * v[key]['hi']:.0f}] %"
                     for g, v in games.items())


def _paired(comparisons: list) -> str:
    """``A − B +d pp [lo, hi] (McNemar p)`` of each paired comparison (summary.json's)."""
    return ", ".join(f"{c['a']} − {c['b']} {100 * c['good']['difference']:+.1f} pp [{100 * c['good']['lo']:+.1f}, "
                     f"{100 * c['good']['hi']:+.1f}] (p {c['good']['p']:.2g})" for c in comparisons if c["paired"])


def verdict_robustness_2d(out: Path) -> str:
    s = read_json(out / "summary.json")
    parts = []
    for target, games in s["targets"].items():
        paired = _paired(s.get("comparisons", {}).get(target, []))
        parts.append(f"{target}: draws good (Wilson 95 %): {_shares(games, 'good')}"
                     + (f"; good share on the same draws (Newcombe 95 %): {paired}" if paired else ""))
    return "; ".join(parts)


def verdict_robustness(out: Path) -> str:
    s = read_json(out / "summary.json")
    paired = _paired(s.get("comparisons", []))
    return (f"draws good (FID <= {s['threshold']['fid']:g}, >= {s['threshold']['modes_covered']} modes; Wilson 95 %): "
            f"{_shares(s['games'], 'good_draws')}" + (f"; on the same draws (Newcombe 95 %): {paired}" if paired else ""))


VERDICTS: dict[str, Callable[[Path], str]] = {"demo": verdict_demo, "collapse-1d": verdict_collapse,
                                               "robustness-2d": verdict_robustness_2d, "robustness": verdict_robustness,
                                               "bridge": verdict_bridge,
                                               "kernel-universality": verdict_universality,
                                               "frequency": verdict_frequency, "critic-types": verdict_critic_types,
                                               "damping": verdict_damping, "saturation": verdict_saturation,
                                               "penalties": verdict_penalties}


# ----------------------------------------------------------------------------- entries
@dataclass(frozen=True)
class Entry:
    name: str
    paper: str           # "Durr et al." or "Fedus et al." (or "gandy")
    claim: str           # the figure or claim, in the paper's words
    args: tuple          # the command after `gandy` (the output folder is appended)
    docs: str            # the docs section holding the comparison
    output: bool = True  # whether the command takes --out
    force: bool = True   # whether it takes --force (to replace an earlier output)
    note: str = ""       # said beside the time (e.g. "GPU-sized: run on a lent GPU")
    extra: dict = field(default_factory=dict)


DURR, FEDUS = "Durr et al. (PRX 2023)", "Fedus et al. (ICLR 2018)"
ENTRIES = [
    Entry("demo", "gandy", "the default job: a 1-D collapse diagram in a browser", ("demo",), "../README.md#quickstart",
          force=False),
    Entry("collapse-1d", DURR, "Fig. 3–4: mode collapse as g2/g1 grows, over critic lr; ReLU vs tanh critic",
          ("run", "collapse-1d"), "phases.md"),
    Entry("critic-types", DURR, "collapse boundaries per critic type (1-D two modes, 2-D ring)",
          ("run", "critic-types"), "phases.md"),
    Entry("frequency", DURR, "Sec. V: the frequency principle (a critic fits low frequencies first)",
          ("run", "frequency"), "phases.md"),
    Entry("damping", DURR, "Sec. VI: critical damping by gradient penalties (Sobolev, WGAN-GP, R1)",
          ("run", "damping"), "damping.md"),
    Entry("kernel-universality", DURR, "App.: the generator's NTK tends to two numbers (g1, g2) with width",
          ("run", "kernel-universality"), "ntk.md"),
    Entry("bridge", DURR, "the effective model follows a real generator (empirical NTK, two numbers)",
          ("run", "bridge"), "bridge.md"),
    Entry("mnist-collapse", DURR, "Fig. 6: MNIST-100 phase diagram (100 particles, 784-D)", ("run", "mnist-collapse"),
          "bridge.md", note="GPU-sized (676 points x 1,000 steps)"),
    Entry("mnist-ablation", DURR, "the authors' code conventions one at a time (force, norm, phase per variant)",
          ("run", "mnist-ablation"), "bridge.md"),
    Entry("mnist-slices", DURR, "MNIST-100 along the paper's two slices, sample panels", ("run", "mnist-slices"),
          "bridge.md"),
    Entry("mnist-calibrate", DURR, "MNIST-100 scored against the authors' published clouds",
          ("run", "mnist-calibrate"), "bridge.md"),
    Entry("many-paths", FEDUS, "Sec. 3: every game on parallel lines and ring8; learning while JS gives no gradient",
          ("run", "many-paths"), "lab.md"),
    Entry("saturation", FEDUS, "minimax's gradient vanishes for a confident critic; ns does not",
          ("run", "saturation"), "lab.md"),
    Entry("penalties", FEDUS, "Sec. 4: gradient penalties help the non-saturating game", ("run", "penalties"), "lab.md"),
    Entry("robustness-2d", FEDUS, "Sec. 4 robustness across hyperparameter draws, 2-D targets, 200 draws a game",
          ("run", "robustness-2d"), "lab.md#how-robust-is-each-game-gandy-run-robustness-2d---quick"),
    Entry("robustness", FEDUS, "Sec. 4 / Fig. 5: robustness across draws on Color MNIST (FID, modes)",
          ("run", "robustness"), "images.md"),
    Entry("tests", "gandy", "the test suite (README's test command)", ("pytest",), "../README.md#quickstart",
          output=False),
]
BY_NAME = {e.name: e for e in ENTRIES}


def command(e: Entry) -> list[str]:
    if e.name == "tests":
        return [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    if not e.output:
        return ["gandy", *e.args]
    return ["gandy", *e.args, "--out", str(OUT / e.name), *(["--force"] if e.force else [])]


def shown(e: Entry) -> str:
    """The command as a user types it."""
    if e.name == "tests":
        return "pytest"
    return " ".join(["gandy", *e.args, "--out", f"runs/{e.name}"] if e.output else ["gandy", *e.args])


def run_entry(e: Entry) -> dict:
    """Run one entry, timed; its record."""
    import torch

    cmd = command(e)
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    rec = {"command": shown(e), "seconds": round(seconds, 1), "exit": proc.returncode,
           "date": datetime.date.today().isoformat(), "machine": machine(), "cores": os.cpu_count(),
           "torch": torch.__version__, "threads": os.environ.get("GANDY_THREADS", "gandy's default (1)"),
           "load_before": round(load0, 2), "load_after": round(os.getloadavg()[0], 2)}
    if e.name == "tests":
        m = re.search(r"(\d+) passed(?:, (\d+) skipped)?.* in ([\d.]+)s", proc.stdout)
        rec["passed"], rec["skipped"] = (int(m.group(1)), int(m.group(2) or 0)) if m else (None, None)
        rec["verdict"] = f"{rec['passed']} passed, {rec['skipped']} skipped" if m else "no pytest summary"
    else:
        rec["verdict"] = verdict(e, OUT / e.name) if proc.returncode == 0 else f"failed: {proc.stderr.strip()[-300:]}"
    return rec


def verdict(e: Entry, out: Path) -> str:
    fn = VERDICTS.get(e.name)
    if fn is None:
        return f"see docs/{e.docs}"
    try:
        return fn(out)
    except (OSError, KeyError, ValueError, TypeError) as err:
        return f"could not read the output ({type(err).__name__}: {err})"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores"


# ----------------------------------------------------------------------------- documents
def minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def render(record: dict) -> str:
    lines = [
        "# Reproducing the papers",
        "",
        "<!-- generated by scripts/reproduce.py from docs/reproduce.json: edit those, not this file -->",
        "Every figure and claim of the two papers that gandy addresses, the command that reproduces it, its",
        "time (measured by `scripts/reproduce.py --run NAME`, which records the machine and its load), its",
        "output and how well it matches, read from that output by the script. The comparison with the",
        "paper, its n and its intervals are in the docs section linked; an entry the script has not run",
        "says so. Rerun any entry with `python scripts/reproduce.py --run NAME`, then `--write`.",
        "",
        "| paper | figure / claim | command | time | output | what it measured | docs |",
        "|---|---|---|---|---|---|---|",
    ]
    for e in ENTRIES:
        r = record.get(e.name)
        if r is None:
            time_s, what = "not run by the script yet" + (f"; {e.note}" if e.note else ""), "—"
        else:
            status = "" if r["exit"] == 0 else f", exit {r['exit']}"
            time_s = f"{minutes(r['seconds'])} ({r['date']}, load {r['load_before']}→{r['load_after']}{status})"
            what = r["verdict"].replace("|", "\\|")  # a table cell
        out = f"`runs/{e.name}`" if e.output else "—"
        lines.append(f"| {e.paper} | {e.claim} | `{shown(e)}` | {time_s} | {out} | {what} | [{e.docs.split('#')[0]}]({e.docs}) |")
    machines = sorted({r["machine"] for r in record.values()})
    lines += ["", "Machines: " + ("; ".join(machines) if machines else "none yet") + ". Threads: gandy's default "
              "(1 torch thread per process) unless the entry says otherwise."]
    return "\n".join(lines) + "\n"


README_MARK = re.compile(r"(<!-- reproduce:(\w[\w-]*) -->)(.*?)(<!-- /reproduce -->)", re.S)


def readme_numbers(text: str, record: dict) -> str:
    """README's generated spans: ``<!-- reproduce:NAME -->...<!-- /reproduce -->`` holds entry
    NAME's measured time (and, for ``tests``, its count)."""
    def fill(m: re.Match) -> str:
        r = record.get(m.group(2))
        if r is None:
            return m.group(0)
        body = minutes(r["seconds"]) if m.group(2) != "tests" else f"{r['passed']:,} tests in {minutes(r['seconds'])}"
        return f"{m.group(1)}{body}{m.group(4)}"

    return README_MARK.sub(fill, text)


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", nargs="+", metavar="NAME", help=f"entries to run: all, or of {', '.join(BY_NAME)}")
    ap.add_argument("--write", action="store_true", help="write docs/reproduce.md and README's numbers from the record")
    ap.add_argument("--check", action="store_true", help="exit 1 if docs/reproduce.md or README's numbers are stale")
    a = ap.parse_args(argv)
    record = read_json(RECORD) if RECORD.exists() else {}
    if a.run:
        names = list(BY_NAME) if a.run == ["all"] else a.run
        unknown = [n for n in names if n not in BY_NAME]
        if unknown:
            print(f"unknown entries: {', '.join(unknown)}; entries: {', '.join(BY_NAME)}", file=sys.stderr)
            return 2
        for n in names:
            print(f"{n}: {shown(BY_NAME[n])}", flush=True)
            rec = run_entry(BY_NAME[n])
            print(f"  {rec['seconds']} s, exit {rec['exit']}: {rec['verdict']}", flush=True)
            record = {**(read_json(RECORD) if RECORD.exists() else {}), n: rec}  # what another --write did kept
            RECORD.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    if a.write:  # verdicts read again from the outputs still here (a verdict written since the run)
        for n, r in record.items():
            if n in BY_NAME and n != "tests" and r["exit"] == 0 and (OUT / n).is_dir():
                r["verdict"] = verdict(BY_NAME[n], OUT / n)
        RECORD.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    if a.write or a.run:
        DOC.write_text(render(record))
        README.write_text(readme_numbers(README.read_text(), record))
    if a.check:
        stale = [p.name for p, want in ((DOC, render(record)), (README, readme_numbers(README.read_text(), record)))
                 if not p.exists() or p.read_text() != want]
        if stale:
            print(f"stale: {', '.join(stale)} (python scripts/reproduce.py --write)", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
