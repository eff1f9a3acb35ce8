"""``nbops.yaml``: the pipeline model (pydantic), read with the position of every key and value so
each problem is a ConfigError at file:line:column that says the fix. Imports only yaml and pydantic.
"""

from __future__ import annotations

import difflib
import itertools
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError

from nbops.errors import ConfigError, ParameterError
from nbops.pipeline import paths

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


# --- the model ----------------------------------------------------------------------------------
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


class Pipeline(_Model):
    """The whole nbops.yaml, plus where it lives and where each of its keys and values sits."""

    experiment: Text | None = None
    stages: Annotated[dict[Name, Stage], _empty_if_null(dict)]
    schedules: Annotated[dict[Name, Schedule], _empty_if_null(dict)] = {}
    gates: Annotated[dict[Name, Gate], _empty_if_null(dict)] = {}
    drift: Drift | None = None

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
}
"""The keys each mapping of nbops.yaml may have."""


# --- YAML with positions ------------------------------------------------------------------------
_TAG = "tag:yaml.org,2002:"
_TEXT_TAGS = {f"{_TAG}str", f"{_TAG}timestamp", f"{_TAG}merge", f"{_TAG}value", "!"}
# YAML 1.2 reads 1e-3 as a number, PyYAML (YAML 1.1) as text: a learning rate must be a number
_EXPONENT_FLOAT = re.compile(r"^[-+]?(?:\d+(?:\.\d*)?|\.\d+)[eE][-+]?\d+$")
MAX_VALUES = 100_000
MAX_DEPTH = 100


def _pos(node: yaml.Node) -> Position:
    return node.start_mark.line + 1, node.start_mark.column + 1


