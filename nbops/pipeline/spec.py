"""``nbops.yaml``: the pipeline model (pydantic), loaded with positions so every error can name
file:line:column and say the fix. Imports only yaml and pydantic."""

from __future__ import annotations

import difflib
import itertools
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from nbops.errors import ConfigError

Key = tuple[str | int, ...]
NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
CHECK_RE = re.compile(r"^\s*(>=|<=|==|!=|>|<)\s*([-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?)\s*$")


def parse_check(text: str) -> tuple[str, float]:
    """``">= 0.8"`` → (">=", 0.8)."""
    m = CHECK_RE.match(str(text))
    if not m:
        raise ValueError(f"{text!r} is not a comparison like '>= 0.8' (operators: >= > <= < == !=)")
    return m.group(1), float(m.group(2))


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _checks(v: dict[str, str]) -> dict[str, str]:
    for expr in v.values():
        parse_check(expr)
    return v


class Stage(_Model):
    name: str = ""
    notebook: str
    params: dict[str, Any] = {}
    deps: list[str] = []
    outs: list[str] = []
    after: list[str] = []
    sweep: dict[str, list[Any]] = {}
    checks: dict[str, str] = {}

    @field_validator("sweep")
    @classmethod
    def _sweep_nonempty(cls, v: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for k, values in v.items():
            if not values:
                raise ValueError(f"sweep of {k!r} has no values")
        return v

    _c = field_validator("checks")(_checks)


class Schedule(_Model):
    cron: str = Field(min_length=1)
    stages: list[str] = []
    params: dict[str, Any] = {}
    catchup: Literal["none", "latest", "all"] = "latest"
    retries: int = Field(0, ge=0)
    timeout: float | None = Field(None, gt=0)
    timezone: str | None = None
    on_failure: str | None = None


class Gate(_Model):
    stage: str
    require: dict[str, str] = {}
    better_than_current: str | None = None
    alias: str = "champion"

    _c = field_validator("require")(_checks)


class Drift(_Model):
    reference: str
    current: str
    threshold: float = Field(0.05, gt=0, le=1)
    on_drift: list[str] = []


class Pipeline(_Model):
    experiment: str | None = None
    stages: dict[str, Stage] = {}
    schedules: dict[str, Schedule] = {}
    gates: dict[str, Gate] = {}
    drift: Drift | None = None

    model_config = ConfigDict(extra="forbid")
    _path: Path = Path("nbops.yaml")
    _positions: dict[Key, tuple[int, int]] = {}

    @property
    def path(self) -> Path:
        return self._path

    @property
    def root(self) -> Path:
        return self._path.parent

    def where(self, *keys: str | int) -> tuple[int, int] | None:
        """1-based (line, column) of a key path, or of its nearest known ancestor."""
        k: Key = tuple(keys)
        while k:
            if k in self._positions:
                return self._positions[k]
            k = k[:-1]
        return self._positions.get((), None)

    def error(self, message: str, hint: str | None, *keys: str | int) -> ConfigError:
        pos = self.where(*keys)
        return ConfigError(
            message,
            hint,
            file=str(self._path),
            line=pos[0] if pos else None,
            column=pos[1] if pos else None,
        )


ALLOWED: dict[str, list[str]] = {
    "pipeline": list(Pipeline.model_fields),
    "stage": [f for f in Stage.model_fields if f != "name"],
    "schedule": list(Schedule.model_fields),
    "gate": list(Gate.model_fields),
    "drift": list(Drift.model_fields),
}


# --- YAML with positions ------------------------------------------------------------------------
def _to_data(node: yaml.Node, key: Key, pos: dict[Key, tuple[int, int]], file: str) -> Any:
    pos.setdefault(key, (node.start_mark.line + 1, node.start_mark.column + 1))
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for knode, vnode in node.value:
            k = _scalar(knode) if isinstance(knode, yaml.ScalarNode) else None
            if not isinstance(k, (str, int, float, bool)) or k is None:
                raise ConfigError(
                    "a mapping key must be a plain name",
                    "write `name: value`",
                    file=file,
                    line=knode.start_mark.line + 1,
                    column=knode.start_mark.column + 1,
                )
            k = str(k)
            if k in out:
                raise ConfigError(
                    f"key {k!r} appears twice in the same mapping",
                    "keep one of them (YAML would silently use the last)",
                    file=file,
                    line=knode.start_mark.line + 1,
                    column=knode.start_mark.column + 1,
                )
            pos[(*key, k)] = (knode.start_mark.line + 1, knode.start_mark.column + 1)
            out[k] = _to_data(vnode, (*key, k), pos, file)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_to_data(v, (*key, i), pos, file) for i, v in enumerate(node.value)]
    return _scalar(node)


_RESOLVER = yaml.resolver.Resolver()
_CONSTRUCTOR = yaml.SafeLoader("")


