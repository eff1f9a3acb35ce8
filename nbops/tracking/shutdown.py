"""How the active run ends when its kernel goes away: before anyone can kill the kernel.

A notebook that ran to its last cell must end FINISHED, however the kernel is shut down. Jupyter
(jupyter_client, hence papermill, nbclient and the server) sends ``shutdown_request``, waits half
of ``shutdown_wait_time`` (2.5 s by default), then SIGTERMs the kernel, then SIGKILLs it. Python's
atexit handlers run last-registered first, so every handler registered after nbops' (joblib's
loky executor, a user's) runs before it; when they take longer than the grace period, SIGTERM
arrives before nbops' own exit hook and the run ended KILLED without its notebook snapshot.

So in a kernel the run is ended where the kernel learns it is going away, and ending is a hand-off:
the notebook snapshot and the ``end`` record are appended to the spool (durable at once) and the
kernel lets go at once; the writer, which runs in its own session and outlives the kernel, delivers
them and ends the run by itself (one is started if none is running; ``nbops sync`` if it cannot).
The kernel does not wait for the store: papermill returns as fast as for an untracked notebook,
and the run is complete in the store once the writer is done (a fresh writer is still importing
MLflow for a second or two). ``NBOPS_EXIT_GRACE`` (seconds, default 0) makes the kernel wait that
long for the delivery first, for a caller that reads the run the moment papermill returns:

* ``shutdown_request`` (the kernel's ``do_shutdown``, wrapped): FINISHED when no cell is running;
* SIGTERM: the same, then the signal's previous disposition (the kernel still dies of it);
* atexit (scripts, ``exit()`` in a cell): as before, ``fluent._end_at_exit``.

A kernel stopped while a cell runs ends KILLED, with the reason in ``nbops.end_reason``.
Standard library only; IPython is used only when it is already loaded.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

from nbops import envvars

GRACE_S = envvars.seconds(envvars.EXIT_GRACE, 0.0)

_installed = False
_busy = False
_cell: int | None = None
_previous_sigterm: Any = None


def in_kernel() -> bool:
    return _kernel_shell() is not None


def _kernel_shell() -> Any:
    if "IPython" not in sys.modules:
        return None
    try:
        from IPython.core.getipython import get_ipython

        shell = get_ipython()  # type: ignore[no-untyped-call]
    except Exception:  # noqa: BLE001 - no usable IPython
        return None
    return shell if shell is not None and getattr(shell, "kernel", None) is not None else None


def install() -> None:
    """Hook the kernel's shutdown (once per process); a no-op outside a Jupyter kernel."""
    global _installed, _busy, _previous_sigterm
    if _installed:
        return
    shell = _kernel_shell()
    if shell is None:
        return
    _installed = True
    _busy = True  # runs start from a cell; post_run_cell clears it
    with contextlib.suppress(Exception):
        shell.events.register("pre_run_cell", _pre_run_cell)
        shell.events.register("post_run_cell", _post_run_cell)
    kernel = shell.kernel
    original = kernel.do_shutdown
    if not getattr(original, "_nbops", False):

        def do_shutdown(restart: bool, *args: Any, **kwargs: Any) -> Any:
            end_now("shutdown_request")
            return original(restart, *args, **kwargs)

        do_shutdown._nbops = True  # type: ignore[attr-defined]
        kernel.do_shutdown = do_shutdown
    if threading.current_thread() is threading.main_thread():
        with contextlib.suppress(ValueError, OSError):
            _previous_sigterm = signal.signal(signal.SIGTERM, _on_sigterm)


def _pre_run_cell(*_: Any) -> None:
    global _busy, _cell
    _busy = True
    shell = _kernel_shell()
    _cell = getattr(shell, "execution_count", None) if shell is not None else None


def _post_run_cell(*_: Any) -> None:
    global _busy
    _busy = False


def end_now(why: str) -> None:
    """End the active run for a kernel that is going away: FINISHED when it is idle, KILLED
    (with the reason) when a cell is still running. Never raises; waits for nothing (unless
    NBOPS_EXIT_GRACE says so): the writer finishes the run after the kernel is gone."""
    from nbops.tracking import fluent
    from nbops.tracking.run import FINISHED, KILLED

    try:
        if fluent.active_run() is None:
            return
        if _busy:
            where = f" while cell {_cell} was running" if _cell else " while a cell was running"
            fluent.end_for_exit(KILLED, GRACE_S, reason=f"the kernel got {why}{where}")
        else:
            fluent.end_for_exit(FINISHED, GRACE_S)
    except Exception:  # noqa: BLE001 - the kernel's shutdown must go on; the spool keeps the data
        pass


def _on_sigterm(signum: int, frame: Any) -> None:
    end_now("SIGTERM")
    previous = _previous_sigterm
    if callable(previous):
        handler: Callable[[int, Any], Any] = previous
        handler(signum, frame)
        return
    if previous == signal.SIG_IGN:
        return
    # the default disposition: die of the signal, as the sender expects
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)
