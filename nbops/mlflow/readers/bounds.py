"""Bounds on a run search, for every reader: the SQLite path and the MlflowClient path refuse the
same requests with the same message. Every check raises :class:`~nbops.errors.InvalidInput`
(HTTP 400) naming the parameter, the limit and the fix; nothing here imports MLflow.

Why these numbers: SQLite crashes the whole process (SIGSEGV, the Jupyter server with it) on a
run list ordered by 31 or more keys, and refuses more than 64 tables in a join; MLflow's own SQL
store joins one table per filter term *and* per order key. ``MAX_ORDER_KEYS + MAX_FILTER_TERMS``
stays well under 31 on either path. A LIKE pattern costs time in its length times the value's,
more with every ``%``. The server's other bounds (files, bodies, launches) are in
:mod:`nbops.server.limits`, which re-exports these.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from nbops.errors import InvalidInput

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
