"""Bounds on everything a request turns into work: SQL, files, processes, memory.

One module, so the SQLite read path and the MlflowClient path refuse the same requests with the
same message. Every check raises :class:`~nbops.errors.InvalidInput` (HTTP 400) naming the
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

# --- run search ------------------------------------------------------------------------------
MAX_ORDER_KEYS = 8
MAX_ORDER_CHARS = 500  # one order_by clause
MAX_FILTER_CHARS = 4096
MAX_FILTER_TERMS = 20
MAX_LIKE_CHARS = 256
MAX_LIKE_WILDCARDS = 16
MAX_IN_VALUES = 100
MAX_RESULTS = 1000  # page size (max_results)
MAX_OFFSET = 10_000_000  # how far down a page token may point
MAX_TOKEN_CHARS = 4096
MAX_NAME_CHARS = 500  # experiment names, metric keys, job ids, schedule names
MAX_COMPARE_RUNS = 100

# --- files -------------------------------------------------------------------------------------
MAX_PATH_CHARS = 1024  # an artifact path
MAX_PATH_PART_CHARS = 255  # one name in it (NAME_MAX)
MAX_ARTIFACTS = 2000  # entries one run detail lists; the answer says when there are more
MAX_SCANNED = 20_000  # directory entries one listing looks at, listed or not
MAX_ARTIFACT_DEPTH = 32
MAX_DIFF_NOTEBOOK_BYTES = 50 * 2**20

# --- request bodies and launches ---------------------------------------------------------------
MAX_BODY_BYTES = 2**20
MAX_JSON_DEPTH = 32
MAX_PARAMS = 100
MAX_PARAM_KEY_CHARS = 250
MAX_STAGES = 100
MAX_ARG_CHARS = 100_000  # one argument (Linux: 131,072)
MAX_ARGV_CHARS = 500_000  # all of them (Linux: about 2 MiB with the environment)

_PARAM_KEY = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")


def refuse(what: str, problem: str, hint: str) -> InvalidInput:
    return InvalidInput(f"{what}: {problem}", hint)


def text(what: str, value: str, max_chars: int = MAX_NAME_CHARS) -> str:
    """``value`` when it has no NUL byte and at most ``max_chars`` characters."""
    if "\x00" in value:
        raise refuse(what, "contains a NUL byte", "remove it")
    if len(value) > max_chars:
        raise refuse(
            what, f"is {len(value)} characters long (at most {max_chars})", "pass a shorter value"
        )
    return value


def page_size(value: int) -> int:
    if not 1 <= value <= MAX_RESULTS:
        raise refuse(f"max_results={value}", f"is out of range (1..{MAX_RESULTS})", "page through")
    return value


def search(filter_string: str, order_by: Sequence[str], max_results: int) -> None:
    """The checks that need no parsing: sizes of the filter, the order keys and the page."""
    text("filter", filter_string, MAX_FILTER_CHARS)
    if len(order_by) > MAX_ORDER_KEYS:
        raise refuse(
            "order_by",
            f"names {len(order_by)} keys (at most {MAX_ORDER_KEYS})",
            "order by fewer keys",
        )
    for clause in order_by:
        text("order_by", clause, MAX_ORDER_CHARS)
    page_size(max_results)


def terms(parsed: Iterable[dict[str, Any]]) -> None:
    """The checks on a parsed filter (MLflow's comparison dicts): terms, LIKE and IN sizes."""
    comps = list(parsed)
    if len(comps) > MAX_FILTER_TERMS:
        raise refuse(
            "filter",
            f"has {len(comps)} comparisons (at most {MAX_FILTER_TERMS})",
            "narrow the search with fewer terms",
        )
    for comp in comps:
        op = str(comp.get("comparator", "")).upper()
        value: Any = comp.get("value")
        key = str(comp.get("key", ""))[:80]
        if op in ("LIKE", "ILIKE") and isinstance(value, str):
            if len(value) > MAX_LIKE_CHARS:
                raise refuse(
                    f"filter {key} {op}",
                    f"the pattern is {len(value)} characters long (at most {MAX_LIKE_CHARS})",
                    "use a shorter pattern",
                )
            if value.count("%") + value.count("_") > MAX_LIKE_WILDCARDS:
                raise refuse(
                    f"filter {key} {op}",
                    f"the pattern has more than {MAX_LIKE_WILDCARDS} wildcards (% and _)",
                    "use fewer wildcards",
                )
        many = isinstance(value, list | tuple | set) and len(value) > MAX_IN_VALUES
        if op in ("IN", "NOT IN") and many:
            raise refuse(
                f"filter {key} {op}",
                f"lists {len(value)} values (at most {MAX_IN_VALUES})",
                "list fewer values",
            )


def offset(value: Any) -> int:
    """A page token's row offset: a whole number in 0..MAX_OFFSET (else the token is corrupt)."""
    if type(value) is not int or not 0 <= value <= MAX_OFFSET:
        raise ValueError("offset out of range")
    return value


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
