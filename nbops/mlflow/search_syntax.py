"""MLflow's run-search syntax without importing MLflow: the filter (``metrics.acc > 0.9 and
params.C = '1.0'``) and the order_by clauses (``metrics.acc DESC``) parsed into the same form and
refused with the same messages as ``mlflow.utils.search_utils.SearchUtils``
(``parse_search_filter``, ``parse_order_by_for_search_runs``, ``translate_key_alias``).

It is MLflow 3.17's code for runs, kept to what a run search uses, on the same tokenizer
(``sqlparse``, which MLflow depends on): the read commands parse a filter in milliseconds
instead of importing MLflow for a second. ``tests/unit/test_search_syntax.py`` checks it against
the installed MLflow's SearchUtils on generated filters and order_by clauses (same parsed form,
same message), so an MLflow upgrade that changes the syntax fails there.
"""

from __future__ import annotations

import ast
import shlex
from typing import Any

import sqlparse
from sqlparse.sql import Comparison, Identifier, Parenthesis, Statement
from sqlparse.sql import Token as _Token
from sqlparse.sql import TokenList as _TokenList
from sqlparse.tokens import Token as TokenType

# sqlparse has no type hints: its constructors, typed as what they make
_Comparison: Any = Comparison
Token: Any = _Token
TokenList: Any = _TokenList


class SearchSyntaxError(ValueError):
    """A filter or an order_by clause MLflow refuses; the text is MLflow's message."""


# MLflow's RunInfo.get_searchable_attributes() / get_orderable_attributes() (3.17), plus aliases
_RUN_ATTRIBUTES = [
    "artifact_uri",
    "end_time",
    "run_id",
    "run_name",
    "start_time",
    "status",
    "user_id",
]
_ALTERNATE_NUMERIC_ATTRIBUTES = {"created", "Created"}
_ALTERNATE_STRING_ATTRIBUTES = {"run name", "Run name", "Run Name"}
NUMERIC_ATTRIBUTES = {"start_time", "end_time"} | _ALTERNATE_NUMERIC_ATTRIBUTES
VALID_SEARCH_ATTRIBUTE_KEYS = set(
    _RUN_ATTRIBUTES + list(_ALTERNATE_NUMERIC_ATTRIBUTES) + list(_ALTERNATE_STRING_ATTRIBUTES)
)
VALID_ORDER_BY_ATTRIBUTE_KEYS = set(_RUN_ATTRIBUTES + list(_ALTERNATE_NUMERIC_ATTRIBUTES))
DATASET_ATTRIBUTES = {"name", "digest", "context"}
LIST_SUPPORTED_KEYS = frozenset({"run_id"})

_METRIC, _PARAM, _TAG, _ATTRIBUTE, _DATASET = "metric", "parameter", "tag", "attribute", "dataset"
_IDENTIFIERS = [_METRIC, _PARAM, _TAG, _ATTRIBUTE, _DATASET]
_ALIASES = {
    **{a: _METRIC for a in ("metrics",)},
    **{a: _PARAM for a in ("parameters", "param", "params")},
    **{a: _TAG for a in ("tags",)},
    **{a: _ATTRIBUTE for a in ("attr", "attributes", "run")},
    **{a: _DATASET for a in ("datasets",)},
}
_VALID_IDENTIFIERS = set(_IDENTIFIERS) | set(_ALIASES)
_STRING_VALUE_TYPES = {TokenType.Literal.String.Single}
_NUMERIC_VALUE_TYPES = {TokenType.Literal.Number.Integer, TokenType.Literal.Number.Float}
_ORDER_TAGS = ("asc", "desc")
_TIMESTAMP = "timestamp"


def translate_key_alias(key: Any) -> Any:
    """MLflow's name for an attribute alias: ``created`` is ``start_time``, ``run name`` is
    ``run_name``; any other key as it is."""
    if key in ("created", "Created"):
        return "start_time"
    if key in ("run name", "Run name", "Run Name"):
        return "run_name"
    return key


