"""A kernel zygote: one process that has imported ipykernel forks a fresh kernel per job.

Starting a kernel the usual way (``python -m ipykernel_launcher``) spends ~0.5-0.8 s of CPU
importing IPython, zmq, tornado and ipykernel before the kernel can answer. On 2 cores that CPU
is taken from the stages that run meanwhile. The zygote imports all of that once; each kernel is
then a ``fork()`` (~2 ms) followed by the kernel's own set-up (~0.15 s). Every job still gets a
new process with nothing of another job's in it: isolation is what a fresh kernel gives, less
the import time.

Protocol: the runner writes one JSON line per kernel to the zygote's stdin
(``{"argv": [...], "env": {...}, "cwd": "..."}``) and reads ``{"pid": N}`` (or ``{"error": ...}``)
from its stdout. End of stdin (the runner exited, however it exited) makes the zygote kill every
kernel it forked and exit. Each kernel leads its own process group and dies with the zygote
(``PR_SET_PDEATHSIG``).

``ZygoteProvisioner`` plugs this into jupyter_client as a kernel provisioner, so papermill and
nbclient drive forked kernels exactly like launched ones. What it relies on of LocalProvisioner's
internals is reached through ``nbops.executors.compat``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from jupyter_client.provisioning.local_provisioner import LocalProvisioner

from nbops import envvars
from nbops.executors import compat

PRELOAD = (
    "ipykernel.kernelapp",
    "ipykernel.ipkernel",
    "ipykernel.zmqshell",
    "ipykernel.debugger",
    "IPython.core.interactiveshell",
    "IPython.core.completer",
    "jupyter_client.session",
    "comm",
)


# --- the zygote process ---------------------------------------------------------------------
def _serve() -> None:
    import importlib

    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - a missing optional part: the kernel imports it itself
            pass
    children: set[int] = set()

    def reap(signum: int, frame: Any) -> None:
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            children.discard(pid)

    signal.signal(signal.SIGCHLD, reap)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the runner decides when kernels stop
    out = sys.stdout
    for line in sys.stdin:
        try:
            req = json.loads(line)
            pid = os.fork()
        except (ValueError, OSError, RecursionError) as exc:
            out.write(json.dumps({"error": str(exc)}) + "\n")
            out.flush()
            continue
        if pid == 0:
            _become_kernel(req)  # never returns
        children.add(pid)
        out.write(json.dumps({"pid": pid}) + "\n")
        out.flush()
    for pid in list(children):  # the runner is gone: so are its kernels
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass


def _become_kernel(req: dict[str, Any]) -> None:
    code = 1
    try:
        os.setsid()
        _die_with_parent()
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        devnull = os.open(os.devnull, os.O_RDWR)
        os.dup2(devnull, 0)
        os.dup2(2, 1)  # never write into the protocol pipe
        os.close(devnull)
        sys.stdin = open(os.devnull)  # noqa: SIM115 - the kernel's own stdin for its lifetime
        sys.stdout = os.fdopen(1, "w", buffering=1, closefd=False)
        cwd = req.get("cwd") or os.getcwd()
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(req.get("env") or {})
        sys.path[0] = cwd  # as `python -m ipykernel_launcher` started in cwd would have it
        sys.argv = ["ipykernel_launcher", *req.get("argv", [])]
        from ipykernel import kernelapp

        kernelapp.launch_new_instance(argv=list(req.get("argv", [])))
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException as exc:  # noqa: BLE001 - report it, then leave without the zygote's code
        import errno

        if getattr(exc, "errno", None) == errno.EADDRINUSE:
            code = 98  # a port taken meanwhile: the LocalExecutor starts another kernel, silently
        else:
            import traceback

            traceback.print_exc()
    finally:
        os._exit(code)


def _die_with_parent() -> None:
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        libc.prctl(15, b"nbops-kernel", 0, 0, 0)  # PR_SET_NAME: what ps and top show
    except Exception:  # noqa: BLE001 - not Linux: the EOF rule still ends kernels
        pass


# --- the runner's side ----------------------------------------------------------------------
class Zygote:
    """The runner's handle on its zygote process (started on first use)."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen[str] | None = None
        self._lock = threading.Lock()

    def _ensure(self) -> subprocess.Popen[str]:
        if self._proc is None or self._proc.poll() is not None:
            env = dict(os.environ)
            env[envvars.JPY_PARENT_PID] = str(os.getpid())  # what ipykernel reads at import
            env.setdefault(envvars.PYDEVD_DISABLE_FILE_VALIDATION, "1")
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "nbops.executors.zygote"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                env=env,
                start_new_session=True,  # Ctrl-C reaches the runner, which stops kernels itself
            )
        return self._proc

    def fork(self, argv: list[str], env: dict[str, str], cwd: str) -> int:
        with self._lock:
            proc = self._ensure()
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write(json.dumps({"argv": argv, "env": env, "cwd": cwd}) + "\n")
            proc.stdin.flush()
            line = proc.stdout.readline()
        if not line:
            raise RuntimeError("the kernel zygote exited")
        reply = json.loads(line)
        if "pid" not in reply:
            raise RuntimeError(f"the kernel zygote could not fork: {reply.get('error')}")
        return int(reply["pid"])

    def close(self) -> None:
        with self._lock:
            proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            assert proc.stdin is not None
            proc.stdin.close()  # EOF: the zygote kills its kernels and exits
        except OSError:
            pass
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class ForkedKernel:
    """What jupyter_client's LocalProvisioner expects of a ``Popen`` (``compat.PROCESS_CALLS``),
    for a forked kernel (a child of the zygote, which reaps it: gone from the process table means
    it ended)."""

    stdin = stdout = stderr = None

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                os.kill(self.pid, 0)
                state = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
                if state in ("Z", "X"):  # exited, not reaped yet
                    self.returncode = -signal.SIGKILL
            except (ProcessLookupError, FileNotFoundError):
                self.returncode = -signal.SIGKILL  # its exit status belongs to the zygote
            except OSError:
                pass
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        import time

        end = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if end is not None and time.monotonic() > end:
                raise subprocess.TimeoutExpired(f"kernel {self.pid}", timeout or 0)
            time.sleep(0.02)
        return int(self.returncode or 0)

    def send_signal(self, sig: int) -> None:
        if self.poll() is not None:
            return  # gone already (killed when its job ended): nothing to signal
        try:
            os.kill(self.pid, sig)
        except ProcessLookupError:
            pass

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)


