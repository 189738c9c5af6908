"""mnist-calibrate: the 784-D effective model scored against the authors' published clouds, and a
search of the choices their code leaves unpublished or uncertain (issue 28).

**The table.** ``calibration.table`` names a CSV with the columns ``g2_over_g1``, ``critic_lr``,
``mean_abs_cos`` and ``mean_norm``: per grid point, the authors' final cloud summarised as the
mean |cos| between distinct particles and the mean particle norm (standardised pixels). The
project's is ``../shared/reference/durr_mnist_calibration.csv`` (three of the authors' critic-lr
rows), outside the repository; a relative path is taken from the working directory. A missing or
malformed table is a ConfigError naming ``calibration.table`` before anything is written.

**The points.** Per critic-lr row of the table (``calibration.rows``: the rows to use, default
all), its g2/g1 values in order, every ``calibration.every``-th from the smallest, and the largest
(the runaway corner) always. g2 = g2_over_g1 x ``kernel.g1``.

**Scoring** (:func:`score`, :func:`summarise`). Every member (a point and a seed) is compared with
the authors' cloud at its point: ``d_cos`` = |Δ mean |cos||, ``d_log_norm`` = |Δ log mean norm|,
``within``: d_cos <= ``cos_tol`` (0.05) and |norm / authors' norm - 1| <= ``norm_tol`` (0.10) (the
issue's aim), ``agree``: the same cloud phase. A candidate's ``fit`` is the share of its members
within, ``phase_agreement`` the share that agree, ``mean_abs_dcos`` and ``mean_abs_dlog_norm``
the means over its members with finite numbers (``diverged`` counts the others, which are never
within and never agree). Candidates are ranked by fit, then phase agreement, then the sum of the
two mean errors.

**Cloud phases** (:func:`cloud_phase`, the rule of :func:`gandy.runs.summaries.cloud_phase`): the table has the final numbers only, not the series
gandy's phase rule reads, so one rule on the two numbers is applied to the authors' clouds and to
gandy's alike, with D the target digits' own mean norm (27.3 for ten of each class), in this order:
``diverged`` where gandy's numbers are not finite; ``runaway`` if norm > ``runaway`` x D (2, the
factor of gandy's runaway test); ``noise_like`` if |cos| < ``noise_cos`` (0.15: a cloud of
independent Gaussian vectors in 784-D has about 0.03, the digits among themselves 0.30; an
unmoved or unstructured cloud); ``data_like`` if |cos| <= ``data_cos`` (0.4) and norm within
``data_norm`` (20 %) of D; ``mean_like`` if |cos| > ``data_cos`` and norm <= D (pulled toward the
data's mean image, about 0.6 / 22: a collapse onto the mean, not onto one digit); ``other``
otherwise (bounded, none of these).

**The search.** The base config (``config.yaml`` beside this module: mnist-collapse's set-up at
300 steps), then each option of each choice in ``calibration.choices`` (a name -> a list of
options, each one override ``KEY=VALUE`` or a list of them) alone on the base, all of them as one
batched run of the member-list executor (:func:`gandy.runs.execute.execute`; candidates that
differ only in per-member keys, e.g. ``penalty.weight``, share chunks). Then the combinations: the
best option of each choice that ranks above the base, the ``top_k`` best of those, every subset
of two or more of them combined (one more batched run; two choices may not set one config path,
and every combination that could arise is validated before the first run:
:func:`check_combinations`). The packaged choices touch existing config
keys only: the penalty weight; its reduction (``per_point`` at weight λ is ``batch_mean`` at
n² λ, so only the literal per-point reading is a new candidate); the critic batch
(``batch_size=512``: 512 digits drawn with replacement against all 100 particles); the initial
cloud; the critic's width; dropout (its value: its placement has no key); the weight decay (its
value: its form, Adam's L2 term, has no key); the critic steps per particle step.

**Outputs** (``OUT``): ``calibration.parquet`` (one row per candidate, by rank: ``rank``,
``candidate``, ``choice``, ``stage``, ``overrides``, ``fit``, ``phase_agreement``,
``mean_abs_dcos``, ``mean_abs_dlog_norm``, ``members``, ``diverged``, ``steps``),
``points.parquet`` (one row per member: candidate, point, seed, both clouds' numbers, spreads and phases,
gandy's own phase label, the errors), ``results.parquet`` (every member's row as a sweep's),
``calibration.json`` (what a resume must match), ``chunks/`` (the executor's), ``summary.json``
and ``figures/mnist-calibrate.png`` (gandy at the base and at the best candidate against the
authors along each row). ``--resume`` finishes a killed search: finished chunks are kept, and the
combinations are a function of the stored one-at-a-time rows, so the same members run under the
same numbers and the table is that of an uninterrupted search.

**Cost.** One member of the packaged config takes about 150 s per 1,000 particle steps on one
core (20 critic steps of the [64, 1024, 64] critic per step), so 45 s at 300 steps. The packaged
default on the project's table: 12 points (``every: 8``), 15 candidates one at a time and up to 4
combinations, one seed: about 19 x 12 x 45 s = 2.9 core-hours, some 3.2 with the 200 critic steps
at the start and the dearer candidates (``optim.critic.steps=40``, ``batch_size=512``), so 80-100
minutes with ``--executor processes --workers 2`` (``--quick``: 12 members of 20 steps, 58 s on
one thread of the loaded 2-core machine, one run, 2026-12-04). ``--quick``: 20 steps, two points per row, the penalty weight alone: minutes.
Fewer points or steps: ``calibration.every=K``, ``calibration.rows=[...]``, ``steps=N``,
``seeds=[...]``.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pandas as pd

from gandy.core.atomic import write_atomic
from gandy.core.errors import option
from gandy.runs import config as C
from gandy.runs import summaries
from gandy.runs.execute import Rows, check_members, check_options, execute
from gandy.runs.executors import EXECUTORS
from gandy.runs.plan import SweepMember, members_at
from gandy.runs.store import read_json, resume_identity
from gandy.runs.summaries import COLUMNS, cloud_spread, digit_stats, read_table
from gandy.studies.base import Experiment, StudyOptions, open_study, packaged, write_summary
from gandy.studies.mnist_calibrate.figures import plot_calibration

DESCRIPTION = "784-D: a config scored against the authors' clouds (|cos|, norm, phase); the uncertain choices searched"
X, Y = "kernel.g2", "optim.critic.lr"
POINT_KEYS = (X, Y, "kernel.g1", "sweep", "search", "calibration")
"""Keys a choice may not override: the points set g2 and the critic lr (g2 from g1), and a choice
is one config, not a sweep."""
MAX_COMBINATIONS = 20_000
"""Most combinations :func:`check_combinations` validates before a run (half a millisecond each)."""
QUICK = ["steps=20", "log_every=10", "calibration.every=100",
         "calibration.choices={penalty_weight: [penalty.weight=1.25]}"]
"""``--quick``: 20 steps, the smallest and largest g2/g1 of each row, the base and the authors' literal penalty weight (1.25)."""


