"""Real dask clusters for tests: a ``dask scheduler`` process and ``dask worker`` processes (each
with its nanny), started as a user would start them.

Every worker runs in a mount namespace of its own where ``hidden`` (the folder the tests put
their projects in) is an empty tmpfs (``unshare --mount``, see TOOLCHAIN.md): a stage that reads
or writes the project through the shared filesystem instead of what nbops ships fails the test.
The rest of the machine (the Python installation, nbops' own source) looks the same.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCHEDULER = [sys.executable, "-m", "distributed.cli.dask_scheduler"]
WORKER = [sys.executable, "-m", "distributed.cli.dask_worker"]


@dataclass
class WorkerSpec:
    name: str
    resources: dict[str, float] = field(default_factory=dict)
    memory_limit: str | None = None  # "4GB"; None: dask's default (the machine's memory)


def _env() -> dict[str, str]:
    """The environment of cluster processes: nothing of a project or a tracking store."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("NBOPS_", "MLFLOW_")) and k not in ("PYTEST_CURRENT_TEST",)
    }
    env["DASK_DISTRIBUTED__WORKER__DAEMON"] = "False"  # a worker's children may fork (zygote)
    env["DASK_LOGGING__DISTRIBUTED"] = "warning"
    return env


@dataclass
class Cluster:
    """A running scheduler and its workers. ``address`` is the scheduler's ``tcp://`` address."""

    base: Path
    hidden: Path
    address: str = ""
    scheduler: subprocess.Popen[bytes] | None = None
    workers: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    logs: dict[str, Path] = field(default_factory=dict)

    def client(self, **kwargs: Any) -> Any:
        from distributed import Client

        return Client(self.address, timeout=30, **kwargs)

    def worker_info(self) -> dict[str, dict[str, Any]]:
        """Worker name -> {"address", "pid", "resources", "memory_limit"} as the scheduler sees
        it now."""
        with self.client() as c:
            info = c.scheduler_info(n_workers=-1)["workers"]
            pids = c.run(os.getpid)
        return {
            str(w.get("name", addr)): {
                "address": addr,
                "pid": pids.get(addr),
                "resources": w.get("resources", {}),
                "memory_limit": w.get("memory_limit"),
            }
            for addr, w in info.items()
        }

    def kill_worker(self, name: str) -> int:
        """SIGKILL the worker process ``name`` (not its nanny, which starts a new one): its
        pid."""
        pid = self.worker_info()[name]["pid"]
        os.kill(int(pid), signal.SIGKILL)
        return int(pid)

    def wait_for_workers(self, n: int, timeout: float = 90) -> None:
        with self.client() as c:
            c.wait_for_workers(n, timeout=timeout)

    def log_text(self) -> str:
        return "\n".join(
            f"--- {k}\n{p.read_text(errors='replace')[-4000:]}"
            for k, p in self.logs.items()
            if p.exists()
        )

    def stop(self) -> None:
        for proc in [*self.workers.values(), self.scheduler]:
            if proc is None or proc.poll() is not None:
                continue
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except OSError:
                pass
        deadline = time.monotonic() + 20
        for proc in [*self.workers.values(), self.scheduler]:
            if proc is None:
                continue
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except OSError:
                    pass
                proc.wait(10)


def _wait_for_file(path: Path, proc: subprocess.Popen[bytes], what: str, log: Path) -> None:
    deadline = time.monotonic() + 60
    while not path.exists() or not path.read_text().strip():
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start within 60 s:\n{log.read_text()[-3000:]}")
        time.sleep(0.05)  # polling for a file the process writes once it listens


def start_worker(cluster: Cluster, spec: WorkerSpec) -> subprocess.Popen[bytes]:
    """One ``dask worker`` (1 process, 1 thread) with ``cluster.hidden`` hidden from it."""
    local = cluster.base / f"worker-{spec.name}"
    local.mkdir(parents=True, exist_ok=True)
    argv = [
        *WORKER,
        cluster.address,
        "--nworkers", "1",
        "--nthreads", "1",
        "--name", spec.name,
        "--no-dashboard",
        "--local-directory", str(local),
    ]  # fmt: skip
    if spec.resources:
        argv += ["--resources", " ".join(f"{k}={v:g}" for k, v in spec.resources.items())]
    if spec.memory_limit:
        argv += ["--memory-limit", spec.memory_limit]
    hide = f"mount -t tmpfs -o size=1m nbops-hidden {shlex.quote(str(cluster.hidden))}"
    cmd = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
           f"{hide} && exec {shlex.join(argv)}"]  # fmt: skip
    log = cluster.base / f"worker-{spec.name}.log"
    cluster.logs[spec.name] = log
    proc = subprocess.Popen(
        cmd,
        cwd=local,
        env=_env(),
        stdin=subprocess.DEVNULL,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    cluster.workers[spec.name] = proc
    return proc


def start_cluster(base: Path, hidden: Path, workers: list[WorkerSpec]) -> Cluster:
    """A scheduler on a free port of 127.0.0.1 and ``workers``, all registered when it returns."""
    base.mkdir(parents=True, exist_ok=True)
    hidden.mkdir(parents=True, exist_ok=True)
    cluster = Cluster(base, hidden)
    sched_file = base / "scheduler.json"
    sched_file.unlink(missing_ok=True)
    log = base / "scheduler.log"
    cluster.logs["scheduler"] = log
    cluster.scheduler = subprocess.Popen(
        [
            *SCHEDULER,
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--no-dashboard",
            "--scheduler-file",
            str(sched_file),
        ],  # fmt: skip
        cwd=base,
        env=_env(),
        stdin=subprocess.DEVNULL,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        _wait_for_file(sched_file, cluster.scheduler, "dask scheduler", log)
        cluster.address = json.loads(sched_file.read_text())["address"]
        for spec in workers:
            start_worker(cluster, spec)
        if workers:
            cluster.wait_for_workers(len(workers))
    except BaseException:
        cluster.stop()
        raise
    return cluster


@contextmanager
def own_cluster(base: Path, hidden: Path, workers: list[WorkerSpec]) -> Iterator[Cluster]:
    """A cluster of one test's own (for tests that kill a worker); stopped at the end."""
    cluster = start_cluster(base, hidden, workers)
    try:
        yield cluster
    finally:
        cluster.stop()