def _is_quoted(value: str, quote: str) -> bool:
    return len(value) >= 2 and value.startswith(quote) and value.endswith(quote)


def _trim_backticks(entity_type: str) -> str:
    return entity_type[1:-1] if _is_quoted(entity_type, "`") else entity_type


def _strip_quotes(value: str, expect_quoted_value: bool = False) -> str:
    if _is_quoted(value, "'") or _is_quoted(value, '"'):
        return value[1:-1]
    if expect_quoted_value:
        raise SearchSyntaxError(
            "Parameter value is either not quoted or unidentified quote "
            f"types used for string value {value}. Use either single or double "
            "quotes."
        )
    return value


def _valid_entity_type(entity_type: str) -> str:
    entity_type = _trim_backticks(entity_type)
    if entity_type not in _VALID_IDENTIFIERS:
        raise SearchSyntaxError(
            f"Invalid entity type '{entity_type}'. Valid values are {_IDENTIFIERS}"
        )
    return _ALIASES.get(entity_type, entity_type)


def _get_identifier(identifier: str, valid_attributes: set[str]) -> dict[str, Any]:
    tokens = identifier.split(".", 1)
    if len(tokens) == 1:
        key, entity_type = tokens[0], _ATTRIBUTE
    else:
        entity_type, key = tokens
    kind = _valid_entity_type(entity_type)
    key = _trim_backticks(_strip_quotes(key))
    if kind == _ATTRIBUTE and key not in valid_attributes:
        raise SearchSyntaxError(
            f"Invalid attribute key '{key}' specified. Valid keys are '{valid_attributes}'"
        )
    if kind == _DATASET and key not in DATASET_ATTRIBUTES:
        raise SearchSyntaxError(
            f"Invalid dataset key '{key}' specified. Valid keys are '{DATASET_ATTRIBUTES}'"
        )
    return {"type": kind, "key": key}


def _parse_list(token: Any) -> tuple[Any, ...]:
    try:
        parsed = ast.literal_eval(token.value)
    except SyntaxError as e:
        raise SearchSyntaxError(
            "While parsing a list in the query,"
            " expected a non-empty list of string values, but got ill-formed list."
        ) from e
    parsed = parsed if isinstance(parsed, tuple) else (parsed,)
    if len(parsed) == 0:
        raise SearchSyntaxError(
            "While parsing a list in the query,"
            " expected a non-empty list of string values, but got empty list"
        )
    if not all(isinstance(x, str) for x in parsed):
        raise SearchSyntaxError(
            "While parsing a list in the query, expected string value, punctuation, "
            f"or whitespace, but got different type in list: {parsed}"
        )
    return parsed


def _get_value(kind: str, key: str, token: Any) -> Any:
    if kind == _METRIC:
        if token.ttype not in _NUMERIC_VALUE_TYPES:
            raise SearchSyntaxError(f"Expected numeric value type for metric. Found {token.value}")
        return token.value
    if kind in (_PARAM, _TAG):
        if token.ttype in _STRING_VALUE_TYPES or isinstance(token, Identifier):
            return _strip_quotes(token.value, expect_quoted_value=True)
        raise SearchSyntaxError(
            f"Expected a quoted string value for {kind} (e.g. 'my-value'). Got value {token.value}"
        )
    if kind == _ATTRIBUTE:
        if key in NUMERIC_ATTRIBUTES:
            if token.ttype not in _NUMERIC_VALUE_TYPES:
                raise SearchSyntaxError(
                    f"Expected numeric value type for numeric attribute: {key}. Found {token.value}"
                )
            if token.ttype == TokenType.Literal.Number.Integer:
                return int(token.value)
            return float(token.value)
        if token.ttype in _STRING_VALUE_TYPES or isinstance(token, Identifier):
            return _strip_quotes(token.value, expect_quoted_value=True)
        if isinstance(token, Parenthesis):
            if key not in LIST_SUPPORTED_KEYS:
                raise SearchSyntaxError(
                    f"Only {sorted(LIST_SUPPORTED_KEYS)} attributes support "
                    "comparison with a list of quoted string values."
                )
            return _parse_list(token)
        raise SearchSyntaxError(
            f"Expected a quoted string value for attributes. Got value {token.value}"
        )
    # dataset (the only other kind _get_identifier gives)
    if key in DATASET_ATTRIBUTES and (
        token.ttype in _STRING_VALUE_TYPES or isinstance(token, Identifier)
    ):
        return _strip_quotes(token.value, expect_quoted_value=True)
    if isinstance(token, Parenthesis):
        return _parse_list(token)
    raise SearchSyntaxError(
        f"Expected a quoted string value for dataset attributes. Got value {token.value}"
    )