# ----------------------------------------------------------------------------- options
@dataclass(frozen=True)
class Calibration:
    """The ``calibration:`` section (see the module docstring): the ``table``'s path; the points
    (``every``, ``rows``); the fit tolerances (``cos_tol``, ``norm_tol``: relative); the cloud-phase
    rule (``noise_cos``, ``data_cos``, ``data_norm``: relative, ``runaway``: a factor); the search (``choices``:
    ``((name, ((override, ...), ...)), ...)``, ``top_k`` winners combined)."""

    table: str
    every: int = 1
    rows: Optional[tuple[float, ...]] = None
    cos_tol: float = 0.05
    norm_tol: float = 0.10
    noise_cos: float = 0.15
    data_cos: float = 0.4
    data_norm: float = 0.2
    runaway: float = 2.0
    top_k: int = 3
    choices: tuple = ()


def _number(raw: dict, key: str, default: float, lo: float, hi: float = math.inf) -> float:
    """``raw[key]`` as a float in (lo, hi] (ConfigError naming ``calibration.KEY`` otherwise)."""
    v = raw.get(key, default)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not (lo < v <= hi):
        span = f"> {lo:g}" if hi == math.inf else f"in ({lo:g}, {hi:g}]"
        raise C.ConfigError(f"calibration.{key}", f"must be a number {span}, got {v!r}")
    return float(v)


