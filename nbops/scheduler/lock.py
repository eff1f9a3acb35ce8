"""File locks (flock) that the kernel releases when their process dies: one daemon per project,
one execution per schedule across every process (daemon, `nbops schedule run`, the server)."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


class FileLock:
    """A non-blocking exclusive flock on ``path``; ``acquire`` says whether it was free."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: int | None = None

    def acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self.fd = fd
        return True

    def release(self) -> None:
        if self.fd is not None:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_UN)
            finally:
                os.close(self.fd)
                self.fd = None

    def __enter__(self) -> FileLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def is_held(path: Path) -> bool:
    """Whether some process holds the lock (checked by trying it, never by a pid)."""
    if not path.exists():
        return False
    probe = FileLock(path)
    if probe.acquire():
        probe.release()
        return False
    return True


def daemon_lock(sched_dir: Path) -> FileLock:
    return FileLock(sched_dir / "daemon.lock")


def schedule_lock(sched_dir: Path, name: str) -> FileLock:
    return FileLock(sched_dir / "locks" / f"{name}.lock")
