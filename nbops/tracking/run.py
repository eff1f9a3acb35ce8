"""A run as the logging process sees it: validate, spool, return. Never waits for the store.

``Run`` starts a writer process (see writer.py) that opens the store, creates the MLflow run and
delivers the spool. Standard library only on this side.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nbops import envvars, project
from nbops import tags as tag_names  # `tags` is a parameter name here
from nbops.errors import AccessDenied, InvalidInput, NbopsError, NotFound, StoreUnavailable
from nbops.mlflow.credentials import server
from nbops.tracking import kernel_state, validate
from nbops.tracking.fdwait import readable
from nbops.tracking.spool import (
    Artifact,
    Began,
    Dataset,
    End,
    Metric,
    Param,
    Spool,
    Start,
    Tag,
    spool_root,
)

FINISHED, FAILED, KILLED = "FINISHED", "FAILED", "KILLED"
STATUSES = (FINISHED, FAILED, KILLED)
DEFAULT_WAIT = float(os.environ.get(envvars.FLUSH_TIMEOUT, "120"))
SAFETY_S = 2.0  # the longest a wait goes without looking at the spool (the writer's events wake it)
DONE_WAIT = 2.0  # end_run, once all is acknowledged: for the writer to mark the run done

_now_ms = time.time_ns


def env_tags() -> dict[str, str]:
    """Tags for every run this process starts, from ``NBOPS_TAGS`` (a JSON object): how a
    re-run or a schedule marks the runs of a notebook it executes (``nbops.rerun_of``, ...)."""
    raw = os.environ.get(envvars.TAGS)
    if not raw:
        return {}
    try:
        tags = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise InvalidInput(
            f"NBOPS_TAGS is not valid JSON ({exc}): {raw[:80]!r}",
            'set it to a JSON object, e.g. NBOPS_TAGS=\'{"team": "vision"}\'',
        ) from None
    if not isinstance(tags, dict):
        raise InvalidInput(
            f"NBOPS_TAGS must be a JSON object of tag names to values, got {raw[:80]!r}",
            'e.g. NBOPS_TAGS=\'{"team": "vision"}\'',
        )
    return {str(k): str(v) for k, v in tags.items()}


def _ms() -> int:
    return _now_ms() // 1_000_000


class WaitStats:
    """How the last wait for the writer went: ``rounds`` it looked again, ``woken`` of them by
    the writer's events pipe, ``timed_out`` by the safety interval instead (see Run._pause)."""

    __slots__ = ("rounds", "woken", "timed_out")

    def __init__(self) -> None:
        self.rounds = self.woken = self.timed_out = 0

    def __repr__(self) -> str:
        return f"WaitStats(rounds={self.rounds}, woken={self.woken}, timed_out={self.timed_out})"


