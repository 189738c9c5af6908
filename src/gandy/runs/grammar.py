"""The grammar of a config's ``sweep:`` and ``search:`` sections, as pydantic models.

A ``sweep:`` section maps dotted config paths (nested sections are joined with dots) to the values
of one axis each, plus ``batch_size`` (members per chunk, reserved: never an axis)::

    sweep:
      kernel.g2: {logspace: [0.01, 1.0], num: 12}     # endpoints are values, not exponents
      optim.critic.lr: [1.0e-4, 1.0e-3, 1.0e-2]
      batch_size: auto                                # members per chunk (auto: sized to memory)

A ``search:`` section draws ``trials`` points from ``params`` (a dotted path, or several joined by
commas to share one draw, -> ``{loguniform | uniform | int: [low, high]}`` or ``{choice: [...]}``)
with the generator seeded by ``seed``, plus the same ``batch_size``.

The config keeps both sections as the raw mappings the user wrote (``config.yaml`` stores them as
written); :func:`parse_sweep` and :func:`parse_search` read them through the models here when a
sweep is planned (:mod:`gandy.runs.plan`). A bad section is one :class:`ConfigError` naming the
field (``sweep.KEY``, ``search.params.KEY``, ``search.trials``, ...); each refusal's words are
declared beside the field it guards.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any, Callable, ClassVar, Literal, Optional, Union

import numpy as np
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    RootModel,
    Tag,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError

from gandy.core.errors import ConfigError

MAX_MEMBERS = 1_000_000
"""The most members (grid points or trials x seeds) a sweep or search may have: every member is
expanded into its own validated config before anything runs (about 3 ms and 8 kB each)."""

SPEC_KEYS = ("linspace", "logspace")
RESERVED = ("batch_size",)
DISTRIBUTIONS = ("loguniform", "uniform", "int", "choice")


@dataclass(frozen=True)
class Axis:
    """One swept key: its values in grid order and whether the grid is logarithmic."""

    key: str
    values: tuple
    scale: str  # "linear" | "log"


# ----------------------------------------------------------------------------- refusals
REFUSED = "refused"
"""The pydantic error type of a refusal in this grammar; its message is the ConfigError's."""


def refuse(message: str, field: Optional[str] = None):
    """Refuse the value being validated with ``message`` (the words the user sees). ``field``: the
    field below the section to blame where the error's location does not say it."""
    raise PydanticCustomError(REFUSED, "{message}", {"message": message, "field": field})


def rule(test: Callable[[Any], bool], message: str) -> BeforeValidator:
    """A check on the value as written, before pydantic converts it: ``message`` unless ``test``."""
    def check(v):
        if not test(v):
            refuse(message)
        return v
    return BeforeValidator(check)


def is_number(v: Any) -> bool:
    """An int or float as YAML gives them; a boolean is not a number."""
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def is_whole(v: Any) -> bool:
    """An int as YAML gives it (not a float, not a boolean)."""
    return isinstance(v, int) and not isinstance(v, bool)


ChunkSize = Annotated[Union[Literal["auto"], int],
                      rule(lambda v: v == "auto" or (is_whole(v) and v >= 1), "must be a positive integer or auto")]
"""``batch_size``: members per chunk, or ``auto`` (sized to memory)."""