def _validate_comparison(tokens: list[Any]) -> None:
    base = "Invalid comparison clause"
    if len(tokens) == 2:
        comparator = tokens[1].value.upper()
        if comparator in ("IS NULL", "IS NOT NULL"):
            if not isinstance(tokens[0], Identifier):
                raise SearchSyntaxError(f"{base}. Expected 'Identifier' found '{tokens[0]}'")
            return
    if len(tokens) != 3:
        raise SearchSyntaxError(f"{base}. Expected 3 tokens found {len(tokens)}")
    if not isinstance(tokens[0], Identifier):
        raise SearchSyntaxError(f"{base}. Expected 'Identifier' found '{tokens[0]}'")
    # MLflow's two further checks can never fail: every sqlparse token is a Token


def _get_comparison(comparison: Any) -> dict[str, Any]:
    stripped = [t for t in comparison.tokens if not t.is_whitespace]
    _validate_comparison(stripped)
    if len(stripped) == 2:
        comparator = stripped[1].value.upper()
        comp = _get_identifier(stripped[0].value, VALID_SEARCH_ATTRIBUTE_KEYS)
        if comp["type"] not in (_TAG, _PARAM):
            raise SearchSyntaxError(
                "IS NULL / IS NOT NULL is only supported for tags and params, "
                f"not for '{comp['type']}' '{comp['key']}'"
            )
        comp["comparator"] = comparator
        comp["value"] = None
        return comp
    comp = _get_identifier(stripped[0].value, VALID_SEARCH_ATTRIBUTE_KEYS)
    comp["comparator"] = stripped[1].value
    comp["value"] = _get_value(comp["type"], comp["key"], stripped[2])
    return comp


def _join_in_comparison_tokens(tokens: list[Any]) -> list[Any]:
    """MLflow's joining of ``x IN (...)``, ``x NOT IN (...)``, ``x IS [NOT] NULL`` into one
    Comparison (sqlparse >= 0.4.4 leaves them apart)."""
    items = [t for t in tokens if not t.is_whitespace]
    joined: list[Any] = []
    n = len(items)
    i = 0
    while i < n:
        first = items[i]
        if n - i < 3:
            joined.extend(items[i:])
            break
        if not isinstance(first, Identifier):
            joined.append(first)
            i += 1
            continue
        second, third = items[i + 1], items[i + 2]
        if second.match(TokenType.Keyword, ["IN"]) and isinstance(third, Parenthesis):
            joined.append(_Comparison(TokenList([first, second, third])))
            i += 3
            continue
        if second.match(TokenType.Keyword, ["IS"]) and third.match(TokenType.Keyword, ["NULL"]):
            joined.append(_Comparison(TokenList([first, Token(TokenType.Keyword, "IS NULL")])))
            i += 3
            continue
        if (
            second.match(TokenType.Keyword, ["IS"])
            and third.ttype == TokenType.Keyword
            and third.value.upper() == "NOT NULL"
        ):
            joined.append(_Comparison(TokenList([first, Token(TokenType.Keyword, "IS NOT NULL")])))
            i += 3
            continue
        if i + 3 >= n:
            joined.extend([first, second, third])
            break
        fourth = items[i + 3]
        if (
            second.match(TokenType.Keyword, ["NOT"])
            and third.match(TokenType.Keyword, ["IN"])
            and isinstance(fourth, Parenthesis)
        ):
            joined.append(
                _Comparison(TokenList([first, Token(TokenType.Keyword, "NOT IN"), fourth]))
            )
            i += 4
            continue
        joined.extend([first, second, third, fourth])
        i += 4
    return joined


