"""The writer process: one per run, started by the logging process, owning the store connection.

``python -m nbops.tracking.writer SPOOL_DIR LOCK_FD [EVENTS_FD]``, stdin a pipe from the logging
process (a byte wakes the writer, EOF says the logging process let go or died). EVENTS_FD, when
given, is the write end of a pipe the logging process reads: one byte after every step that
changed what it may be waiting for (the run created, records acknowledged, the store unreachable,
the run done), so that ``end_run`` and ``flush`` wait on it instead of polling files; its EOF says
the writer has gone. The logging process never imports MLflow and never waits for it; this
process imports MLflow,
creates the run, captures git and environment, tails the spool and delivers it in batches. When
the pipe reaches EOF without an end record (the kernel was killed), it delivers what is left and
marks the run KILLED. If the store is unreachable it retries with back-off (at most MAX_BACKOFF s
apart) for as long as the logging process lives. After the logging process is gone it goes on
retrying for LINGER_S more if it had reached the store before (a server restarting: the run's end
is delivered when it is back), releasing the spool's lock between attempts so that ``nbops sync``
or another writer may take the spool over; a store it never reached (a wrong URI, no network) is
given up at once. What is left stays in the spool for ``nbops sync`` or the next writer.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING

from nbops import envvars
from nbops.tracking.fdwait import readable
from nbops.tracking.spool import Spool

if TYPE_CHECKING:
    from nbops.mlflow.store import TrackingStore

HEARTBEAT_S = envvars.seconds(envvars.HEARTBEAT, 60.0)
FSYNC_S = 2.0
IDLE_POLL = 0.1
BUSY_POLL = 0.01
MAX_BACKOFF = 15.0
LINGER_S = 300.0  # retrying after the logging process is gone, once the store was reached
QUIET_S = 0.3  # a kernel idle this long is between cells a person runs, not papermill's
DEFER_S = 10.0  # the longest wait for a quiet kernel (NBOPS_WRITER_DEFER)
KERNEL_BUSY_POLL = 1.0  # how often a cell's new records are delivered while it runs


class Events:
    """The write end of the logging process' events pipe (see the module's docstring). Never
    blocks and never fails: a full pipe already says "look", a closed one has no reader."""

    def __init__(self, fd: int | None) -> None:
        self.fd = fd
        if fd is not None:
            try:
                os.set_blocking(fd, False)
            except OSError:
                self.fd = None

    def ping(self) -> None:
        if self.fd is None:
            return
        try:
            os.write(self.fd, b".")
        except BlockingIOError:
            pass  # unread bytes are waiting already
        except OSError:  # the logging process is gone (EPIPE): nobody to tell
            self.close()

    def close(self) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = None


class Owner:
    """The logging process' side of stdin: ``w`` (someone waits: flush, end, ``run.id``), ``b``
    and ``i`` (an IPython kernel began / finished a cell; see tracking/kernel_state.py), EOF (it
    let go or died). ``busy`` is None when it never said (a script: no cells)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.gone = False
        self.busy: bool | None = None
        self.idle_since = time.monotonic()
        self.urgent = False  # a `w` came: whoever waits must not wait for a quiet moment

    def read(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for news; True if any came (bytes or EOF)."""
        if self.gone or not readable(self.fd, timeout):
            return self.gone
        try:
            data = os.read(self.fd, 65536)
        except BlockingIOError:
            return False
        except OSError:
            data = b""
        if not data:
            self.gone = True
            return True
        self._take(data)
        return True

    def drain(self) -> None:
        """Take whatever is waiting, without waiting."""
        while not self.gone and self.read(0):
            pass

    def _take(self, data: bytes) -> None:
        if b"w" in data:
            self.urgent = True
        last = max(data.rfind(b"b"), data.rfind(b"i"))
        if last >= 0:
            busy = data[last : last + 1] == b"b"
            if self.busy is not False and not busy:
                self.idle_since = time.monotonic()
            self.busy = busy

    def quiet(self, now: float) -> bool:
        """Nothing of the logging process competes for the CPU now: no kernel cell runs (and
        none ran for QUIET_S: papermill's cells follow each other within milliseconds)."""
        return self.busy is None or (not self.busy and now - self.idle_since >= QUIET_S)


def wait_news(owner: Owner, timeout: float) -> None:
    """Wait up to ``timeout`` s for what is worth a delivery round before it: the logging
    process letting go, someone waiting (``w``), or a kernel that became idle and stayed so for
    QUIET_S (the cell's records go then). A cell beginning or ending alone wakes nothing, so a
    notebook's quick cells cost this process no round each (nor the kernel a core)."""
    start = time.monotonic()
    end = start + timeout
    while not owner.gone and not owner.urgent:
        now = time.monotonic()
        stop = end
        if owner.busy is False and owner.idle_since > start:
            stop = min(end, owner.idle_since + QUIET_S)
        if now >= stop:
            return
        owner.read(stop - now)


def defer_limit() -> float:
    """``NBOPS_WRITER_DEFER`` (checked when the run starts, so a bad value was said there)."""
    try:
        return envvars.seconds(envvars.WRITER_DEFER, DEFER_S)
    except Exception:  # noqa: BLE001 - the logging process named it; never fail delivery
        return DEFER_S


def await_quiet(owner: Owner, limit: float) -> None:
    """Before the writer's heavy start (importing MLflow, most of a second of CPU; probing git
    and the installed packages): wait while the kernel runs cells, so that it does not take the
    cores from them (a cell with OpenMP threads, KMeans say, ran 2-3x longer beside the
    import). Over when the kernel is quiet, someone waits for the store (``w``), the logging
    process lets go, or after ``limit`` s (a long cell then gets its live metrics)."""
    deadline = time.monotonic() + limit
    owner.drain()
    while not owner.gone and not owner.urgent:
        now = time.monotonic()
        if owner.quiet(now) or now >= deadline:
            return
        wait = deadline - now
        if owner.busy is False:
            wait = min(wait, QUIET_S - (now - owner.idle_since))
        owner.read(max(0.0, wait))


class RunContextProbe:
    """The run's context (git, environment, host), probed in a thread from the writer's start:
    git and the scan of installed packages overlap MLflow's import and the run's creation
    instead of holding back the first values."""

    def __init__(self, cwd: Path) -> None:
        from nbops.tracking import capture

        self.cwd = cwd
        self.context: capture.RunContext | None = None
        self._thread = threading.Thread(target=self._probe, name="nbops-capture", daemon=True)
        self._thread.start()

    def _probe(self) -> None:
        from nbops.tracking import capture

        try:
            self.context = capture.run_context(self.cwd)
        except Exception:  # noqa: BLE001 - probed again, in the open, by append_to
            self.context = None

    def append_to(self, spool: Spool) -> None:
        """Append the context as ordinary records of the spool."""
        from nbops.tracking import capture

        self._thread.join()
        capture.append_to(spool, self.context or capture.run_context(self.cwd))


def serve(spool: Spool, owner_fd: int, events_fd: int | None = None) -> int:
    events = Events(events_fd)
    try:
        return _serve(spool, owner_fd, events)
    finally:
        events.close()  # EOF for the logging process: this writer has gone


def _serve(spool: Spool, owner_fd: int, events: Events) -> int:
    start = spool.start_record()
    owner = Owner(owner_fd)
    if spool.run_info() is None:  # the first writer of the run: nothing of it is in the store
        await_quiet(owner, defer_limit())
    # capture once, right after the run exists (not again if the writer is restarted)
    needs_capture = bool(start.get("capture")) and spool.run_info() is None
    probe = RunContextProbe(Path(str(start.get("cwd") or os.getcwd()))) if needs_capture else None

    from nbops.errors import AccessDenied, StoreUnavailable
    from nbops.mlflow.credentials import refused
    from nbops.mlflow.failures import access_status
    from nbops.mlflow.store import TrackingStore
    from nbops.tracking.delivery import Delivery

    uri = str(start["uri"])
    store: TrackingStore | None = None
    delivery: Delivery | None = None
    owner_gone = False
    backoff = 0.5
    recovered = False
    last_state = ""
    retries_after_owner = 0
    reached = False  # the store answered for this run once: it is there, only away now
    gone_at = 0.0
    last_beat = last_sync = time.monotonic()
    while True:
        failing = False
        unreachable = False
        moved = 0
        changed = False  # something the logging process may be waiting for: ping it
        try:
            if store is None:
                spool.set_state("connecting")
                store = TrackingStore(uri)
            if delivery is None:
                delivery = Delivery(spool, store)
            if delivery.run_id is None:
                delivery.ensure_run()
                events.ping()  # the run exists: `run.id` need not wait for the first batch
            if probe is not None:
                probe.append_to(spool)
                probe = None
            moved = delivery.pump()
            changed = moved > 0
            reached = True
            if moved and spool.fd is not None and time.monotonic() - last_sync > FSYNC_S:
                # undelivered lines survive a power cut too; not more often, as fsync holds
                # the file's lock and would slow the logging process' appends
                last_sync = time.monotonic()
                os.fsync(spool.fd)
            if not owner_gone and time.monotonic() - last_beat > HEARTBEAT_S:
                last_beat = time.monotonic()
                delivery.heartbeat()
            backoff = 0.5
            state = f"ok:{len(delivery.dropped)}"
            if state != last_state:
                spool.set_state("ok", run_id=delivery.run_id, dropped=delivery.dropped[-20:])
                last_state = state
                changed = True
            if not recovered and delivery.caught_up():
                recovered = True
                _recover_others(spool, uri, store)
        except Exception as exc:  # noqa: BLE001 - anything here is retried, never lost
            failing = True
            if isinstance(exc, StoreUnavailable):
                store, delivery = None, None
            # a refused login or permission says what to set or whom to ask (its hint), also
            # when it came as a `requests` error of a proxied artifact upload
            status = access_status(exc)
            if not isinstance(exc, AccessDenied) and status is not None:
                exc = refused(uri, status, "log_artifact", None)
            msg = exc.message if isinstance(exc, StoreUnavailable) else _describe(exc)
            unreachable = _is_unreachable(exc, uri)
            # "unreachable" tells the logging process to stop waiting; "retrying" (a locked
            # SQLite database, say) is expected to clear by itself
            hint = exc.hint if isinstance(exc, AccessDenied) else None
            spool.set_state(
                "unreachable" if unreachable else "retrying",
                error=msg,
                retry_in=backoff,
                hint=hint,
            )
            last_state = ""
            changed = True
            print(f"nbops writer: {msg}", file=sys.stderr, flush=True)
        if delivery is not None and delivery.ended and delivery.caught_up():
            spool.finish(delivery.run_id)
            events.ping()  # end_run returns now, not when this process has exited
            owner.drain()
            if owner_gone or owner.gone:
                spool.remove()  # the logging process let go (a kernel that has exited): tidy up
            return 0
        if changed:
            events.ping()
        if owner_gone:
            if failing:
                retries_after_owner += 1
                # the run exists in the store (created by this writer or an earlier one, even
                # if the pump that followed never finished): the store was reached
                reached = reached or spool.run_info() is not None
                lingering = reached and time.monotonic() - gone_at < LINGER_S
                if (unreachable and not lingering) or (
                    not unreachable and retries_after_owner > 30
                ):
                    print(
                        "nbops writer: its process has exited; the rest stays in the spool for "
                        "`nbops sync` or the next run's writer",
                        file=sys.stderr,
                        flush=True,
                    )
                    return 3
                if not pause_unlocked(spool, backoff):
                    print(
                        "nbops writer: another process (nbops sync, another writer) took the "
                        "spool over",
                        file=sys.stderr,
                        flush=True,
                    )
                    return 3
                delivery = None  # re-read what was acknowledged while the lock was free
                backoff = min(backoff * 2, MAX_BACKOFF)
                continue
            if delivery is not None and delivery.caught_up() and moved == 0:
                delivery.finish_orphan()
                return 0
            continue
        timeout = backoff if failing else (BUSY_POLL if moved else IDLE_POLL)
        if owner.busy and not failing and not owner.urgent:
            # a cell runs: its records go in at most every second (each wake-up of this
            # process takes a core from the cell's threads for a moment); any news ends it
            timeout = KERNEL_BUSY_POLL
        owner.urgent = False
        if failing:
            backoff = min(backoff * 2, MAX_BACKOFF)
        wait_news(owner, timeout)
        if owner.gone and not owner_gone:
            owner_gone = True
            gone_at = time.monotonic()


def pause_unlocked(spool: Spool, seconds: float) -> bool:
    """Wait ``seconds`` without the spool's lock (its logging process is gone: nothing appends),
    so that ``nbops sync`` or another writer may deliver it meanwhile; then take the lock back.
    False when someone else holds it now, or has delivered and removed the spool."""
    fd = spool.fd
    if fd is None:
        time.sleep(seconds)
        return True
    fcntl.flock(fd, fcntl.LOCK_UN)
    time.sleep(seconds)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return os.fstat(fd).st_nlink > 0 and not spool.is_done()


def _recover_others(spool: Spool, uri: str, store: TrackingStore) -> None:
    from nbops.tracking.recovery import recover

    try:
        recover(spool.dir.parent.parent, uri=uri, exclude=spool.dir, stores={uri: store})
    except Exception:  # noqa: BLE001 - recovery is opportunistic; nbops sync reports properly
        traceback.print_exc()


def _is_unreachable(exc: BaseException, uri: str) -> bool:
    """A store that cannot be reached (as opposed to a transient failure that clears itself,
    such as a locked SQLite database or two processes creating its schema at once)."""
    from nbops.errors import SchemaRefused, StoreUnavailable

    if isinstance(exc, SchemaRefused):
        return True  # a store nbops will not open as it is: waiting does not fix it
    text = str(exc)
    if uri.startswith("sqlite:"):
        return "unable to open database" in text
    if isinstance(exc, (StoreUnavailable, ConnectionError, TimeoutError)):
        return True
    return "API request to" in text or "Connection refused" in text


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300] if text else ''}"


