"""MLflow's run-search syntax (``metrics.acc > 0.9 and params.C = '1.0'``, ``metrics.acc DESC``)
as the readers and the CLI use it: parsed by :mod:`nbops.mlflow.search_syntax`, MLflow's own
parser without MLflow (same parsed form, same messages; checked against the installed MLflow's
``SearchUtils`` by tests/unit/test_search_syntax.py, so an MLflow upgrade that changes the
syntax fails there and nowhere else).

Nothing here imports MLflow.
"""

from __future__ import annotations

from typing import Any

from nbops.mlflow import search_syntax
from nbops.mlflow.search_syntax import SearchSyntaxError

__all__ = ["SearchSyntaxError", "key_alias", "parse_filter", "parse_order_by"]


def parse_filter(filter_string: str) -> list[dict[str, Any]]:
    """The comparisons of a filter, as MLflow's dicts (``type``, ``key``, ``comparator``,
    ``value``); ``[]`` for an empty filter. Raises :class:`SearchSyntaxError`."""
    return search_syntax.parse_filter(filter_string or "")


def parse_order_by(clause: str) -> tuple[str, str, bool]:
    """One order_by clause as ``(kind, key, ascending)``: kind is ``attribute``, ``metric``,
    ``parameter`` or ``tag``; the key's aliases are resolved (``created`` is ``start_time``).
    Raises :class:`SearchSyntaxError`."""
    kind, key, ascending = search_syntax.parse_order_by(clause)
    return kind, key_alias(key), ascending


def key_alias(key: Any) -> str:
    """MLflow's name for an attribute alias: ``created`` is ``start_time``, ``run name`` is
    ``run_name``; any other key as it is."""
    return str(search_syntax.translate_key_alias(key))