def _whole(raw: dict, key: str, default: int, lo: int) -> int:
    v = raw.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise C.ConfigError(f"calibration.{key}", f"must be a whole number >= {lo}, got {v!r}")
    return v


def _option(name: str, option) -> tuple[str, ...]:
    """One option of choice ``name`` as a tuple of ``KEY=VALUE`` overrides."""
    field = f"calibration.choices.{name}"
    items = [option] if isinstance(option, str) else option
    if not isinstance(items, list) or not items or not all(isinstance(o, str) for o in items):
        raise C.ConfigError(field, f"an option is an override KEY=VALUE or a list of them, got {option!r}")
    for o in items:
        key = o.split("=", 1)[0].strip()
        if "=" not in o or not key:
            raise C.ConfigError(field, f"{o!r} is not of the form KEY=VALUE")
        if any(key == k or key.startswith(k + ".") for k in POINT_KEYS):
            raise C.ConfigError(field, f"{o!r}: a choice may not set {key} (the table's points set g2/g1 and the "
                                       "critic lr; a choice is one config)")
    return tuple(items)


def parse_calibration(raw) -> Calibration:
    """The ``calibration:`` section of the study's config, checked key by key (a ConfigError names
    ``calibration.KEY``); the table itself is read by :func:`read_table`."""
    if not isinstance(raw, dict):
        raise C.ConfigError("calibration", "needs a section with at least table: (the calibration table's path)")
    known = {f.name for f in Calibration.__dataclass_fields__.values()}
    for k in raw:
        if k not in known:
            raise C.ConfigError(f"calibration.{k}", f"unknown key; valid: {', '.join(sorted(known))}")
    table = raw.get("table")
    if not isinstance(table, str) or not table.strip():
        raise C.ConfigError("calibration.table", f"needs the calibration table's path (a CSV with the columns "
                                                 f"{', '.join(COLUMNS)}), got {table!r}")
    rows = raw.get("rows")
    if rows is not None:
        if not isinstance(rows, list) or not rows or not all(
                isinstance(r, (int, float)) and not isinstance(r, bool) and r > 0 for r in rows):
            raise C.ConfigError("calibration.rows", f"a list of the table's critic learning rates, got {rows!r}")
        rows = tuple(float(r) for r in rows)
    choices = raw.get("choices", {}) or {}
    if not isinstance(choices, dict):
        raise C.ConfigError("calibration.choices", f"a mapping of a choice's name to its options, got {choices!r}")
    parsed = []
    for name, options in choices.items():
        if not isinstance(options, list) or not options:
            raise C.ConfigError(f"calibration.choices.{name}", f"a non-empty list of options, got {options!r}")
        parsed.append((str(name), tuple(_option(str(name), o) for o in options)))
    cal = Calibration(table=table, every=_whole(raw, "every", 1, 1), rows=rows,
                      cos_tol=_number(raw, "cos_tol", 0.05, 0.0), norm_tol=_number(raw, "norm_tol", 0.10, 0.0),
                      noise_cos=_number(raw, "noise_cos", 0.15, 0.0, 1.0),
                      data_cos=_number(raw, "data_cos", 0.4, 0.0, 1.0), data_norm=_number(raw, "data_norm", 0.2, 0.0),
                      runaway=_number(raw, "runaway", 2.0, 1.0), top_k=_whole(raw, "top_k", 3, 0),
                      choices=tuple(parsed))
    if cal.noise_cos >= cal.data_cos:
        raise C.ConfigError("calibration.noise_cos", f"must lie below data_cos ({cal.data_cos:g}), got {cal.noise_cos:g}")
    return cal


