"""pydantic's validation errors in words: the field path a user writes, the value given and what is
allowed, for a root model whose discriminated unions are tagged by ``name`` (the config's)."""

from __future__ import annotations

import json
from typing import Annotated, Optional, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from gandy.core.errors import ConfigError, did_you_mean

TYPE_NAMES = {"bool", "int", "float", "str", "list", "dict", "tuple", "none"}
"""Names pydantic gives the branches of a plain union in an error's location (no config key has one)."""

BOUNDS = {"greater_than_equal": (">=", "ge"), "greater_than": (">", "gt"),
          "less_than_equal": ("<=", "le"), "less_than": ("<", "lt")}
"""pydantic's bound errors: the sign to print and the key of the bound in the error's context."""

WORDS = {
    "int_parsing": "an integer", "int_type": "an integer", "int_from_float": "an integer",
    "float_parsing": "a number", "float_type": "a number", "finite_number": "a finite number",
    "bool_parsing": "true or false", "bool_type": "true or false",
    "list_type": "a list", "tuple_type": "a list", "string_type": "text",
    "dict_type": "a section (key: value pairs)", "model_type": "a section (key: value pairs)",
    "model_attributes_type": "a section (key: value pairs)",
}
"""What a pydantic error type says was expected, as a short phrase."""


def show(v) -> str:
    """A value as the user wrote it, cut to 60 characters."""
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, (dict, list, tuple)):
        try:
            text = json.dumps(v)
        except (TypeError, ValueError):
            text = str(v)
        return text if len(text) <= 60 else text[:57] + "..."
    return repr(v) if isinstance(v, str) else str(v)


def _strip(ann):
    """An annotation without ``Annotated`` and ``Optional`` wrappers."""
    while True:
        if get_origin(ann) is Annotated:
            ann = get_args(ann)[0]
        elif get_origin(ann) is Union and type(None) in get_args(ann):
            ann = next(a for a in get_args(ann) if a is not type(None))
        else:
            return ann


class Explainer:
    """Turns a ValidationError on ``root`` into one :class:`ConfigError`. ``unions``: the dotted
    field paths of the discriminated unions and their annotations, whose tags pydantic puts in an
    error's location and a user never writes."""

    def __init__(self, root: type[BaseModel], unions: dict[str, object]):
        self.root, self.union_fields = root, set(unions)
        self.union_tags = {tag for union in unions.values() for model in get_args(get_args(union)[0])
                           for tag in get_args(model.model_fields["name"].annotation)}

    def location(self, loc: tuple, user_key: bool = False) -> str:
        """A pydantic error location as the dotted config path a user writes: the unions' tags and
        pydantic's internal validator names (``function-after[...]``, ``list[...]``) dropped.
        ``user_key``: the last part is a key the user wrote (an unknown key), kept as written even
        where it looks like one of pydantic's names."""
        path: list[str] = []
        last = len(loc) - 1
        for i, p in enumerate(loc):
            if not (user_key and i == last):
                if isinstance(p, str) and ("[" in p or "(" in p or p in TYPE_NAMES):
                    continue
                if isinstance(p, str) and p in self.union_tags and ".".join(path) in self.union_fields:
                    continue
            path.append(str(p))
        return ".".join(path)

    def annotation(self, loc: tuple):
        """The annotation of the field at pydantic's raw error location ``loc`` (walks the models,
        taking a discriminated union's member from the tag that follows its field); None where the
        walk leaves the models."""
        ann, parts = self.root, list(loc)
        while parts:
            part = parts.pop(0)
            ann = _strip(ann)
            if get_origin(ann) is Union:  # a discriminated union: this part is the member's tag
                ann = next((m for m in get_args(ann) if isinstance(m, type) and issubclass(m, BaseModel)
                            and part in get_args(m.model_fields["name"].annotation)), None)
                if ann is None:
                    return None
                continue
            if isinstance(ann, type) and issubclass(ann, BaseModel) and part in ann.model_fields:
                ann = ann.model_fields[part].annotation
            elif get_origin(ann) in (list, tuple) and isinstance(part, int):
                ann = get_args(ann)[0]
            else:
                return None
        return _strip(ann)

    def integer_field(self, loc: tuple) -> bool:
        """Whether the field at pydantic's raw error location ``loc`` holds an integer."""
        return self.annotation(loc) is int

    def unknown_key(self, loc: tuple) -> str:
        """"unknown key" for the key at ``loc``, with the section's nearest keys where one is close
        (a misspelling)."""
        parent = self.annotation(loc[:-1])
        known = list(parent.model_fields) if isinstance(parent, type) and issubclass(parent, BaseModel) else []
        return "unknown key" + did_you_mean(str(loc[-1]), known)

    def expected(self, e: dict) -> Optional[str]:
        """What a pydantic error says was expected, in words (None: no short phrase)."""
        t, ctx = e["type"], e.get("ctx", {})
        if t in WORDS:
            return WORDS[t]
        if t == "literal_error":
            return f"one of {ctx.get('expected')}"
        if t in BOUNDS:
            sign, key = BOUNDS[t]
            return f"{'an integer' if self.integer_field(e['loc']) else 'a number'} {sign} {ctx.get(key)}"
        return None

    def message(self, errors: list[dict]) -> str:
        """One sentence for the errors pydantic reports at one location (several for a union)."""
        e = errors[0]
        t, ctx = e["type"], e.get("ctx", {})
        if t == "extra_forbidden":
            return self.unknown_key(e["loc"])
        if t == "missing":
            return "is required"
        if t == "union_tag_invalid":
            tags = [x.strip().strip("'") for x in str(ctx.get("expected_tags", "")).split(",")]
            return f"unknown name {ctx.get('tag')!r}; valid: {ctx.get('expected_tags')}{did_you_mean(str(ctx.get('tag')), tags)}"
        if t == "union_tag_not_found":
            return f"needs a name: one of {ctx.get('expected_tags', ctx.get('discriminator'))}"
        if t in ("too_short", "too_long"):
            return f"expected {ctx.get('min_length') if t == 'too_short' else ctx.get('max_length')} " \
                   f"{'or more' if t == 'too_short' else 'or fewer'} items, got {ctx.get('actual_length')}"
        if t == "value_error":
            return e["msg"].removeprefix("Value error, ")
        wanted = [w for w in dict.fromkeys(self.expected(x) for x in errors) if w]
        if wanted:
            return f"expected {' or '.join(wanted)}, got {show(e.get('input'))}"
        return f"{e['msg']}, got {show(e.get('input'))}"

    def error(self, err: ValidationError) -> ConfigError:
        """One ConfigError: the first field, and every problem in the message, each written for
        people (the field, the value given, what is allowed)."""
        by_loc: dict[str, list] = {}
        named: dict[str, str] = {}
        for e in err.errors():
            loc = self.location(e["loc"], user_key=e["type"] == "extra_forbidden")
            raised = e.get("ctx", {}).get("error")
            if e["type"] == "value_error" and isinstance(raised, ConfigError):
                # a validator that names a field other than its own (relative to where it runs)
                loc = ".".join(p for p in (loc, raised.field) if p)
                named.setdefault(loc, raised.message)
            by_loc.setdefault(loc, []).append(e)
        found = [(loc, named.get(loc) or self.message(errs)) for loc, errs in by_loc.items()]
        loc, msg = found[0]
        if len(found) > 1:
            msg = "; ".join([msg] + [f"{lo}: {m}" if lo else m for lo, m in found[1:]])
        return ConfigError(loc, msg)