class _Reader:
    """Turns composed YAML nodes into plain data (dict, list, str, int, float, bool, None) and
    remembers the position of every key and value. Dates stay text; other tags are refused."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.keys: dict[Key, Position] = {}
        self.values: dict[Key, Position] = {}
        self._count = 0
        self._open: list[int] = []  # ids of the collections being read: an alias loop
        self._safe = yaml.constructor.SafeConstructor()
        self._build: dict[str, Callable[[yaml.Node], Any]] = {
            f"{_TAG}null": self._safe.construct_yaml_null,
            f"{_TAG}bool": self._safe.construct_yaml_bool,
            f"{_TAG}int": self._safe.construct_yaml_int,
            f"{_TAG}float": self._safe.construct_yaml_float,
        }

    def error(self, message: str, hint: str | None, node: yaml.Node) -> ConfigError:
        line, column = _pos(node)
        return ConfigError(message, hint, file=self.file, line=line, column=column)

    def read(self, node: yaml.Node, key: Key = ()) -> Any:
        self._count += 1
        if self._count > MAX_VALUES:
            raise self.error(
                f"the file expands to more than {MAX_VALUES} values",
                "an alias (*name) is repeated too often: write the values out",
                node,
            )
        if len(key) > MAX_DEPTH:
            raise self.error("values are nested too deeply", "flatten the structure", node)
        self.values[key] = _pos(node)
        if isinstance(node, yaml.ScalarNode):
            return self._scalar(node)
        if id(node) in self._open:  # reported where the alias is used, not where it points
            line, column = self.keys.get(key, _pos(node))
            raise ConfigError(
                "an alias (*name) refers to a value that contains it",
                "remove the recursive alias",
                file=self.file,
                line=line,
                column=column,
            )
        self._open.append(id(node))
        try:
            if isinstance(node, yaml.MappingNode) and node.tag == f"{_TAG}map":
                return self._mapping(node, key)
            if isinstance(node, yaml.SequenceNode) and node.tag == f"{_TAG}seq":
                return self._sequence(node, key)
            raise self._tag_error(node)
        finally:
            self._open.pop()

    def _scalar(self, node: yaml.ScalarNode) -> Any:
        plain = not node.style  # not quoted: '' from the C loader, None from the Python one
        if plain and node.tag == f"{_TAG}str" and _EXPONENT_FLOAT.match(node.value):
            return float(node.value)
        if node.tag in _TEXT_TAGS:
            return node.value
        build = self._build.get(node.tag)
        if build is None:
            raise self._tag_error(node)
        try:
            return build(node)
        except Exception:
            kind = node.tag.removeprefix(_TAG)
            raise self.error(
                f"{node.value!r} is not a valid {kind}", "fix the value, or quote it as text", node
            ) from None

    def _tag_error(self, node: yaml.Node) -> ConfigError:
        tag = node.tag.replace(_TAG, "!!")
        return self.error(
            f"unsupported YAML tag {tag}",
            "remove the tag: nbops.yaml holds plain text, numbers, true/false, null, "
            "lists and mappings",
            node,
        )

    def _sequence(self, node: yaml.SequenceNode, key: Key) -> list[Any]:
        items = []
        for i, item in enumerate(node.value):
            self.keys[(*key, i)] = _pos(item)
            items.append(self.read(item, (*key, i)))
        return items

    def _mapping(self, node: yaml.MappingNode, key: Key) -> dict[str, Any]:
        out: dict[str, Any] = {}
        bases: list[yaml.Node] = []
        for knode, vnode in node.value:
            if knode.tag == f"{_TAG}merge":
                bases.append(vnode)
                continue
            name = self._key(knode)
            if name in out:
                raise self.error(
                    f"key {name!r} appears twice in the same mapping",
                    "keep one of them (YAML would silently use the last one)",
                    knode,
                )
            self.keys[(*key, name)] = _pos(knode)
            out[name] = self.read(vnode, (*key, name))
        return self._merge(bases, key, out) if bases else out

    def _key(self, knode: yaml.Node) -> str:
        if not isinstance(knode, yaml.ScalarNode):
            raise self.error(
                "a key must be a plain name, not a list or a mapping", "write `name: value`", knode
            )
        if knode.value == "":
            raise self.error("a key is missing before ':'", "write `name: value`", knode)
        return str(knode.value)

    def _merge(self, bases: list[yaml.Node], key: Key, own: dict[str, Any]) -> dict[str, Any]:
        """``<<: *defaults`` (or a list of them): the bases' keys, the mapping's own ones winning;
        merged keys keep the position where the base defines them."""
        keys, values = self.keys, self.values
        self.keys, self.values = {}, {}
        merged: dict[str, Any] = {}
        try:
            for base in bases:
                for src in base.value if isinstance(base, yaml.SequenceNode) else [base]:
                    if not isinstance(src, yaml.MappingNode):
                        raise self.error(
                            "'<<' merges mappings only",
                            "write `<<: *name` where &name marks a mapping",
                            src,
                        )
                    for k, v in self.read(src, key).items():
                        merged.setdefault(k, v)
        finally:
            for mine, theirs in ((keys, self.keys), (values, self.values)):
                for k, p in theirs.items():
                    mine.setdefault(k, p)
            self.keys, self.values = keys, values
        return {**{k: v for k, v in merged.items() if k not in own}, **own}


_SYNTAX_HINTS = [
    ("block scalar", "quote comparisons: checks: {accuracy: '>= 0.8'}"),
    ("indentation indicator", "quote comparisons: checks: {accuracy: '>= 0.8'}"),
    ("mapping values are not allowed", "quote a value that holds ': ', and check the indentation"),
    ("another document", "keep one document in nbops.yaml: remove the second '---'"),
    ("undefined alias", "define the anchor (&name) before using it as *name"),
    ("duplicate anchor", "give each anchor (&name) its own name"),
    ("scanning an anchor", "an anchor (&name) needs a name of letters or digits"),
    ("scanning an alias", "an alias (*name) needs a name of letters or digits"),
    ("flow sequence", "close the [list] with ']' and put ',' between its items"),
    ("flow mapping", "close the {mapping} with '}' and put ',' between its entries"),
    ("quoted scalar", "close the quote: a value opened with ' or \" must end with the same"),
]
_SYNTAX_HINT = "check the indentation (spaces, the same for keys of one mapping) and the ': '"


def _syntax_error(exc: yaml.MarkedYAMLError, text: str, file: str) -> ConfigError:
    problem = exc.problem or "invalid YAML"
    if not exc.context:
        message = f"YAML syntax error: {problem}"
    elif exc.context.startswith("while"):  # "while scanning a simple key: could not find ':'"
        message = f"YAML syntax error {exc.context}: {problem}"
    else:  # "expected a single document in the stream, but found another document"
        message = f"YAML syntax error: {exc.context}, {problem}"
    mark = exc.problem_mark or exc.context_mark
    line, column = (mark.line + 1, mark.column + 1) if mark else (None, None)
    said = f"{exc.context} {problem}"
    hint = next((h for needle, h in _SYNTAX_HINTS if needle in said), _SYNTAX_HINT)
    lines = text.splitlines()
    if line is not None and "\t" in (lines[line - 1] if line <= len(lines) else ""):
        hint = "indent with spaces, not tabs"
    return ConfigError(message, hint, file=file, line=line, column=column)


def _reader_error(
    exc: yaml.reader.ReaderError, text: str, c_loader: bool, file: str
) -> ConfigError:
    """A forbidden character; the C reader counts its position in UTF-8 bytes."""
    offset = exc.position
    before = text.encode()[:offset].decode(errors="ignore") if c_loader else text[:offset]
    line = before.count("\n") + 1
    column = len(before) - (before.rfind("\n") + 1) + 1
    char = exc.character if isinstance(exc.character, int) else ord(exc.character)
    return ConfigError(
        f"character #x{char:04x} is not allowed in YAML",
        "remove it (control characters cannot appear, even in quotes)",
        file=file,
        line=line,
        column=column,
    )


MAX_NESTING = 64  # a pipeline needs a handful; libyaml's composer recurses in C (a segfault)


def _check_nesting(text: str, loader: Any, file: str) -> None:
    """Refuse a document nested deeper than MAX_NESTING before it is composed: the event parser
    keeps its own stack, the composer recurses (50,000 '[' crashed the process)."""
    depth = 0
    for event in yaml.parse(text, Loader=loader):
        if isinstance(event, yaml.MappingStartEvent | yaml.SequenceStartEvent):
            depth += 1
            if depth > MAX_NESTING:
                mark = event.start_mark
                raise ConfigError(
                    f"values are nested more than {MAX_NESTING} levels deep",
                    "flatten the structure",
                    file=file,
                    line=mark.line + 1 if mark else None,
                    column=mark.column + 1 if mark else None,
                )
        elif isinstance(event, yaml.MappingEndEvent | yaml.SequenceEndEvent):
            depth -= 1


def _compose(text: str, file: str) -> yaml.Node | None:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        _check_nesting(text, loader, file)
        return yaml.compose(text, Loader=loader)
    except yaml.MarkedYAMLError as exc:
        raise _syntax_error(exc, text, file) from None
    except yaml.reader.ReaderError as exc:
        raise _reader_error(exc, text, loader is not yaml.SafeLoader, file) from None
    except RecursionError:
        raise ConfigError(
            "values are nested too deeply", "flatten the structure", file=file
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"YAML error: {exc}", _SYNTAX_HINT, file=file) from None


# --- pydantic errors in plain words -------------------------------------------------------------
_OWNERS = {"stages": "stage", "schedules": "schedule", "gates": "gate"}
_EXPECTED = {
    "dict_type": ("a mapping", "write `key: value` lines indented under it, or {key: value}"),
    "model_type": ("a mapping", "write `key: value` lines indented under it, or {key: value}"),
    "list_type": ("a list", "write [a, b], or one '- item' line per item"),
    "string_type": ("a string", "write text, quoted if it looks like a number or true/false"),
    "int_type": ("a whole number", "write a number like 3"),
    "int_from_float": ("a whole number", "write a number like 3"),
    "float_type": ("a number", "write a number like 0.5"),
    "bool_type": ("true or false", "write true or false"),
}
_EXAMPLES = {
    "notebook": "notebooks/train.ipynb",
    "cron": "'0 2 * * *'",
    "stage": "train",
    "reference": "data/train.csv",
    "current": "data/incoming.csv",
    "stages": "",
}


def _owner(loc: Key) -> tuple[str, str]:
    """The kind of mapping a loc is in, and how to name it: ("stage", "stage 'train'")."""
    if len(loc) >= 2 and loc[0] in _OWNERS:
        kind = _OWNERS[str(loc[0])]
        return kind, f"{kind} {loc[1]!r}"
    if loc and loc[0] == "drift":
        return "drift", "drift"
    return "the top level", "the top level"


def _describe(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"the text {value[:40]!r}"
    if isinstance(value, (int, float)):
        return f"the number {value}"
    return type(value).__name__


def _unknown_key(p: Pipeline, loc: Key) -> ConfigError:
    kind, owner = _owner(loc[:-1])
    key, allowed = str(loc[-1]), ALLOWED[kind]
    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}?" if close else f"allowed keys: {', '.join(allowed)}"
    where = "at the top level" if kind == "the top level" else f"in {owner}"
    return p.error(f"unknown key {key!r} {where}", hint, *loc)


def _missing_key(p: Pipeline, loc: Key) -> ConfigError:
    _, owner = _owner(loc[:-1])
    key = str(loc[-1])
    example = f"`{key}: {_EXAMPLES.get(key, '...')}`".replace(": `", ":`")
    parent = "nbops.yaml" if len(loc) == 1 else owner
    return p.error(f"{parent} is missing the required key {key!r}", f"add {example}", *loc[:-1])


def _explain(p: Pipeline, err: Any) -> ConfigError:
    """One pydantic error as a ConfigError at its position, in plain words with a fix."""
    raw: Key = tuple(err["loc"])
    on_key = bool(raw) and raw[-1] == "[key]"
    loc = raw[:-1] if on_key else raw
    typ, got, ctx = err["type"], err.get("input"), err.get("ctx") or {}
    dotted = ".".join(str(x) for x in loc)
    if typ == "extra_forbidden":
        return _unknown_key(p, loc)
    if typ == "missing":
        return _missing_key(p, loc)
    if typ == "nbops" and on_key:
        kind, _ = _owner(loc)
        return p.error(f"{kind} name {ctx['message']}", ctx["hint"], *loc)
    if typ == "nbops":
        return p.error(f"{dotted}: {ctx['message']}", ctx["hint"], *loc, value=True)
    if typ in _EXPECTED:
        expected, hint = _EXPECTED[typ]
        if loc[-1] in ("checks", "require") or (len(loc) > 1 and loc[-2] in ("checks", "require")):
            hint = CHECK_HINT
        message = f"{dotted} must be {expected}, got {_describe(got)}"
        return p.error(message, hint, *loc, value=True)
    bounds = {
        "greater_than_equal": ("at least", "ge"),
        "greater_than": ("greater than", "gt"),
        "less_than_equal": ("at most", "le"),
    }
    if typ in bounds:
        words, name = bounds[typ]
        message = f"{dotted} must be {words} {ctx[name]}, got {_describe(got)}"
        return p.error(message, f"make it {words} {ctx[name]}", *loc, value=True)
    if typ == "literal_error":
        message = f"{dotted} must be one of {ctx['expected']}, got {_describe(got)}"
        return p.error(message, f"write one of {ctx['expected']}", *loc, value=True)
    if typ == "string_too_short":
        return p.error(
            f"{dotted} must not be empty", "write a value after the ':'", *loc, value=True
        )
    return p.error(f"{dotted}: {err['msg']}", None, *loc, value=True)


def _first_error(p: Pipeline, exc: ValidationError) -> ConfigError:
    """The problem that comes first in the file, as the user reads it."""
    found = [(e["type"] == "missing", _explain(p, e)) for e in exc.errors()]
    # a missing key is often a misspelt one: the unknown key says more, so it goes first
    return min(found, key=lambda f: (f[0], f[1].line or 0, f[1].column or 0))[1]


# --- loading ------------------------------------------------------------------------------------
def _read_text(path: Path) -> str:
    file = str(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            f"{path.name} does not exist",
            f"create {path.name} at the project root with a `stages:` section (see DESIGN: "
            "Pipelines), or run nbops in the folder that has it",
            file=file,
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read it: {exc.strerror or exc}", None, file=file) from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(
            f"byte {raw[exc.start]:#04x} is not UTF-8 text",
            "save the file as UTF-8",
            file=file,
            line=line,
        ) from None


def _refuse_stage_names(data: dict[str, Any], shell: Pipeline) -> None:
    """A stage's name is its key: a ``name:`` inside it would be ignored, so it is an error."""
    stages = data.get("stages")
    for name, stage in (stages or {}).items() if isinstance(stages, dict) else ():
        if isinstance(stage, dict) and "name" in stage:
            raise shell.error(
                f"unknown key 'name' in stage {name!r}",
                "a stage is named by its key under `stages:`: remove `name:`",
                "stages",
                name,
                "name",
            )