def select_points(table: pd.DataFrame, every: int = 1, rows: Optional[Sequence[float]] = None) -> pd.DataFrame:
    """The points to score: per critic-lr row (``rows``: those, matched to 1e-6 relative; default
    all), by g2/g1 ascending, every ``every``-th from the smallest and the largest. Columns
    ``point`` (0, 1, ...) and the table's; sorted by critic lr, then g2/g1."""
    t = table
    if rows is not None:
        have = np.unique(t.critic_lr.to_numpy(float))
        keep = np.zeros(len(t), bool)
        for r in rows:
            hit = np.isclose(t.critic_lr.to_numpy(float), r, rtol=1e-6, atol=0.0)
            if not hit.any():
                raise C.ConfigError("calibration.rows", f"{r:g} is not a critic_lr of the table (its rows: "
                                                        f"{', '.join(f'{v:g}' for v in have)})")
            keep |= hit
        t = t[keep]
    parts = []
    for _, g in t.groupby("critic_lr", sort=True):
        g = g.sort_values("g2_over_g1", kind="stable")
        parts.append(g.iloc[sorted({*range(0, len(g), every), len(g) - 1})])
    pts = pd.concat(parts, ignore_index=True)
    pts.insert(0, "point", np.arange(len(pts)))
    return pts


# ----------------------------------------------------------------------------- scoring
def cloud_phase(cos, norm, digits_norm: float, cal: Calibration) -> np.ndarray:
    """:func:`gandy.runs.summaries.cloud_phase` with ``cal``'s thresholds."""
    return summaries.cloud_phase(cos, norm, digits_norm, noise_cos=cal.noise_cos, data_cos=cal.data_cos,
                                 data_norm=cal.data_norm, runaway=cal.runaway)


