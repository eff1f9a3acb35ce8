"""Which paths nbops may touch. Every path named in nbops.yaml (a stage's notebook, deps and outs,
the drift tables) and every name in a store record (an ``outs.json`` that ``nbops checkout``
restores) goes through :func:`refusal`, so one rule decides, for every caller:

- what nbops **writes** (``out``) and the notebooks it runs (``notebook``) lie inside the project
  root: not absolute, no ``..`` that leaves the root, no symlink that leads outside it, not in
  ``.nbops/`` (nbops' own state), and an out is neither ``nbops.yaml`` nor in ``.git/``;
- what a stage **reads** (``dep``, ``data``) may lie outside the project (a shared data folder,
  ``/data/raw.csv``: reading is not writing), but never in the project's ``.nbops/`` nor on
  ``/proc``, ``/sys`` or ``/dev``;
- for every kind: no empty name, NUL or control characters, no ``~`` (nbops does not expand it),
  and an existing path must be a regular file or a directory (a FIFO, socket or device would hang
  the hashing that decides whether a stage is stale).

Standard library only; the file system is only stat'ed (and symlinks read), never opened.
"""

from __future__ import annotations

import os
import posixpath
import re
from pathlib import Path
from typing import Literal

from nbops.errors import ConfigError
from nbops.tracking.fingerprint import file_kind

Kind = Literal["out", "notebook", "dep", "data"]
"""``out``: nbops writes it; ``notebook``: nbops runs it (and its kernel works in its folder);
``dep``/``data``: nbops reads it."""

STATE_DIR = ".nbops"  # nbops.project.STATE_DIR (not imported: keep this module stdlib-only)
CONFIG_FILE = "nbops.yaml"
SPECIAL_ROOTS = ("/proc", "/sys", "/dev")
"""Pseudo file systems: their "files" block or never end when read."""

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_TILDE = re.compile(r"^~[^/]*(/|$)")
_WRITES: tuple[Kind, ...] = ("out", "notebook")


def normalise(rel: str) -> str:
    """A path as nbops compares it: '/'-separated (a backslash counts as one), without ``.``,
    ``a/..`` or a trailing slash. ``""`` stays ``""``."""
    if not rel:
        return ""
    return posixpath.normpath(rel.replace("\\", "/"))


def within(path: str, base: str) -> bool:
    return path == base or path.startswith(base.rstrip("/") + "/")


def refusal(root: Path | str, rel: str, kind: Kind) -> tuple[str, str] | None:
    """Why nbops must not use ``rel`` (relative to the project ``root``) as a ``kind``, as
    (reason, hint), or None when it may. The reason completes a sentence naming the path."""
    if not isinstance(rel, str) or not rel.strip():
        return "is empty", "write a path relative to the project root, like data/train.csv"
    if "\x00" in rel:
        return "contains a NUL byte", "remove it: no file name can contain one"
    if _CONTROL.search(rel):
        return "contains a control character", "remove it (tabs and newlines included)"
    if _TILDE.match(rel):
        return (
            "starts with '~', which nbops does not expand",
            "write the path relative to the project root"
            + (" (or, for a dep, the absolute path)" if kind not in _WRITES else ""),
        )
    text = normalise(rel)
    base = os.path.realpath(root)
    example = "notebooks/train.ipynb" if kind == "notebook" else "data/train.csv"
    relative_hint = f"write it relative to the project root, inside it, like {example}"
    if posixpath.isabs(text):
        if kind in _WRITES:
            inner = posixpath.relpath(text, base)
            if not inner.startswith("..") and inner != ".":
                relative_hint = f"write it relative to the project root: {inner}"
            return f"is an absolute path; a stage's {kind} must lie inside the project", (
                relative_hint
            )
        lexical = text
    else:
        first = text.split("/", 1)[0]
        if first == ".." and kind in _WRITES:
            return (
                f"leaves the project root ({base}); a stage's {kind} must lie inside it",
                relative_hint,
            )
        if text == ".":
            return (
                "is the whole project (it holds nbops' own state in .nbops/)",
                "name the files or folders it " + ("writes" if kind == "out" else "reads"),
            )
        if first.casefold() == STATE_DIR:
            return (
                f"is inside {STATE_DIR}/, where nbops keeps its own state",
                "use a folder of your own, like data/ or models/",
            )
        if kind == "out" and text.casefold() == CONFIG_FILE:
            return "is nbops.yaml itself", "a stage must not write the pipeline's own file"
        if kind == "out" and first.casefold() == ".git":
            return "is inside .git/", "a stage must not write git's own files"
        lexical = posixpath.join(base, text)
    real = os.path.realpath(lexical)
    # the system resolves a symlink before the ``..`` after it; nbops compares the normalised
    # text: where the two disagree (``link/../x`` with link pointing elsewhere) neither is safe
    raw = rel.replace("\\", "/")
    as_read = os.path.realpath(raw if posixpath.isabs(raw) else posixpath.join(base, raw))
    if as_read != real:
        return (
            f"has '..' after a symlink, so it leads to {as_read}, not to {real}",
            "write the path without '..' (" + (normalise(rel) or ".") + " if that is the one)",
        )
    state = posixpath.join(base, STATE_DIR)
    if kind in _WRITES and not within(real, base):
        return (
            f"leads through a symlink to {real}, outside the project root ({base})",
            f"a stage's {kind} must lie inside the project: replace the symlink by a folder",
        )
    if within(real, state):
        return (
            f"leads to {real}, inside {STATE_DIR}/ where nbops keeps its own state",
            "use a folder of your own, like data/ or models/",
        )
    if kind == "out" and real == posixpath.join(base, CONFIG_FILE):
        return "leads to nbops.yaml itself", "a stage must not write the pipeline's own file"
    if not within(real, base):
        special = [s for s in SPECIAL_ROOTS if within(real, s)]
        if special:
            return (
                f"is on {special[0]}, a pseudo file system whose files block or never end",
                "copy the data into the project and name the copy",
            )
        held = [s for s in SPECIAL_ROOTS if within(s, real)]
        if held:
            return (
                f"is a folder that holds {held[0]}, a pseudo file system whose files block or "
                "never end",
                "name the folders it reads, not one above " + held[0],
            )
    try:
        mode = os.stat(real).st_mode
    except OSError:
        return None  # not there (yet): whether it must exist is the DAG's question
    odd = file_kind(mode)
    if odd is not None:
        return (
            f"is {odd}, not a regular file or a folder",
            "nbops hashes regular files (and folders of them): name a file instead",
        )
    return None


def inside_project(
    root: Path | str,
    rel: str,
    *,
    kind: Kind,
    what: str,
    file: str | None = None,
    line: int | None = None,
    column: int | None = None,
) -> Path:
    """``root / rel`` when nbops may use ``rel`` as a ``kind``; else a ConfigError at
    ``file:line:column`` that says ``{what} {rel!r} {reason}`` and the fix."""
    found = refusal(root, rel, kind)
    if found is not None:
        reason, hint = found
        raise ConfigError(f"{what} {rel!r} {reason}", hint, file=file, line=line, column=column)
    return Path(root) / normalise(rel)