def _validate(path: Path, text: str) -> Pipeline:
    file = str(path)
    node = _compose(text, file)
    reader = _Reader(file)
    data = reader.read(node) if node is not None else None
    shell = Pipeline.model_construct()
    shell._path, shell._keys, shell._values = path, reader.keys, reader.values
    shell._keys[()] = reader.values.get((), (1, 1))
    if data is None:
        raise ConfigError(
            "the file is empty",
            "add a `stages:` section (see DESIGN: Pipelines)",
            file=file,
            line=1,
        )
    if not isinstance(data, dict):
        raise shell.error(
            f"the top level must be a mapping (experiment:, stages:, ...), got {_describe(data)}",
            "start with `stages:`",
        )
    _refuse_stage_names(data, shell)
    try:
        pipeline = Pipeline.model_validate(data)
    except ValidationError as exc:
        raise _first_error(shell, exc) from None
    pipeline._path, pipeline._keys, pipeline._values = path, shell._keys, shell._values
    _check_paths(pipeline)
    return pipeline


def _named_files(p: Pipeline) -> list[tuple[Key, str, paths.Kind, str]]:
    """Every file nbops.yaml names: (its key, the path, what nbops does with it, how to say it)."""
    found: list[tuple[Key, str, paths.Kind, str]] = []
    for name, stage in p.stages.items():
        found.append((("stages", name, "notebook"), stage.notebook, "notebook", "notebook"))
        found += [(("stages", name, "deps", i), d, "dep", "dep") for i, d in enumerate(stage.deps)]
        found += [(("stages", name, "outs", i), o, "out", "out") for i, o in enumerate(stage.outs)]
    if p.drift is not None:
        found.append((("drift", "reference"), p.drift.reference, "data", "table"))
        found.append((("drift", "current"), p.drift.current, "data", "table"))
    return found