def score(gandy_cos, gandy_norm, authors_cos, authors_norm, digits_norm: float, cal: Calibration) -> pd.DataFrame:
    """Per member (arrays of one length, gandy's and the authors' numbers at its point): ``d_cos``
    (|Δ mean |cos||), ``d_log_norm`` (|Δ log mean norm|), ``norm_error`` (|gandy / authors - 1|),
    ``within`` (d_cos <= cos_tol and norm_error <= norm_tol), ``gandy_cloud``, ``authors_cloud``
    (:func:`cloud_phase`) and ``agree``. Non-finite numbers of gandy's give NaN errors, never
    within, never agree."""
    gc, gn = np.asarray(gandy_cos, dtype=float), np.asarray(gandy_norm, dtype=float)
    ac, an = np.asarray(authors_cos, dtype=float), np.asarray(authors_norm, dtype=float)
    finite = np.isfinite(gc) & np.isfinite(gn) & (gn > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        d_cos = np.where(finite, np.abs(gc - ac), np.nan)
        d_log = np.where(finite, np.abs(np.log(np.where(finite, gn, 1.0)) - np.log(an)), np.nan)
        err = np.where(finite, np.abs(gn / an - 1), np.nan)
    g_ph, a_ph = cloud_phase(gc, gn, digits_norm, cal), cloud_phase(ac, an, digits_norm, cal)
    within = finite & (np.nan_to_num(d_cos, nan=np.inf) <= cal.cos_tol) & (np.nan_to_num(err, nan=np.inf) <= cal.norm_tol)
    return pd.DataFrame({"d_cos": d_cos, "d_log_norm": d_log, "norm_error": err, "within": within,
                         "gandy_cloud": g_ph, "authors_cloud": a_ph, "agree": finite & (g_ph == a_ph)})


def summarise(points: pd.DataFrame) -> pd.DataFrame:
    """Per ``candidate`` of a per-member table (:func:`score`'s columns): ``fit`` (share within),
    ``phase_agreement``, ``mean_abs_dcos`` and ``mean_abs_dlog_norm`` (over finite members; NaN
    where none), ``members``, ``diverged`` (members with non-finite numbers) and ``rank`` (1 =
    best: fit, then phase agreement, then the sum of the mean errors, then the candidate's number),
    sorted by rank."""
    rows = []
    for c, g in points.groupby("candidate", sort=True):
        fin = g.d_cos.notna()
        rows.append({"candidate": int(c), "fit": float(g.within.mean()), "phase_agreement": float(g.agree.mean()),
                     "mean_abs_dcos": float(g.d_cos[fin].mean()) if fin.any() else np.nan,
                     "mean_abs_dlog_norm": float(g.d_log_norm[fin].mean()) if fin.any() else np.nan,
                     "members": int(len(g)), "diverged": int((~fin).sum())})
    t = pd.DataFrame(rows)
    error = (t.mean_abs_dcos + t.mean_abs_dlog_norm).fillna(np.inf)
    order = np.lexsort((t.candidate.to_numpy(), error.to_numpy(), -t.phase_agreement.to_numpy(), -t.fit.to_numpy()))
    t = t.iloc[order].reset_index(drop=True)
    t.insert(0, "rank", np.arange(1, len(t) + 1))
    return t


# ----------------------------------------------------------------------------- candidates
@dataclass(frozen=True)
class Candidate:
    """One setting scored: ``index`` (its number, the ``trial`` column of its members), the
    ``choice`` it varies (``base``, a choice's name, or ``combined``), its ``overrides`` of the
    base config and its ``stage`` (``one_at_a_time`` or ``combined``)."""

    index: int
    choice: str
    overrides: tuple
    stage: str = "one_at_a_time"

    @property
    def label(self) -> str:
        return "; ".join(self.overrides) if self.overrides else "(base)"


def one_at_a_time(cal: Calibration) -> list[Candidate]:
    """The base, then every option of every choice alone, numbered 0, 1, ..."""
    out = [Candidate(0, "base", ())]
    for name, options in cal.choices:
        for o in options:
            out.append(Candidate(len(out), name, o))
    return out


def combined(table: pd.DataFrame, candidates: Sequence[Candidate], top_k: int) -> list[Candidate]:
    """The combinations of the winners of a one-at-a-time ``table`` (:func:`summarise` of
    ``candidates``): per choice its best option if it ranks above the base, the ``top_k`` best of
    those, and every subset of two or more of them, their overrides joined in rank order; numbered
    after ``candidates``. Smaller subsets first, each in the order of ``itertools.combinations``."""
    by = {c.index: c for c in candidates}
    rank = dict(zip(table.candidate, table["rank"]))
    base = next(c.index for c in candidates if c.choice == "base")
    best: dict[str, Candidate] = {}
    for c in sorted((c for c in candidates if c.choice != "base"), key=lambda c: rank[c.index]):
        best.setdefault(c.choice, c)
    winners = [c for c in sorted(best.values(), key=lambda c: rank[c.index]) if rank[c.index] < rank[base]][:top_k]
    out, first = [], max(by) + 1
    for size in range(2, len(winners) + 1):
        for group in itertools.combinations(winners, size):
            out.append(Candidate(first + len(out), "combined", tuple(o for c in group for o in c.overrides), "combined"))
    return out


def candidate_config(raw: dict, cand: Candidate) -> C.Config:
    """The base config ``raw`` with ``cand``'s overrides, validated (a ConfigError names
    ``calibration.choices.CHOICE`` and the override's own field)."""
    try:
        return C.load_config(raw, list(cand.overrides))
    except C.ConfigError as e:
        where = f"calibration.choices.{cand.choice}" if cand.choice != "combined" else "calibration.choices"
        raise C.ConfigError(where, f"{cand.label}: {e.field}: {e.message}" if e.field else f"{cand.label}: {e.message}") \
            from None


def _section(override: str) -> str:
    """The config path an override ``KEY=VALUE`` sets: its key, or the section for ``SECTION.name``
    (a new kind replaces the whole section)."""
    key = override.split("=", 1)[0].strip()
    return key[: -len(".name")] if key.endswith(".name") else key


def check_combinations(raw: dict, cal: Calibration) -> int:
    """Before any run, what the combinations may hold: two choices never set the same config path
    or one inside the other (a combination would then depend on the order of its overrides; a
    ConfigError names the second choice), and every combination of one option from each of 2 to
    ``top_k`` choices validates (:func:`candidate_config`); at most :data:`MAX_COMBINATIONS` of
    them (ConfigError naming ``calibration.top_k``). Returns how many were checked."""
    paths = [(name, {_section(o) for opt in options for o in opt}) for name, options in cal.choices]
    for i, (b, kb) in enumerate(paths):
        for a, ka in paths[:i]:
            both = sorted(x for x in kb for y in ka if x == y or x.startswith(y + ".") or y.startswith(x + "."))
            if both:
                raise C.ConfigError(f"calibration.choices.{b}", f"sets {both[0]}, as choice {a} does: combined, "
                                                                f"the result would depend on their order")
    counts = [len(options) for _, options in cal.choices]
    e = [1] + [0] * len(counts)  # e[k]: the number of ways to pick one option from each of k choices
    for c in counts:
        for k in range(len(counts), 0, -1):
            e[k] += e[k - 1] * c
    total = sum(e[2:cal.top_k + 1])
    if total > MAX_COMBINATIONS:
        raise C.ConfigError("calibration.top_k", f"{cal.top_k} allows {total:,} combinations of the choices' options, "
                                                 f"more than {MAX_COMBINATIONS:,} to check before the run: lower it")
    for size in range(2, cal.top_k + 1):
        for group in itertools.combinations(cal.choices, size):
            for picked in itertools.product(*(options for _, options in group)):
                candidate_config(raw, Candidate(-1, "combined", tuple(o for opt in picked for o in opt), "combined"))
    return total


def members_of(raw: dict, candidates: Sequence[Candidate], points: pd.DataFrame, first: int = 0) \
        -> tuple[list[SweepMember], pd.DataFrame]:
    """Every candidate at every point x the config's seeds, numbered from ``first``; and a table
    ``member``, ``candidate``, ``point`` saying which is which. A member's columns are ``trial``
    (its candidate's number), ``kernel.g2`` and ``optim.critic.lr``."""
    members: list[SweepMember] = []
    index = []
    for cand in candidates:
        cfg = candidate_config(raw, cand)
        g1 = float(cfg.kernel.g1)
        pts = [{"trial": cand.index, X: float(r.g2_over_g1) * g1, Y: float(r.critic_lr)} for r in points.itertuples()]
        ms = members_at(cfg, pts, first=first + len(members), section="calibration.table")
        per = len(cfg.seeds)
        index += [(m.index, cand.index, int(points.point.iloc[i // per])) for i, m in enumerate(ms)]
        members += ms
    return members, pd.DataFrame(index, columns=["member", "candidate", "point"])


def scored(rows: Rows, which: pd.DataFrame, points: pd.DataFrame, digits_norm: float, cal: Calibration) -> pd.DataFrame:
    """The per-member table of a run's rows: which candidate and point, seed, the authors' and
    gandy's numbers (mean |cos|, mean norm, :func:`cloud_spread`), gandy's phase label, and
    :func:`score`'s columns."""
    res = rows.results.merge(which, on="member", how="inner", validate="one_to_one")
    res = res.merge(points, on="point", how="left", validate="many_to_one")
    s = score(res.mean_abs_cos, res.mean_norm, res.mean_abs_cos_authors, res.mean_norm_authors, digits_norm, cal)
    base = pd.DataFrame({"member": res.member, "candidate": res.candidate, "point": res.point, "seed": res.seed,
                         "g2_over_g1": res.g2_over_g1, "critic_lr": res.critic_lr,
                         "authors_cos": res.mean_abs_cos_authors, "authors_norm": res.mean_norm_authors,
                         "gandy_cos": res.mean_abs_cos, "gandy_norm": res.mean_norm, "gandy_phase": res.phase,
                         "authors_spread": cloud_spread(res.mean_abs_cos_authors, res.mean_norm_authors),
                         "gandy_spread": cloud_spread(res.mean_abs_cos, res.mean_norm)})
    return pd.concat([base, s], axis=1)


# ----------------------------------------------------------------------------- the study
def base_config() -> dict:
    """The study's packaged config (with its ``calibration:`` section)."""
    return packaged(__name__)


def configure(options: StudyOptions) -> tuple[dict, C.Config, Calibration]:
    """The base config's raw mapping (without ``calibration:``), the config it validates to and
    the calibration options, from the packaged config, ``--quick`` and the options' overrides
    (``calibration.KEY=`` ones included)."""
    raw = C.apply_overrides(base_config(), [*(QUICK if options.quick else []), *options.overrides])
    cal = parse_calibration(raw.pop("calibration", None))
    cfg = C.load_config(raw)
    for key in ("sweep", "search"):
        if getattr(cfg, key):
            raise C.ConfigError(key, f"mnist-calibrate runs the calibration table's points; drop the {key}: section")
    return raw, cfg, cal


def _check_resume(out: Path, record: dict) -> None:
    """``out`` (claimed: new, emptied or resumed) must hold this very calibration
    (``calibration.json``) or none yet, and then nothing of another experiment; it gets it written."""
    path = out / "calibration.json"
    if path.is_file():
        stored, asked = read_json(path), json.loads(json.dumps(record))
        if isinstance(stored, dict) and isinstance(stored.get("config"), str):  # device and threads may change
            stored["config"], asked["config"] = resume_identity(stored["config"]), resume_identity(asked["config"])
        if stored != asked:
            raise C.ConfigError("out", f"{out} holds another calibration; {option('resume')} needs the same config, overrides "
                                       "and table")
        return
    if any(p.name in ("chunks", "summary.json") for p in out.iterdir()):
        raise C.ConfigError("out", f"{out} holds another experiment's output, not mnist-calibrate's")
    write_atomic(path, json.dumps(record, indent=1).encode())


def run(out: Path, options: StudyOptions = StudyOptions()) -> list[Path]:
    """Score the base config and search the choices into ``out`` (the module docstring); returns
    the figure's path. Everything is checked before anything is written: the options, the table,
    every one-at-a-time candidate's config and chunks (built: data, kernels, memory) and the
    executor, and every combination the second stage may run is validated
    (:func:`check_combinations`); a combination that validates but cannot be built (memory, a
    penalty that refuses dropout) is refused when the combinations start, after the first stage
    is stored (``--resume`` keeps it)."""
    out = Path(out)
    raw, cfg, cal = configure(options)
    points = select_points(read_table(cal.table), cal.every, cal.rows)
    points = points.rename(columns={"mean_abs_cos": "mean_abs_cos_authors", "mean_norm": "mean_norm_authors"})
    first = one_at_a_time(cal)
    members, which = members_of(raw, first, points)
    check_combinations(raw, cal)
    check_options(options.executor, options.workers)
    work = check_members(members, None, options.workers)
    EXECUTORS[options.executor].check(options.address, options.connect_timeout)
    digits = digit_stats(cfg.target)
    record = {"config": C.dump_config(cfg), "calibration": asdict(cal),
              "points": json.loads(points.to_json(orient="records"))}
    open_study(out, options)
    _check_resume(out, record)
    options.echo(f"mnist-calibrate: {len(points)} points x {len(cfg.seeds)} seeds, {len(first)} candidates one at a time")
    run_kw = {"executor": options.executor, "address": options.address, "checkpoint_seconds": options.checkpoint_seconds,
              "progress": options.progress, "echo": options.echo}
    rows = [execute(work, out, **run_kw)]
    per = [scored(rows[0], which, points, digits["mean_norm"], cal)]
    combos = combined(summarise(per[0]), first, cal.top_k)
    if combos:
        options.echo(f"mnist-calibrate: {len(combos)} combinations of the best choices")
        more, which = members_of(raw, combos, points, first=len(members))
        rows.append(execute(check_members(more, None, options.workers), out, **run_kw))
        per.append(scored(rows[1], which, points, digits["mean_norm"], cal))
    per = pd.concat(per, ignore_index=True)
    cands = {c.index: c for c in [*first, *combos]}
    table = summarise(per)
    table.insert(2, "choice", [cands[c].choice for c in table.candidate])
    table.insert(3, "stage", [cands[c].stage for c in table.candidate])
    table.insert(4, "overrides", [cands[c].label for c in table.candidate])
    table["steps"] = [int(candidate_config(raw, cands[c]).steps) for c in table.candidate]
    best, base = int(table.candidate.iloc[0]), 0
    summary = {"experiment": "mnist-calibrate", "quick": options.quick, "table": str(cal.table),
               "calibration": asdict(cal), "points": len(points), "candidates": len(cands),
               "members": int(len(per)), "digits": digits, "best": table.iloc[0].to_dict(),
               "base": table[table.candidate == base].iloc[0].to_dict(),
               "wall_seconds_this_invocation": sum(r.seconds for r in rows), "ranking": table.to_dict(orient="records")}
    results = pd.concat([r.results for r in rows], ignore_index=True)
    write_summary(out, summary, {"calibration": table, "points": per, "results": results})
    shown = {base: "the base config"} | ({best: f"the best: {cands[best].label}"} if best != base else {})
    return [plot_calibration(per, out / "figures" / "mnist-calibrate.png", shown, digits)]


EXPERIMENT = Experiment("mnist-calibrate", DESCRIPTION, run)
