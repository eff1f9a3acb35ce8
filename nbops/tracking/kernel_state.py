"""Whether this process is an IPython kernel running a cell now, told to its runs' writers.

A run's writer process imports MLflow (most of a second of CPU) and delivers the spool beside
the kernel, on the same cores: a cell whose threads it preempts (KMeans' OpenMP loop, say) ran
2-3x longer. So the kernel tells each writer, on its stdin, ``b`` when a cell begins and ``i``
when it ends (IPython's ``pre_run_cell`` / ``post_run_cell``); the writer starts its heavy work
when the kernel is quiet and delivers at most every second while a cell runs
(tracking/writer.py). Two pipe writes per cell; nothing at all outside IPython, where a writer
never hears either and works as soon as it can."""

from __future__ import annotations

import sys
import weakref
from typing import Any, Protocol


class _Told(Protocol):
    def tell_writer(self, what: bytes) -> None: ...


_busy: bool | None = None  # None: not an IPython shell (or not one that told us)
_runs: weakref.WeakSet[Any] = weakref.WeakSet()
_shells: set[int] = set()


def follow(run: _Told) -> None:
    """Tell ``run``'s writer about cells from now on (and now: a run starts inside a cell)."""
    _install()
    _runs.add(run)
    if _busy is not None:
        run.tell_writer(b"b" if _busy else b"i")


def forget(run: _Told) -> None:
    _runs.discard(run)


def _install() -> None:
    global _busy
    if "IPython" not in sys.modules:  # never import IPython for a script
        return
    try:
        from IPython import get_ipython

        shell = get_ipython()
    except Exception:  # noqa: BLE001 - no shell: nothing to follow
        return
    if shell is None or id(shell) in _shells:
        return
    events = getattr(shell, "events", None)
    if events is None:
        return
    events.register("pre_run_cell", _began)
    events.register("post_run_cell", _ended)
    _shells.add(id(shell))
    _busy = True  # nbops code runs in IPython inside a cell


def _began(*_: Any) -> None:
    _set(True)


def _ended(*_: Any) -> None:
    _set(False)


def _set(value: bool) -> None:
    global _busy
    _busy = value
    what = b"b" if value else b"i"
    for run in list(_runs):
        run.tell_writer(what)
