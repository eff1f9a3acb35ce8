"""The nbops command: output, exit codes (README "Exit codes", nbops.errors.Exit) and errors."""

from __future__ import annotations

import json
import shutil

import nbops
from tests.conftest import REPO, nbops_cli


def _make_runs(project):
    ids = []
    for c in (0.5, 2.0):
        with nbops.start_run("cli", name=f"C={c}") as run:
            nbops.log_params({"C": c})
            nbops.log_metric("accuracy", 0.5 + c / 10)
        ids.append(run.id)
    return ids


def test_runs_lists_runs_with_their_metrics_and_json(project):
    ids = _make_runs(project)
    out = nbops_cli("runs", cwd=project)
    assert out.returncode == 0, out.stderr
    assert ids[0] in out.stdout and ids[1] in out.stdout and "accuracy" in out.stdout
    js = json.loads(
        nbops_cli("runs", "--json", "--filter", "metrics.accuracy > 0.6", cwd=project).stdout
    )
    assert [r["run_id"] for r in js] == [ids[1]]


def test_show_prints_params_metrics_and_tags(project):
    ids = _make_runs(project)
    out = nbops_cli("show", ids[0], cwd=project)
    assert out.returncode == 0
    assert "C = 0.5" in out.stdout and "accuracy = 0.55" in out.stdout
    assert "status      FINISHED" in out.stdout


def test_unknown_run_experiment_and_bad_filter_exit_2_with_a_hint(project):
    _make_runs(project)
    for args, needle in (
        (["show", "deadbeef"], "run id 'deadbeef' is not an MLflow run id"),
        (["show", "0" * 32], f"run '{'0' * 32}' does not exist"),
        (["runs", "-e", "nope"], "experiment 'nope' does not exist"),
        (["runs", "--filter", "metrics.acc >>> 1"], "not valid MLflow search"),
    ):
        out = nbops_cli(*args, cwd=project)
        assert out.returncode == 2, (args, out.stderr)
        assert needle in out.stderr and "hint:" in out.stderr


def test_bad_usage_exits_2(project):
    assert nbops_cli("show", cwd=project).returncode == 2
    assert nbops_cli(cwd=project).returncode == 2


def test_sync_with_nothing_to_do_says_so(project):
    out = nbops_cli("sync", cwd=project)
    assert out.returncode == 0 and "nothing to deliver" in out.stdout


def test_demo_runs_the_example_on_the_embedded_store_and_says_where_to_look(tmp_path, monkeypatch):
    """The demo prints nbops' lines only, and its closing lines paste as one block from where
    it ran: one cd, then commands that each succeed (the UI, which keeps running, is last)."""
    import subprocess

    from tests.integration.test_quiet_cli import foreign

    monkeypatch.delenv("NBOPS_PROJECT_ROOT", raising=False)
    target = tmp_path / "demo"
    out = nbops_cli("demo", "--dir", str(target), cwd=tmp_path, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    assert not foreign(out.stdout, out.stderr), foreign(out.stdout, out.stderr)
    assert (target / ".nbops" / "mlflow.db").is_file()
    tail = out.stdout.split("Where to look (paste it):\n", 1)[1]
    block = [line.strip() for line in tail.splitlines()]
    assert block[0] == "cd demo" and block[-1].startswith("nbops ui ")
    assert sum(line.startswith("cd ") for line in block) == 1
    script = "set -e\n" + "\n".join(block[:-1])  # all but the UI, pasted into a shell
    pasted = subprocess.run(
        ["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert pasted.returncode == 0, pasted.stdout + pasted.stderr
    assert "up to date" in pasted.stdout and "3 up to date" in pasted.stdout
    assert not foreign(pasted.stdout, pasted.stderr), pasted.stderr
    runs = json.loads(nbops_cli("runs", "--json", cwd=target).stdout)
    by_name = {r["name"]: r for r in runs}
    assert {"pipeline", "prepare", "train", "evaluate"} <= set(by_name)
    assert all(r["status"] == "FINISHED" for r in runs)
    assert by_name["evaluate"]["metrics.accuracy"] > 0.85
    assert (REPO / "example_notebooks" / "tracking_quickstart.ipynb").is_file()
    shutil.rmtree(target)


def _groups():
    """Every live process: pid -> (process group id, command line)."""
    from pathlib import Path

    out = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                stat = (proc / "stat").read_text()
                cmdline = (proc / "cmdline").read_text().replace("\0", " ")
            except OSError:
                continue
            out[int(proc.name)] = (int(stat.rsplit(")", 1)[1].split()[2]), cmdline)
    return out


def test_ui_serves_mlflow_ui_on_the_project_store_quietly_and_leaves_nothing_running(
    project, tmp_path
):
    """nbops ui answers MLflow's API on the project's store; it prints its own line only (no
    INFO or access lines, no Starlette deprecation warnings, no localhost notice); SIGTERM
    stops it with exit 0 and no process of MLflow's server (its job runners) survives."""
    import os
    import signal
    import subprocess
    import sys
    import time
    import urllib.request

    from tests.conftest import free_port
    from tests.integration.test_quiet_cli import foreign

    ids = _make_runs(project)
    port = free_port()
    err = open(tmp_path / "ui.err", "w+")  # noqa: SIM115 - read after the process ends
    proc = subprocess.Popen(
        [sys.executable, "-m", "nbops", "ui", "--port", str(port)],
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=err,
        text=True,
        start_new_session=True,
    )
    server_group = None
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=1):
                    break
            except OSError:
                assert proc.poll() is None, "nbops ui exited"
                assert time.monotonic() < deadline, "nbops ui did not answer in 180 s"
                time.sleep(0.25)
        server_group = next(  # MLflow's server: the group leader nbops ui started
            pid
            for pid, (pgid, cmdline) in _groups().items()
            if pgid == pid and pid != proc.pid and f"--port {port}" in cmdline
        )
        url = f"{base}/api/2.0/mlflow/runs/get?run_id={ids[0]}"
        with urllib.request.urlopen(url, timeout=10) as r:
            got = json.load(r)
        assert got["run"]["info"]["status"] == "FINISHED"
        arts = f"{base}/api/2.0/mlflow/artifacts/list?run_id={ids[0]}"
        with urllib.request.urlopen(arts, timeout=10) as r:
            assert "environment.txt" in {f["path"] for f in json.load(r)["files"]}
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
    out = proc.stdout.read()
    err.seek(0)
    errors = err.read()
    assert code == 0, errors
    assert (
        out
        == f"nbops ui: MLflow UI on http://127.0.0.1:{port} for {_uri(project)} (Ctrl-C stops it)\n"
    )
    assert not foreign(out, errors) and "GET /" not in errors and "Started" not in errors, errors
    left = [pid for pid, (pgid, _) in _groups().items() if pgid == server_group]
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, f"MLflow's server left processes running: {left}"


def _uri(project):
    return f"sqlite:///{project / '.nbops' / 'mlflow.db'}"
