"""MLflow's run-search syntax (``metrics.acc > 0.9 and params.C = '1.0'``, ``metrics.acc DESC``),
parsed by MLflow's own parser: the one place nbops calls ``mlflow.utils.search_utils.SearchUtils``
(an internal MLflow module), so an MLflow upgrade that changes it breaks here and nowhere else.

MLflow is imported on the first call, never at import.
"""

from __future__ import annotations

from typing import Any


class SearchSyntaxError(ValueError):
    """MLflow's parser refused a filter or an order_by clause; the text is MLflow's message."""


def _refused(exc: Exception) -> SearchSyntaxError:
    return SearchSyntaxError(str(exc) or type(exc).__name__)


def parse_filter(filter_string: str) -> list[dict[str, Any]]:
    """The comparisons of a filter, as MLflow's dicts (``type``, ``key``, ``comparator``,
    ``value``); ``[]`` for an empty filter. Raises :class:`SearchSyntaxError`."""
    from mlflow.utils.search_utils import SearchUtils

    try:
        parsed = SearchUtils.parse_search_filter(filter_string or "")  # type: ignore[no-untyped-call]
    except Exception as exc:  # noqa: BLE001 - MLflow raises MlflowException or ValueError
        raise _refused(exc) from exc
    return list(parsed)


def parse_order_by(clause: str) -> tuple[str, str, bool]:
    """One order_by clause as ``(kind, key, ascending)``: kind is ``attribute``, ``metric``,
    ``parameter`` or ``tag``; the key's aliases are resolved (``created`` is ``start_time``).
    Raises :class:`SearchSyntaxError`."""
    from mlflow.utils.search_utils import SearchUtils

    try:
        kind, key, ascending = SearchUtils.parse_order_by_for_search_runs(clause)  # type: ignore[no-untyped-call]
        return str(kind), key_alias(key), bool(ascending)
    except Exception as exc:  # noqa: BLE001 - MLflow raises MlflowException or ValueError
        raise _refused(exc) from exc


def key_alias(key: Any) -> str:
    """MLflow's name for an attribute alias: ``created`` is ``start_time``, ``run name`` is
    ``run_name``; any other key as it is."""
    from mlflow.utils.search_utils import SearchUtils

    return str(SearchUtils.translate_key_alias(key))  # type: ignore[no-untyped-call]
