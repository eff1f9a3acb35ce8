"""Checks a log call makes at once, before anything is spooled: bad input fails in the caller."""

from __future__ import annotations

import math
import numbers
import re
from typing import Any

from nbops.errors import InvalidInput

# MLflow's own rule for names of params, metrics and tags.
_KEY_RE = re.compile(r"^[/\w.\- :]*$")
MAX_KEY = 250
MAX_PARAM_VALUE = 6000
MAX_TAG_VALUE = 8000

_good_keys: set[str] = set()


def key(k: Any, kind: str = "metric") -> str:
    """Return ``k`` if it is a valid MLflow key, else raise InvalidInput naming it."""
    if k in _good_keys:
        return k  # type: ignore[no-any-return]
    if not isinstance(k, str) or not k:
        raise InvalidInput(
            f"{kind} name {k!r} is not a non-empty string",
            "name it with a string such as 'accuracy' or 'train/loss'",
        )
    if len(k) > MAX_KEY or not _KEY_RE.match(k) or k.startswith("/") or ".." in k.split("/"):
        raise InvalidInput(
            f"{kind} name {k!r} is not a valid MLflow key",
            "use at most 250 letters, digits, '_', '-', '.', ' ', ':' and '/' "
            "(no leading '/', no '..')",
        )
    if len(_good_keys) < 100_000:
        _good_keys.add(k)
    return k


MAX_ARTIFACT_PATH = 1000


def artifact_path(path: Any, kind: str = "artifact path") -> str:
    """A relative artifact path inside the run (``figures/curve.png``), leading and trailing
    '/' dropped; InvalidInput for '..', empty parts, NUL, backslashes or an over-long path: an
    artifact never lands outside its run's artifact directory."""
    if not isinstance(path, str):
        raise InvalidInput(f"{kind} {path!r} is not a string", "pass a path such as 'plots/a.png'")
    clean = path.strip("/")
    parts = clean.split("/")
    bad = (
        not clean
        or len(clean) > MAX_ARTIFACT_PATH
        or any(p in ("", ".", "..") for p in parts)
        or "\\" in clean
        or any(ord(c) < 32 for c in clean)
    )
    if bad:
        raise InvalidInput(
            f"{kind} {_short(path)} is not a relative path inside the run",
            f"use '/'-separated names (no '..', '.', empty parts, backslashes or control "
            f"characters), at most {MAX_ARTIFACT_PATH} characters, e.g. 'plots/loss.png'",
        )
    return clean


def metric_value(k: str, v: Any) -> float:
    """A finite real number as float; anything else raises InvalidInput naming the metric."""
    if type(v) is float:
        f = v
    elif isinstance(v, numbers.Real) and not isinstance(v, bool):
        f = float(v)
    else:
        raise InvalidInput(
            f"metric {k!r} got {type(v).__name__} {_short(v)}, not a number",
            "log a number (int, float or a numpy scalar); log text as a param or tag",
        )
    if math.isfinite(f):
        return f
    raise InvalidInput(
        f"metric {k!r} is {f}, which is not finite",
        "check the computation (a diverged loss?) or log it as a tag if it is meaningful",
    )


def step_value(k: str, step: Any) -> int:
    if step is None:
        return 0
    if isinstance(step, numbers.Integral) and not isinstance(step, bool):
        return int(step)
    raise InvalidInput(
        f"step of metric {k!r} is {step!r}, not an integer", "pass step=N with N an int"
    )


def _text(kind: str, k: str, v: Any, limit: int) -> str:
    s = v if isinstance(v, str) else str(v)
    if len(s) > limit:
        raise InvalidInput(
            f"{kind} {k!r} is {len(s)} characters long; MLflow keeps at most {limit}",
            "log a long value as an artifact (nbops.log_artifact / log_text) or a shorter summary",
        )
    return s


def param_value(k: str, v: Any) -> str:
    return _text("param", k, v, MAX_PARAM_VALUE)


def tag_value(k: str, v: Any) -> str:
    return _text("tag", k, v, MAX_TAG_VALUE)


def parse_tag(text: str) -> tuple[str, str]:
    """``KEY=VALUE`` (as given to ``%track start -t``) → (key, value)."""
    k, sep, v = text.partition("=")
    if not sep or not k:
        raise InvalidInput(
            f"tag {text!r} is not KEY=VALUE", "write it as -t team=vision (no spaces around '=')"
        )
    return key(k, "tag"), tag_value(k, v)


def _short(v: Any) -> str:
    r = repr(v)
    return r if len(r) <= 60 else r[:57] + "..."
