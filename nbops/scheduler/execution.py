"""One execution of a schedule: ``python -m nbops run ... --summary FILE`` as its own process
group in the project root, stopped politely (SIGTERM: the runner stops its kernels and marks its
runs KILLED) or, as a backstop, killed with every descendant (kernels included). Then the
on_failure hook, whose own failure is only logged."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nbops import envvars, tags
from nbops.scheduler.model import Schedule

log = logging.getLogger("nbops.scheduler")

HOOK_TIMEOUT = 300.0
STOP_GRACE = 60.0
"""After SIGTERM, how long the runner gets to stop its kernels and end its runs."""


def _param_value(v: Any) -> str:
    """A value as ``nbops run -p`` reads it back exactly (``params.render``)."""
    from nbops.scheduler.params import render

    return render(v)


def command(spec: Schedule, summary: Path, history_id: int | None = None) -> list[str]:
    """The ``nbops run`` command line of one execution of ``spec``."""
    cmd = [sys.executable, "-m", "nbops", "run", *spec.stages, "--force"]
    for k, v in spec.params.items():
        cmd += ["-p", f"{k}={_param_value(v)}"]
    cmd += ["--tag", f"{tags.SCHEDULE}={spec.name}"]
    if history_id is not None:
        cmd += ["--tag", f"{tags.SCHEDULE_EXECUTION}={history_id}"]
    if spec.timeout is not None:
        cmd += ["--timeout", f"{spec.timeout:g}"]
    cmd += ["--summary", str(summary)]
    return cmd


@dataclass
class ExecutionResult:
    """How an execution ended, from the runner's summary (or its exit code if it wrote none)."""

    status: str  # ok | failed | timeout | killed
    exit_code: int | None
    pipeline_run_id: str | None = None
    run_ids: list[str] = field(default_factory=list)
    failed_run_id: str | None = None
    error: str | None = None
    log_path: Path | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (kernels run in sessions of their own, so killing the
    process group alone would leave them)."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Execution:
    """The process of one execution; ``stop`` and ``kill`` may be called from another thread."""

    def __init__(self, root: Path, spec: Schedule, history_id: int | None, logs: Path) -> None:
        self.root, self.spec, self.history_id = root, spec, history_id
        logs.mkdir(parents=True, exist_ok=True)
        stem = f"{spec.name}-{history_id if history_id is not None else int(time.time())}"
        self.log_path = logs / f"{stem}.log"
        self.summary_path = logs / f"{stem}.summary.json"
        self.proc: subprocess.Popen[bytes] | None = None
        self.ended_by: str | None = None  # "stop" (daemon shutdown) or "backstop" (timeout)

    def start(self) -> int:
        self.summary_path.unlink(missing_ok=True)
        env = {**os.environ, envvars.PROJECT_ROOT: str(self.root)}
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(
                command(self.spec, self.summary_path, self.history_id),
                cwd=self.root,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self.proc.pid

    def wait(self, timeout: float | None = None) -> int | None:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, grace: float = STOP_GRACE) -> None:
        """SIGTERM the runner (it stops its kernels, marks its runs KILLED), then the backstop."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.ended_by = self.ended_by or "stop"
        try:
            self.proc.send_signal(signal.SIGTERM)
        except ProcessLookupError:
            return
        if self.wait(grace) is None:
            self.kill()

    def kill(self) -> None:
        """SIGKILL the runner, its process group and every descendant; then let ``nbops sync``
        mark the runs it left behind KILLED."""
        if self.proc is None:
            return
        self.ended_by = self.ended_by or "backstop"
        pids = descendants(self.proc.pid) + [self.proc.pid]
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait()
        self._sync()

    def _sync(self) -> None:
        try:
            with open(self.log_path, "ab") as out:
                subprocess.run(
                    [sys.executable, "-m", "nbops", "sync", "--wait", "5"],
                    cwd=self.root,
                    env={**os.environ, envvars.PROJECT_ROOT: str(self.root)},
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    timeout=120,
                    check=False,
                )
        except (OSError, subprocess.SubprocessError) as exc:
            log.warning("schedule %s: nbops sync after a kill failed: %s", self.spec.name, exc)

    def result(self) -> ExecutionResult:
        code = self.proc.returncode if self.proc is not None else None
        summary = _read_summary(self.summary_path)
        if summary is not None:
            res = _from_summary(summary, code)
        elif code == 0:
            res = ExecutionResult("ok", code)
        else:
            res = ExecutionResult(
                "failed", code, error=f"nbops run exited with code {code}: {self._tail()}"
            )
        if self.ended_by == "backstop":
            res.status = "timeout"
            res.error = (
                f"did not stop by itself after its {self.spec.timeout:g} s timeout: killed"
                if self.spec.timeout
                else "killed by the scheduler"
            )
        elif self.ended_by == "stop" and res.status != "ok":
            res.status = "killed"
            res.error = res.error or "stopped: the scheduler was shut down"
        return res

    def _tail(self, lines: int = 5) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no output)"
        tail = [ln for ln in text.splitlines() if ln.strip()][-lines:]
        return " | ".join(tail) or "(no output)"


def _read_summary(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


FAILED_STAGE = ("failed", "timeout", "killed")


def _from_summary(s: dict[str, Any], code: int | None) -> ExecutionResult:
    stages = s.get("stages") or {}
    run_ids: list[str] = []
    failed_run: str | None = None
    for info in stages.values():
        ids = [str(r) for r in (info or {}).get("run_ids") or []]
        run_ids += ids
        if failed_run is None and ids and (info or {}).get("status") in FAILED_STAGE:
            failed_run = ids[0]
    status = str(s.get("status") or ("ok" if code == 0 else "failed"))
    if status not in ("ok", "failed", "timeout", "killed"):
        status = "ok" if code == 0 else "failed"
    return ExecutionResult(
        status=status,
        exit_code=s.get("exit_code", code),
        pipeline_run_id=s.get("pipeline_run_id"),
        run_ids=run_ids,
        failed_run_id=failed_run,
        error=s.get("error"),
    )


def run_hook(
    root: Path, spec: Schedule, result: ExecutionResult, history_id: int | None, log_path: Path
) -> int | None:
    """Run ``on_failure`` in a shell with NBOPS_SCHEDULE, NBOPS_RUN_ID, NBOPS_ERROR and
    NBOPS_HISTORY_ID set; its exit code, or None if it could not run. Never raises."""
    if not spec.on_failure:
        return None
    env = dict(os.environ)
    env.update(
        {
            envvars.SCHEDULE: spec.name,
            envvars.RUN_ID: result.failed_run_id or result.pipeline_run_id or "",
            envvars.RUN_IDS: " ".join(result.run_ids),
            envvars.PIPELINE_RUN_ID: result.pipeline_run_id or "",
            envvars.ERROR: result.error or result.status,
            envvars.STATUS: result.status,
            envvars.HISTORY_ID: "" if history_id is None else str(history_id),
            envvars.PROJECT_ROOT: str(root),
        }
    )
    try:
        with open(log_path, "ab") as out:
            out.write(f"\n--- on_failure hook: {spec.on_failure}\n".encode())
            out.flush()
            done = subprocess.run(
                spec.on_failure,
                shell=True,
                cwd=root,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=HOOK_TIMEOUT,
                check=False,
            )
    except (OSError, subprocess.SubprocessError) as exc:
        log.error("schedule %s: the on_failure hook could not run: %s", spec.name, exc)
        return None
    if done.returncode:
        log.error(
            "schedule %s: the on_failure hook exited with %d (output in %s)",
            spec.name,
            done.returncode,
            log_path,
        )
    else:
        log.info("schedule %s: on_failure hook ran", spec.name)
    return done.returncode
