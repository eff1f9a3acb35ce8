"""Nothing logged is lost: killed kernels, unreachable stores, many processes on one SQLite file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from jupyter_client.manager import start_new_kernel

from tests.conftest import REPO, free_port, nbops_cli, notebook, store_uri, writer_pids

N = 2500


def _run_in_kernel(kc, code: str) -> str:
    out: list[str] = []

    def hook(msg):
        if msg["msg_type"] == "stream":
            out.append(msg["content"]["text"])
        elif msg["msg_type"] == "error":
            out.append("\n".join(msg["content"]["traceback"]))

    reply = kc.execute_interactive(code, timeout=120, output_hook=hook)
    assert reply["content"]["status"] == "ok", "".join(out)
    return "".join(out)


@pytest.fixture
def kernel(project):
    km, kc = start_new_kernel(kernel_name="python3", cwd=str(project))
    yield km, kc
    kc.stop_channels()
    if km.is_alive():
        km.shutdown_kernel(now=True)


def _log_n_values(kc, n: int) -> None:
    _run_in_kernel(kc, "%load_ext nbops")
    _run_in_kernel(kc, "%track start -e crash")
    _run_in_kernel(
        kc,
        f"import nbops\nfor i in range({n}):\n    nbops.log_metric('v', i, step=i)\n"
        "nbops.log_param('n', 2500)",
    )


def _assert_all_values_and_not_running(client, status="KILLED"):
    exp = client.get_experiment_by_name("crash")
    (run,) = client.search_runs([exp.experiment_id])
    assert run.info.status == status
    steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, "v"))
    assert steps == list(range(N))
    assert run.data.params == {"n": "2500"}
    return run


def test_a_sigkilled_kernel_loses_nothing_and_its_run_is_marked_killed(project, client, kernel):
    km, kc = kernel
    _log_n_values(kc, N)
    os.kill(km.provisioner.process.pid, signal.SIGKILL)
    done = nbops_cli("sync", cwd=project)  # waits for the dead kernel's writer to finish
    assert done.returncode == 0, done.stderr
    run = _assert_all_values_and_not_running(client)
    assert "ended without ending the run" in run.data.tags["nbops.end_reason"]


def _orphan_a_spool(kernel, project) -> None:
    """Log N values in a kernel, then SIGKILL its writer and the kernel: only the spool is left."""
    km, kc = kernel
    _log_n_values(kc, N)
    pids = writer_pids(project)
    assert len(pids) == 1
    os.kill(pids[0], signal.SIGKILL)
    os.kill(km.provisioner.process.pid, signal.SIGKILL)
    km.provisioner.process.wait()


def test_kernel_and_writer_both_killed_then_sync_replays_the_spool(project, client, kernel):
    _orphan_a_spool(kernel, project)
    assert [d.name for d in (project / ".nbops" / "spool").iterdir()]  # data is on disk
    done = nbops_cli("sync", cwd=project)
    assert done.returncode == 0, done.stderr
    assert "marked KILLED" in done.stdout
    _assert_all_values_and_not_running(client)
    assert list((project / ".nbops" / "spool").iterdir()) == []


def test_the_next_nbops_process_on_the_store_recovers_orphans_by_itself(project, client, kernel):
    _orphan_a_spool(kernel, project)
    # any later run on the same store replays the orphan; its end_run waits for its own writer,
    # which recovers others once its own run is caught up
    code = "import nbops\nwith nbops.start_run('later'):\n    nbops.log_metric('x', 1)\n"
    subprocess.run([sys.executable, "-c", code], cwd=project, check=True, timeout=120)
    deadline = time.monotonic() + 60
    while any((project / ".nbops" / "spool").iterdir()) and time.monotonic() < deadline:
        time.sleep(0.2)  # the later process' writer finishes recovery after its own run
    _assert_all_values_and_not_running(client)


def _start_mlflow_server(port: int, workdir: Path) -> subprocess.Popen[bytes]:
    import urllib.request

    db = workdir / "server.db"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--backend-store-uri",
            f"sqlite:///{db}",
            "--artifacts-destination",
            (workdir / "server-artifacts").as_uri(),
            "--workers",
            "1",
        ],
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
                if r.status == 200:
                    return proc
        except OSError:
            pass
        if proc.poll() is not None:
            raise RuntimeError("mlflow server exited")
        time.sleep(0.25)
    os.killpg(proc.pid, signal.SIGTERM)
    raise RuntimeError("mlflow server did not answer within 90 s")


def test_an_unreachable_server_keeps_cells_working_and_sync_delivers_later(project, monkeypatch):
    from mlflow.tracking import MlflowClient

    from tests.conftest import execute, outputs_text

    port = free_port()  # nothing listens here yet
    uri = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    nb = notebook(
        project / "offline.ipynb",
        "%load_ext nbops",
        "%track start -e offline",
        "%%track -n fit\nlr = 0.5\nacc = 0.25 * 3\nprint('cell ran')",
        "import nbops\nfor i in range(300):\n    nbops.log_metric('loss', 1 / (i + 1), step=i)\n"
        "print('logged')",
        "%track stop",
    )
    out = execute(nb)
    assert "cell ran" in outputs_text(out.cells[2]) and "logged" in outputs_text(out.cells[3])
    assert "unreachable" in outputs_text(out.cells[4])
    spools = list((project / ".nbops" / "spool").iterdir())
    assert len(spools) == 1
    deadline = time.monotonic() + 30
    while writer_pids(project) and time.monotonic() < deadline:
        time.sleep(0.1)  # the writer gives up once its kernel is gone and leaves the spool
    assert writer_pids(project) == []
    server = _start_mlflow_server(port, project)
    try:
        done = nbops_cli("sync", cwd=project)
        assert done.returncode == 0, done.stdout + done.stderr
        client = MlflowClient(uri)
        (run,) = client.search_runs([client.get_experiment_by_name("offline").experiment_id])
        assert run.info.status == "FINISHED"
        assert run.data.params == {"lr": "0.5"} and run.data.metrics["acc"] == 0.75
        assert len(client.get_metric_history(run.info.run_id, "loss")) == 300
        arts = {a.path for a in client.list_artifacts(run.info.run_id, "cells/fit")}
        assert "cells/fit/source.py" in arts
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def test_sync_with_the_store_still_down_fails_clearly_and_keeps_the_spool(project, monkeypatch):
    port = free_port()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
    code = (
        "import nbops\nnbops.start_run('down')\nnbops.log_metric('m', 1)\n"
        "print(nbops.end_run(timeout=60))\n"
    )
    ran = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", code],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert ran.stdout.strip() == "False"
    deadline = time.monotonic() + 30
    while writer_pids(project) and time.monotonic() < deadline:
        time.sleep(0.1)
    done = nbops_cli("sync", "--wait", "5", cwd=project)
    assert done.returncode == 1
    assert f"127.0.0.1:{port}" in done.stderr
    assert len(list((project / ".nbops" / "spool").iterdir())) == 1


def test_eight_processes_logging_into_one_sqlite_store_lose_nothing(project, client):
    n = 1500
    code = (
        "import sys, nbops\n"
        "i = int(sys.argv[1])\n"
        "nbops.start_run('concurrent', name=f'p{i}')\n"
        "nbops.log_params({'i': i, 'kind': 'conc'})\n"
        f"for s in range({n}):\n"
        "    nbops.log_metric('m', s * i, step=s)\n"
        "print('DELIVERED' if nbops.end_run(timeout=300) else 'NOT DELIVERED')\n"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(i)],
            cwd=project,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(8)
    ]
    results = [p.communicate(timeout=600) for p in procs]
    for out, err in results:
        assert out.strip() == "DELIVERED", err
        assert "locked" not in err.lower()
    exp = client.get_experiment_by_name("concurrent")
    runs = client.search_runs([exp.experiment_id])
    assert sorted(r.info.run_name for r in runs) == [f"p{i}" for i in range(8)]
    for r in runs:
        assert r.info.status == "FINISHED"
        hist = client.get_metric_history(r.info.run_id, "m")
        assert sorted(m.step for m in hist) == list(range(n))
    assert store_uri(project).endswith("mlflow.db") and REPO.exists()


def _abandoned_run(client, **tags):
    exp = client.create_experiment("abandoned")
    run = client.create_run(exp, tags={"nbops.spool": "20260101-000000-dead", **tags})
    return run.info.run_id


def test_sync_marks_runs_of_dead_local_processes_killed(project, client):
    import socket

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    rid = _abandoned_run(client, **{"nbops.pid": str(dead.pid), "nbops.host": socket.gethostname()})
    mine = client.create_run(
        client.get_experiment_by_name("abandoned").experiment_id,
        tags={
            "nbops.spool": "x",
            "nbops.pid": str(os.getpid()),
            "nbops.host": socket.gethostname(),
        },
    )
    done = nbops_cli("sync", cwd=project)
    assert done.returncode == 0, done.stderr
    assert f"marked run {rid} KILLED" in done.stdout
    got = client.get_run(rid)
    assert got.info.status == "KILLED" and "is gone" in got.data.tags["nbops.end_reason"]
    assert client.get_run(mine.info.run_id).info.status == "RUNNING"  # its process is alive


def test_sync_marks_runs_without_a_recent_heartbeat_from_another_host_killed(project, client):
    now = int(time.time() * 1000)
    stale = _abandoned_run(
        client,
        **{"nbops.host": "elsewhere", "nbops.pid": "1", "nbops.heartbeat": str(now - 3600_000)},
    )
    fresh = client.create_run(
        client.get_experiment_by_name("abandoned").experiment_id,
        tags={
            "nbops.spool": "y",
            "nbops.host": "elsewhere",
            "nbops.pid": "1",
            "nbops.heartbeat": str(now),
        },
    ).info.run_id
    done = nbops_cli("sync", cwd=project)
    assert done.returncode == 0, done.stderr
    assert client.get_run(stale).info.status == "KILLED"
    assert "no heartbeat from elsewhere" in client.get_run(stale).data.tags["nbops.end_reason"]
    assert client.get_run(stale).info.end_time == now - 3600_000
    assert client.get_run(fresh).info.status == "RUNNING"
