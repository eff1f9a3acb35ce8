"""nbops.yaml's YAML read with the position of every key and value: plain data (dict, list, str,
int, float, bool, None) plus a (line, column) for each, so a problem anywhere in the file is a
ConfigError at file:line:column. Syntax errors, forbidden characters and nesting that would crash
libyaml are ConfigErrors too, with a hint. Imports only yaml.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import yaml

from nbops.errors import ConfigError
from nbops.pipeline.config import Key, Position

_TAG = "tag:yaml.org,2002:"
_TEXT_TAGS = {f"{_TAG}str", f"{_TAG}timestamp", f"{_TAG}merge", f"{_TAG}value", "!"}
# YAML 1.2 reads 1e-3 as a number, PyYAML (YAML 1.1) as text: a learning rate must be a number
_EXPONENT_FLOAT = re.compile(r"^[-+]?(?:\d+(?:\.\d*)?|\.\d+)[eE][-+]?\d+$")
MAX_VALUES = 100_000
MAX_DEPTH = 100


def _pos(node: yaml.Node) -> Position:
    return node.start_mark.line + 1, node.start_mark.column + 1


class PositionReader:
    """Turns composed YAML nodes into plain data (dict, list, str, int, float, bool, None) and
    remembers the position of every key and value. Dates stay text; other tags are refused."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.keys: dict[Key, Position] = {}
        self.values: dict[Key, Position] = {}
        self._count = 0
        self._open: list[int] = []  # ids of the collections being read: an alias loop
        self._safe = yaml.constructor.SafeConstructor()
        self._build: dict[str, Callable[[yaml.ScalarNode], Any]] = {
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


def compose(text: str, file: str) -> yaml.Node | None:
    """The YAML document of ``text`` as nodes (None for an empty one); every problem a
    ConfigError at its line and column in ``file``."""
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
