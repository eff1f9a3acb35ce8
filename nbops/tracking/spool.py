"""The on-disk spool: every logged value is a JSON line here before anything else happens to it.

One directory per run under ``.nbops/spool/<local_id>/``:

``log.jsonl``  records, appended by the logging process with one ``os.write`` each (so a SIGKILL
               right after a log call loses nothing: the line is in the OS page cache)
``ack``        byte offset up to which the records reached the store
``run.json``   the MLflow run id and experiment id, once the store created the run
``state.json`` the writer's view: connecting / ok / unreachable (with the error)
``files/``     copies of artifacts taken at call time

Records are JSON arrays whose first item says what they are::

    ["start", {...}]                    experiment, name, tags, params, uri, pid, host, ...
    ["m", key, value, step, ts_ms]      metric
    ["p", key, value]                   param
    ["t", key, value]                   tag
    ["a", src, artifact_dir, is_copy]   artifact (file or directory)
    ["d", {...}]                        dataset fingerprint (track_data)
    ["end", status, ts_ms]

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
from typing import Any

LOG = "log.jsonl"
ACK = "ack"
RUN = "run.json"
STATE = "state.json"
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

    def append(self, rec: list[Any]) -> int:
        """One record, one write: atomic with O_APPEND, survives the death of this process."""
        assert self.fd is not None
        data = (_dumps(rec) + "\n").encode()
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
        rec = json.loads(first)
        if not (isinstance(rec, list) and rec and rec[0] == "start"):
            raise ValueError(f"{self.log_path} does not begin with a start record")
        return rec[1]  # type: ignore[no-any-return]

    # --- the writer side ----------------------------------------------------------------------
    def set_ack(self, offset: int) -> None:
        write_atomic(self.dir / ACK, str(offset))

    def set_run_info(self, run_id: str, experiment_id: str) -> None:
        write_atomic(self.dir / RUN, json.dumps({"run_id": run_id, "experiment_id": experiment_id}))

    def set_state(self, state: str, **extra: Any) -> None:
        write_atomic(self.dir / STATE, json.dumps({"state": state, "time": time.time(), **extra}))

    def read_from(self, offset: int) -> Iterator[tuple[int, list[Any]]]:
        """Complete records after ``offset``, each with the offset just past it."""
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
                continue
            try:
                rec = json.loads(line)
            except (ValueError, RecursionError):
                continue  # a line damaged by hand: the records around it are still delivered
            if isinstance(rec, list) and rec and isinstance(rec[0], str):
                yield pos, rec

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
