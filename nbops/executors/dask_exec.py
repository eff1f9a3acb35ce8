"""The dask executor, the runner's side: ``nbops run --dask ADDRESS`` (or ``local[:N]``) sends
each StageJob to a dask.distributed cluster as one task
(:func:`nbops.executors.dask_worker.run_job`), with what it needs shipped content-addressed
(:mod:`nbops.executors.shipping`), and applies what comes back to the project as if the job had
run here. See :mod:`nbops.executors.dask_protocol` for what the two sides exchange.

How a job goes (:meth:`DaskExecutor.execute`, called from the runner's ``--jobs`` threads):

1. the workers that may run it: those with its ``resources:`` (dask resources) and, for
   ``memory:``, a memory limit at least that large (a ``workers=`` restriction). None: the job
   fails at once naming what no worker has (dask itself would wait for ever);
2. every such worker gets the blobs it lacks (asked once per worker and digest, then
   remembered; one sender per digest at a time, sent to all the workers lacking it at once);
3. the task is submitted under a key of its own per attempt; the worker's "started" event
   (:data:`~nbops.executors.dask_protocol.TOPIC`) says where it runs (``job.worker``,
   ``job.started()``);
4. a worker that dies under it (a second "started" elsewhere, its address gone from the
   scheduler, or dask's KilledWorker) costs one of ``job.retries``: the job runs again on
   another worker (``job.note`` says so), or fails naming the worker(s) that died;
5. the answer is applied (outs, executed notebook, spool); a failure says the worker.

The only module of the runner's side that imports dask (lazily: ``import nbops`` and every
command without ``--dask`` import none of it).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import queue
import re
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nbops import envvars
from nbops.errors import ClusterUnavailable, NbopsError, ParameterError, StageFailed
from nbops.executors.base import Executor, StageJob, StageResult
from nbops.executors.dask_protocol import CHUNK, ROOT_MARK, TOPIC, JobReturn, JobSpec

MAX_LOCAL = 64
"""The most worker processes ``local:N`` starts."""

CONNECT_TIMEOUT = 10.0
"""Seconds :meth:`DaskExecutor.connect` waits for the scheduler to answer."""

SEND_UNASKED = 64 * 1024
"""Bytes up to which a file never sent before is sent without asking the workers first."""

FORMS = (
    "tcp://HOST:PORT, tls://HOST:PORT, HOST:PORT, local (one worker process per CPU) or "
    f"local:N (N from 1 to {MAX_LOCAL})"
)

_HOST = re.compile(
    r"(?:\[[0-9A-Fa-f:.]+\]"  # [IPv6]
    r"|[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}"
    r"[A-Za-z0-9])?)*)"
)
_ADDRESS = re.compile(
    rf"(?:(?P<scheme>[A-Za-z]+)://)?(?P<host>{_HOST.pattern}):(?P<port>\d{{1,5}})"
)
_LOCAL = re.compile(r"local(?::(?P<n>.*))?", re.IGNORECASE | re.DOTALL)


def resolve(cli: str | None, env: str | None, config: str | None) -> str | None:
    """Which cluster ``nbops run`` uses: ``--dask``, else ``NBOPS_DASK``, else nbops.yaml's
    ``dask: {scheduler:}``; None: the local executor. A blank value counts as unset."""
    chosen = choose(cli, env, config)
    return chosen[0] if chosen else None


def choose(
    cli: str | None, env: str | None, config: str | None, config_where: str = "nbops.yaml"
) -> tuple[str, str] | None:
    """As :func:`resolve`, with where the value came from (``--dask``, ``NBOPS_DASK`` or
    ``config_where``, e.g. ``nbops.yaml:12``): the ``where`` of :func:`parse_address` and
    :meth:`DaskExecutor.connect`."""
    for value, where in ((cli, "--dask"), (env, envvars.DASK), (config, config_where)):
        if value is not None and value.strip():
            return value.strip(), where
    return None


@dataclass(frozen=True)
class Address:
    """A cluster address as :func:`parse_address` read it: a scheduler's (``scheduler``:
    ``tcp://HOST:PORT`` or ``tls://HOST:PORT``) or ``local`` worker processes to start."""

    text: str  # as given (stripped)
    scheduler: str | None = None
    local: int | None = None

    @property
    def shown(self) -> str:
        return self.scheduler or (f"local:{self.local}" if self.local else "local")


def _shown(value: str) -> str:
    return repr(value if len(value) <= 80 else value[:77] + "...")


def parse_address(value: str, where: str = "--dask") -> Address:
    """``value`` as a cluster address; a ParameterError naming it, ``where`` it came from and
    the accepted forms (:data:`FORMS`) when it is none of them."""
    text = value.strip() if isinstance(value, str) else ""
    bad = ParameterError(
        f"{where}: {_shown(str(value))} is not a dask scheduler address", f"use {FORMS}"
    )
    if not text or len(text) > 300 or any(ord(c) < 33 or ord(c) == 127 for c in text):
        raise bad
    local = _LOCAL.fullmatch(text)
    if local:
        n_text = local.group("n")
        if n_text is None:
            return Address(text, local=max(1, min(MAX_LOCAL, os.cpu_count() or 1)))
        if not n_text.isascii() or not n_text.isdigit() or not 1 <= int(n_text) <= MAX_LOCAL:
            raise ParameterError(
                f"{where}: {_shown(text)}: N of local:N must be a whole number from 1 to "
                f"{MAX_LOCAL}",
                f"e.g. local:2 (two worker processes on this machine), or {FORMS}",
            )
        return Address(text, local=int(n_text))
    m = _ADDRESS.fullmatch(text)
    if m is None:
        raise bad
    scheme = (m.group("scheme") or "tcp").lower()
    port = int(m.group("port"))
    if scheme not in ("tcp", "tls") or not 1 <= port <= 65535:
        raise bad
    return Address(text, scheduler=f"{scheme}://{m.group('host')}:{port}")