class ZygoteProvisioner(LocalProvisioner):
    """Launches ``python -m ipykernel_launcher ...`` kernels of this interpreter by forking the
    zygote; anything else (another interpreter, another kernel) launches as usual."""

    zygote: Zygote | None = None

    async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> Any:
        zygote = self.zygote
        if zygote is None or not _is_our_ipykernel(cmd):
            return await super().launch_kernel(cmd, **kwargs)
        cwd = str(kwargs.get("cwd") or os.getcwd())
        env = {str(k): str(v) for k, v in (kwargs.get("env") or os.environ).items()}
        # warnings of the kernel application (e.g. "running over TCP without encryption", on
        # every start) are noise between nbops' own lines; errors still show
        pid = zygote.fork([*cmd[3:], "--IPKernelApp.log_level=ERROR"], env, cwd)
        compat.adopt_process(self, ForkedKernel(pid), cwd)
        return self.connection_info


def _is_our_ipykernel(cmd: list[str]) -> bool:
    if len(cmd) < 3 or cmd[1:3] != ["-m", "ipykernel_launcher"]:
        return False
    exe = cmd[0]
    if exe in ("python", "python3"):
        return True
    try:
        return os.path.samefile(exe, sys.executable)
    except OSError:
        return False


if __name__ == "__main__":
    _serve()
