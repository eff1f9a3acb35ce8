"""Local execution with papermill, in fresh kernels started ahead of time.

Kernel start-up is most of papermill's cost for a short notebook, so a small pool keeps fresh
kernels warm: a job takes one (never a kernel that ran anything), and a replacement starts in the
background while the job runs. The job's environment (which run to log into, which notebook) is
set in the kernel by a setup snippet before papermill runs the notebook. Kernels are stopped at
once after the job: the values they logged are already in the spool, so there is nothing to wait
for (papermill's graceful shutdown stalls ~4 s in some runs)."""

from __future__ import annotations

import json
import os
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from nbops import envvars
from nbops.errors import IncompatibleDependency, StageFailed
from nbops.executors import compat
from nbops.executors.base import Executor, StageJob, StageResult


def _shared_context() -> Any:
    import zmq.asyncio

    global _CONTEXT
    if _CONTEXT is None:
        _CONTEXT = zmq.asyncio.Context()
    return _CONTEXT


_CONTEXT: Any = None

START_ATTEMPTS = 4  # kernel starts per kernel when each dies at once (its port was taken)
ANSWER_WAIT = 60.0  # seconds a new kernel has to answer before the job's own wait takes over


def _address_in_use(exc: BaseException) -> bool:
    import errno

    return getattr(exc, "errno", None) == errno.EADDRINUSE or "Address already in use" in str(exc)


def _taken_port(km: Any) -> int | None:
    """One of the ports a dead kernel was given that another process holds now, if any."""
    import socket

    ip = getattr(km, "ip", "127.0.0.1") or "127.0.0.1"
    for name in ("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port"):
        port = getattr(km, name, 0)
        if not isinstance(port, int) or port <= 0:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((ip, port))
            except OSError as exc:
                if _address_in_use(exc):
                    return port
    return None