class Run:
    """One MLflow run being logged from this process.

    ``id`` is the MLflow run id (it waits for the store to create the run); ``local_id`` names the
    spool and is known at once; ``spool`` is the run's :class:`~nbops.tracking.spool.Spool` (its
    directory is what a stage kernel attaches to).
    """

    spool: Spool

    def __init__(
        self,
        experiment: str | None = None,
        name: str | None = None,
        tags: Mapping[str, Any] | None = None,
        *,
        params: Mapping[str, Any] | None = None,
        notebook: Path | None = None,
        run_id: str | None = None,
        root: Path | None = None,
        uri: str | None = None,
        capture: bool = True,
        spawn_writer: bool = True,
        snapshot: Path | None = None,
    ) -> None:
        self.attached = False  # logging into a spool another process owns (a pipeline stage)
        self.owns_writer = spawn_writer
        self.root = root or project.find_root()
        self.uri = uri or project.tracking_uri(self.root)
        self.experiment = experiment or (notebook.stem if notebook else None) or "Default"
        self.name = name
        self.notebook = notebook
        # the file kept as the run's notebook at its end (papermill's output), else notebook
        self.snapshot = snapshot
        self._respawned = False
        self.status = "RUNNING"
        self.ended_ms: int | None = None  # when its work was over, if before end() (stop_clock)
        self.counts = {"params": 0, "metrics": 0, "tags": 0, "artifacts": 0, "datasets": 0}
        self.last_metrics: dict[str, float] = {}
        self._params: dict[str, str] = {}
        self._warned: set[str] = set()
        clean_tags = {
            validate.key(k, "tag"): validate.tag_value(k, v)
            for k, v in {**env_tags(), **(tags or {})}.items()
        }
        clean_params = {
            validate.key(k, "param"): validate.param_value(k, v) for k, v in (params or {}).items()
        }
        self._params.update(clean_params)
        self.counts["params"] += len(clean_params)
        host = socket.gethostname()
        clean_tags.setdefault(tag_names.PID, str(os.getpid()))
        clean_tags.setdefault(tag_names.HOST, host)
        if notebook is not None:
            clean_tags.setdefault(tag_names.NOTEBOOK, str(notebook))
            clean_tags.setdefault(tag_names.MLFLOW_SOURCE_NAME, str(notebook))
            clean_tags.setdefault(tag_names.MLFLOW_SOURCE_TYPE, "NOTEBOOK")
        elif sys.argv and sys.argv[0] and not sys.argv[0].endswith("ipykernel_launcher.py"):
            clean_tags.setdefault(tag_names.MLFLOW_SOURCE_NAME, sys.argv[0])
            clean_tags.setdefault(tag_names.MLFLOW_SOURCE_TYPE, "LOCAL")
        self.local_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(4)}"
        clean_tags[tag_names.SPOOL] = self.local_id
        self.start_ms = _ms()
        clean_tags[tag_names.HEARTBEAT] = str(self.start_ms)
        state = project.state_dir(self.root)
        self.spool = Spool.create(spool_root(state) / self.local_id)
        self.spool.append(
            Start(
                {
                    "uri": self.uri,
                    "experiment": self.experiment,
                    "name": name,
                    "tags": clean_tags,
                    "params": clean_params,
                    "start_ms": self.start_ms,
                    "pid": os.getpid(),
                    "host": host,
                    "cwd": os.getcwd(),
                    "run_id": run_id,
                    "capture": capture,
                }
            )
        )
        self._run_id = run_id
        self._experiment_id: str | None = None
        self._writer: subprocess.Popen[bytes] | None = None
        self._events: int | None = None  # the read end of the writer's events pipe
        self.last_wait = WaitStats()
        if spawn_writer:
            envvars.seconds(envvars.WRITER_DEFER, 10.0)  # a bad value is said here, not lost
            self._spawn_writer()

    @classmethod
    def attach(cls, spool_dir: Path) -> Run:
        """Log into a run whose spool is owned by another process (nbops' pipeline runner gives
        a stage's kernel ``NBOPS_ATTACH_SPOOL``): appends only; the owner creates, delivers and
        ends the run."""
        sp = Spool(spool_dir)
        start = sp.start_record()
        self = cls.__new__(cls)
        self.attached, self.owns_writer = True, False
        self.root = project.find_root()
        self.uri = str(start.get("uri"))
        self.experiment = str(start.get("experiment") or "Default")
        self.name = start.get("name")
        nb = (start.get("tags") or {}).get(tag_names.NOTEBOOK)
        self.notebook = Path(nb) if nb else None
        self.snapshot = None
        self._respawned = False
        self.status = "RUNNING"
        self.ended_ms = None
        self.counts = {"params": 0, "metrics": 0, "tags": 0, "artifacts": 0, "datasets": 0}
        self.last_metrics = {}
        self._params = {k: str(v) for k, v in (start.get("params") or {}).items()}
        self._warned = set()
        self.local_id = spool_dir.name
        self.start_ms = int(start.get("start_ms") or _ms())
        sp.fd = os.open(sp.log_path, os.O_WRONLY | os.O_APPEND)
        self.spool = sp
        self._run_id = start.get("run_id")
        self._experiment_id = None
        self._writer = None
        self._events = None
        self.last_wait = WaitStats()
        return self

    def begin(self, ts_ms: int | None = None) -> int:
        """The run really begins now (or at ``ts_ms``): for a run spooled ahead of its work (a
        pipeline point created when it is queued, started when a kernel is ready for it). Its
        MLflow run is created with this start time, so whoever delivers the spool must not
        create the run before this is called (MLflow cannot move a run's start afterwards).
        Returns the start, in ms since the epoch."""
        self._check_open()
        ms = _ms() if ts_ms is None else int(ts_ms)
        self.spool.append(Began(ms))
        self.spool.append(Tag(tag_names.HEARTBEAT, str(ms)))  # alive now, not since queued
        self.start_ms = ms
        return ms

    def stop_clock(self, ts_ms: int | None = None) -> None:
        """The run's work is over now (or at ``ts_ms``; a pipeline point's kernel finished):
        :meth:`end` records this as its end time, whenever it is called (the runner versions a
        stage's outs after its kernel is done, while the next stage may already run)."""
        self.ended_ms = _ms() if ts_ms is None else int(ts_ms)

    # --- the writer -----------------------------------------------------------------------------
    def _spawn_writer(self) -> None:
        assert self.spool.fd is not None
        self._close_events()
        try:
            log = open(self.spool.dir / "writer.log", "ab")  # noqa: SIM115 - handed to the child
        except OSError:
            log = subprocess.DEVNULL  # type: ignore[assignment]
        events_r, events_w = os.pipe()  # the writer says when something changed (writer.py)
        try:
            self._writer = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "nbops.tracking.writer",
                    str(self.spool.dir),
                    str(self.spool.fd),
                    str(events_w),
                ],
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=log,
                pass_fds=(self.spool.fd, events_w),
                start_new_session=True,
                close_fds=True,
                cwd=os.getcwd(),
            )
        except OSError as exc:  # no process could be started: the data stays spooled
            self._writer = None
            os.close(events_r)
            self._warn_once(
                "spawn",
                f"could not start the writer ({exc}); the values stay in {self.spool.dir} "
                "and `nbops sync` delivers them",
            )
        else:
            os.set_blocking(events_r, False)
            self._events = events_r
            kernel_state.follow(self)  # the writer waits for quiet moments of a busy kernel
        finally:
            os.close(events_w)  # only the writer holds it: its exit is EOF here
            if not isinstance(log, int):
                log.close()

    def _close_events(self) -> None:
        fd, self._events = self._events, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    def _wake(self) -> None:
        self.tell_writer(b"w")

    def tell_writer(self, what: bytes) -> None:
        """A byte for the writer (``w``: someone waits for the store; ``b``/``i``: a cell
        began/ended, from kernel_state); never fails: a writer that has gone is respawned by
        whoever waits."""
        w = self._writer
        if w is not None and w.stdin is not None:
            with contextlib.suppress(OSError, ValueError):
                w.stdin.write(what)
                w.stdin.flush()

    def _writer_alive(self) -> bool:
        return self._writer is not None and self._writer.poll() is None

    # --- identity ---------------------------------------------------------------------------
    @property
    def id(self) -> str:
        """The MLflow run id; waits (up to NBOPS_FLUSH_TIMEOUT s) until the store created it."""
        if self._run_id is None:
            if self.spool.run_info() is None:
                self._wake()  # a writer waiting for a quiet kernel starts now
            self._wait_for(
                lambda: self.spool.run_info() is not None, DEFAULT_WAIT, "create the run"
            )
            info = self.spool.run_info()
            assert info is not None
            self._run_id, self._experiment_id = info["run_id"], info["experiment_id"]
        return self._run_id

    @property
    def run_id(self) -> str:
        return self.id

    def id_if_ready(self) -> str | None:
        """The run id if the store has created the run already, else None (never waits)."""
        if self._run_id is None:
            info = self.spool.run_info()
            if info:
                self._run_id, self._experiment_id = info["run_id"], info["experiment_id"]
        return self._run_id

    @property
    def experiment_id(self) -> str | None:
        self.id_if_ready()
        if self._experiment_id is None:
            info = self.spool.run_info()
            self._experiment_id = info["experiment_id"] if info else None
        return self._experiment_id

    # --- logging --------------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self.status != "RUNNING":
            raise InvalidInput(
                f"run {self._run_id or self.local_id} has ended ({self.status})",
                "start a new run with nbops.start_run() or %track start",
            )

    def log_metric(self, key: str, value: Any, step: int | None = None) -> None:
        if self.status != "RUNNING":
            self._check_open()
        k = validate.key(key)
        v = validate.metric_value(k, value)
        s = 0 if step is None else validate.step_value(k, step)
        self.spool.append(Metric(k, v, s, _now_ms() // 1_000_000))
        self.counts["metrics"] += 1
        self.last_metrics[k] = v

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        self._check_open()
        ts = _ms()
        recs = []
        for key, value in metrics.items():
            k = validate.key(key)
            v = validate.metric_value(k, value)
            recs.append((k, v))
        s = 0 if step is None else validate.step_value("metrics", step)
        for k, v in recs:
            self.spool.append(Metric(k, v, s, ts))
            self.last_metrics[k] = v
        self.counts["metrics"] += len(recs)

    def log_param(self, key: str, value: Any) -> None:
        self.log_params({key: value})

    def log_params(self, params: Mapping[str, Any]) -> None:
        self._check_open()
        clean: dict[str, str] = {}
        for key, value in params.items():
            k = validate.key(key, "param")
            v = validate.param_value(k, value)
            old = self._params.get(k)
            if old is not None and old != v:
                raise InvalidInput(
                    f"param {k!r} is already {old!r} in this run; MLflow params cannot change "
                    f"(new value {v!r})",
                    "start a new run for the new value (%track start / nbops.start_run), or "
                    "log a changing value as a metric",
                )
            clean[k] = v
        for k, v in clean.items():
            if k not in self._params:
                self._params[k] = v
                self.spool.append(Param(k, v))
                self.counts["params"] += 1

    def set_tag(self, key: str, value: Any) -> None:
        self.set_tags({key: value})

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        self._check_open()
        clean = [(validate.key(k, "tag"), validate.tag_value(k, v)) for k, v in tags.items()]
        for k, v in clean:
            self.spool.append(Tag(k, v))
        self.counts["tags"] += len(clean)

    def log_artifact(self, path: str | os.PathLike[str], artifact_path: str | None = None) -> None:
        """Log a file or directory as it is now (a copy is spooled; very large ones by path)."""
        self._check_open()
        src = Path(path)
        if not src.exists():
            raise NotFound(
                f"artifact {str(path)!r} does not exist",
                f"check the path (relative to {os.getcwd()})",
            )
        dst = validate.artifact_path(artifact_path, "artifact_path") if artifact_path else None
        stored, is_copy = self.spool.stash(src, src.name)
        if src.is_dir():
            dst = f"{dst}/{src.name}" if dst else src.name
        self.spool.append(Artifact(stored, dst, is_copy))
        self.counts["artifacts"] += 1

    def log_text(self, text: str, artifact_file: str) -> None:
        """Log ``text`` as the artifact file ``artifact_file`` (e.g. ``cells/train/source.py``)."""
        self._check_open()
        d, _, name = validate.artifact_path(artifact_file, "artifact_file").rpartition("/")
        f = self.spool.new_file(name)
        f.write_text(text, encoding="utf-8")
        self.spool.append(Artifact(str(f), d or None, True))
        self.counts["artifacts"] += 1

    def log_figure(self, figure: Any, name: str = "figure.png") -> None:
        """Save a matplotlib figure (or anything with ``savefig``) as a PNG artifact."""
        self._check_open()
        if not hasattr(figure, "savefig"):
            raise InvalidInput(
                f"log_figure got {type(figure).__name__}, not a figure",
                "pass a matplotlib Figure (plt.gcf())",
            )
        d, _, base = validate.artifact_path(name, "figure name").rpartition("/")
        if "." not in base:
            base += ".png"
        f = self.spool.new_file(base)
        figure.savefig(f, format=base.rsplit(".", 1)[1], bbox_inches="tight")
        self.spool.append(Artifact(str(f), d or None, True))
        self.counts["artifacts"] += 1

    def log_model(
        self,
        model: Any,
        name: str = "model",
        flavor: str | None = None,
        *,
        input_example: Any = None,
        pip_requirements: list[str] | None = None,
    ) -> str:
        """Save ``model`` in MLflow's format under the artifact path ``name``; returns the model
        URI ``runs:/<run_id>/<name>`` once the run exists (``name`` is known at once).
        ``input_example`` (a few rows of real input; the first 10 are kept) is saved with the
        model and, with the model's predictions on it, gives it a signature; without one the
        model has no signature and nothing is predicted. ``pip_requirements`` replaces the
        pinned requirements nbops writes for the flavor. The flavor is read from the model's
        class (nbops.mlflow.flavors); ``flavor=`` overrides it."""
        self._check_open()
        from nbops.mlflow import models

        validate.key(name, "model name")
        target = self.spool.new_file(name)
        used = models.save(
            model,
            str(target),
            flavor,
            input_example=input_example,
            pip_requirements=pip_requirements,
        )
        self.spool.append(Artifact(str(target), name, True))
        self.spool.append(Tag(f"{tag_names.MODEL_PREFIX}{name}", used))
        self.counts["artifacts"] += 1
        return f"runs:/{self._run_id or self.local_id}/{name}"

    def log_png(self, png: bytes, artifact_file: str) -> None:
        self._check_open()
        d, _, name = validate.artifact_path(artifact_file, "artifact_file").rpartition("/")
        f = self.spool.new_file(name)
        f.write_bytes(png)
        self.spool.append(Artifact(str(f), d or None, True))
        self.counts["artifacts"] += 1

    def track_data(
        self, path: str | os.PathLike[str], role: str = "input", name: str | None = None
    ) -> dict[str, Any]:
        """Fingerprint a data file or directory and record it on the run (see fingerprint.py)."""
        self._check_open()
        from nbops.tracking.fingerprint import fingerprint

        if role not in ("input", "output"):
            raise InvalidInput(
                f"track_data role {role!r} is neither 'input' nor 'output'",
                "pass role='input' or role='output'",
            )
        fp = fingerprint(Path(path), name=name, role=role)
        tag = "".join(c if c.isalnum() or c in "_-." else "_" for c in fp["name"])
        self.spool.append(Tag(f"{tag_names.DATA_PREFIX}{role}.{tag}", fp["xxh3"]))
        self.spool.append(Dataset(fp))
        self.counts["datasets"] += 1
        return fp

    # --- end ------------------------------------------------------------------------------------
    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything logged so far is in the store. False (with a warning) if the
        store is unreachable or the wait times out: the data stays in the spool."""
        target = self.spool.size()
        self._wake()
        return self._wait_delivered(target, DEFAULT_WAIT if timeout is None else timeout)

    def end(
        self, status: str = FINISHED, timeout: float | None = None, *, quiet: bool = False
    ) -> bool:
        """End the run with ``status`` and wait (up to ``timeout`` s) for the writer to deliver
        everything. The end is durable before the wait: the snapshot and the ``end`` record are
        in the spool, and what the wait does not see delivered the writer delivers after this
        process is gone (``nbops sync`` if it cannot). The wait is over when the writer says the
        run is done (its events pipe), not when it has exited. ``quiet``: no warning when it
        times out."""
        status = self._check_status(status)
        if self.status != "RUNNING":
            return True
        if self.attached:  # the owner of the spool ends the run; nothing is waiting here
            self.status = status
            self.spool.close()
            return True
        self._append_end(status)
        if not self.owns_writer:
            return True  # whoever delivers this spool (the pipeline runner) finishes the run
        target = self.spool.size()
        self._wake()
        ok = self._wait_delivered(target, DEFAULT_WAIT if timeout is None else timeout, quiet=quiet)
        if ok and not self.spool.is_done():
            # all acknowledged: the writer marks the run done right after (its next event);
            # one that could not deliver the end itself (refused) goes on to exit
            with contextlib.suppress(StoreUnavailable):
                self._wait_for(
                    lambda: self.spool.is_done() or not self._writer_alive(),
                    DONE_WAIT,
                    "finish the run",
                )
        self._detach()
        return ok

    def hand_off(self, status: str, timeout: float = 0.0, reason: str | None = None) -> bool:
        """End the run for a process that is going away, and let go at once: the snapshot and
        the ``end`` record are appended (durable), and the writer, which runs in its own session
        and outlives this process, delivers them and ends the run by itself (one is started now
        if none is running; ``nbops sync`` if it cannot). ``timeout`` > 0 waits that long for
        the delivery first, silently. ``reason`` goes to ``nbops.end_reason``. True if the run
        was complete in the store on return."""
        if self.status != "RUNNING":
            return True
        status = self._check_status(status)
        if self.attached:
            return self.end(status)
        if reason:
            self.spool.append(Tag(tag_names.END_REASON, reason))
        self._append_end(status)
        if not self.owns_writer:
            return True
        done = False
        if timeout > 0:
            target = self.spool.size()
            self._wake()
            done = self._wait_delivered(target, timeout, quiet=True)
        elif not self._writer_alive() and not self.spool.is_done():
            self._spawn_writer()  # it sees this process let go at once, and finishes the run
        self._detach()
        return done or self.spool.is_done()

    def _check_status(self, status: str) -> str:
        status = str(status).upper()
        if status not in STATUSES:
            raise InvalidInput(
                f"status {status!r} is not one of {', '.join(STATUSES)}",
                "use FINISHED, FAILED or KILLED",
            )
        return status

    def _append_end(self, status: str) -> None:
        """The notebook snapshot and the end record, in the spool (durable at once)."""
        snap = self.snapshot if self.snapshot is not None and self.snapshot.is_file() else None
        snap = snap or (self.notebook if self.notebook is not None else None)
        if snap is not None and snap.is_file():
            with contextlib.suppress(OSError):
                stored, is_copy = self.spool.stash(snap, snap.name)
                self.spool.append(Artifact(stored, "notebook", is_copy))
        self.spool.append(End(status, self.ended_ms or _ms()))
        self.status = status

    def _detach(self) -> None:
        """Let go of the spool: the writer finishes on its own (its pipe at EOF tells it this
        process let go), or leaves it for nbops sync. Its exit (MLflow's teardown, most of a
        second) is never waited for."""
        self.id_if_ready()
        kernel_state.forget(self)
        w = self._writer
        if w is not None and w.stdin is not None:
            with contextlib.suppress(OSError, ValueError):
                w.stdin.close()  # EOF wakes it too
        self.spool.close()
        self._close_events()
        if self.spool.dir.exists() and self.spool.state().get("state") == "done":
            import shutil

            shutil.rmtree(self.spool.dir, ignore_errors=True)

    # --- waiting --------------------------------------------------------------------------------
    def _wait_delivered(self, target: int, timeout: float, quiet: bool = False) -> bool:
        try:
            self._wait_for(
                lambda: self.spool.is_done() or self.spool.acked() >= target,
                timeout,
                "deliver the logged data",
            )
            return True
        except StoreUnavailable as exc:
            if not quiet:
                self._warn_once("unreachable", str(exc))
            return False

    def _wait_for(self, done: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        stats = self.last_wait = WaitStats()
        if not self._drain_events():  # what the writer said before now is no news
            self._close_events()
        delay = 0.002
        while not done():
            st = self.spool.state()
            if st.get("state") == "unreachable" and st.get("hint"):  # a refused login/grant
                raise AccessDenied(
                    f"{st.get('error')}; run {self._run_id or self.local_id} keeps its data in "
                    f"{self.spool.dir}",
                    str(st["hint"]),
                )
            if st.get("state") == "unreachable":
                raise StoreUnavailable(
                    f"tracking store {server(self.uri)} is unreachable ({st.get('error')}); "
                    f"run {self._run_id or self.local_id} keeps its data in "
                    f"{self.spool.dir}",
                    "it is delivered automatically when the store is back, or run `nbops sync`",
                )
            self.id_if_ready()
            if self.owns_writer and not self._writer_alive() and not done():
                if self.spool.is_done():
                    return
                if self.status == "RUNNING" or not self._respawned:
                    # the writer died: start another, nothing is lost (once after the end, so
                    # that the end is delivered after this process is gone)
                    self._respawned = self.status != "RUNNING"
                    self._spawn_writer()
                else:
                    raise StoreUnavailable(
                        f"the nbops writer for run {self._run_id or self.local_id} stopped "
                        f"before it could {what}; see {self.spool.dir / 'writer.log'}",
                        "run `nbops sync` to deliver the spooled data",
                    )
            left = deadline - time.monotonic()
            if left <= 0:
                raise StoreUnavailable(
                    f"timed out after {timeout:.0f} s waiting for the store to {what} "
                    f"(run {self._run_id or self.local_id}, store {server(self.uri)})",
                    "the data stays spooled and is delivered in the background; "
                    "raise NBOPS_FLUSH_TIMEOUT for slow stores",
                )
            stats.rounds += 1
            if self._events is not None:
                # the writer says when anything changed, and its exit is EOF: no poll interval.
                # The safety interval only matters when someone else (nbops sync) took over.
                if self._pause(min(left, SAFETY_S)):
                    stats.woken += 1
                else:
                    stats.timed_out += 1
            else:  # no writer of ours to tell us (one that could not start, or has exited)
                time.sleep(min(delay, left))
                delay = min(delay * 1.5, 0.05)
                stats.timed_out += 1

    def _pause(self, seconds: float) -> bool:
        """Wait up to ``seconds`` for the writer's next event; True if it came (or the writer
        exited: the pipe is closed, and the next round sees why)."""
        fd = self._events
        assert fd is not None
        if not readable(fd, seconds):
            return False
        if not self._drain_events():
            self._close_events()  # EOF: the writer has gone
        return True

    def _drain_events(self) -> bool:
        """Read what the events pipe holds without waiting; False at EOF (the writer has gone)."""
        fd = self._events
        if fd is None:
            return True
        try:
            while True:
                chunk = os.read(fd, 4096)
                if not chunk:
                    return False
                if len(chunk) < 4096:
                    return True
        except BlockingIOError:
            return True
        except OSError:
            return False

    def _warn_once(self, what: str, message: str) -> None:
        if what not in self._warned:
            self._warned.add(what)
            warnings.warn(f"nbops: {message}", RuntimeWarning, stacklevel=3)

    # --- display --------------------------------------------------------------------------------
    def pending(self) -> int:
        """Bytes logged but not yet delivered."""
        if self.spool.is_done():
            return 0
        return max(0, self.spool.size() - self.spool.acked())

    def store_state(self) -> dict[str, Any]:
        if not self.spool.dir.exists():
            return {"state": "done"}
        return self.spool.state()

    def __enter__(self) -> Run:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            status = FINISHED
        elif issubclass(exc_type, KeyboardInterrupt):
            status = KILLED
        else:
            status = FAILED
        try:
            self.end(status)
        except NbopsError as err:
            self._warn_once("end", str(err))

    def __repr__(self) -> str:
        rid = self.id_if_ready() or f"pending ({self.local_id})"
        return f"<nbops.Run {rid} experiment={self.experiment!r} status={self.status}>"
