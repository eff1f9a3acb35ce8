"""nbops' own JSON state files (``.nbops/pipeline/state.json``, ``.nbops/hashes.json``, ...): the
one reader and the one writer.

Reading never raises and never hangs. A file that is missing means "no state". A file that cannot
be used (empty, truncated, not UTF-8 or not JSON, nested too deeply, larger than any state nbops
writes, a directory, a symlink, a FIFO, a socket or a device in its place) is moved aside to
``<name>.corrupt-<time>`` (nothing is deleted, and nothing but a regular file is ever opened),
stderr says so once with what it means, and the caller starts from no state. A file of the
wrong shape is the caller's to check: it keeps what is sound and calls :func:`set_aside`.

Writing is atomic (a temporary file in the same folder, then a rename), so a reader or a crash
sees the old file or the new one, never half of one.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from nbops.errors import NbopsError

MAX_BYTES = 256 * 2**20
"""Larger than any state nbops writes: a bigger file is not ours, nor one to load into memory."""


def _describe(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "is a directory"
    if stat.S_ISLNK(mode):
        return "is a symlink (nbops writes its state as plain files)"
    from nbops.tracking.fingerprint import file_kind

    kind = file_kind(mode)
    return f"is {kind}" if kind else "is not a regular file"


def read_regular(path: Path) -> bytes | str | None:
    """The bytes of a regular file; None when it does not exist; else why it cannot be read."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        return f"cannot be read: {path.parent} is not a directory"
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    if not stat.S_ISREG(st.st_mode):  # never open what is not a file: a FIFO or device may block
        return _describe(st.st_mode)
    if st.st_size > MAX_BYTES:
        return f"is {st.st_size / 2**20:.0f} MiB, larger than any state nbops writes"
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # became a symlink since the lstat
            return _describe(stat.S_IFLNK)
        return f"cannot be read ({exc.strerror or exc})"
    try:
        now = os.fstat(fd)
        if not stat.S_ISREG(now.st_mode):
            return _describe(now.st_mode)
        chunks, size = [], 0
        while size <= MAX_BYTES:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > MAX_BYTES:
            return "grew larger than any state nbops writes while it was read"
        return b"".join(chunks)
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    finally:
        os.close(fd)


def parse_json(raw: bytes) -> Any:
    """The JSON value of ``raw``, or an :class:`Unusable` saying why there is none."""
    if not raw.strip():
        return Unusable("is empty")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return Unusable("is not UTF-8 text")
    try:
        return json.loads(text)
    except RecursionError:
        return Unusable("nests values too deeply")
    except ValueError as exc:  # JSONDecodeError, or an integer of too many digits
        return Unusable(f"is not valid JSON ({exc})")


class Unusable:
    """Why bytes hold no usable JSON."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()
"""What :func:`read` returns when there is no state (JSON ``null`` is a value: of a wrong shape)."""


def read(path: Path, *, means: str) -> Any:
    """The JSON value stored in ``path``, or MISSING when there is none or it cannot be used
    (then it is moved aside and stderr says so, ending with ``means``: what starting afresh
    implies). The value may be of any JSON type: its shape is the caller's to check."""
    raw = read_regular(path)
    if raw is None:
        return MISSING
    value = Unusable(raw) if isinstance(raw, str) else parse_json(raw)
    if isinstance(value, Unusable):
        set_aside(path, value.reason, means)
        return MISSING
    return value


def set_aside(path: Path, problem: str, means: str) -> Path | None:
    """Move an unusable state file (or whatever is in its place) to ``<name>.corrupt-<time>`` and
    say so on stderr; returns where it went (None when it could not be moved: then it stays, and
    the message says so)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    aside = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while os.path.lexists(aside):
        n += 1
        aside = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return None  # another nbops process moved it first, and said so
    except OSError as exc:
        say(
            f"nbops: {path} {problem}; it could not be moved aside ({exc.strerror or exc}), "
            f"so it is ignored: {means}"
        )
        return None
    say(f"nbops: {path} {problem}; moved it to {aside.name}: {means}")
    return aside


def say(line: str) -> None:
    """One line on stderr, for what the user should know but need not act on."""
    try:
        print(line, file=sys.stderr, flush=True)
    except (OSError, ValueError):  # stderr closed or a broken pipe: the state is still sound
        pass


def write(path: Path, data: Any, *, indent: int | None = None) -> None:
    """Write ``data`` as JSON to ``path`` atomically: a reader sees the old file or the new one.
    Whatever is in the way (a directory, a symlink, a FIFO: not a regular file) is moved aside
    first. An NbopsError naming the file when it cannot be written (no space, no permission)."""
    text = json.dumps(
        data,
        indent=indent,
        sort_keys=indent is not None,
        separators=None if indent is not None else (",", ":"),
    )
    folder = path.parent
    try:
        _make_dir(folder)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            pass
        else:
            if not stat.S_ISREG(st.st_mode):
                set_aside(path, _describe(st.st_mode), "nbops writes a fresh file in its place")
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                os.fchmod(f.fileno(), 0o644)
                f.write(text)
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
    except OSError as exc:
        raise NbopsError(
            f"cannot write {path}: {exc.strerror or exc}",
            f"check that {folder} is a folder you can write to, with free space",
        ) from None


def _make_dir(folder: Path) -> None:
    """``folder`` as a directory; a file of nbops' own in its place is moved aside."""
    try:
        st = os.stat(folder)
    except FileNotFoundError:
        folder.mkdir(parents=True, exist_ok=True)
        return
    if not stat.S_ISDIR(st.st_mode):
        set_aside(folder, "is not a directory", "nbops makes the directory in its place")
        folder.mkdir(parents=True, exist_ok=True)