# --- quiet ---------------------------------------------------------------------------------------
def _verbose() -> bool:
    return os.environ.get(envvars.VERBOSE, "").strip().lower() not in ("", "0", "false", "no")


def _quiet_dask() -> None:
    """dask's own log lines (reconnecting, a lost worker, a closing comm) stay off the terminal:
    nbops says what happened itself. ``NBOPS_VERBOSE`` shows them."""
    if _verbose():
        return
    names = [n for n in list(logging.root.manager.loggerDict) if n.startswith("distributed")]
    for name in {"distributed", *names}:
        logging.getLogger(name).setLevel(logging.CRITICAL)


# --- sizes ----------------------------------------------------------------------------------------
def size_text(n: float) -> str:
    """``2.0 GB``, ``340 B`` (powers of 1000, as ``nbops push`` says them)."""
    size = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{int(size)} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"


def _plural(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else (many or one + 's')}"


# --- workers --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class WorkerInfo:
    """One worker as the scheduler describes it."""

    address: str
    name: str
    resources: dict[str, float]
    memory_limit: float | None  # bytes; None: no limit
    nthreads: int

    def lacks(self, resources: dict[str, float], memory: float | None) -> list[str]:
        """What of ``resources`` / ``memory`` this worker does not have (empty: it may run)."""
        out = [f"{k}={v:g}" for k, v in resources.items() if float(self.resources.get(k, 0)) < v]
        if memory is not None and self.memory_limit is not None and self.memory_limit < memory:
            out.append(f"memory {size_text(memory)}")
        return out

    def has_text(self) -> str:
        have = [f"{k}={v:g}" for k, v in sorted(self.resources.items())]
        if self.memory_limit is not None:
            have.append(f"memory {size_text(self.memory_limit)}")
        return ", ".join(have) or "no resources"


def _workers_of(identity: dict[str, Any]) -> dict[str, WorkerInfo]:
    out = {}
    for addr, w in (identity.get("workers") or {}).items():
        limit = w.get("memory_limit") or None
        name = w.get("name")
        out[str(addr)] = WorkerInfo(
            str(addr),
            # a LocalCluster's workers are named 0, 1, ...: rows say "on worker 0 (tcp://...)"
            _label(str(name)) if name is not None and str(name) != "" else str(addr),
            {str(k): float(v) for k, v in (w.get("resources") or {}).items()},
            float(limit) if limit else None,
            int(w.get("nthreads") or 1),
        )
    return out


class _Stopped(Exception):
    """The executor was stopped while a job was in flight."""


@dataclass
class _Flight:
    """One job between submission and its answer."""

    job: StageJob
    spec: JobSpec
    paths: dict[str, Path]  # digest -> the local file holding it
    inbox: queue.Queue[tuple[Any, ...]] = field(default_factory=queue.Queue)
    task: str | None = None  # the dask key of the current attempt
    future: Any = None
    restricted: list[str] | None = None  # the workers= of the current attempt
    current: str | None = None  # the address the current attempt runs on
    current_name: str | None = None
    started: bool = False  # job.started() was called
    deaths: list[tuple[str, str]] = field(default_factory=list)  # (name, address)
    note: str | None = None  # said with the next start: "worker w1 (..) died; retry 1 of 1"
    no_worker_since: float | None = None