WRITER_NICE = 10  # the notebook's cells (and their BLAS/OpenMP threads) come first


def lower_priority() -> int:
    """Yield the CPU to the logging process: the writer's work (importing MLflow, most of a
    second of CPU, and delivery) runs beside the notebook's cells on the same cores, and a cell
    whose threads are preempted by it can take several times as long. At niceness 10 the
    writer gets about a tenth of a contended core, all of an idle one. ``NBOPS_WRITER_NICE``
    sets the increment (0: none); returns the niceness now."""
    raw = os.environ.get(envvars.WRITER_NICE, "").strip()
    try:
        step = int(raw) if raw else WRITER_NICE
    except ValueError:
        print(
            f"nbops writer: {envvars.WRITER_NICE}={raw[:20]!r} is not a whole number from 0 to "
            f"19; using {WRITER_NICE}",
            file=sys.stderr,
            flush=True,
        )
        step = WRITER_NICE
    step = max(0, min(step, 19))
    try:
        return os.nice(step) if step else os.nice(0)
    except OSError:
        return 0


def main(argv: list[str]) -> int:
    lower_priority()
    spool = Spool(Path(argv[0]), int(argv[1]))
    events_fd = int(argv[2]) if len(argv) > 2 else None
    try:
        return serve(spool, sys.stdin.fileno(), events_fd)
    except Exception:  # noqa: BLE001
        traceback.print_exc()
        return 4


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
