"""Fixtures: a throwaway project with a real SQLite MLflow store, real kernels, real notebooks."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A project root with its own embedded store; env set so kernels started now use it."""
    root = tmp_path / "proj"
    (root / ".nbops").mkdir(parents=True)
    monkeypatch.setenv("NBOPS_PROJECT_ROOT", str(root))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(root)
    yield root
    from nbops.tracking import fluent

    if fluent.active_run() is not None:
        fluent.end_run()
    _reap_writers(root)


def store_uri(root: Path) -> str:
    return f"sqlite:///{root / '.nbops' / 'mlflow.db'}"


@pytest.fixture
def client(project: Path) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(store_uri(project))


def notebook(path: Path, *cells: str | tuple[str, list[str]]) -> Path:
    """Write a notebook whose code cells are ``cells`` (a (source, tags) pair tags a cell)."""
    nb_cells = []
    for i, c in enumerate(cells):
        src, tags = (c, []) if isinstance(c, str) else c
        nb_cells.append(
            {
                "cell_type": "code",
                "execution_count": None,
                "id": f"cell-{i}",
                "metadata": {"tags": tags},
                "outputs": [],
                "source": src,
            }
        )
    nb = {
        "cells": nb_cells,
        "metadata": {
            "kernelspec": {"name": "python3", "language": "python", "display_name": "Python 3"}
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    path.write_text(json.dumps(nb))
    return path


def execute(path: Path, allow_errors: bool = False, **kwargs: Any) -> Any:
    """Run a notebook in a real kernel (nbclient), in its directory; returns the executed nb."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    NotebookClient(
        nb,
        timeout=180,
        kernel_name="python3",
        allow_errors=allow_errors,
        resources={"metadata": {"path": str(path.parent)}},
        **kwargs,
    ).execute()
    return nb


def outputs_text(cell: Any) -> str:
    parts = []
    for o in cell.get("outputs", []):
        if o.get("output_type") == "stream":
            parts.append(o.get("text", ""))
        elif o.get("output_type") == "error":
            parts.append(f"{o['ename']}: {o['evalue']}\n" + "\n".join(o.get("traceback", [])))
        else:
            parts.append(str(o.get("data", {}).get("text/plain", "")))
    return "".join(parts)


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A free port for a server a test starts, below the range the kernel hands out for port 0.

    Kernels (jupyter_client binds port 0) and outgoing connections take their ports from that
    range: a server a test kills and later restarts on the same port would otherwise find a
    kernel's control socket there meanwhile, and the client retrying the dead server would send
    HTTP into it (the kernel then logs a `DELIM not in msg_list` traceback)."""
    import random

    high = min(_ephemeral_low(), 32768) - 1
    for _ in range(500):
        port = random.randint(20000, high)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as s:  # a machine with the whole range taken: any free port
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def nbops_cli(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nbops", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def writer_pids(root: Path) -> list[int]:
    """Writer processes logging into this project's spools."""
    pids = []
    marker = str(root / ".nbops" / "spool")
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "nbops.tracking.writer" in cmd and marker in cmd:
            pids.append(int(d.name))
    return pids


def _reap_writers(root: Path) -> None:
    import signal

    for pid in writer_pids(root):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def kernel_processes(where: Path, forked_only: bool = False) -> list[int]:
    """Live kernel processes working under ``where``: launched ones (ipykernel in their command
    line), those forked by the kernel zygote (named nbops-kernel), and the zygote itself."""
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().decode(errors="replace")
            comm = (d / "comm").read_text().strip()
            cwd = os.readlink(d / "cwd")
            state = (d / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        forked = comm == "nbops-kernel"
        ours = forked or (
            not forked_only and ("ipykernel" in cmd or "nbops.executors.zygote" in cmd)
        )
        if ours and state != "Z" and cwd.startswith(str(where)):
            found.append(int(d.name))
    return found


def states(out: str) -> dict[str, str]:
    """{label: last state} from nbops run's progress lines."""
    got = {}
    for line in out.splitlines():
        m = re.match(r"^\[\s*[\d.]+s\]\s+(\S+)\s+(up to date|\S+)", line)
        if m:
            got[m.group(1)] = m.group(2)
    return got
