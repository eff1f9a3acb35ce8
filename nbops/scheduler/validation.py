"""The one check of a schedule, whatever its way in: ``nbops schedule add``, ``POST /schedules``,
``schedules:`` in nbops.yaml, and every stored row the daemon, ``schedule list`` and
``GET /schedules`` load (a row an older nbops or a hand edit wrote is checked like a new one).

Building a ``model.Schedule`` (or the server's ``CreateSchedule``) runs ``checked``; ``validate``
builds one from plain data (JSON from the store or the request, argv already typed) and checks it
against nbops.yaml too. Either returns the checked schedule or raises an NbopsError
(InvalidInput, ParameterError, ConfigError) whose message names the schedule and the field and
whose hint says the fix:

- name: letters, digits, '_', '.', '-' (it names lock and log files);
- cron: croniter's syntax, with a fire time, not rarer than once in 5 years (``cron.check_fires``);
- timezone: an IANA name;
- stages: stages of nbops.yaml;
- params: ``K`` declared by the parameters cell of a stage the schedule runs, or ``STAGE.K``
  declared by STAGE's notebook; values JSON-like and passed to ``nbops run -p`` exactly
  (``params.check``);
- retries: a whole number 0..MAX_RETRIES (not "3", 1.5 or true); timeout: whole seconds
  1..MAX_TIMEOUT or null; catchup: none | latest | all; on_failure: text or null.

Stages and params are checked against nbops.yaml only when it is given (``validate``, or
``context={"pipeline": ...}``); without it, only that they are a list of names and a map.
"""

from __future__ import annotations

import difflib
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nbops.errors import InvalidInput, NbopsError
from nbops.scheduler import cron, params
from nbops.scheduler.model import Schedule

MAX_RETRIES = 100
MAX_TIMEOUT = 30 * 86400
"""Seconds: an execution may be given at most 30 days."""
MAX_NAME = 200
MAX_TEXT = 4096


def whole(value: Any, field: str, lo: int, hi: int, example: str) -> int:
    """``value`` if it is a whole number (an int, not a bool, text or 1.5) in lo..hi."""
    if isinstance(value, float) and value.is_integer() and field == "timeout":
        value = int(value)  # `--timeout 3600` and JSON 3600.0 are whole seconds
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidInput(
            f"{field}: {value!r} is not a whole number", f"give a number {lo}..{hi}, e.g. {example}"
        )
    if not lo <= value <= hi:
        raise InvalidInput(f"{field}: {value} is out of range", f"use {lo}..{hi}, e.g. {example}")
    return value


def check_retries(value: Any) -> int:
    return whole(value, "retries", 0, MAX_RETRIES, "2")


def check_timeout(value: Any) -> int | None:
    if value is None:
        return None
    return whole(value, "timeout", 1, MAX_TIMEOUT, "3600 (seconds)")


def check_name(name: Any) -> str:
    from nbops.pipeline.config import NAME_HINT, NAME_RE  # the rule of every name in nbops.yaml

    if not isinstance(name, str) or len(name) > MAX_NAME or not NAME_RE.match(name):
        shown = name if not isinstance(name, str) else name[:80]
        raise InvalidInput(f"name: {shown!r} is not a valid schedule name", NAME_HINT)
    return name


