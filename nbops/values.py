"""Parameter values typed by people: ``-p k=v``, ``--sweep k=a,b``, schedule and re-run params.

One reader for all of them, so every surface accepts the same values and refuses the same
hostile ones with the same one-line message. A value is read as a YAML scalar or flow
collection (``1`` -> int, ``0.1`` -> float, ``true`` -> bool, ``[1, 2]`` -> list, ``abc`` -> str),
with limits that keep a typo or an attack from costing memory, recursion or a traceback:

- at most ``MAX_VALUE_CHARS`` characters per value;
- no anchors or aliases (``&a``/``*a``: the "billion laughs" alias bomb);
- nesting at most ``MAX_DEPTH`` levels;
- numbers at most ``MAX_NUMBER_CHARS`` characters (a 5000-digit int is refused, not converted);
- no explicit tags (``!!binary``, ``!!set``, ``!!python/...``): only JSON-shaped values come out;
- ``1e-3`` is a float (YAML 1.1 would make it text);
- dates stay the text that was typed (``2024-01-01`` is the string ``"2024-01-01"``), so a value
  survives a round trip through JSON, papermill and MLflow unchanged.
"""

from __future__ import annotations

import re
from typing import Any

from nbops.errors import ParameterError

MAX_VALUE_CHARS = 16_384
MAX_DEPTH = 16
MAX_NUMBER_CHARS = 400

_NUMBERISH = re.compile(r"[-+]?(\.?[0-9])[0-9_.eE+\-xXoObB]*$")
_loader_class: Any = None


def _loader() -> Any:
    """A SafeLoader subclass that refuses aliases, anchors, tags and deep nesting (built once)."""
    global _loader_class
    if _loader_class is not None:
        return _loader_class
    import yaml

    class Loader(yaml.SafeLoader):  # type: ignore[misc]
        depth = 0

        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                raise _Refused("YAML aliases (*name) are not accepted")
            event = self.peek_event()
            if getattr(event, "anchor", None):
                raise _Refused("YAML anchors (&name) are not accepted")
            tag = getattr(event, "tag", None)
            if tag and getattr(event, "implicit", True) in (False, (False, False)):
                raise _Refused(f"explicit YAML tags ({tag}) are not accepted")
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise _Refused(f"nested more than {MAX_DEPTH} levels deep")
            try:
                return super().compose_node(parent, index)
            finally:
                self.depth -= 1

    # dates stay text: the value a person typed is the value the notebook gets
    Loader.yaml_implicit_resolvers = {
        first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    # YAML 1.1 reads 1e-3 as text; a person typing -p lr=1e-3 means a float
    Loader.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
        list("-+0123456789."),
    )
    _loader_class = Loader
    return Loader


class _Refused(Exception):
    pass


def _check_scalars(value: Any, path: str = "") -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str | int | float | bool) or k is None:
                raise _Refused(f"mapping key {k!r} is not text or a number")
            _check_scalars(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _check_scalars(v, f"{path}[{i}]")
    elif not (value is None or isinstance(value, str | int | float | bool)):
        raise _Refused(f"{type(value).__name__} values are not accepted")


def _long_numbers(text: str) -> str | None:
    for token in re.split(r"[\s,\[\]{}:]+", text):
        if len(token) > MAX_NUMBER_CHARS and _NUMBERISH.match(token):
            return token
    return None


def parse_value(text: str, what: str) -> Any:
    """``text`` as a typed value; ``what`` names it in the error (``-p train.C``).

    Raises ParameterError (exit 2) naming ``what``, the limit and the fix.
    """
    import yaml

    if "\x00" in text:
        raise ParameterError(f"{what}: the value contains a NUL byte", "remove it")
    if len(text) > MAX_VALUE_CHARS:
        raise ParameterError(
            f"{what}: the value is {len(text)} characters long (at most {MAX_VALUE_CHARS})",
            "pass large inputs as a file path and read the file in the notebook",
        )
    if not text.strip():
        return ""
    number = _long_numbers(text)
    if number is not None:
        raise ParameterError(
            f"{what}: a {len(number)}-character number (at most {MAX_NUMBER_CHARS})",
            "quote it ('...') to pass it as text, or pass a shorter number",
        )
    try:
        value = yaml.load(text, Loader=_loader())  # noqa: S506 (a SafeLoader subclass)
    except _Refused as err:
        raise ParameterError(
            f"{what}: {err}", "write the value out in full, as plain YAML or JSON"
        ) from None
    except yaml.YAMLError:
        return text  # not YAML: the text as typed (papermill's -r behaviour)
    except (ValueError, OverflowError, RecursionError) as err:
        raise ParameterError(f"{what}: {err}", "quote it ('...') to pass it as text") from None
    try:
        _check_scalars(value)
    except _Refused as err:
        raise ParameterError(
            f"{what}: {err}", "pass text, a number, true/false, a list or a mapping"
        ) from None
    return value


def parse_recorded(text: str) -> Any:
    """A value read back from a store (an MLflow param is text): typed when it parses within the
    limits above, else the text itself. Never raises."""
    try:
        return parse_value(text, "recorded value")
    except ParameterError:
        return text
