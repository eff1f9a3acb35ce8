"""The names people type into the ops commands, checked before anything reaches MLflow: run ids,
registered model names, aliases and versions (MLflow's own rules, plus a length bound and no
control characters), and the one way to put a value into an MLflow search filter.

Every check raises InvalidInput naming the value (shortened, with ``repr`` so a NUL or a
newline shows) and saying the fix. Standard library only.
"""

from __future__ import annotations

import posixpath
import re

from nbops.errors import InvalidInput

RUN_ID = re.compile(r"^[0-9a-f]{32}$")
MAX_NAME = 256  # MLflow's registry column: String(256)
MAX_ALIAS = 255
_ALIAS = re.compile(r"^[\w\-]+$", re.ASCII)
_VERSION_ALIAS = re.compile(r"^[vV]\d+$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# what nbops itself lets a *new* registered model be called: MLflow allows more (quotes,
# brackets, ...), and a model registered elsewhere with such a name is still found
_NEW_NAME = re.compile(r"^\w[\w.\- ]*$")


def shown(value: str, limit: int = 60) -> str:
    """``repr`` of a value, cut to ``limit`` characters: safe in a one-line message."""
    text = value if len(value) <= limit else value[:limit] + "..."
    extra = f" ({len(value)} characters)" if len(value) > limit else ""
    return repr(text) + extra


def run_id(value: str, what: str = "run") -> str:
    """An MLflow run id: 32 lowercase hex characters."""
    if not isinstance(value, str) or not RUN_ID.match(value):
        raise InvalidInput(
            f"{what} id {shown(str(value))} is not an MLflow run id (32 hex characters)",
            "copy the id from `nbops runs` (the RUN column)",
        )
    return value


def model_name(value: str, *, new: bool = False) -> str:
    """A registered model name by MLflow's rules (not empty, no ``/`` or ``:``, not a path
    that normalises to another name, at most 256 characters) and without control characters.
    ``new``: a name nbops is about to register, which must also be plain (letters, digits,
    ``_ . -`` and spaces, starting with a letter or digit)."""
    fix = "a model name is letters, digits, '_', '.', '-' (e.g. wine-classifier); " + (
        "`nbops models` lists the registered ones"
    )
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput("the model name is empty", fix)
    name = shown(value)
    if len(value) > MAX_NAME:
        raise InvalidInput(f"model name {name} is longer than {MAX_NAME} characters", fix)
    if _CONTROL.search(value):
        raise InvalidInput(f"model name {name} contains control characters", fix)
    if "/" in value or ":" in value:
        raise InvalidInput(f"model name {name} contains '/' or ':' (MLflow refuses them)", fix)
    norm = posixpath.normpath(value)
    if norm != value or norm in (".", "..") or norm.startswith(".."):
        raise InvalidInput(f"model name {name} would be read as the path {norm!r}", fix)
    if new and not _NEW_NAME.match(value):
        raise InvalidInput(f"model name {name} is not a plain name for a new model", fix)
    return value


def alias(value: str) -> str:
    """A registered model alias: letters, digits, ``_`` and ``-``; not ``latest`` or ``v3``."""
    fix = "an alias is letters, digits, '_' and '-', e.g. --alias champion"
    if not isinstance(value, str) or not value:
        raise InvalidInput("the alias is empty", fix)
    if len(value) > MAX_ALIAS or not _ALIAS.match(value):
        raise InvalidInput(f"alias {shown(value)} is not a valid alias", fix)
    if value.lower() == "latest" or _VERSION_ALIAS.match(value):
        raise InvalidInput(f"alias {shown(value)} is reserved by MLflow", fix)
    return value


def version(value: str, model: str) -> str:
    """A model version: a positive integer."""
    if not isinstance(value, str) or not value.isascii() or not value.isdigit() or len(value) > 12:
        raise InvalidInput(
            f"version {shown(str(value))} of model {shown(model)} is not a version number",
            f"write NAME/VERSION with a number, e.g. {model}/3; `nbops models {model}` lists them",
        )
    if int(value) < 1:
        raise InvalidInput(f"version {value} of model {shown(model)} does not exist", "from 1")
    return str(int(value))


def filter_value(value: str) -> str | None:
    """``value`` as a string literal of MLflow's search syntax (exact, for ``=``), or None when it
    holds both kinds of quote and cannot be written as one (search without it and compare)."""
    if "'" not in value:
        return f"'{value}'"
    if '"' not in value:
        return f'"{value}"'
    return None