def _text(value: Any, field: str, hint: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > MAX_TEXT or "\x00" in value:
        raise InvalidInput(f"{field}: {str(value)[:80]!r} is not text", hint)
    return value


def check_stages(stages: list[str], known: list[str], field: str = "stages") -> list[str]:
    """``stages``, each a stage of nbops.yaml (``known``); InvalidInput suggesting the close one."""
    for s in stages:
        if s not in known:
            close = difflib.get_close_matches(s, known, n=1)
            hint = (
                f"did you mean {close[0]!r}?"
                if close
                else f"stages of nbops.yaml: {', '.join(known)}"
            )
            raise InvalidInput(f"{field}: unknown stage {s!r}", hint)
    return list(stages)


def _stages(value: Any, known: list[str] | None) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
        raise InvalidInput(f"stages: {value!r} is not a list of stage names", "e.g. [train]")
    return list(value) if known is None else check_stages(value, known)


def _declared(root: Path, notebook: str) -> dict[str, Any]:
    """The notebook's declared parameters, re-read only when the file changed."""
    from nbops.pipeline.notebook import declared_parameters

    path = root / notebook
    try:
        st = path.stat()
        key = (str(path), st.st_mtime_ns, st.st_size)
    except OSError:
        return declared_parameters(path)  # its ConfigError names the missing notebook
    if key not in _DECLARED:
        if len(_DECLARED) > 256:
            _DECLARED.clear()
        _DECLARED[key] = declared_parameters(path)
    return _DECLARED[key]


_DECLARED: dict[tuple[str, int, int], dict[str, Any]] = {}


def _params(value: Any, stages: list[str], pipeline: Any) -> dict[str, Any]:
    """Typed params, each taken by a stage the schedule runs (as ``nbops run -p`` would)."""
    from nbops.pipeline.graph import build

    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidInput(f"params: {str(value)[:80]!r} is not a map", "e.g. {C: 0.1}")
    if not value:
        return {}
    if pipeline is None:
        return dict(value)  # checked against the stages' notebooks by ``validate``
    graph = build(pipeline)
    selected = graph.select(stages) if stages else list(graph.order)
    root = pipeline.root
    out: dict[str, Any] = {}
    for key, v in value.items():
        if not isinstance(key, str) or not key.strip() or any(c.isspace() for c in key):
            raise InvalidInput(f"params: {key!r} is not a parameter name", "e.g. C or train.C")
        stage, dot, rest = key.partition(".")
        if dot and stage in pipeline.stages:
            if stage not in selected:
                raise InvalidInput(
                    f"params: {key}: stage {stage!r} is not among those the schedule runs",
                    f"add it to the schedule's stages, or drop the parameter (runs: "
                    f"{', '.join(selected)})",
                )
            declared = _declared(root, pipeline.stages[stage].notebook)
            if rest not in declared:
                raise InvalidInput(
                    f"params: {key}: {pipeline.stages[stage].notebook} declares no parameter "
                    f"{rest!r}",
                    "its parameters cell declares: " + (", ".join(declared) or "nothing"),
                )
        else:
            takers = [s for s in selected if key in _declared(root, pipeline.stages[s].notebook)]
            if not takers:
                listing = "; ".join(
                    f"{s}: {', '.join(_declared(root, pipeline.stages[s].notebook)) or '-'}"
                    for s in selected
                )
                raise InvalidInput(
                    f"params: {key}: no stage the schedule runs declares a parameter {key!r}",
                    f"declared: {listing}",
                )
        out[key] = params.check(key, v)
    return out


FIELDS = set(Schedule.model_fields)


def validate(
    fields: Mapping[str, Any], pipeline: Any, *, source: str = "cli", now: float | None = None
) -> Schedule:
    """The schedule ``fields`` describe, checked (module doc) against ``pipeline``, nbops.yaml
    (``nbops.pipeline.spec.load``); NbopsError naming the schedule and the field otherwise."""
    data = {**fields, "source": "nbops.yaml" if source == "nbops.yaml" else "cli"}
    return Schedule.model_validate(data, context={"pipeline": pipeline, "now": now})


def checked(data: Any, allowed: set[str], context: Any = None) -> Any:
    """``data``, the fields of a schedule being built, checked in the module doc's order and
    normalised (cron as ``cron.check_fires`` writes it, params typed, "" as None); the fields
    must be among ``allowed``. ``context`` may give ``pipeline`` and ``now``."""
    if not isinstance(data, Mapping):
        return data  # a model already built (and checked), or not a map: pydantic says so
    context = context if isinstance(context, Mapping) else {}
    now = context.get("now")
    name = data.get("name")
    label = f"schedule {name!r}" if isinstance(name, str) else "schedule"
    try:
        return _checked(data, allowed, context.get("pipeline"), time.time() if now is None else now)
    except NbopsError as exc:
        if isinstance(name, str) and exc.message.startswith(f"schedule {name!r}"):
            raise
        exc.message = f"{label}: {exc.message}"
        exc.args = (exc.message,)
        raise


def _checked(data: Mapping[str, Any], allowed: set[str], pipeline: Any, now: float) -> Any:
    unknown = sorted(str(k) for k in data if k not in allowed)
    if unknown:
        raise InvalidInput(
            f"unknown field {unknown[0]!r}", f"a schedule has: {', '.join(sorted(allowed))}"
        )
    out = dict(data)
    out["name"] = check_name(data.get("name"))
    tz = data.get("timezone")
    if tz is not None and tz != "" and not isinstance(tz, str):
        raise InvalidInput(f"timezone: {tz!r} is not a time zone name", "e.g. 'Europe/Berlin'")
    out["timezone"] = tz = tz or None
    expr = data.get("cron")
    if not isinstance(expr, str):
        raise InvalidInput(f"cron: {expr!r} is not a cron expression", cron.CRON_HINT)
    out["cron"] = cron.check_fires(expr, tz, now)
    catchup = data.get("catchup", "latest")
    if catchup not in ("none", "latest", "all"):
        raise InvalidInput(
            f"catchup: {catchup!r} is not one of none, latest, all",
            "none: skip missed times; latest: run once; all: run each in order",
        )
    out["catchup"] = catchup
    out["retries"] = check_retries(data.get("retries", 0))
    out["timeout"] = check_timeout(data.get("timeout"))
    if "on_failure" in allowed:
        out["on_failure"] = _text(
            data.get("on_failure"), "on_failure", "a shell command, e.g. ./alert.sh"
        )
    known = list(pipeline.stages) if pipeline is not None else None
    out["stages"] = stages = _stages(data.get("stages"), known)
    out["params"] = _params(data.get("params"), stages, pipeline)
    return out