def _check_paths(p: Pipeline) -> None:
    """No path nbops.yaml names leads nbops to write outside the project root, into its own
    state, or to read what never ends (see :mod:`nbops.pipeline.paths`); the first refused path
    in the file is the error, at its line and column."""
    refused: list[tuple[Position, Key, str, str]] = []
    for key, rel, kind, noun in _named_files(p):
        found = paths.refusal(p.root, rel, kind)
        if found is not None:
            owner = f"stage {key[1]!r}: " if key[0] == "stages" else "drift: "
            at = p.where(*key, value=True) or (0, 0)
            refused.append((at, key, f"{owner}{noun} {rel!r} {found[0]}", found[1]))
    if refused:
        _, key, message, hint = min(refused, key=lambda r: r[0])
        raise p.error(message, hint, *key, value=True)


def load(path: Path) -> Pipeline:
    """Read and validate nbops.yaml; every problem is a ConfigError at file:line:column."""
    path = Path(path)
    try:
        return _validate(path, _read_text(path))
    except ConfigError:
        raise
    except Exception as exc:  # a bug of ours must still name the file, never a traceback
        raise ConfigError(
            f"cannot load it ({type(exc).__name__}: {exc})",
            "this is a bug in nbops: please report it with the file",
            file=str(path),
        ) from None


# --- parameters ---------------------------------------------------------------------------------
def resolve_params(stage: Stage, overrides: dict[str, Any]) -> dict[str, Any]:
    """The stage's ``params:`` with command-line overrides on top."""
    return {**stage.params, **overrides}


def sweep_points(
    stage: Stage, extra_sweep: dict[str, list[Any]] | None = None
) -> list[dict[str, Any]]:
    """The grid of a stage's ``sweep:`` plus ``--sweep`` values (which replace the same key), one
    dict per point, in key order; ``[{}]`` when nothing is swept."""
    grid = {**stage.sweep, **(extra_sweep or {})}
    for key, values in grid.items():
        if not values:
            raise ParameterError(
                f"stage {stage.name!r}: sweep of {key!r} has no values",
                f"give at least one: --sweep {key}=a,b",
            )
    keys = list(grid)
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*grid.values())]
