"""A schedule's params: typed values (as ``nbops run -p`` reads them, through ``nbops.values``)
kept in the store as JSON and handed back to ``nbops run -p K=TEXT`` at every execution.

``render`` writes a value as the text that ``values.parse_value`` reads back to the very same
value (``parse_value(render(v)) == v`` for every JSON-like value that ``check`` accepts): a string
stays as typed when it reads back as itself, else it is double-quoted with YAML escapes; floats
keep a '.' so YAML 1.1 does not read ``1e-07`` as text. ``check`` refuses at creation what could
not make that round trip (not JSON-like, NaN, too long, too deep, a 5000-digit number).
"""

from __future__ import annotations

import math
from typing import Any

from nbops.errors import ParameterError
from nbops.values import parse_value

_QUOTED = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _quote(text: str) -> str:
    """A YAML double-quoted scalar in ASCII: other characters as \\xXX, \\uXXXX, \\UXXXXXXXX."""
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch in _QUOTED:
            out.append(_QUOTED[ch])
        elif 0x20 <= code < 0x7F:
            out.append(ch)
        elif code <= 0xFF:
            out.append(f"\\x{code:02x}")
        elif code <= 0xFFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


def _float(v: float) -> str:
    if math.isinf(v):
        return ".inf" if v > 0 else "-.inf"
    text = repr(v)
    if "." not in text and "e" in text:  # 1e-07 -> 1.0e-07 (YAML 1.1 wants the dot and a sign)
        mantissa, _, exp = text.partition("e")
        text = f"{mantissa}.0e{exp if exp[0] in '+-' else '+' + exp}"
    elif "e" in text and text.split("e")[1][0] not in "+-":
        mantissa, _, exp = text.partition("e")
        text = f"{mantissa}e+{exp}"
    return text


def _flow(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return _float(v)
    if isinstance(v, str):
        return _quote(v)
    if isinstance(v, list):
        return "[" + ", ".join(_flow(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_quote(str(k))}: {_flow(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"{type(v).__name__} is not a JSON value")


def _reads_as_itself(text: str) -> bool:
    import yaml

    try:
        same = bool(parse_value(text, "value") == text)
    except ParameterError:
        return False
    try:  # and by a plain YAML reader (dates): a value quoted once too often is still the same
        return same and bool(yaml.safe_load(text) == text)
    except yaml.YAMLError:
        return same


def render(v: Any) -> str:
    """The text of ``v`` for ``nbops run -p K=TEXT`` (module doc)."""
    if isinstance(v, str) and (v == "" or _reads_as_itself(v)):
        return v
    return _flow(v)


def _json_like(v: Any, depth: int = 0) -> str | None:
    """Why ``v`` is not a JSON-like value (None if it is)."""
    if depth > 64:
        return "nested too deep"
    if v is None or isinstance(v, bool | int):
        return None
    if isinstance(v, float):
        if math.isnan(v):
            return "NaN is not a value a notebook can compare"
        return None if math.isfinite(v) else f"{v} cannot be stored as JSON"
    if isinstance(v, str):
        try:
            v.encode("utf-8")
        except UnicodeEncodeError:
            return "the text is not valid Unicode (a lone surrogate)"
        return None
    if isinstance(v, list):
        for x in v:
            why = _json_like(x, depth + 1)
            if why:
                return why
        return None
    if isinstance(v, dict):
        for k, x in v.items():
            if not isinstance(k, str):
                return f"mapping key {k!r} is not text"
            why = _json_like(k, depth + 1) or _json_like(x, depth + 1)
            if why:
                return why
        return None
    return f"{type(v).__name__} is not a JSON value (text, number, true/false, null, list, map)"


def check(key: str, value: Any) -> Any:
    """``value`` if it survives the trip to ``nbops run -p`` unchanged; else ParameterError
    naming ``params.KEY``."""
    what = f"params: {key}"
    why = _json_like(value)
    if why:
        raise ParameterError(f"{what}: {why}", "pass text, a number, true/false, a list or a map")
    text = render(value)
    back = parse_value(text, what)  # ParameterError: too long, too deep, huge numbers
    if back != value or type(back) is not type(value):
        raise ParameterError(
            f"{what}: {value!r} would reach the notebook as {back!r}",
            "pass it as text (a quoted string) or as a plain number",
        )
    return value


def parse_cli(items: list[str]) -> dict[str, Any]:
    """``-p k=v`` / ``-p stage.k=v`` as {key: typed value} (values read by ``parse_value``)."""
    out: dict[str, Any] = {}
    for item in items:
        k, sep, v = str(item).partition("=")
        if not sep or not k.strip():
            raise ParameterError(
                f"params: {item!r} is not NAME=VALUE", "write it as -p C=0.1 or -p train.C=0.1"
            )
        out[k.strip()] = parse_value(v, f"-p {k.strip()}")
    return out