def _invalid_token(token: Any) -> bool:
    return not (
        isinstance(token, Comparison)
        or token.is_whitespace
        or token.match(TokenType.Keyword, ["AND"])
    )


def parse_filter(filter_string: str) -> list[dict[str, Any]]:
    """The comparisons of a filter, as MLflow's dicts (``type``, ``key``, ``comparator``,
    ``value``); ``[]`` for an empty filter. Raises :class:`SearchSyntaxError` with MLflow's
    message."""
    if not filter_string:
        return []
    try:
        parsed = sqlparse.parse(filter_string)
    except Exception:  # noqa: BLE001 - as MLflow: any tokenizer failure
        raise SearchSyntaxError(f"Error on parsing filter '{filter_string}'") from None
    if len(parsed) == 0 or not isinstance(parsed[0], Statement):
        raise SearchSyntaxError(f"Invalid filter '{filter_string}'. Could not be parsed.")
    if len(parsed) > 1:
        raise SearchSyntaxError(
            f"Search filter contained multiple expression {filter_string!r}. "
            "Provide AND-ed expression list."
        )
    tokens = _join_in_comparison_tokens(parsed[0].tokens)
    invalids = [t for t in tokens if _invalid_token(t)]
    if invalids:
        clauses = ", ".join(f"'{t}'" for t in invalids)
        raise SearchSyntaxError(f"Invalid clause(s) in filter string: {clauses}")
    return [_get_comparison(t) for t in tokens if isinstance(t, Comparison)]


def _order_by_token(order_by: str) -> str:
    try:
        parsed = sqlparse.parse(order_by)
    except Exception:  # noqa: BLE001 - as MLflow: any tokenizer failure
        raise SearchSyntaxError(f"Error on parsing order_by clause '{order_by}'") from None
    refused = SearchSyntaxError(f"Invalid order_by clause '{order_by}'. Could not be parsed.")
    if len(parsed) != 1 or not isinstance(parsed[0], Statement):
        raise refused
    tokens = parsed[0].tokens
    if len(tokens) == 1 and isinstance(tokens[0], Identifier):
        return str(tokens[0].value)
    if len(tokens) == 1 and tokens[0].match(TokenType.Name.Builtin, [_TIMESTAMP]):
        return _TIMESTAMP
    if (
        tokens[0].match(TokenType.Name.Builtin, [_TIMESTAMP])
        and all(t.is_whitespace for t in tokens[1:-1])
        and tokens[-1].ttype == TokenType.Keyword.Order
    ):
        return f"{_TIMESTAMP} {tokens[-1].value}"
    raise refused


def parse_order_by(order_by: str) -> tuple[str, str, bool]:
    """One order_by clause as MLflow's ``(kind, key, ascending)`` (kind ``attribute``,
    ``metric``, ``parameter``, ``tag`` or ``dataset``; the key as written, aliases not
    resolved). Raises :class:`SearchSyntaxError` with MLflow's message."""
    token_value = _order_by_token(order_by)
    ascending = True
    try:
        tokens = shlex.split(token_value.replace("`", '"'))
    except ValueError as exc:  # MLflow lets shlex's ValueError through: its text is the message
        raise SearchSyntaxError(str(exc)) from None
    if len(tokens) > 2:
        raise SearchSyntaxError(f"Invalid order_by clause '{order_by}'. Could not be parsed.")
    if len(tokens) == 2:
        order = tokens[1].lower()
        if order not in _ORDER_TAGS:
            raise SearchSyntaxError(f"Invalid ordering key in order_by clause '{order_by}'.")
        ascending = order == "asc"
        token_value = tokens[0]
    ident = _get_identifier(token_value.strip(), VALID_ORDER_BY_ATTRIBUTE_KEYS)
    return str(ident["type"]), str(ident["key"]), ascending
