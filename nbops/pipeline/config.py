"""The model of ``nbops.yaml`` (pydantic): stages, schedules, gates, drift, and the pipeline
that holds them with the position of each of its keys and values. Read by
:func:`nbops.pipeline.spec.load`; imports only pydantic.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    model_validator,
)
from pydantic_core import PydanticCustomError

from nbops.errors import ConfigError

Key = tuple[str | int, ...]
"""A path into nbops.yaml, like ``("stages", "train", "deps", 0)``."""
Position = tuple[int, int]
"""A 1-based (line, column)."""

NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
NAME_HINT = "start with a letter or '_', then use letters, digits, '_', '.' or '-'"
CHECK_RE = re.compile(
    r"^\s*(>=|<=|==|!=|>|<)\s*([-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)\s*$"
)
CHECK_HINT = "write an operator and a number, quoted, like '>= 0.8' (operators: >= > <= < == !=)"


def parse_check(text: str) -> tuple[str, float]:
    """A check such as ``">= 0.8"`` as its operator and bound: ``(">=", 0.8)``."""
    match = CHECK_RE.match(text) if isinstance(text, str) else None
    if match is None:
        raise ConfigError(f"{text!r} is not a comparison like '>= 0.8'", CHECK_HINT)
    bound = float(match.group(2))
    if not math.isfinite(bound):
        raise ConfigError(f"{text!r} compares with a number too large to be finite", CHECK_HINT)
    return match.group(1), bound


SIZE_RE = re.compile(
    r"^\s*((?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)\s*([kKmMgGtT]i?[bB]?|[bB])?\s*$"
)


def parse_size(value: int | float | str) -> float:
    """A memory size as bytes: ``8GB`` -> 8e9, ``512MiB`` -> 536870912, ``1e9`` -> 1e9; a
    ValueError for anything else (zero, negative, not finite, not a size)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"{value!r} is not a size")
    if isinstance(value, int | float):
        size = _finite(value)
        if size is None or size <= 0:
            raise ValueError(f"{value!r} is not a positive size")
        return size
    match = SIZE_RE.match(value)
    if match is None:
        raise ValueError(f"{value[:40]!r} is not a size like 8GB or 512MiB")
    number, unit = float(match.group(1)), (match.group(2) or "").lower()
    base = 1024.0 if "i" in unit else 1000.0
    scale = 1.0 if unit in ("", "b") else base ** ("kmgt".index(unit[0]) + 1)
    size = number * scale
    if not math.isfinite(size) or size <= 0:
        raise ValueError(f"{value[:40]!r} is not a positive size")
    return size


def _finite(value: int | float) -> float | None:
    """``value`` as a finite float, None when it is not one (inf, nan, an int too large)."""
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


MEMORY = "memory"
"""The one key of ``resources:`` that is not a dask resource: the bytes a worker must have (a
size like 8GB, checked against each worker's memory limit)."""
RESOURCES_HINT = "write a positive number, like GPU: 1, or for memory: a size like 8GB or 512MiB"


def is_memory(name: str) -> bool:
    """Whether a key of ``resources:`` is ``memory`` (any case)."""
    return name.lower() == MEMORY


def resource_problem(name: str, value: Any) -> str | None:
    """Why ``value`` cannot be the amount of resource ``name`` (words that follow the key), or
    None: ``memory`` takes a size (``8GB``, ``512MiB``, a number of bytes), every other
    resource a positive finite number."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return "must be a positive number" + (" or a size like 8GB" if is_memory(name) else "")
    if is_memory(name):
        try:
            parse_size(value)
        except ValueError:
            return f"must be a size like 8GB or 512MiB, got {str(value)[:40]!r}"
        return None
    if isinstance(value, str):
        return f"must be a number (only memory: takes a size), got the text {value[:40]!r}"
    number = _finite(value)
    if number is None or number <= 0:
        return f"must be a positive number, got {str(value)[:40]}"
    return None


def stage_resources(stage: Stage) -> tuple[dict[str, float], float | None]:
    """A stage's ``resources:`` as dask resources and the bytes of memory it needs."""
    out: dict[str, float] = {}
    memory: float | None = None
    for name, value in stage.resources.items():
        if is_memory(name):
            memory = parse_size(value)
        else:
            out[name] = float(value)
    return out, memory


def _invalid(message: str, hint: str) -> PydanticCustomError:
    """A validation error whose message and hint reach the ConfigError unchanged."""
    return PydanticCustomError("nbops", "{message}", {"message": message, "hint": hint})


def _valid_check(text: str) -> str:
    try:
        parse_check(text)
    except ConfigError as exc:
        raise _invalid(exc.message, exc.hint or CHECK_HINT) from None
    return text


def _valid_name(text: str) -> str:
    if not NAME_RE.match(text):
        raise _invalid(f"{text!r} is not a valid name", NAME_HINT)
    return text


def _has_values(values: list[Any]) -> list[Any]:
    if not values:
        raise _invalid("the list of values is empty", "list the values to try, like C: [0.1, 1.0]")
    return values