class LocalExecutor(Executor):
    loaded: threading.Event  # set once papermill is imported

    def __init__(self, cwd: Path, kernel_name: str = "python3", warm: int = 1) -> None:
        self.cwd = cwd
        self.kernel_name = kernel_name
        self.warm = max(0, warm)
        self._starter = ThreadPoolExecutor(max_workers=2, thread_name_prefix="nbops-kernel")
        # kernels are SIGKILLed at once when their job ends; their managers' clean-up (waiting
        # for the process, closing sockets, ~0.1 s) runs here, off the job's path
        self._reaper = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nbops-reaper")
        self._ready: deque[Future[Any]] = deque()
        self._live: set[Any] = set()
        self._lock = threading.Lock()
        self._stopped = False
        self.loaded = threading.Event()
        self._loading = False
        # jobs being executed -> their kernel (None until they have one); jobs told to stop
        self._jobs: dict[int, Any] = {}
        # jobs told to stop (the job itself is kept: its id cannot be reused meanwhile)
        self._stopping: dict[int, StageJob] = {}
        self._zygote: Any = None
        self._spec_manager: Any = None
        if os.environ.get(envvars.ZYGOTE, "1") != "0":  # NBOPS_ZYGOTE=0: launch each kernel
            from nbops.executors.zygote import Zygote

            self._zygote = Zygote()

    # --- the pool of fresh kernels -----------------------------------------------------------
    def _start_kernel(self) -> Any:
        """A kernel that has answered, started with fresh ports. A kernel that dies at once
        (another process took one of its ports between jupyter_client choosing it and the
        kernel binding it: EADDRINUSE, seen under load) is replaced, up to
        :data:`START_ATTEMPTS` times; then a StageFailed says what happened, in one line."""
        taken: list[int] = []
        for _attempt in range(START_ATTEMPTS):
            km = self._manager()
            try:
                self._launch(km)
            except Exception as exc:
                self._discard(km)
                if not _address_in_use(exc):
                    raise
                taken.append(-1)
                continue
            if self._answers(km):
                return km
            port = _taken_port(km)
            self._discard(km)
            with self._lock:
                if self._stopped:
                    raise StageFailed("the pipeline was stopped before the kernel started")
            taken.append(port if port is not None else 0)
        ports = sorted({p for p in taken if p > 0})
        why = (
            f"port {', '.join(map(str, ports))} was taken by another process"
            if ports
            else "it exited before it answered"
        )
        raise StageFailed(
            f"the {self.kernel_name} kernel could not start: {len(taken)} attempts, {why}",
            "another program is taking the ports kernels are given (the machine is very busy): "
            "run again; if it goes on, see what listens with `ss -ltnp`",
        )

    def _manager(self) -> Any:
        from jupyter_client.manager import AsyncKernelManager

        compat.ensure_compatible()  # what nbops uses of jupyter_client's internals is still there
        # a shared context the manager does not own: shutting a kernel down must not destroy a
        # context (pyzmq's term() blocks while another thread's socket is still open in it)
        km = AsyncKernelManager(
            kernel_name=self.kernel_name,
            kernel_spec_manager=self._kernel_specs(),
            context=_shared_context(),
            client_class="nbops.executors.client.FastReadyClient",  # ready without a 0.2 s wait
        )
        if self._zygote is not None:  # forked from a process that has ipykernel imported
            import uuid

            from nbops.executors.zygote import ZygoteProvisioner

            km.kernel_id = str(uuid.uuid4())
            prov = ZygoteProvisioner(kernel_id=km.kernel_id, kernel_spec=km.kernel_spec, parent=km)
            prov.zygote = self._zygote
            km.provisioner = prov
        return km

    def _kernel_specs(self) -> Any:
        """One spec manager for every kernel, looking where jupyter_client's default does
        (without importing IPython to find ``~/.ipython``: see :func:`compat.kernel_dirs`)."""
        with self._lock:
            if self._spec_manager is None:
                from jupyter_client.kernelspec import KernelSpecManager

                self._spec_manager = KernelSpecManager(kernel_dirs=compat.kernel_dirs())
            return self._spec_manager

    def _launch(self, km: Any) -> None:
        # an async manager: papermill's client then polls the kernel's liveness while it waits
        # for output, so a kernel that dies (or is stopped) fails the job instead of hanging it
        from jupyter_core.utils import run_sync

        with self._lock:
            if self._stopped:
                raise StageFailed("the pipeline was stopped before the kernel started")
            self._live.add(km)
        run_sync(km.start_kernel)(cwd=str(self.cwd), env=dict(os.environ))

    def _answers(self, km: Any) -> bool:
        """Whether the new kernel answers a ``kernel_info`` request (False: it died first). A
        kernel slow to answer counts as alive: the job's own wait decides about it."""
        from queue import Empty

        from jupyter_core.utils import run_sync

        kc = km.client()
        kc.start_channels(iopub=False, stdin=False, hb=False, control=False)

        async def wait() -> bool:
            msg_id = kc.kernel_info()
            deadline = time.monotonic() + ANSWER_WAIT
            while time.monotonic() < deadline:
                try:
                    msg = await kc.get_shell_msg(timeout=0.05)
                except Empty:
                    if self._stopped:
                        return True  # stop() kills it; nothing waits for it any more
                    if not await km.is_alive():
                        return False
                    continue
                if msg["parent_header"].get("msg_id") == msg_id:
                    return True
            return True

        try:
            return bool(run_sync(wait)())
        finally:
            kc.stop_channels()

    def _discard(self, km: Any) -> None:
        """A kernel that never served a job: gone now, with its connection file."""
        self._kill_process(km)
        self._kill(km)

    def warm_up(self) -> None:
        """Start kernels now so that the next jobs find them ready, and import papermill."""
        with self._lock:
            if not self._stopped and not self._loading:
                self._loading = True
                self._starter.submit(self._load)
            want = self.warm
            while len(self._ready) < want and not self._stopped:
                self._ready.append(self._starter.submit(self._start_kernel))

    def _load(self) -> None:
        try:  # papermill: what every job needs first (~1 s of imports)
            compat.light_imports()
            import papermill  # type: ignore[import-untyped]  # noqa: F401
        finally:
            self.loaded.set()

    def _take(self) -> Any:
        with self._lock:
            if self._stopped:
                raise StageFailed("the pipeline was stopped before this job started")
            fut = self._ready.popleft() if self._ready else None
            if fut is None:
                fut = self._starter.submit(self._start_kernel)
        self.warm_up()  # a replacement starts while this job runs
        return fut.result()

    # --- jobs -----------------------------------------------------------------------------------
    def execute(self, job: StageJob) -> StageResult:
        compat.light_imports()
        import papermill as pm

        t0 = time.perf_counter()
        km = None
        started = False
        with self._lock:
            self._jobs[id(job)] = None
        try:
            try:
                km = self._take()
            except StageFailed as exc:
                raise StageFailed(
                    f"stage {job.label}: {exc.message}", exc.hint, stage=job.stage
                ) from None
            with self._lock:
                self._jobs[id(job)] = km
                stopping = self._stopping.get(id(job)) is job
            if stopping:
                raise StageFailed(f"stage {job.label} was stopped", stage=job.stage)
            job.started()
            started = True
            t0 = time.perf_counter()
            self._setup(km, job)
            job.output.parent.mkdir(parents=True, exist_ok=True)
            pm.execute_notebook(
                str(job.notebook),
                str(job.output),
                parameters=job.parameters,
                km=km,
                kernel_name=self.kernel_name,
                # the language of the kernel it runs in: a notebook written without metadata
                # (nbformat.v4.new_notebook()) has none, and papermill would refuse it
                language=getattr(getattr(km, "kernel_spec", None), "language", None) or None,
                # no cwd=: papermill would os.chdir() the whole runner process around the run,
                # which races between parallel jobs (the kernel was moved to job.cwd by _setup)
                progress_bar=False,
                log_output=False,
                execution_timeout=job.timeout,
            )
            return StageResult(job, True, time.perf_counter() - t0)
        except pm.PapermillExecutionError as exc:
            err = StageFailed(
                f"stage {job.label} failed at In [{exc.exec_count}]: {exc.ename}: {exc.evalue}",
                f"the executed notebook, with papermill's error banner, is {job.output}",
                stage=job.stage,
                cell=exc.exec_count,
                notebook=str(job.output),
            )
            return StageResult(job, False, time.perf_counter() - t0, err)
        except StageFailed as exc:
            return StageResult(job, False, time.perf_counter() - t0, exc)
        except IncompatibleDependency as exc:  # no kernel can start: say why, and the fix
            err = StageFailed(
                f"stage {job.label} cannot start a kernel: {exc.message}", exc.hint, stage=job.stage
            )
            return StageResult(job, False, time.perf_counter() - t0, err)
        except Exception as exc:  # noqa: BLE001 - a dead kernel, a timeout: the stage failed
            where = f"see {job.output}" if job.output.exists() else None
            err = StageFailed(
                f"stage {job.label} failed: {type(exc).__name__}: {exc}",
                where,
                stage=job.stage,
                notebook=str(job.output),
            )
            return StageResult(job, False, time.perf_counter() - t0, err)
        finally:
            with self._lock:
                self._jobs.pop(id(job), None)
                self._stopping.pop(id(job), None)
            if started:  # before the kernel goes: its pool slot frees the next job
                job.ended()
            if km is not None:
                self._release(km)

    def stop_job(self, job: StageJob) -> bool:
        """Stop one job now: its kernel is killed (its execute returns a failure at once); a
        job still waiting for a kernel, or about to be executed, stops when it gets one.
        Whether it was running (it had a kernel or was waiting for one)."""
        with self._lock:
            self._stopping[id(job)] = job
            if id(job) not in self._jobs:
                return False
            km = self._jobs[id(job)]
        if km is not None:
            self._kill_process(km)
        return True

    @staticmethod
    def _kill_process(km: Any) -> None:
        import signal

        pid = getattr(getattr(km, "provisioner", None), "pid", None)
        if pid:
            try:
                os.killpg(pid, signal.SIGKILL)  # the kernel leads its own process group
            except OSError:
                pass

    def _setup(self, km: Any, job: StageJob) -> None:
        """Give the fresh kernel the job's environment and working directory."""
        from jupyter_core.utils import run_sync

        # km.client(): liveness is the kernel *process* (asked of its manager), not the
        # heartbeat, which a CPU-starved kernel that is still importing can miss
        kc = km.client()
        kc.start_channels(iopub=False, stdin=False, hb=False, control=False)
        code = (
            f"import os as _o\n_o.environ.update({json.dumps(job.env)})\n"
            f"_o.chdir({str(job.cwd)!r})\ndel _o"
        )
        try:
            reply = run_sync(kc.run_silently)(code, 60.0)
        except RuntimeError as exc:
            raise StageFailed(f"stage {job.label}: {exc}", stage=job.stage) from None
        finally:
            kc.stop_channels()
        if reply.get("status") != "ok":
            raise StageFailed(f"stage {job.label}: the kernel refused its set-up", stage=job.stage)

    def _release(self, km: Any) -> None:
        """The job is over: the kernel dies now, its manager is cleaned up in the background."""
        self._kill_process(km)
        try:
            self._reaper.submit(self._kill, km)
        except RuntimeError:  # stopping: the reaper is shut down
            self._kill(km)

    def _kill(self, km: Any) -> None:
        from jupyter_core.utils import run_sync

        try:
            if km.has_kernel:
                run_sync(km.shutdown_kernel)(now=True)
        except Exception:  # noqa: BLE001 - it is going away either way
            pass
        with self._lock:
            self._live.discard(km)

    def stop(self) -> None:
        """Stop every kernel now, started or starting; no new one starts. Idempotent."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            pending = list(self._ready)
            self._ready.clear()
        for fut in pending:
            fut.cancel()
        self._starter.shutdown(wait=True, cancel_futures=True)
        self._reaper.shutdown(wait=True)
        with self._lock:
            live = list(self._live)
        for km in live:
            self._kill(km)
        if self._zygote is not None:
            self._zygote.close()