class Grammar(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _error(e: ValidationError, section: str, where: Callable[[tuple], str],
           rank: Callable[[tuple], int] = lambda loc: 0) -> ConfigError:
    """The ConfigError of the first refusal (by ``rank`` of its location, then in the order pydantic
    met them): its field is ``section.`` + ``where(location)`` (or the field the refusal names)."""
    errors = e.errors()
    first = min(range(len(errors)), key=lambda i: (rank(errors[i]["loc"]), i))
    err = errors[first]
    ctx = err.get("ctx") or {}
    below = ctx.get("field") if err["type"] == REFUSED else None
    return ConfigError(f"{section}.{below or where(err['loc'])}", ctx.get("message", err["msg"]))


# ----------------------------------------------------------------------------- sweep
_NUMBER = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")


def _number(v: Any) -> Any:
    """A sweep value as written: PyYAML (YAML 1.1) reads ``1e-05`` or ``1.33352e-05`` as a string
    (its floats need a dot and a signed exponent); such a string is the number it spells."""
    return float(v) if isinstance(v, str) and _NUMBER.match(v.strip()) else v


class Values(RootModel[tuple]):
    """An axis as a list of values (YAML number strings such as ``1e-05`` read as numbers). A list of
    three or more positive numbers evenly spaced in log is a log axis (for the figures)."""

    root: Annotated[tuple, rule(lambda v: bool(v), "needs at least one value"),
                    BeforeValidator(lambda v: tuple(_number(x) for x in v))]  # read, then checked

    def axis(self, key: str) -> Axis:
        vals = self.root
        pos = all(is_number(v) and v > 0 for v in vals)
        ratios = pos and len(vals) > 2 and np.allclose(np.diff(np.log(vals)), np.log(vals[1] / vals[0]), rtol=1e-6)
        return Axis(key, vals, "log" if ratios else "linear")


def _ends(kind: str):
    return Annotated[tuple, rule(lambda v: isinstance(v, list) and len(v) == 2 and all(is_number(e) for e in v),
                                 f"{kind} needs two numbers [a, b]")]


def _num_bound(v):
    if is_whole(v) and v > MAX_MEMBERS:
        refuse(f"num {v:,} is more values than a sweep's {MAX_MEMBERS:,} members")
    return v


Num = Annotated[int, BeforeValidator(_num_bound), rule(lambda v: is_whole(v) and v >= 1, "num must be a positive integer")]
"""The number of values of a spaced axis: a positive integer, at most MAX_MEMBERS (refused before
any value is made). Before-validators run last listed first: the type, then the bound."""


class LinSpace(Grammar):
    """``{linspace: [a, b], num: n}``: n evenly spaced values from a to b."""

    linspace: _ends("linspace")
    num: Num

    def axis(self, key: str) -> Axis:
        return Axis(key, tuple(float(v) for v in np.linspace(self.linspace[0], self.linspace[1], self.num)), "linear")


class LogSpace(Grammar):
    """``{logspace: [a, b], num: n}``: n values from a to b (values, not exponents; both > 0),
    evenly spaced in log."""

    logspace: _ends("logspace")
    num: Num

    @model_validator(mode="after")
    def _positive(self):
        if min(self.logspace) <= 0:
            refuse("logspace endpoints are values and must be > 0")
        return self

    def axis(self, key: str) -> Axis:
        return Axis(key, tuple(float(v) for v in np.geomspace(self.logspace[0], self.logspace[1], self.num)), "log")


def _axis_kind(spec: Any) -> Optional[str]:
    if isinstance(spec, list):
        return "values"
    if isinstance(spec, dict):
        kind = [s for s in SPEC_KEYS if s in spec]
        if len(kind) != 1 or set(spec) - {*SPEC_KEYS, "num"} or "num" not in spec:
            return "malformed"
        return kind[0]
    return None


Malformed = Annotated[Any, rule(lambda v: False, "expected a list, {linspace: [a, b], num: n} or {logspace: [a, b], num: n}")]
"""A mapping that is neither spacing: refused."""

AxisSpec = Annotated[Union[Annotated[Values, Tag("values")], Annotated[LinSpace, Tag("linspace")],
                           Annotated[LogSpace, Tag("logspace")], Annotated[Malformed, Tag("malformed")]],
                     Discriminator(_axis_kind, custom_error_type=REFUSED,
                                   custom_error_message="expected a list, {linspace: ...} or {logspace: ...}")]
"""One axis: a list, ``{linspace: [a, b], num: n}`` or ``{logspace: [a, b], num: n}``."""


def _flatten(raw: dict, prefix: str = "") -> dict:
    """Nested sweep entries (from dotted CLI overrides) become dotted keys; later ones win. A
    mapping holding ``linspace`` or ``logspace`` is an axis, not a section."""
    out = {}
    for k, v in raw.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and not any(s in v for s in SPEC_KEYS):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


class SweepSection(Grammar):
    """A ``sweep:`` section: ``batch_size`` (checked first) and the axes, in the order written."""

    batch_size: ChunkSize = "auto"
    axes: dict[str, AxisSpec]

    @model_validator(mode="before")
    @classmethod
    def _split(cls, raw: Any) -> Any:
        raw = dict(raw)
        bs = raw.pop("batch_size", "auto")
        return {"batch_size": bs, "axes": _flatten(raw)}

    @model_validator(mode="after")
    def _no_seeds(self):
        if "seeds" in self.axes:
            refuse("seeds are crossed with the grid already; list them under seeds", field="seeds")
        return self

    def axis_list(self) -> list[Axis]:
        """The axes with their values, in the order written."""
        return [spec.axis(key) for key, spec in self.axes.items()]

    @property
    def chunk(self) -> Optional[int]:
        """Members per chunk (None: auto)."""
        return None if self.batch_size == "auto" else self.batch_size


def parse_sweep(raw: Optional[dict]) -> tuple[list[Axis], Optional[int]]:
    """Axes in the order given and the chunk size (None = auto), from a ``sweep:`` section (none or
    empty: no axes). A bad section is a ConfigError naming ``sweep.KEY``."""
    if not raw:
        return [], None
    try:
        section = SweepSection.model_validate(raw)
    except ValidationError as e:
        raise _error(e, "sweep", lambda loc: loc[1] if loc[0] == "axes" else loc[0]) from None
    return section.axis_list(), section.chunk


# ----------------------------------------------------------------------------- search
def _bounds(kind: str):
    return Annotated[tuple, rule(lambda v: isinstance(v, list) and len(v) == 2 and all(is_number(x) for x in v)
                                 and v[0] <= v[1], f"{kind} needs two numbers [low, high] with low <= high")]


class LogUniform(Grammar):
    """``{loguniform: [low, high]}`` (0 < low <= high): a float whose log is uniform."""

    loguniform: _bounds("loguniform")

    @model_validator(mode="after")
    def _positive(self):
        if self.loguniform[0] <= 0:
            refuse("loguniform bounds must be > 0")
        return self

    scale: ClassVar[str] = "log"

    def draw(self, rng: np.random.Generator) -> float:
        return float(np.exp(rng.uniform(np.log(self.loguniform[0]), np.log(self.loguniform[1]))))


class Uniform(Grammar):
    """``{uniform: [low, high]}``: a float uniform on [low, high)."""

    uniform: _bounds("uniform")
    scale: ClassVar[str] = "linear"

    def draw(self, rng: np.random.Generator) -> float:
        return float(rng.uniform(self.uniform[0], self.uniform[1]))


class IntRange(Grammar):
    """``{int: [low, high]}`` (whole bounds): an integer uniform on low..high, both included."""

    int_: _bounds("int") = Field(alias="int")
    scale: ClassVar[str] = "linear"

    @model_validator(mode="after")
    def _whole(self):
        lo, hi = self.int_
        if lo != int(lo) or hi != int(hi):
            refuse("int bounds must be integers")
        return self

    def draw(self, rng: np.random.Generator) -> int:
        return int(rng.integers(int(self.int_[0]), int(self.int_[1]) + 1))


class Choice(Grammar):
    """``{choice: [a, b, ...]}``: one of the values, each as likely."""

    choice: Annotated[list, rule(lambda v: isinstance(v, list) and bool(v), "choice needs a non-empty list")]
    scale: ClassVar[str] = "linear"

    def draw(self, rng: np.random.Generator) -> Any:
        return self.choice[int(rng.integers(len(self.choice)))]


def _distribution_kind(spec: Any) -> Optional[str]:
    if isinstance(spec, dict) and len(spec) == 1 and next(iter(spec)) in DISTRIBUTIONS:
        return next(iter(spec))
    return None


Distribution = Annotated[Union[Annotated[LogUniform, Tag("loguniform")], Annotated[Uniform, Tag("uniform")],
                               Annotated[IntRange, Tag("int")], Annotated[Choice, Tag("choice")]],
                         Discriminator(_distribution_kind, custom_error_type=REFUSED,
                                       custom_error_message="expected one of "
                                       + ", ".join("{" + d + ": ...}" for d in DISTRIBUTIONS))]
"""One searched key's distribution."""

SEARCH_KEYS = ("trials", "seed", "params", "batch_size")


class SearchSection(Grammar):
    """A ``search:`` section. Its own keys are checked first (unknown keys, then trials, seed,
    params, batch_size), then each distribution in the order written."""

    trials: Annotated[int, rule(lambda v: is_whole(v) and v >= 1, "must be a positive integer")] = \
        Field(None, validate_default=True)
    seed: Annotated[int, rule(is_whole, "must be an integer")] = 0
    params: Annotated[dict[str, Distribution],
                      rule(lambda v: isinstance(v, dict) and bool(v), "needs at least one dotted key -> distribution")] = \
        Field(None, validate_default=True)
    batch_size: ChunkSize = "auto"

    @model_validator(mode="before")
    @classmethod
    def _known(cls, raw: Any) -> Any:
        unknown = set(raw) - set(SEARCH_KEYS)
        if unknown:
            refuse(f"unknown key (expected {', '.join(SEARCH_KEYS)})", field=sorted(unknown)[0])
        return raw

    def draw(self) -> list[dict]:
        """The trials ``[{"trial": t, key: value}]``: trial t draws key by key, in the order given,
        from ``numpy.random.default_rng([seed, t])``, so its values depend on (seed, t, params) only."""
        points = []
        for t in range(self.trials):
            rng = np.random.default_rng([self.seed, t])
            point = {"trial": t}
            for key, dist in self.params.items():
                point[key] = dist.draw(rng)
            points.append(point)
        return points

    @property
    def chunk(self) -> Optional[int]:
        """Members per chunk (None: auto)."""
        return None if self.batch_size == "auto" else self.batch_size


def parse_search(raw: dict) -> tuple[list[Axis], list[dict], Optional[int]]:
    """A ``search:`` section -> (one axis per key, the drawn trials ``[{key: value}]``, chunk size).

    ``trials`` draws from ``params`` (:meth:`SearchSection.draw`). A comma-joined key
    (``optim.critic.lr,optim.generator.lr``) draws once and sets every path to that value. A bad
    section is a ConfigError naming ``search.KEY`` (``search.params.KEY`` for a distribution).
    """
    try:
        section = SearchSection.model_validate(raw)
    except ValidationError as e:
        raise _error(e, "search", lambda loc: ".".join(map(str, loc[:2])),
                     rank=lambda loc: int(len(loc) > 1 and loc[0] == "params")) from None
    points = section.draw()
    axes = [Axis("trial", tuple(range(section.trials)), "linear")]
    axes += [Axis(k, tuple(p[k] for p in points), dist.scale)
             for k, dist in section.params.items()]
    return axes, points, section.chunk
