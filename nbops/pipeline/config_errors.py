"""Pydantic's validation errors of nbops.yaml in plain words: each one a ConfigError at the
file:line:column of the key or value at fault, with the fix (the keys allowed, the value
expected, a close match for a misspelt key)."""

from __future__ import annotations

import difflib
from typing import Any

from pydantic import ValidationError

from nbops.errors import ConfigError
from nbops.pipeline.config import ALLOWED, CHECK_HINT, Key, Pipeline

_OWNERS = {"stages": "stage", "schedules": "schedule", "gates": "gate"}
_EXPECTED = {
    "dict_type": ("a mapping", "write `key: value` lines indented under it, or {key: value}"),
    "model_type": ("a mapping", "write `key: value` lines indented under it, or {key: value}"),
    "list_type": ("a list", "write [a, b], or one '- item' line per item"),
    "string_type": ("a string", "write text, quoted if it looks like a number or true/false"),
    "int_type": ("a whole number", "write a number like 3"),
    "int_from_float": ("a whole number", "write a number like 3"),
    "float_type": ("a number", "write a number like 0.5"),
    "bool_type": ("true or false", "write true or false"),
}
_EXAMPLES = {
    "notebook": "notebooks/train.ipynb",
    "cron": "'0 2 * * *'",
    "stage": "train",
    "reference": "data/train.csv",
    "current": "data/incoming.csv",
    "stages": "",
}


def _owner(loc: Key) -> tuple[str, str]:
    """The kind of mapping a loc is in, and how to name it: ("stage", "stage 'train'")."""
    if len(loc) >= 2 and loc[0] in _OWNERS:
        kind = _OWNERS[str(loc[0])]
        return kind, f"{kind} {loc[1]!r}"
    if loc and loc[0] in ("drift", "dask"):
        return str(loc[0]), str(loc[0])
    return "the top level", "the top level"


def describe_value(value: Any) -> str:
    """A value of the file as a message names it: ``the text 'abc'``, ``a list``."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"the text {value[:40]!r}"
    if isinstance(value, (int, float)):
        return f"the number {value}"
    return type(value).__name__


def _unknown_key(p: Pipeline, loc: Key) -> ConfigError:
    kind, owner = _owner(loc[:-1])
    key, allowed = str(loc[-1]), ALLOWED[kind]
    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}?" if close else f"allowed keys: {', '.join(allowed)}"
    where = "at the top level" if kind == "the top level" else f"in {owner}"
    return p.error(f"unknown key {key!r} {where}", hint, *loc)


def _missing_key(p: Pipeline, loc: Key) -> ConfigError:
    _, owner = _owner(loc[:-1])
    key = str(loc[-1])
    example = f"`{key}: {_EXAMPLES.get(key, '...')}`".replace(": `", ":`")
    parent = "nbops.yaml" if len(loc) == 1 else owner
    return p.error(f"{parent} is missing the required key {key!r}", f"add {example}", *loc[:-1])


def _explain(p: Pipeline, err: Any) -> ConfigError:
    """One pydantic error as a ConfigError at its position, in plain words with a fix."""
    raw: Key = tuple(err["loc"])
    on_key = bool(raw) and raw[-1] == "[key]"
    loc = raw[:-1] if on_key else raw
    typ, got, ctx = err["type"], err.get("input"), err.get("ctx") or {}
    dotted = ".".join(str(x) for x in loc)
    if typ == "extra_forbidden":
        return _unknown_key(p, loc)
    if typ == "missing":
        return _missing_key(p, loc)
    if typ == "nbops" and on_key:
        kind, owner = _owner(loc)
        if len(loc) > 2:  # a key inside a stage's mapping (resources:), not the stage's name
            return p.error(f"{owner}: {loc[2]} name {ctx['message']}", ctx["hint"], *loc)
        return p.error(f"{kind} name {ctx['message']}", ctx["hint"], *loc)
    if typ == "nbops":
        return p.error(f"{dotted}: {ctx['message']}", ctx["hint"], *loc, value=True)
    if typ in _EXPECTED:
        expected, hint = _EXPECTED[typ]
        if loc[-1] in ("checks", "require") or (len(loc) > 1 and loc[-2] in ("checks", "require")):
            hint = CHECK_HINT
        if loc == ("dask",):
            hint = "write dask: {scheduler: tcp://HOST:8786} (or scheduler: local:2)"
        message = f"{dotted} must be {expected}, got {describe_value(got)}"
        return p.error(message, hint, *loc, value=True)
    bounds = {
        "greater_than_equal": ("at least", "ge"),
        "greater_than": ("greater than", "gt"),
        "less_than_equal": ("at most", "le"),
    }
    if typ in bounds:
        words, name = bounds[typ]
        message = f"{dotted} must be {words} {ctx[name]}, got {describe_value(got)}"
        return p.error(message, f"make it {words} {ctx[name]}", *loc, value=True)
    if typ == "literal_error":
        message = f"{dotted} must be one of {ctx['expected']}, got {describe_value(got)}"
        return p.error(message, f"write one of {ctx['expected']}", *loc, value=True)
    if typ == "string_too_short":
        return p.error(
            f"{dotted} must not be empty", "write a value after the ':'", *loc, value=True
        )
    return p.error(f"{dotted}: {err['msg']}", None, *loc, value=True)


def first_error(p: Pipeline, exc: ValidationError) -> ConfigError:
    """The problem that comes first in the file, as the user reads it."""
    found = [(e["type"] == "missing", _explain(p, e)) for e in exc.errors()]
    # a missing key is often a misspelt one: the unknown key says more, so it goes first
    return min(found, key=lambda f: (f[0], f[1].line or 0, f[1].column or 0))[1]
