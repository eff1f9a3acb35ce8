"""MLflow search syntax -> SQL over MLflow's own schema (SQLite or PostgreSQL), for the fast
read paths.

The filter and order_by strings are parsed by MLflow's own parser (:mod:`nbops.mlflow.search`:
same syntax, same errors);
the parsed comparisons are translated clause by clause into the SQL that MLflow's
SqlAlchemyStore would run (same NaN and NULL rules, same tie-breaks). Anything outside the common
subset raises :class:`Untranslatable` and the caller asks MlflowClient instead.

The SQL is written once, with ``?`` placeholders (the PostgreSQL reader turns them into
psycopg's ``%s``) and ``TRUE``/``FALSE`` for MLflow's boolean ``is_nan`` (SQLite reads them as
1/0); what differs between the two databases is a :class:`Dialect`: how ``ILIKE`` is written,
as SQLAlchemy renders ``ilike()`` for MLflow on that database.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nbops import tags
from nbops.errors import InvalidInput
from nbops.mlflow import search
from nbops.mlflow.readers import bounds as limits


class Untranslatable(Exception):
    """This filter/order is valid MLflow syntax but not in the subset translated to SQL."""


# attribute name -> runs column (filters); run_name is filtered through the mlflow.runName tag
_STRING_ATTRS = {"run_id": "run_uuid", "status": "status", "user_id": "user_id"}
_NUMERIC_ATTRS = {"start_time": "start_time", "end_time": "end_time"}
_ORDER_ATTRS = {
    "start_time": "start_time",
    "end_time": "end_time",
    "status": "status",
    "run_name": "name",
    "run_id": "run_uuid",
    "user_id": "user_id",
}
_NUM_OPS = {"=", "!=", ">", ">=", "<", "<="}
_STR_OPS = {"=", "!=", "LIKE", "ILIKE"}
_ENTITY = {"metric": "latest_metrics", "parameter": "params", "tag": "tags"}


@dataclass(frozen=True)
class Dialect:
    name: str
    ilike: str  # a case-insensitive LIKE of ``{col}`` against one bound pattern


SQLITE = Dialect("sqlite", "lower({col}) LIKE lower(?)")
POSTGRES = Dialect("postgresql", "{col} ILIKE ?")


@dataclass
class Query:
    """WHERE terms (ANDed) and ORDER BY terms with their LEFT JOINs, plus bound arguments."""

    where: list[str] = field(default_factory=list)
    where_args: list[Any] = field(default_factory=list)
    joins: list[str] = field(default_factory=list)
    join_args: list[Any] = field(default_factory=list)
    order: list[str] = field(default_factory=list)


def _mlflow_error(exc: Exception, what: str, text: str) -> InvalidInput:
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return InvalidInput(
        f"{what} {text!r} is not valid MLflow search syntax: {msg}",
        "example: \"metrics.accuracy > 0.9 and params.C = '1.0'\"; order_by: 'metrics.acc DESC'",
    )


def translate(filter_string: str, order_by: list[str], dialect: Dialect = SQLITE) -> Query:
    try:
        parsed = search.parse_filter(filter_string)
    except search.SearchSyntaxError as exc:
        raise _mlflow_error(exc, "filter", filter_string) from exc
    limits.terms(parsed)
    q = Query()
    for comp in parsed:
        try:
            _where(q, comp, dialect)
        except (ValueError, TypeError, OverflowError) as exc:  # MLflow words the error
            raise Untranslatable(str(exc)) from exc
    seen: set[tuple[str, str]] = set()
    for n, clause in enumerate(order_by, start=1):
        try:
            key_type, key, ascending = search.parse_order_by(clause)
        except search.SearchSyntaxError as exc:
            raise _mlflow_error(exc, "order_by", clause) from exc
        if (key_type, key) in seen:
            raise InvalidInput(f"order_by names {clause!r} twice", "name each key once")
        seen.add((key_type, key))
        _order(q, n, key_type, key, ascending)
    if ("attribute", "start_time") not in seen:
        q.order.append("r.start_time DESC")
    q.order.append("r.run_uuid")
    return q


def _where(q: Query, comp: dict[str, Any], dialect: Dialect) -> None:

    kind, key = comp.get("type"), search.key_alias(comp.get("key"))
    value: Any = comp.get("value")
    op = str(comp.get("comparator", "")).upper()
    if kind == "attribute":
        if key in _NUMERIC_ATTRS and op in _NUM_OPS:
            q.where.append(f"r.{_NUMERIC_ATTRS[key]} {op} ?")
            q.where_args.append(float(value))
        elif key in _STRING_ATTRS and op in _STR_OPS:
            q.where.append(_str_cmp(f"r.{_STRING_ATTRS[key]}", op, dialect))
            q.where_args.append(value)
        elif key == "run_id" and op in ("IN", "NOT IN"):
            values = list(value)
            if not values:
                raise Untranslatable(key)
            marks = ",".join("?" * len(values))
            q.where.append(f"r.run_uuid {op} ({marks})")
            q.where_args.extend(values)
        elif key == "run_name" and op in _STR_OPS:
            q.where.append(
                "EXISTS (SELECT 1 FROM tags t WHERE t.run_uuid = r.run_uuid"
                f" AND t.key = ? AND {_str_cmp('t.value', op, dialect)})"
            )
            q.where_args.extend([tags.MLFLOW_RUN_NAME, value])
        else:
            raise Untranslatable(f"attribute {key} {op}")
        return
    table = _ENTITY.get(str(kind))
    if table is None:
        raise Untranslatable(str(kind))
    if op in ("IS NULL", "IS NOT NULL"):
        neg = "NOT " if op == "IS NULL" else ""
        q.where.append(
            f"{neg}EXISTS (SELECT 1 FROM {table} e WHERE e.run_uuid = r.run_uuid AND e.key = ?)"
        )
        q.where_args.append(key)
        return
    if kind == "metric":
        if op not in _NUM_OPS:
            raise Untranslatable(f"metric {op}")
        # NaN is stored as value 0 with is_nan: only != may match it (as in MLflow's store)
        cond = (
            "(e.value != ? OR e.is_nan = TRUE)"
            if op == "!="
            else f"e.value {op} ? AND e.is_nan = FALSE"
        )
        arg: Any = float(value)
    else:
        if op not in _STR_OPS:
            raise Untranslatable(f"{kind} {op}")
        cond, arg = _str_cmp("e.value", op, dialect), value
    q.where.append(
        f"EXISTS (SELECT 1 FROM {table} e WHERE e.run_uuid = r.run_uuid AND e.key = ? AND {cond})"
    )
    q.where_args.extend([key, arg])


def _str_cmp(col: str, op: str, dialect: Dialect) -> str:
    if op == "ILIKE":  # what SQLAlchemy renders for ilike() on this database
        return dialect.ilike.format(col=col)
    return f"{col} {op} ?"


def _order(q: Query, n: int, kind: str, key: str, ascending: bool) -> None:
    direction = "" if ascending else " DESC"
    if kind == "attribute":
        col = _ORDER_ATTRS.get(key)
        if col is None:
            raise Untranslatable(f"order by attribute {key}")
        value = f"r.{col}"
        q.order.append(f"CASE WHEN {value} IS NULL THEN 1 ELSE 0 END")
    else:
        table = _ENTITY.get(kind)
        if table is None:
            raise Untranslatable(f"order by {kind}")
        alias = f"o{n}"
        q.joins.append(
            f"LEFT JOIN {table} {alias} ON {alias}.run_uuid = r.run_uuid AND {alias}.key = ?"
        )
        q.join_args.append(key)
        value = f"{alias}.value"
        if kind == "metric":  # present values first, then NaN, then runs without the metric
            q.order.append(
                f"CASE WHEN {alias}.is_nan = TRUE THEN 1 WHEN {value} IS NULL THEN 2 ELSE 0 END"
            )
        else:
            q.order.append(f"CASE WHEN {value} IS NULL THEN 1 ELSE 0 END")
    q.order.append(value + direction)