def _empty_if_null(factory: Callable[[], Any]) -> BeforeValidator:
    """``params:`` with nothing after it means no params, not an error."""
    return BeforeValidator(lambda value: factory() if value is None else value)


Text = Annotated[str, Field(min_length=1)]
Name = Annotated[str, AfterValidator(_valid_name)]
Check = Annotated[str, AfterValidator(_valid_check)]
Params = Annotated[dict[str, Any], _empty_if_null(dict)]
Checks = Annotated[dict[str, Check], _empty_if_null(dict)]
Names = Annotated[list[Text], _empty_if_null(list)]
Sweep = Annotated[
    dict[str, Annotated[list[Any], AfterValidator(_has_values)]], _empty_if_null(dict)
]


class _Model(BaseModel):
    # strict: YAML already gave real types; "3" is not silently a number, nor true a 1
    model_config = ConfigDict(extra="forbid", strict=True)


class Stage(_Model):
    """One notebook of the pipeline: what it reads (deps), writes (outs), runs with (params,
    sweep), runs after, and which logged metrics it must reach (checks)."""

    name: str = ""  # its key under ``stages:``
    notebook: Text
    params: Params = {}
    deps: Names = []
    outs: Names = []
    after: Names = []
    sweep: Sweep = {}
    checks: Checks = {}
    # what a worker must have to run it (dask): {GPU: 1, memory: 8GB}; ignored when local
    # what a worker must have to run it (dask): {GPU: 1, memory: 8GB}; ignored when local. Each
    # amount is checked with its key (resource_problem) where its position is known (spec.py)
    resources: Annotated[dict[Name, Any], _empty_if_null(dict)] = {}
    retries: int = Field(1, ge=0, le=100)  # reruns when its dask worker dies under it


class Schedule(_Model):
    """When to run which stages: a cron expression and what to do about misses and failures."""

    cron: Text
    stages: Names = []  # empty: all stages
    params: Params = {}
    catchup: Literal["none", "latest", "all"] = "latest"
    retries: int = Field(0, ge=0)
    timeout: float | None = Field(None, gt=0)
    timezone: Text | None = None
    on_failure: Text | None = None


class Gate(_Model):
    """What a stage's run must achieve before ``nbops promote`` moves a model alias to it."""

    stage: Text
    require: Checks = {}
    better_than_current: Text | None = None
    alias: Text = "champion"


class Drift(_Model):
    """Which tables ``nbops drift`` compares, how surprised it may be, and what it retrains."""

    reference: Text
    current: Text
    threshold: float = Field(0.05, gt=0, le=1)
    on_drift: Names = []


class Dask(_Model):
    """Where ``nbops run`` sends stages: a dask scheduler (``tcp://HOST:8786``) or ``local:N``."""

    scheduler: Text


class Pipeline(_Model):
    """The whole nbops.yaml, plus where it lives and where each of its keys and values sits."""

    experiment: Text | None = None
    stages: Annotated[dict[Name, Stage], _empty_if_null(dict)]
    schedules: Annotated[dict[Name, Schedule], _empty_if_null(dict)] = {}
    gates: Annotated[dict[Name, Gate], _empty_if_null(dict)] = {}
    drift: Drift | None = None
    dask: Dask | None = None

    _path: Path = PrivateAttr(default=Path("nbops.yaml"))
    _keys: dict[Key, Position] = PrivateAttr(default_factory=dict)
    _values: dict[Key, Position] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _name_the_stages(self) -> Pipeline:
        for name, stage in self.stages.items():
            stage.name = name
        return self

    @property
    def path(self) -> Path:
        """The nbops.yaml file."""
        return self._path

    @property
    def root(self) -> Path:
        """The project root: the folder of nbops.yaml, which paths in it are relative to."""
        return self._path.parent

    def where(self, *keys: str | int, value: bool = False) -> Position | None:
        """The 1-based (line, column) of a key (or with ``value=True`` of its value), falling back
        to the nearest ancestor the file has; None for a pipeline not loaded from a file."""
        path: Key = tuple(keys)
        while True:
            if value and path in self._values:
                return self._values[path]
            if path in self._keys:
                return self._keys[path]
            if not path:
                return None
            path = path[:-1]

    def error(
        self, message: str, hint: str | None, *keys: str | int, value: bool = False
    ) -> ConfigError:
        """A ConfigError at the position of ``keys`` in this file."""
        line, column = self.where(*keys, value=value) or (None, None)
        return ConfigError(message, hint, file=str(self._path), line=line, column=column)


ALLOWED: dict[str, list[str]] = {
    "the top level": list(Pipeline.model_fields),
    "stage": [f for f in Stage.model_fields if f != "name"],
    "schedule": list(Schedule.model_fields),
    "gate": list(Gate.model_fields),
    "drift": list(Drift.model_fields),
    "dask": list(Dask.model_fields),
}
"""The keys each mapping of nbops.yaml may have."""