def _scalar(node: yaml.Node) -> Any:
    if node.tag == "tag:yaml.org,2002:str" or not isinstance(node, yaml.ScalarNode):
        return node.value
    return _CONSTRUCTOR.construct_object(node, deep=True)


def _compose(text: str, file: str) -> yaml.Node | None:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        return yaml.compose(text, Loader=loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise ConfigError(
            f"YAML syntax error: {exc.problem or exc.context}",
            "check the indentation and the ':' after each key near this line",
            file=file,
            line=mark.line + 1 if mark else None,
            column=mark.column + 1 if mark else None,
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"YAML error: {exc}", "fix the file", file=file) from None


def _kind(path: tuple[Any, ...]) -> tuple[str, str]:
    """('stage', "stage 'train'") for a loc like ('stages', 'train', ...)."""
    names = {"stages": "stage", "schedules": "schedule", "gates": "gate"}
    if len(path) >= 2 and path[0] in names:
        return names[str(path[0])], f"{names[str(path[0])]} {path[1]!r}"
    if path and path[0] == "drift":
        return "drift", "drift"
    return "pipeline", "nbops.yaml"


def _explain(p: Pipeline, err: dict[str, Any]) -> ConfigError:
    loc = tuple(x for x in err["loc"] if not (isinstance(x, str) and x.startswith("function-")))
    kind, owner = _kind(loc)
    typ = err["type"]
    dotted = ".".join(str(x) for x in loc)
    if typ == "extra_forbidden":
        key = str(loc[-1])
        allowed = ALLOWED[kind]
        close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.5)
        hint = f"did you mean {close[0]!r}?" if close else f"allowed keys: {', '.join(allowed)}"
        return p.error(f"unknown key {key!r} in {owner}", hint, *loc)
    if typ == "missing":
        return p.error(f"{owner} needs {loc[-1]!r}", f"add `{loc[-1]}:` to {owner}", *loc[:-1])
    got = type(err.get("input")).__name__
    got = {
        "dict": "a mapping",
        "list": "a list",
        "str": "a string",
        "NoneType": "nothing",
        "int": "an integer",
        "float": "a number",
        "bool": "true/false",
    }.get(got, got)
    msg = err["msg"]
    if typ in ("dict_type", "model_type"):
        return p.error(f"{dotted} must be a mapping, got {got}", "write `key: value` lines", *loc)
    if typ == "list_type":
        return p.error(f"{dotted} must be a list, got {got}", "write [a, b] or '- a' lines", *loc)
    if typ in ("string_type",):
        return p.error(f"{dotted} must be a string, got {got}", None, *loc)
    if typ == "value_error":
        return p.error(f"{dotted}: {msg.removeprefix('Value error, ')}", None, *loc)
    return p.error(f"{dotted}: {msg}", None, *loc)


def load(path: Path) -> Pipeline:
    """Read and validate nbops.yaml; every problem is a ConfigError at file:line:column."""
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"{path.name} does not exist",
            "create nbops.yaml with a `stages:` section (see README: Pipelines)",
            file=file,
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read it: {exc}", None, file=file) from None
    node = _compose(text, file)
    if node is None:
        raise ConfigError("the file is empty", "add a `stages:` section", file=file, line=1)
    pos: dict[Key, tuple[int, int]] = {}
    try:
        data = _to_data(node, (), pos, file)
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever YAML produced, say where
        raise ConfigError(
            f"cannot read a value: {exc}", None, file=file, line=node.start_mark.line + 1
        ) from None
    shell = Pipeline.model_construct()
    shell._path, shell._positions = path, pos
    if not isinstance(data, dict):
        raise shell.error(
            "the top level must be a mapping (experiment:, stages:, ...)", "start with `stages:`"
        )
    for section in ("stages", "schedules", "gates"):
        block = data.get(section)
        if isinstance(block, dict):
            for name in block:
                if not NAME_RE.match(str(name)):
                    raise shell.error(
                        f"{section[:-1]} name {name!r} is not a valid name",
                        "use letters, digits, '_', '-', '.' (not first)",
                        section,
                        name,
                    )
    try:
        p = Pipeline.model_validate(data)
    except ValidationError as exc:
        raise _explain(shell, exc.errors()[0]) from None
    except Exception as exc:  # noqa: BLE001
        raise shell.error(f"invalid: {exc}", None) from None
    for name, st in p.stages.items():
        st.name = name
    p._path, p._positions = path, pos
    return p


# --- parameters ---------------------------------------------------------------------------------
def resolve_params(stage: Stage, overrides: dict[str, Any]) -> dict[str, Any]:
    return {**stage.params, **overrides}


def sweep_points(stage: Stage, extra: dict[str, list[Any]] | None = None) -> list[dict[str, Any]]:
    """The grid of a stage's sweep (``sweep:`` plus ``--sweep``), in key order; [{}] if none."""
    grid = {**stage.sweep, **(extra or {})}
    if not grid:
        return [{}]
    keys = list(grid)
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*grid.values())]