class DaskExecutor(Executor):
    """Runs StageJobs on a dask cluster. :meth:`connect` reaches the scheduler (or starts a
    LocalCluster for ``local[:N]``) and raises ClusterUnavailable (exit 2) when it cannot.

    Counters for ``report()`` and the benchmark: ``jobs_per_worker`` (worker name -> jobs
    answered), ``shipped_bytes`` (worker name -> bytes of blobs sent), ``shipped_files``
    (worker name -> digests sent, with how many times), ``retries`` (jobs run again after a
    worker died)."""

    loaded: threading.Event  # set once connected

    #: seconds :meth:`connect` waits for a first worker on a scheduler that has none
    worker_wait: float = 30.0
    #: seconds a job waits with no worker that may run it (all died) before it fails
    lost_after: float = 30.0
    #: seconds between the looks at the scheduler's workers while jobs are in flight
    tick: float = 1.0

    def __init__(
        self,
        client: Any,
        root: Path,
        address: Address,
        cluster: Any = None,
        jobs: int | None = None,
    ) -> None:
        self.client = client
        self.root = root
        self.address = address
        self.cluster = cluster  # the LocalCluster of local[:N], closed by stop()
        self.jobs = jobs
        self.loaded = threading.Event()
        self.jobs_per_worker: Counter[str] = Counter()
        self.shipped_bytes: Counter[str] = Counter()
        self.shipped_files: dict[str, Counter[str]] = {}
        self.blob_sizes: dict[str, int] = {}
        self.retries = 0
        self._lock = threading.RLock()
        self._stopped = False
        self._stop_event = threading.Event()
        self._workers: dict[str, WorkerInfo] = {}
        self._seen: dict[str, WorkerInfo] = {}  # name -> the last of that name seen
        self._workers_at = 0.0  # when _workers was last read from the scheduler
        self._has: dict[str, set[str]] = {}  # address -> digests it holds
        self._digest_locks: dict[str, threading.Lock] = {}
        self._live: dict[str, _Flight] = {}  # spec key -> flight
        self._seq = itertools.count(1)
        self._watcher: threading.Thread | None = None
        self._warmed = False
        # --jobs: how many jobs may be on the cluster at once (None: as many as the runner sends)
        self._in_flight = threading.BoundedSemaphore(jobs) if jobs else None

    # --- connecting ---------------------------------------------------------------------------
    @classmethod
    def connect(
        cls,
        address: str,
        root: Path,
        jobs: int | None = None,
        *,
        where: str = "--dask",
        worker_wait: float | None = None,
    ) -> DaskExecutor:
        """An executor on the cluster ``address`` (see :func:`parse_address`; ``where`` names
        where it came from). ClusterUnavailable when the scheduler cannot be reached, has no
        worker within ``worker_wait`` seconds, or a ``local`` cluster cannot start."""
        addr = parse_address(address, where)
        try:
            import distributed
        except ImportError as exc:  # pragma: no cover - a dependency of nbops
            raise ClusterUnavailable(
                f"{where}: dask.distributed cannot be imported here ({exc})",
                "pip install 'distributed' where nbops runs",
            ) from None
        _quiet_dask()
        new_client: Any = distributed.Client  # untyped
        wait = cls.worker_wait if worker_wait is None else worker_wait
        cluster = None
        if addr.local is not None:
            cluster = _start_local(addr)
            try:
                client = new_client(cluster, set_as_default=False, timeout=CONNECT_TIMEOUT)
            except Exception as exc:  # noqa: BLE001 - said as what it is
                cluster.close()
                raise ClusterUnavailable(
                    f"the local dask cluster ({addr.shown}) could not start: {_why(exc)}",
                    "run without --dask, or look at the output with --verbose",
                ) from None
        else:
            assert addr.scheduler is not None
            _probe(addr, where)
            try:
                client = new_client(addr.scheduler, set_as_default=False, timeout=CONNECT_TIMEOUT)
            except Exception as exc:  # noqa: BLE001 - a scheduler that does not answer
                raise _unreachable(addr, where, _why(exc)) from None
        ex = cls(client, root, addr, cluster, jobs)
        try:
            _quiet_dask()  # loggers made by the imports a connection did
            if addr.local is None:
                try:
                    client.wait_for_workers(1, timeout=wait)
                except Exception:  # noqa: BLE001 - dask's TimeoutError
                    raise ClusterUnavailable(
                        f"{where}: the dask scheduler {addr.scheduler} has no worker: none "
                        f"joined within {wait:g} s",
                        f"start one with `dask worker {addr.scheduler}`, or run without --dask",
                    ) from None
            client.subscribe_topic(TOPIC, ex._on_event)
            ex._refresh()
        except BaseException:
            ex.stop()
            raise
        from nbops.executors import dask_worker  # noqa: F401 - the tasks' functions, loaded

        ex.loaded.set()
        return ex

    def worker_name(self, address: str) -> str | None:
        """The name of the worker at ``address`` (``dask worker --name``; a LocalCluster's are
        numbers), None when no worker there was seen. No round trip."""
        with self._lock:
            w = self._workers.get(address)
            if w is None:
                w = next((x for x in self._seen.values() if x.address == address), None)
        return w.name if w is not None and w.name != address else None

    def warm_up(self) -> None:
        """Ask every worker to get a kernel ready (``dask_worker.warm``, when the workers'
        nbops has it), without waiting: the first job on a fresh worker then finds one."""
        from nbops.executors import dask_worker

        warm = getattr(dask_worker, "warm", None)
        with self._lock:
            if warm is None or self._warmed or self._stopped:
                return
            self._warmed = True
        try:
            self.client.run(warm, "python3", wait=False)
        except Exception:  # noqa: BLE001 - only a head start
            pass

    @property
    def slots(self) -> int:
        """Threads of the cluster's workers now: how many jobs it can run at once."""
        with self._lock:
            return sum(w.nthreads for w in self._workers.values()) or 1

    # --- the scheduler's workers ----------------------------------------------------------------
    def _refresh(self) -> bool:
        """Read the scheduler's workers now; False when it did not answer."""
        try:
            identity = self.client.sync(
                self.client.scheduler.identity, n_workers=-1, callback_timeout=10
            )
        except Exception:  # noqa: BLE001 - the scheduler is away: the watchdog says so later
            return False
        workers = _workers_of(identity)
        with self._lock:
            for gone in set(self._workers) - set(workers):
                self._has.pop(gone, None)
            self._workers = workers
            self._workers_at = time.monotonic()
            for w in workers.values():
                self._seen[w.name] = w
        return True

    def _watch(self) -> None:
        """While jobs are in flight: look at the workers every ``tick`` and let each job check
        that its worker is still there."""
        while not self._stop_event.wait(self.tick):
            with self._lock:
                flights = list(self._live.values())
            if not flights:
                continue
            self._refresh()
            for fl in flights:
                fl.inbox.put(("tick",))

    def _ensure_watcher(self) -> None:
        with self._lock:
            if self._watcher is None and not self._stopped:
                self._watcher = threading.Thread(
                    target=self._watch, name="nbops-dask-watch", daemon=True
                )
                self._watcher.start()

    def _eligible(self, job: StageJob) -> list[WorkerInfo]:
        with self._lock:
            return [w for w in self._workers.values() if not w.lacks(job.resources, job.memory)]

    def _could_come_back(self, job: StageJob) -> bool:
        """A worker that may run ``job`` was seen before (it died; its nanny may start it
        again)."""
        with self._lock:
            return any(not w.lacks(job.resources, job.memory) for w in self._seen.values())

    def _no_worker_can(self, job: StageJob) -> StageFailed:
        with self._lock:
            workers = sorted(self._workers.values(), key=lambda w: w.name)
        needs = [f"{k}={v:g}" for k, v in job.resources.items()]
        if job.memory is not None:
            needs.append(f"memory {size_text(job.memory)}")
        have = "; ".join(f"{w.name} has {w.has_text()}" for w in workers) or "it has no worker"
        starts = []
        if job.resources:
            res = " ".join(f"{k}={v:g}" for k, v in job.resources.items())
            starts.append(f'--resources "{res}"')
        if job.memory is not None:
            starts.append(f"--memory-limit {_dask_size(job.memory)}")
        return StageFailed(
            f"stage {job.label} needs {', '.join(needs)}, but no worker of the dask cluster "
            f"{self.address.shown} has {'it' if len(needs) == 1 else 'them'} ({have})",
            f"start one with `dask worker {self.address.scheduler or 'ADDRESS'} "
            f"{' '.join(starts)}`, or change resources: of stage {job.stage} in nbops.yaml",
            stage=job.stage,
        )

    # --- events ---------------------------------------------------------------------------------
    def _on_event(self, event: Any) -> None:
        """A worker's event (in dask's event loop): handed to the job's own thread."""
        try:
            msg = event[1] if isinstance(event, tuple) and len(event) == 2 else event
            key = msg.get("key") if isinstance(msg, dict) else None
        except Exception:  # noqa: BLE001 - not ours
            return
        with self._lock:
            fl = self._live.get(str(key)) if key is not None else None
        if fl is not None and msg.get("event") == "started":
            fl.inbox.put(("started", msg))

    # --- one job ----------------------------------------------------------------------------------
    def execute(self, job: StageJob) -> StageResult:
        t0 = time.perf_counter()
        if self._stopped:
            return self._stopped_result(job, t0)
        key = f"{re.sub(r'[^A-Za-z0-9_.=-]', '_', job.label)[:60]}-{uuid.uuid4().hex[:12]}"
        fl: _Flight | None = None
        try:
            self._workers_for(job)  # a job no worker can run fails before anything is read
            from nbops.executors import shipping

            try:
                spec, paths = shipping.spec_of(job, key)
            except NbopsError as exc:
                return StageResult(job, False, 0.0, _as_stage_failed(job, exc))
            except OSError as exc:
                err = StageFailed(
                    f"stage {job.label}: cannot read what it needs to ship: {exc}",
                    "check the stage's notebook and deps: in nbops.yaml",
                    stage=job.stage,
                )
                return StageResult(job, False, 0.0, err)
            fl = _Flight(job, spec, paths)
            with self._lock:
                if self._stopped:
                    return self._stopped_result(job, t0)
                self._live[spec.key] = fl
            self._ensure_watcher()
            with self._slot():
                return self._run(fl, t0)
        except _Stopped:
            return self._stopped_result(job, t0)
        except StageFailed as exc:
            if self._stopped:
                return self._stopped_result(job, t0)
            return StageResult(job, False, time.perf_counter() - t0, exc, worker=job.worker)
        except Exception as exc:  # noqa: BLE001 - a lost connection, nbops' own bug
            if self._stopped:
                return self._stopped_result(job, t0)
            err = StageFailed(
                f"stage {job.label}: the dask cluster {self.address.shown} failed it: {_why(exc)}",
                "run it again; with --verbose dask says more",
                stage=job.stage,
            )
            return StageResult(job, False, time.perf_counter() - t0, err, worker=job.worker)
        finally:
            if fl is not None:
                with self._lock:
                    self._live.pop(fl.spec.key, None)
                fl.future = None  # the worker may forget the answer
                if fl.started:
                    job.ended()

    @contextlib.contextmanager
    def _slot(self) -> Iterator[None]:
        """One of the ``--jobs`` places on the cluster, held while the job is there."""
        sem = self._in_flight
        if sem is None:
            yield
            return
        while not sem.acquire(timeout=0.2):
            if self._stopped:
                raise _Stopped
        try:
            yield
        finally:
            sem.release()

    def _stopped_result(self, job: StageJob, t0: float) -> StageResult:
        err = StageFailed(f"stage {job.label}: the pipeline was stopped", stage=job.stage)
        return StageResult(job, False, time.perf_counter() - t0, err, worker=job.worker)

    def _run(self, fl: _Flight, t0: float) -> StageResult:
        job = fl.job
        resends = 0
        while True:
            workers = self._workers_for(job, fl)
            self._ship(fl, workers)
            self._submit(fl, workers)
            ret = self._await(fl)
            if ret is None:  # run again (a worker died, and a retry is left)
                continue
            if ret.missing:  # a worker that joined after the blobs were sent: send, again
                resends += 1
                if resends > 5:
                    raise StageFailed(
                        f"stage {job.label}: worker {ret.name} ({ret.worker}) keeps losing the "
                        f"files sent to it ({', '.join(ret.missing[:3])})",
                        "look at the worker's local directory (is it full, or cleaned?)",
                        stage=job.stage,
                    )
                with self._lock:
                    self._has.get(ret.worker, set()).difference_update(ret.missing)
                self._refresh()
                continue
            return self._result(fl, ret, t0)

    def _workers_for(self, job: StageJob, fl: _Flight | None = None) -> list[WorkerInfo]:
        """The workers that may run ``job`` now. None, and none ever seen: StageFailed at
        once; none now but one was seen (it died): wait for one (bounded)."""
        if time.monotonic() - self._workers_at > 5 * self.tick:
            self._refresh()  # idle for a while: the workers now, not as they were
        workers = self._eligible(job)
        if not workers:
            self._refresh()
            workers = self._eligible(job)
        if workers:
            return workers
        if not self._could_come_back(job):
            raise self._no_worker_can(job)
        return self._wait_for_eligible(job, fl)

    def _wait_for_eligible(self, job: StageJob, fl: _Flight | None) -> list[WorkerInfo]:
        """No worker that may run the job now, but one was seen: wait (bounded) for one to come
        back (a nanny restarts a killed worker in seconds)."""
        deadline = time.monotonic() + self.lost_after
        while time.monotonic() < deadline:
            if self._stopped or self._stop_event.wait(min(self.tick, 0.5)):
                raise _Stopped
            self._refresh()
            workers = self._eligible(job)
            if workers:
                return workers
        raise self._lost(job, fl)

    def _lost(self, job: StageJob, fl: _Flight | None) -> StageFailed:
        died = _names(fl.deaths) if fl is not None else ""
        return StageFailed(
            f"stage {job.label}: the dask cluster {self.address.shown} has no worker left that "
            f"can run it (none for {self.lost_after:g} s)" + (f"; {died} died" if died else ""),
            "start workers again (`dask worker ADDRESS`); see their logs for why they went",
            stage=job.stage,
        )

    # --- shipping ---------------------------------------------------------------------------------
    def _ship(self, fl: _Flight, workers: list[WorkerInfo]) -> None:
        """Every worker of ``workers`` gets the job's blobs it lacks: asked once per worker
        and digest (then remembered), each digest sent by one thread at a time to all the
        workers lacking it."""
        from nbops.executors import dask_worker

        digests = set(fl.paths)
        with self._lock:
            ask = {
                w.address: digests - self._has.setdefault(w.address, set())
                for w in workers
                if digests - self._has.setdefault(w.address, set())
            }
        if not ask:
            return
        lacking: dict[str, list[str]] = {}
        # a small file this executor never sent (a point's spool start, a changed notebook)
        # is sent without asking: asking costs the round trip sending it does
        small = {d for d in set().union(*ask.values()) if self._small_and_new(d, fl.paths[d])}
        for addr, ds in ask.items():
            for d in ds & small:
                lacking.setdefault(d, []).append(addr)
        ask = {a: ds - small for a, ds in ask.items() if ds - small}
        union = sorted(set().union(*ask.values())) if ask else []
        answers = (
            self.client.run(dask_worker.has_blobs, union, workers=list(ask), on_error="return")
            if ask
            else {}
        )
        with self._lock:
            for addr, held in answers.items():
                self._check_nbops(fl, addr, held)
                if isinstance(held, BaseException):
                    if isinstance(held, ValueError):  # the worker refused a digest: a bug
                        raise StageFailed(
                            f"stage {fl.job.label}: worker {addr} refused to say which files it "
                            f"has: {held}",
                            "the runner's and the workers' nbops must be the same version",
                            stage=fl.job.stage,
                        )
                    continue  # gone: it answers 'missing' if it ever gets the job
                have = set(held) & set(union)
                self._has.setdefault(addr, set()).update(have)
                for d in ask.get(addr, set()) - have:
                    lacking.setdefault(d, []).append(addr)
        for digest in sorted(lacking):
            self._send(fl, digest, lacking[digest])

    def _check_nbops(self, fl: _Flight, addr: str, answer: object) -> None:
        """A worker that cannot import nbops (it answers every call with the ImportError, and
        would hold the job for ever): the job fails at once, saying what to install where."""
        if not isinstance(answer, BaseException):
            return
        text = f"{type(answer).__name__}: {answer}"
        if not any(m in text for m in ("No module named 'nbops", "'nbops' is not a package")):
            return
        name = self._name_of(addr)
        who = f"{name} ({addr})" if name != addr else addr
        try:
            from importlib.metadata import version

            here = f"nbops {version('nbops')}"
        except Exception:  # noqa: BLE001 - not installed as a distribution
            here = "nbops"
        raise StageFailed(
            f"stage {fl.job.label}: the dask worker {who} cannot import nbops: {_why(answer)}",
            f"install {here} where the dask workers run (pip install in the Python environment "
            "of `dask worker`) and restart them: a worker runs each stage with nbops",
            stage=fl.job.stage,
        )

    def _small_and_new(self, digest: str, path: Path) -> bool:
        with self._lock:
            if digest in self.blob_sizes or any(digest in h for h in self._has.values()):
                return False
        try:
            return os.stat(path).st_size <= SEND_UNASKED
        except OSError:
            return False

    def _digest_lock(self, digest: str) -> threading.Lock:
        with self._lock:
            return self._digest_locks.setdefault(digest, threading.Lock())

    def _send(self, fl: _Flight, digest: str, addrs: list[str]) -> None:
        from nbops.executors import dask_worker

        path = fl.paths[digest]
        with self._digest_lock(digest):
            with self._lock:
                addrs = [a for a in addrs if digest not in self._has.get(a, set())]
                names = {a: self._name_of(a) for a in addrs}
            if not addrs:
                return
            try:
                f = open(path, "rb")  # noqa: SIM115 - closed below
            except OSError as exc:
                raise StageFailed(
                    f"stage {fl.job.label}: cannot read {path} to send it: {exc}",
                    stage=fl.job.stage,
                ) from None
            with f:
                size = os.fstat(f.fileno()).st_size
                offset = 0
                while addrs:
                    if self._stopped:
                        raise _Stopped
                    data = f.read(CHUNK)
                    final = offset + len(data) >= size or not data
                    answers = self.client.run(
                        dask_worker.put_blob,
                        digest,
                        offset,
                        data,
                        final,
                        workers=addrs,
                        on_error="return",
                    )
                    for addr in list(addrs):
                        err = answers.get(addr)
                        self._check_nbops(fl, addr, err)
                        if isinstance(err, ValueError):
                            raise StageFailed(
                                f"stage {fl.job.label}: {path} changed while it was sent to "
                                f"worker {names[addr]} ({err})",
                                "run it again once nothing writes the file",
                                stage=fl.job.stage,
                            )
                        if isinstance(err, BaseException) or addr not in answers:
                            addrs.remove(addr)  # gone: it answers 'missing' if it gets the job
                            continue
                        with self._lock:
                            self.shipped_bytes[names[addr]] += len(data)
                    offset += len(data)
                    if final:
                        break
            with self._lock:
                self.blob_sizes[digest] = size
                for addr in addrs:
                    self._has.setdefault(addr, set()).add(digest)
                    self.shipped_files.setdefault(names[addr], Counter())[digest] += 1

    def _name_of(self, addr: str) -> str:
        with self._lock:
            w = self._workers.get(addr)
        return w.name if w is not None else addr

    # --- submitting and waiting -------------------------------------------------------------
    def _submit(self, fl: _Flight, workers: list[WorkerInfo]) -> None:
        from nbops.executors import dask_worker

        with self._lock:
            if self._stopped:
                raise _Stopped
            key = f"nbops-{fl.spec.key}-{next(self._seq)}"
            restrict = [w.address for w in workers] if fl.job.memory is not None else None
            fut = self.client.submit(
                dask_worker.run_job,
                fl.spec,
                key=key,
                pure=False,
                resources=dict(fl.job.resources) or None,
                workers=restrict,
                allow_other_workers=False,
            )
            fl.task, fl.future, fl.restricted = key, fut, restrict
            fl.current = fl.current_name = None
            fl.no_worker_since = None
        q = fl.inbox
        fut.add_done_callback(lambda f: q.put(("done", f)))

    def _await(self, fl: _Flight) -> JobReturn | None:
        """The current attempt's answer; None: submit it again (its worker died, a retry is
        left, and dask will not move it by itself)."""
        while True:
            try:
                item = fl.inbox.get(timeout=max(5 * self.tick, 1.0))
            except queue.Empty:
                item = ("tick",)
            if self._stopped or item[0] == "stop":
                raise _Stopped
            if item[0] == "started":
                self._on_started(fl, item[1])
            elif item[0] == "tick":
                if self._check(fl):
                    return None
            elif item[0] == "done" and item[1] is fl.future:
                return self._answer(fl)

    def _on_started(self, fl: _Flight, msg: dict[str, Any]) -> None:
        addr = str(msg.get("worker") or "")
        name = str(msg.get("name") or addr)
        if not addr or addr == fl.current:
            return
        if fl.current is not None:  # dask ran it again elsewhere: where it ran died
            self._died(fl, fl.current, fl.current_name or fl.current)
        fl.current, fl.current_name = addr, name
        self._began(fl, addr, name)

    def _began(self, fl: _Flight, addr: str, name: str) -> None:
        fl.job.worker = addr
        if not fl.started:
            fl.started = True
            fl.job.started()
        if fl.note is not None:
            fl.job.note(f"{fl.note} on {name}")
            fl.note = None

    def _died(self, fl: _Flight, addr: str, name: str) -> None:
        """The worker ``addr`` died under the job: a retry is used, or the job fails."""
        if any(a == addr for _, a in fl.deaths):
            return
        fl.deaths.append((name, addr))
        if fl.current == addr:
            fl.current = fl.current_name = None
        n, allowed = len(fl.deaths), fl.job.retries
        if n > allowed:
            self._cancel(fl)
            tried = f" (it ran {_plural(n, 'time')}; retries: {allowed})" if n > 1 else ""
            who = _names(fl.deaths)
            raise StageFailed(
                f"stage {fl.job.label}: the dask {'worker' if n == 1 else 'workers'} {who} "
                f"died while running it{tried}: the connection to "
                f"{'it' if n == 1 else 'them'} was lost mid-stage (killed, crashed or out of "
                "memory)",
                "see the worker's log for why (its nanny logs an out-of-memory kill); "
                f"retries: on stage {fl.job.stage} in nbops.yaml runs it again on another "
                f"worker (now {allowed})",
                stage=fl.job.stage,
            )
        with self._lock:
            self.retries += 1
        fl.note = f"worker {name} ({addr}) died; retry {n} of {allowed}"

    def _check(self, fl: _Flight) -> bool:
        """A tick: is the job's worker still there, and is there one that may run it? True:
        submit it again."""
        with self._lock:
            workers = dict(self._workers)
            fresh = time.monotonic() - self._workers_at < self.lost_after
        now = time.monotonic()
        if not fresh:  # the scheduler has not answered for lost_after seconds
            self._cancel(fl)
            raise StageFailed(
                f"stage {fl.job.label}: the dask scheduler {self.address.shown} has not "
                f"answered for {self.lost_after:g} s: the connection to it was lost",
                "check that the scheduler still runs, then run again",
                stage=fl.job.stage,
            )
        if fl.current is not None and fl.current not in workers:
            self._died(fl, fl.current, fl.current_name or fl.current)
        eligible = [w for w in workers.values() if not w.lacks(fl.job.resources, fl.job.memory)]
        if not eligible:
            if fl.no_worker_since is None:
                fl.no_worker_since = now
            elif now - fl.no_worker_since > self.lost_after:
                self._cancel(fl)
                raise self._lost(fl.job, fl)
            return False
        fl.no_worker_since = None
        if fl.restricted is not None and not set(fl.restricted) & set(workers):
            self._cancel(fl)  # its workers= are all gone: dask would wait for ever
            return True
        return False

    def _answer(self, fl: _Flight) -> JobReturn | None:
        from distributed import KilledWorker

        fut = fl.future
        if fut.status == "cancelled":
            if self._stopped:
                raise _Stopped
            raise StageFailed(
                f"stage {fl.job.label}: the dask cluster {self.address.shown} dropped it "
                "(the scheduler restarted, or the connection to it was lost)",
                "run it again",
                stage=fl.job.stage,
            )
        try:
            ret = fut.result(timeout=60)
        except KilledWorker as exc:  # dask ran it on allowed-failures + 1 workers
            last = getattr(exc.last_worker, "address", None) or "?"
            self._died(fl, last, self._seen_name(last))
            return None
        if not isinstance(ret, JobReturn):
            raise StageFailed(
                f"stage {fl.job.label}: the dask worker answered {type(ret).__name__}, not a "
                "job's result",
                "the runner's and the workers' nbops must be the same version",
                stage=fl.job.stage,
            )
        return ret

    def _seen_name(self, addr: str) -> str:
        with self._lock:
            for w in self._seen.values():
                if w.address == addr:
                    return w.name
        return addr

    def _cancel(self, fl: _Flight) -> None:
        """Stop the current attempt: its kernel on the worker, its task on the scheduler."""
        from nbops.executors import dask_worker

        fut, fl.future = fl.future, None
        try:
            self.client.run(dask_worker.cancel, [fl.spec.key], on_error="ignore")
        except Exception:  # noqa: BLE001 - the worker is gone, or the scheduler
            pass
        if fut is not None:
            try:
                fut.cancel(force=True)
            except Exception:  # noqa: BLE001 - the client is closing
                pass

    def _result(self, fl: _Flight, ret: JobReturn, t0: float) -> StageResult:
        from nbops.executors import shipping

        job = fl.job
        if not fl.started or job.worker != ret.worker:
            self._began(fl, ret.worker, ret.name)
        with self._lock:
            self.jobs_per_worker[ret.name] += 1
        try:
            shipping.apply(ret, job)
        except NbopsError as exc:
            return StageResult(job, False, ret.seconds, _as_stage_failed(job, exc), ret.worker)
        except OSError as exc:
            err = StageFailed(
                f"stage {job.label}: what worker {ret.name} ({ret.worker}) sent back could not "
                f"be written here: {exc}",
                "check the free space and permissions of the project folder",
                stage=job.stage,
            )
            return StageResult(job, False, ret.seconds, err, ret.worker)
        seconds = ret.seconds or time.perf_counter() - t0
        if ret.ok:
            return StageResult(job, True, seconds, worker=ret.worker)
        error = ret.error or {}
        kind = error.get("kind")
        if kind == "stopped" and self._stopped:
            return self._stopped_result(job, t0)
        message = self._local(str(error.get("message") or f"stage {job.label} failed")).rstrip()
        if f"on worker {ret.name}" not in message:
            message += f" on worker {ret.name} ({ret.worker})"
        hint = error.get("hint")
        hint = self._local(str(hint)) if hint else None
        if kind == "import":
            hint = (
                "install the missing package where the dask workers run (the Python "
                f"environment of `dask worker` on {ret.name}) and restart them: a stage "
                "imports its packages on the worker"
            )
        elif kind == "execution" and job.output.exists():
            hint = f"the executed notebook, with papermill's error banner, is {job.output}"
        cell = error.get("cell")
        err = StageFailed(
            message,
            hint,
            stage=job.stage,
            cell=cell if isinstance(cell, int) else None,
            notebook=str(job.output) if job.output.exists() else None,
        )
        return StageResult(job, False, seconds, err, ret.worker)

    def _local(self, text: str) -> str:
        return text.replace(ROOT_MARK, str(self.root))

    # --- the end -------------------------------------------------------------------------------
    def stop(self) -> None:
        """No new job; the jobs in flight are cancelled (their kernels on the workers killed,
        their tasks dropped) and their ``execute`` returns "the pipeline was stopped" at once;
        the client (and the LocalCluster of ``local[:N]``) closed. Idempotent, any thread."""
        from nbops.executors import dask_worker

        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            flights = list(self._live.values())
        self._stop_event.set()
        for fl in flights:
            fl.inbox.put(("stop",))
        try:
            keys = [fl.spec.key for fl in flights]
            futures = [fl.future for fl in flights if fl.future is not None]
            if keys:
                try:
                    self.client.run(
                        dask_worker.cancel, keys, on_error="ignore", callback_timeout=10
                    )
                except Exception:  # noqa: BLE001 - a worker or the scheduler is gone
                    pass
            if futures:
                try:
                    self.client.cancel(futures, force=True)
                except Exception:  # noqa: BLE001 - the scheduler is gone
                    pass
        finally:
            try:
                self.client.close(timeout=10)
            except Exception:  # noqa: BLE001 - closing either way
                pass
            if self.cluster is not None:
                try:
                    self.cluster.close(timeout=20)
                except Exception:  # noqa: BLE001 - closing either way
                    pass
            watcher = self._watcher
            if watcher is not None and watcher is not threading.current_thread():
                watcher.join(timeout=5)

    def report(self) -> str | None:
        """``dask: 16 jobs on 2 workers (w0: 8, w1: 8); shipped 4.0 GB: 1 file (2.0 GB), one
        copy to each of 2 workers``; None when no job reached the cluster."""
        with self._lock:
            jobs = dict(self.jobs_per_worker)
            files = {w: dict(c) for w, c in self.shipped_files.items()}
            sizes = dict(self.blob_sizes)
            retries = self.retries
        if not jobs and not files and not retries:
            return None
        n = sum(jobs.values())
        per = ", ".join(f"{_label(w)}: {c}" for w, c in sorted(jobs.items()))
        if n:
            parts = [f"dask: {_plural(n, 'job')} on {_plural(len(jobs), 'worker')} ({per})"]
        else:  # every job it was given failed or was stopped before a worker answered
            parts = ["dask: no job finished on the cluster"]
        if retries:
            parts.append(f"{_plural(retries, 'retry', 'retries')} after a worker died")
        if files:
            digests = set().union(*files.values())
            distinct = sum(sizes.get(d, 0) for d in digests)
            sent = sum(sizes.get(d, 0) * c for got in files.values() for d, c in got.items())
            once = all(c == 1 for got in files.values() for c in got.values())
            same = all(set(got) == digests for got in files.values())
            what = (
                f"shipped {size_text(sent)}: {_plural(len(digests), 'file')} "
                f"({size_text(distinct)})"
            )
            if once and same:
                what += f", one copy to each of {_plural(len(files), 'worker')}"
            else:
                each = ", ".join(
                    f"{_label(w)}: {size_text(sum(sizes.get(d, 0) * c for d, c in got.items()))}"
                    for w, got in sorted(files.items())
                )
                what += f" to {each}"
            parts.append(what)
        return "; ".join(parts)


