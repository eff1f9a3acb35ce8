"""Waiting for a pipe to become readable, for any descriptor number.

``select.select`` refuses descriptors at or above ``FD_SETSIZE`` (1024): a long-lived process
(a kernel, a Jupyter server, a test session) that holds many files would fail its next wait
with ``ValueError: filedescriptor out of range``. ``poll`` has no such limit."""

from __future__ import annotations

import select


def readable(fd: int, seconds: float) -> bool:
    """Whether ``fd`` has something to read (data, EOF or an error) within ``seconds``."""
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLPRI)
    return bool(poller.poll(max(0, int(seconds * 1000 + 0.999))))
