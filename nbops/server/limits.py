"""Bounds on everything a request turns into work: SQL, files, processes, memory.

One module for the server (the run-search bounds are the readers' own,
:mod:`nbops.mlflow.readers.bounds`, re-exported here), so every endpoint refuses with the same
kind of message. Every check raises :class:`~nbops.errors.InvalidInput` (HTTP 400) naming the
parameter, the limit and the fix; nothing here imports MLflow.

Why these numbers:

- SQLite crashes the whole process (SIGSEGV, the Jupyter server with it) on a run list ordered by
  31 or more keys, and refuses more than 64 tables in a join; MLflow's own SQL store joins one
  table per filter term *and* per order key. ``MAX_ORDER_KEYS + MAX_FILTER_TERMS`` stays well
  under 31 on either path.
- A LIKE pattern costs time in its length times the value's, more with every ``%``.
- One command-line argument may be at most 128 KiB on Linux (MAX_ARG_STRLEN) and all of them
  with the environment about 2 MiB (ARG_MAX): a launch is refused well before either.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from typing import Any

from nbops.errors import InvalidInput
from nbops.mlflow.readers import bounds as _bounds

# --- run search (the readers' bounds, shared) ------------------------------------------------
MAX_COMPARE_RUNS = _bounds.MAX_COMPARE_RUNS
MAX_FILTER_CHARS = _bounds.MAX_FILTER_CHARS
MAX_FILTER_TERMS = _bounds.MAX_FILTER_TERMS
MAX_IN_VALUES = _bounds.MAX_IN_VALUES
MAX_LIKE_CHARS = _bounds.MAX_LIKE_CHARS
MAX_LIKE_WILDCARDS = _bounds.MAX_LIKE_WILDCARDS
MAX_NAME_CHARS = _bounds.MAX_NAME_CHARS
MAX_OFFSET = _bounds.MAX_OFFSET
MAX_ORDER_CHARS = _bounds.MAX_ORDER_CHARS
MAX_ORDER_KEYS = _bounds.MAX_ORDER_KEYS
MAX_RESULTS = _bounds.MAX_RESULTS
MAX_TOKEN_CHARS = _bounds.MAX_TOKEN_CHARS
offset = _bounds.offset
page_size = _bounds.page_size
refuse = _bounds.refuse
search = _bounds.search
terms = _bounds.terms
text = _bounds.text

# --- files -------------------------------------------------------------------------------------
MAX_PATH_CHARS = 1024  # an artifact path
MAX_PATH_PART_CHARS = 255  # one name in it (NAME_MAX)
MAX_ARTIFACTS = 2000  # entries one run detail lists; the answer says when there are more
MAX_SCANNED = 20_000  # directory entries one listing looks at, listed or not
MAX_ARTIFACT_DEPTH = 32
MAX_DIFF_NOTEBOOK_BYTES = 50 * 2**20
# a remote artifact (a tracking server's) downloaded to be served: its listed size, and again
# the downloaded file's (larger ones are refused with the command that downloads them)
MAX_FETCHED_ARTIFACT_BYTES = 200 * 2**20

# --- request bodies and launches ---------------------------------------------------------------
MAX_BODY_BYTES = 2**20
MAX_JSON_DEPTH = 32
MAX_PARAMS = 100
MAX_PARAM_KEY_CHARS = 250
MAX_STAGES = 100
MAX_ARG_CHARS = 100_000  # one argument (Linux: 131,072)
MAX_ARGV_CHARS = 500_000  # all of them (Linux: about 2 MiB with the environment)

_PARAM_KEY = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")


# --- bodies ------------------------------------------------------------------------------------
def _no_constant(name: str) -> Any:
    raise refuse("request body", f"{name} is not JSON", "send numbers as finite values")


def depth(value: Any) -> int:
    """How deeply lists and mappings nest in ``value`` (0 for a scalar), without recursion."""
    deepest, todo = 0, [(value, 1)]
    while todo:
        v, d = todo.pop()
        if isinstance(v, dict):
            children: Iterable[Any] = v.values()
        elif isinstance(v, list):
            children = v
        else:
            continue
        deepest = max(deepest, d)
        if deepest > MAX_JSON_DEPTH:
            break
        todo.extend((c, d + 1) for c in children)
    return deepest


def json_body(raw: bytes | None) -> Any:
    """A request body parsed as JSON within the size and nesting limits (empty -> {})."""
    raw = raw or b"{}"
    if len(raw) > MAX_BODY_BYTES:
        raise refuse(
            "request body",
            f"is {len(raw)} bytes (at most {MAX_BODY_BYTES})",
            "send less; pass large inputs as a file in the project",
        )
    try:
        data = json.loads(raw, parse_constant=_no_constant)
    except RecursionError:
        raise refuse(
            "request body", f"nests deeper than {MAX_JSON_DEPTH} levels", "flatten it"
        ) from None
    except ValueError as exc:
        raise InvalidInput(f"request body is not JSON: {str(exc)[:200]}") from None
    if depth(data) > MAX_JSON_DEPTH:
        raise refuse("request body", f"nests deeper than {MAX_JSON_DEPTH} levels", "flatten it")
    return data


# --- launches ----------------------------------------------------------------------------------
def param_text(value: Any) -> str:
    """A JSON value as ``-p k=v`` text: nbops reads it as YAML, so JSON keeps its type."""
    return value if isinstance(value, str) else json.dumps(value)


def params(values: dict[str, Any], what: str = "params") -> None:
    """Parameter names and values of a launch: how many, how long, and each value readable by
    :func:`nbops.values.parse_value` (no aliases, deep nesting or huge numbers)."""
    from nbops.values import parse_value

    if len(values) > MAX_PARAMS:
        raise refuse(what, f"has {len(values)} entries (at most {MAX_PARAMS})", "pass fewer")
    for k, v in values.items():
        text(f"{what} name {k[:80]!r}", k, MAX_PARAM_KEY_CHARS)
        if not _PARAM_KEY.match(k):
            raise refuse(
                f"{what} name {k[:80]!r}",
                "is not a parameter name",
                "use letters, digits, _ . and - (stage.name for one stage's parameter)",
            )
        parse_value(param_text(v), f"{what}.{k}")


def stages(names: Sequence[str]) -> None:
    if len(names) > MAX_STAGES:
        raise refuse("stages", f"names {len(names)} stages (at most {MAX_STAGES})", "name fewer")
    for s in names:
        text("stage name", s, MAX_NAME_CHARS)


def argv(args: Sequence[str]) -> None:
    """Refuse a command line the OS would refuse (E2BIG) before anything is spawned."""
    sizes = []
    for a in args:
        size = len(a.encode("utf-8", "surrogateescape"))
        sizes.append(size)
        if "\x00" in a:
            raise refuse("command line", "an argument contains a NUL byte", "remove it")
        if size > MAX_ARG_CHARS:
            raise refuse(
                "command line",
                f"one argument is {size} bytes long (at most {MAX_ARG_CHARS})",
                "pass fewer or shorter parameter values",
            )
    total = sum(size + 1 for size in sizes)
    if total > MAX_ARGV_CHARS:
        raise refuse(
            "command line",
            f"is {total} bytes long (at most {MAX_ARGV_CHARS})",
            "pass fewer or shorter parameter values",
        )
