"""The on-disk spool: every logged value is a JSON line here before anything else happens to it.

One directory per run under ``.nbops/spool/<local_id>/``:

``log.jsonl``  records, appended by the logging process with one ``os.write`` each (so a SIGKILL
               right after a log call loses nothing: the line is in the OS page cache)
``ack``        byte offset up to which the records reached the store
``run.json``   the MLflow run id and experiment id, once the store created the run
``state.json`` the writer's view: connecting / ok / unreachable (with the error)
``creating``   present while the store is asked to create the run: if the answer was lost (the
               server went down mid-request), the next attempt looks the run up by its
               ``nbops.spool`` tag instead of creating a second one
``files/``     copies of artifacts taken at call time

Records are JSON arrays whose first item says what they are::

    ["start", {...}]                    Start: experiment, name, tags, params, uri, pid, host, ...
    ["began", ts_ms]                    Began: when the run really began, if not at its Start (a
                                        pipeline point is spooled when it is queued and begins
                                        when its kernel is ready); the store creates the run
                                        with this start time
    ["m", key, value, step, ts_ms]      Metric
    ["p", key, value]                   Param
    ["t", key, value]                   Tag
    ["a", src, artifact_dir, is_copy]   Artifact (file or directory)
    ["d", {...}]                        Dataset: a fingerprint (track_data)
    ["end", status, ts_ms]              End

This module is the only one that knows that shape: others build the typed records below and
write them with :meth:`Spool.append`, and read them back typed with :meth:`Spool.records_from`
or :func:`read_records`.

An flock on ``log.jsonl`` is held while someone is responsible for the spool (the logging process
and its writer share it); a spool whose lock can be taken is an orphan, to be replayed.
Standard library only.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar, TypeAlias

LOG = "log.jsonl"
ACK = "ack"
RUN = "run.json"
STATE = "state.json"
CREATING = "creating"
FILES = "files"
COPY_LIMIT = 64 * 1024 * 1024  # larger artifacts are uploaded from where they are

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


def spool_root(state: Path) -> Path:
    return state / "spool"


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError, RecursionError):
        return None


# --- the records --------------------------------------------------------------------------------
# Plain classes with __slots__, not dataclasses: one is built per logging call, in the user's
# kernel, and a dataclass costs ~1 ms to define and a frozen one ~3x more to build.
class _Record:
    """A spool record: its fields, in ``__slots__`` order, follow ``KIND`` on the line."""

    __slots__: tuple[str, ...] = ()
    KIND: ClassVar[str]

    def encode(self) -> list[Any]:
        return [self.KIND, *(getattr(self, f) for f in self.__slots__)]

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, _Record)
            and type(other) is type(self)
            and (self.encode() == other.encode())
        )

    __hash__ = None  # type: ignore[assignment]  # mutable fields (dicts): not hashable

    def __repr__(self) -> str:
        args = ", ".join(f"{f}={getattr(self, f)!r}" for f in self.__slots__)
        return f"{type(self).__name__}({args})"


class Start(_Record):
    """The first record: what the store needs to create the run (uri, experiment, name, tags,
    params, start_ms, pid, host, cwd, run_id, capture)."""

    __slots__ = ("info",)
    KIND = "start"

    def __init__(self, info: dict[str, Any]) -> None:
        self.info = info


class Began(_Record):
    """When the run really began (ms since the epoch), written before anything it logs: a run
    spooled ahead of its work (a queued pipeline point) is created in the store with this start
    time instead of its Start's ``start_ms``. Only one that comes before the run is created
    counts (MLflow cannot move a run's start afterwards)."""

    __slots__ = ("ts_ms",)
    KIND = "began"

    def __init__(self, ts_ms: int) -> None:
        self.ts_ms = ts_ms


class Metric(_Record):
    __slots__ = ("key", "value", "step", "ts_ms")
    KIND = "m"

    def __init__(self, key: str, value: float, step: int, ts_ms: int) -> None:
        self.key, self.value, self.step, self.ts_ms = key, value, step, ts_ms

    def encode(self) -> list[Any]:  # the hot path of every log_metric: spelled out
        return ["m", self.key, self.value, self.step, self.ts_ms]


class Param(_Record):
    __slots__ = ("key", "value")
    KIND = "p"

    def __init__(self, key: str, value: str) -> None:
        self.key, self.value = key, value


class Tag(_Record):
    __slots__ = ("key", "value")
    KIND = "t"

    def __init__(self, key: str, value: str) -> None:
        self.key, self.value = key, value


class Artifact(_Record):
    """A file or directory to upload: ``src`` (a copy in files/, or the original when it is too
    big to copy, ``is_copy`` False) under the run's artifact directory ``artifact_dir``."""

    __slots__ = ("src", "artifact_dir", "is_copy")
    KIND = "a"

    def __init__(self, src: str, artifact_dir: str | None, is_copy: bool) -> None:
        self.src, self.artifact_dir, self.is_copy = src, artifact_dir, is_copy


class Dataset(_Record):
    __slots__ = ("fingerprint",)
    KIND = "d"

    def __init__(self, fingerprint: dict[str, Any]) -> None:
        self.fingerprint = fingerprint


class End(_Record):
    __slots__ = ("status", "ts_ms")
    KIND = "end"

    def __init__(self, status: str, ts_ms: int) -> None:
        self.status, self.ts_ms = status, ts_ms


Record: TypeAlias = Start | Began | Metric | Param | Tag | Artifact | Dataset | End


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _integer(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def decode(raw: Any) -> Record | None:
    """A record as read from a line of the log; None for anything that is not one (a line
    damaged by hand, a kind this version does not know)."""
    if not (isinstance(raw, list) and raw and isinstance(raw[0], str)):
        return None
    kind, rest = raw[0], raw[1:]
    if kind == "m" and len(rest) == 4:
        key, value, step, ts = rest
        if isinstance(key, str) and _number(value) and _integer(step) and _integer(ts):
            return Metric(key, value, step, ts)
    elif kind in ("p", "t") and len(rest) == 2:
        key, value = rest
        if isinstance(key, str) and isinstance(value, str):
            return Param(key, value) if kind == "p" else Tag(key, value)
    elif kind == "a" and len(rest) == 3:
        src, dst, is_copy = rest
        if isinstance(src, str) and (dst is None or isinstance(dst, str)):
            return Artifact(src, dst, bool(is_copy))
    elif kind == "start" and len(rest) == 1 and isinstance(rest[0], dict):
        return Start(rest[0])
    elif kind == "began" and len(rest) == 1 and _integer(rest[0]):
        return Began(rest[0])
    elif kind == "d" and len(rest) == 1 and isinstance(rest[0], dict):
        return Dataset(rest[0])
    elif kind == "end" and len(rest) == 2:
        status, ts = rest
        if isinstance(status, str) and _integer(ts):
            return End(status, ts)
    return None


def began_ms(sp: Spool) -> int | None:
    """The time of the spool's Began record, if it has one before its run's first logged value
    (what the run then logs comes after it; only the start's own records may come before)."""
    for _, rec in sp.records_from(0):
        if isinstance(rec, Began):
            return rec.ts_ms
        if not isinstance(rec, Start | Param | Tag):
            return None
    return None


def read_records(log_path: Path) -> Iterator[Record]:
    """Every complete record of a spool's log file, typed (damaged lines are skipped)."""
    for _, rec in Spool(log_path.parent).records_from(0):
        yield rec


def latest_metrics(log_path: Path) -> dict[str, float]:
    """The last value of each metric in a spool's log (the highest step; the later record of
    the same step)."""
    out: dict[str, tuple[int, float]] = {}
    for rec in read_records(log_path):
        if isinstance(rec, Metric) and (rec.key not in out or rec.step >= out[rec.key][0]):
            out[rec.key] = (rec.step, rec.value)
    return {k: v for k, (_, v) in out.items()}


class Spool:
    """A run's spool directory, seen from either side (the logger or the writer)."""

    def __init__(self, directory: Path, fd: int | None = None) -> None:
        self.dir = directory
        self.log_path = directory / LOG
        self.fd = fd

    # --- the logging side -------------------------------------------------------------------
    @classmethod
    def create(cls, directory: Path) -> Spool:
        """Make the directory, open the log for appending and take its lock."""
        (directory / FILES).mkdir(parents=True, exist_ok=True)
        fd = os.open(directory / LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)
        return cls(directory, fd)

    def append(self, rec: Record) -> int:
        """One record, one write: atomic with O_APPEND, survives the death of this process."""
        assert self.fd is not None
        data = (_dumps(rec.encode()) + "\n").encode()
        os.write(self.fd, data)
        return len(data)

    def stash(self, src: Path, name: str) -> tuple[str, bool]:
        """Keep the content of ``src`` as it is now: a copy in files/ (or the path if too big).
        InvalidInput for a FIFO, socket or device in it (copying one hangs or never ends)."""
        from nbops.tracking.fingerprint import check_plain

        files = check_plain(src, "artifact")
        if src.is_dir():
            size = sum(p.stat().st_size for p in files)
            if size > COPY_LIMIT:
                return str(src.resolve()), False
            dst = self._fresh(name)
            shutil.copytree(src, dst)
            return str(dst), True
        if src.stat().st_size > COPY_LIMIT:
            return str(src.resolve()), False
        dst = self._fresh(name)
        shutil.copyfile(src, dst)
        return str(dst), True

    def new_file(self, name: str) -> Path:
        """A fresh path in files/ for content made now (a figure, a cell's source)."""
        return self._fresh(name)

    def _fresh(self, name: str) -> Path:
        d = self.dir / FILES / f"{time.monotonic_ns():x}"
        d.mkdir(parents=True, exist_ok=True)
        return d / name

    def close(self) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = None

    # --- either side --------------------------------------------------------------------------
    def size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except FileNotFoundError:
            return 0

    def acked(self) -> int:
        try:
            return int((self.dir / ACK).read_text() or 0)
        except (FileNotFoundError, ValueError):
            return 0

    def run_info(self) -> dict[str, str] | None:
        info = read_json(self.dir / RUN)
        return info if isinstance(info, dict) else None

    def state(self) -> dict[str, Any]:
        st = read_json(self.dir / STATE)
        return st if isinstance(st, dict) else {}

    def start_record(self) -> dict[str, Any]:
        with open(self.log_path, "rb") as f:
            first = f.readline()
        rec = decode(json.loads(first))
        if not isinstance(rec, Start):
            raise ValueError(f"{self.log_path} does not begin with a start record")
        return rec.info

    # --- the writer side ----------------------------------------------------------------------
    def set_ack(self, offset: int) -> None:
        write_atomic(self.dir / ACK, str(offset))

    def set_run_info(self, run_id: str, experiment_id: str) -> None:
        write_atomic(self.dir / RUN, json.dumps({"run_id": run_id, "experiment_id": experiment_id}))
        with contextlib.suppress(FileNotFoundError):
            (self.dir / CREATING).unlink()

    def mark_creating(self) -> bool:
        """Note that the store is being asked to create the run; True if an earlier attempt was
        noted already (its answer never came: the run may exist)."""
        marker = self.dir / CREATING
        if marker.exists():
            return True
        write_atomic(marker, str(time.time()))
        return False

    def set_state(self, state: str, **extra: Any) -> None:
        write_atomic(self.dir / STATE, json.dumps({"state": state, "time": time.time(), **extra}))

    def _lines(self, offset: int) -> Iterator[tuple[int, Any]]:
        """Every complete line after ``offset``: (offset just past it, its JSON or None)."""
        with open(self.log_path, "rb") as f:
            f.seek(offset)
            data = f.read()
        end = data.rfind(b"\n")
        if end < 0:
            return
        pos = offset
        for line in data[: end + 1].splitlines(keepends=True):
            pos += len(line)
            if not line.strip():
                yield pos, None
                continue
            try:
                yield pos, json.loads(line)
            except (ValueError, RecursionError):
                yield pos, None  # a line damaged by hand

    def entries_from(self, offset: int) -> Iterator[tuple[int, Record | None]]:
        """Every complete line after ``offset``, typed, with the offset just past it: None for a
        line that is not a record of a known kind (a line damaged by hand), so that a reader
        that acknowledges what it read moves past it too."""
        for pos, raw in self._lines(offset):
            yield pos, decode(raw)

    def records_from(self, offset: int) -> Iterator[tuple[int, Record]]:
        """Complete records after ``offset``, typed, each with the offset just past it; a line
        that is not a record of a known kind is skipped."""
        for pos, rec in self.entries_from(offset):
            if rec is not None:
                yield pos, rec

    def has_ended(self) -> bool:
        """Whether the log holds the run's end record."""
        return any(isinstance(rec, End) for _, rec in self.records_from(0))

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def finish(self, run_id: str | None) -> None:
        """Everything is delivered: drop the data, keep run.json and a "done" state for the
        logging process to read (it removes the directory; ``nbops sync`` sweeps leftovers)."""
        self.set_state("done", run_id=run_id)
        for name in (LOG, ACK):
            with contextlib.suppress(FileNotFoundError):
                (self.dir / name).unlink()
        shutil.rmtree(self.dir / FILES, ignore_errors=True)

    def is_done(self) -> bool:
        return not self.dir.exists() or self.state().get("state") == "done"


def try_lock(directory: Path) -> int | None:
    """Open a spool's log and take its lock without waiting; None when someone holds it."""
    try:
        fd = os.open(directory / LOG, os.O_RDWR | os.O_APPEND)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def lock_wait(directory: Path, timeout: float) -> int | None:
    """Take a spool's lock, waiting up to ``timeout`` seconds for its holder to let go."""
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        fd = try_lock(directory)
        if fd is not None or time.monotonic() >= deadline or not (directory / LOG).exists():
            return fd
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie is dead for our purposes
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][:1] != "Z"
    except (OSError, IndexError):
        return True