# --- helpers ------------------------------------------------------------------------------------
def _label(name: str) -> str:
    """A worker's name as a line says it (a LocalCluster's are numbers)."""
    return f"worker {name}" if name.isdigit() else name


def _names(deaths: list[tuple[str, str]]) -> str:
    return " and ".join(f"{n} ({a})" if n != a else a for n, a in deaths)


def _why(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _dask_size(n: float) -> str:
    """A --memory-limit value: ``8GB``."""
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if n >= size:
            value = n / size
            return f"{value:.0f}{unit}" if value == int(value) else f"{value:.1f}{unit}"
    return f"{int(n)}B"


def _as_stage_failed(job: StageJob, exc: NbopsError) -> StageFailed:
    if isinstance(exc, StageFailed):
        return exc
    return StageFailed(f"stage {job.label}: {exc.message}", exc.hint, stage=job.stage)


def _unreachable(addr: Address, where: str, why: str) -> ClusterUnavailable:
    return ClusterUnavailable(
        f"{where}: the dask scheduler {addr.scheduler} is unreachable: {why}",
        f"start one with `dask scheduler` and workers with `dask worker {addr.scheduler}`, or "
        "run without --dask",
    )


def _probe(addr: Address, where: str) -> None:
    """A plain TCP connection first: a refused port or an unknown host is said at once, in
    a few words (dask would retry for its whole timeout)."""
    assert addr.scheduler is not None
    hostport = addr.scheduler.split("://", 1)[1]
    host, _, port = hostport.rpartition(":")
    host = host.strip("[]")
    try:
        with socket.create_connection((host, int(port)), timeout=5):
            return
    except socket.gaierror:
        why = f"the host {host} is not known"
    except ConnectionRefusedError:
        why = f"nothing listens on port {port} of {host} (connection refused)"
    except TimeoutError:
        why = f"{host}:{port} did not answer within 5 s"
    except OSError as exc:
        why = (exc.strerror or str(exc)).lower()
    raise _unreachable(addr, where, why)


def _start_local(addr: Address) -> Any:
    """The LocalCluster of ``local[:N]``: N worker processes of one thread; their kernels are
    their children (not daemonic)."""
    import dask
    import distributed

    local_cluster: Any = distributed.LocalCluster  # untyped

    # set for good: a nanny reads it again when it restarts a worker that died
    dask.config.set({"distributed.worker.daemon": False})
    quiet = logging.INFO if _verbose() else logging.CRITICAL
    try:
        return local_cluster(
            n_workers=addr.local,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            # no dashboard; its HTTP server (health, metrics) on a free port of this machine
            scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
            silence_logs=quiet,
        )
    except Exception as exc:  # noqa: BLE001 - no port, no memory, no fork
        raise ClusterUnavailable(
            f"the local dask cluster ({addr.shown}) could not start: {_why(exc)}",
            "run without --dask, or with fewer workers (local:N)",
        ) from None
