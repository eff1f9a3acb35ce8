"""What ``nbops run --dask`` does when things go wrong, with real processes: a worker SIGKILLed
mid-stage (retried on the other worker, or failed naming it with ``retries: 0``), Ctrl-C (runs
KILLED, nothing left on the cluster), a package the workers lack, a scheduler nobody started.

A test that kills a worker or interrupts a stage has a cluster of its own (``own_cluster``). The
projects live under ``dask_hidden`` (empty for every worker); the markers a stage writes to say
"I am in my long cell" live under ``tmp_path``, which the workers do see.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from nbops import tags
from tests.conftest import free_port, notebook, states
from tests.dask.cluster import Cluster, WorkerSpec, own_cluster
from tests.dask.conftest import dask_env

YAML = """\
experiment: faults
stages:
  slow:
    notebook: slow.ipynb
    params: {{marker: "{marker}"}}
    outs: [out/slow.txt]{extra}
  after:
    notebook: after.ipynb
    deps: [out/slow.txt]
    outs: [out/after.txt]
"""

# The first attempt writes its kernel's pid to the marker (atomically) and waits; an attempt that
# finds the marker (a retry) goes on at once.
SLOW = (
    "import os, time\nfrom pathlib import Path\nimport nbops\n"
    "m = Path(marker)\nfirst = not m.exists()\n"
    "if first:\n"
    "    tmp = m.with_name(m.name + '.tmp')\n"
    "    tmp.write_text(str(os.getpid()))\n"
    "    os.replace(tmp, m)\n"
    "    time.sleep(120)\n"
    "Path('out').mkdir(exist_ok=True)\nPath('out/slow.txt').write_text('slow')\n"
    "nbops.log_metric('first_attempt', int(first))"
)
AFTER = (
    "from pathlib import Path\n"
    "Path('out/after.txt').write_text(Path('out/slow.txt').read_text() + ' after')"
)


def project(hidden: Path, marker: Path, extra: str = "") -> Path:
    root = hidden / f"faults-{uuid.uuid4().hex[:8]}"
    (root / ".nbops").mkdir(parents=True)
    (root / "nbops.yaml").write_text(YAML.format(marker=marker, extra=extra))
    notebook(root / "slow.ipynb", ("marker = ''", ["parameters"]), SLOW)
    notebook(root / "after.ipynb", AFTER)
    return root


def nbops_argv(*args: str) -> list[str]:
    # a shell's background job ignores SIGINT and Python then installs no KeyboardInterrupt
    # handler: give the process a terminal's Ctrl-C (see tests/integration/test_cli_errors.py)
    code = (
        "import signal, sys\n"
        "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "from nbops.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    return [sys.executable, "-c", code, *args]


def start(root: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        nbops_argv(*args),
        cwd=root,
        env=env or dask_env(root),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def run(root: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    out = subprocess.run(
        nbops_argv(*args),
        cwd=root,
        env=env or dask_env(root),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    return out.returncode, out.stdout + out.stderr


def wait_for_marker(marker: Path, proc: subprocess.Popen[str]) -> int:
    """The kernel pid the stage wrote once it is in its long cell."""
    deadline = time.monotonic() + 120
    while not marker.exists():
        if proc.poll() is not None:
            assert proc.stdout is not None
            pytest.fail(f"nbops run ended ({proc.returncode}) first:\n{proc.stdout.read()}")
        assert time.monotonic() < deadline, "the stage never reached its long cell"
        time.sleep(0.05)  # polling for a file another process writes
    return int(marker.read_text())


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def ancestors(pid: int) -> list[int]:
    chain = []
    while pid > 1:
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except OSError:
            break
        chain.append(pid)
    return chain


def worker_of(cluster: Cluster, kernel: int) -> tuple[str, str]:
    """(name, address) of the worker whose process is an ancestor of ``kernel``."""
    up = ancestors(kernel)
    found = [(n, w["address"]) for n, w in cluster.worker_info().items() if w["pid"] in up]
    assert len(found) == 1, (kernel, up, cluster.worker_info())
    return found[0]


def wait_until(what: str, check: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)  # polling a state another process changes


@contextmanager
def reaping(pid_file: Path) -> Iterator[None]:
    """At the end, SIGKILL the kernel pid ``pid_file`` names if a failing test left it."""
    try:
        yield
    finally:
        if pid_file.exists():
            pid = int(pid_file.read_text())
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def stage_runs(root: Path, stage: str) -> list[Any]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{root / '.nbops' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("faults")
    assert exp is not None
    return client.search_runs([exp.experiment_id], f"tags.`{tags.STAGE}` = '{stage}'")


TWO = [WorkerSpec("north"), WorkerSpec("south")]


def test_a_worker_killed_mid_stage_is_retried_on_the_other_one(
    tmp_path: Path, dask_hidden: Path
) -> None:
    marker = tmp_path / "marker"
    root = project(dask_hidden, marker)
    with own_cluster(tmp_path / "c", dask_hidden, TWO) as cluster, reaping(marker):
        proc = start(root, "run", "--dask", cluster.address, "--summary", "s.json")
        kernel = wait_for_marker(marker, proc)
        name, address = worker_of(cluster, kernel)
        (survivor,) = [w["address"] for n, w in cluster.worker_info().items() if n != name]
        cluster.kill_worker(name)
        out = proc.communicate(timeout=240)[0]
        assert proc.returncode == 0, out + cluster.log_text()
        assert states(out) == {"slow": "done", "after": "done"}, out
        assert name in out or address in out, out  # the table said which worker died
        (r,) = stage_runs(root, "slow")
        assert r.info.status == "FINISHED"
        assert r.data.tags[tags.WORKER] == survivor != address
        assert r.data.metrics["first_attempt"] == 0  # the retry ran the notebook again
        assert (root / "out" / "after.txt").read_text() == "slow after"
        # the killed worker's kernel went with it
        wait_until(
            f"the kernel {kernel} of the killed worker is still running", lambda: not alive(kernel)
        )


def test_a_killed_worker_with_no_retries_fails_the_stage_naming_it(
    tmp_path: Path, dask_hidden: Path
) -> None:
    marker = tmp_path / "marker"
    root = project(dask_hidden, marker, "\n    retries: 0")
    with own_cluster(tmp_path / "c", dask_hidden, TWO) as cluster, reaping(marker):
        proc = start(root, "run", "--dask", cluster.address, "--summary", "s.json")
        kernel = wait_for_marker(marker, proc)
        name, address = worker_of(cluster, kernel)
        cluster.kill_worker(name)
        out = proc.communicate(timeout=240)[0]
        assert proc.returncode == 1, out
        assert "Traceback" not in out, out
        assert states(out) == {"slow": "failed", "after": "skipped"}, out
        assert name in out or address in out, out
        (r,) = stage_runs(root, "slow")
        assert r.info.status == "FAILED", r.info.status
        assert stage_runs(root, "after") == []
        summary = json.loads((root / "s.json").read_text())
        assert summary["exit_code"] == 1 and summary["stages"]["after"]["status"] == "skipped"
        assert name in summary["error"] or address in summary["error"], summary
        assert not (root / "out" / "slow.txt").exists()


def test_ctrl_c_cancels_the_cluster_job_and_marks_the_run_killed(
    tmp_path: Path, dask_hidden: Path
) -> None:
    marker = tmp_path / "marker"
    root = project(dask_hidden, marker)
    with own_cluster(tmp_path / "c", dask_hidden, TWO) as cluster, reaping(marker):
        proc = start(root, "run", "--dask", cluster.address, "--summary", "s.json")
        kernel = wait_for_marker(marker, proc)
        proc.send_signal(signal.SIGINT)
        out = proc.communicate(timeout=120)[0]
        assert proc.returncode == 130, out
        assert "Traceback" not in out, out
        assert "killed" in out, out
        (r,) = stage_runs(root, "slow")
        assert r.info.status == "KILLED"
        summary = json.loads((root / "s.json").read_text())
        assert summary["status"] == "killed" and summary["exit_code"] == 130
        # nothing left on the cluster: no kernel, no task
        wait_until(f"the stage's kernel {kernel} outlived Ctrl-C", lambda: not alive(kernel))
        with cluster.client() as c:
            wait_until(
                "the scheduler still holds tasks",
                lambda: c.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks)) == 0,
            )
        assert len(cluster.worker_info()) == 2  # and the workers are fine


def test_a_package_the_workers_lack_is_named_with_the_worker(
    tmp_path: Path, dask_hidden: Path, dask_cluster: Cluster
) -> None:
    """The package is importable where nbops runs (PYTHONPATH), not on the workers."""
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "only_here_pkg.py").write_text("VALUE = 42\n")
    root = dask_hidden / f"imports-{uuid.uuid4().hex[:8]}"
    (root / ".nbops").mkdir(parents=True)
    (root / "nbops.yaml").write_text(
        "experiment: faults\nstages:\n  uses:\n    notebook: uses.ipynb\n    outs: [v.txt]\n"
    )
    notebook(
        root / "uses.ipynb",
        "import only_here_pkg\nopen('v.txt', 'w').write(str(only_here_pkg.VALUE))",
    )
    env = {**dask_env(root), "PYTHONPATH": str(lib)}
    code, local = run(root, "run", env=env)
    assert code == 0, local  # it works here
    names = {w["address"]: n for n, w in dask_cluster.worker_info().items()}
    code, out = run(root, "run", "--force", "--dask", dask_cluster.address, env=env)
    assert code == 1, out
    assert "Traceback" not in out.split("only_here_pkg")[0], out
    assert "only_here_pkg" in out, out
    (r,) = [r for r in stage_runs(root, "uses") if r.info.status == "FAILED"]
    worker = r.data.tags.get(tags.WORKER)
    assert worker in names, r.data.tags
    assert names[worker] in out or worker in out, out  # which worker lacks it


def test_an_unreachable_scheduler_is_exit_2_naming_it_and_how_to_start_one(
    tmp_path: Path, dask_hidden: Path
) -> None:
    root = project(dask_hidden, tmp_path / "never")
    nowhere = [f"tcp://127.0.0.1:{free_port()}" for _ in range(3)]
    # --dask, then NBOPS_DASK, then nbops.yaml's dask: {scheduler:}: the message names the one used
    yaml = (root / "nbops.yaml").read_text()
    (root / "nbops.yaml").write_text(yaml + f"dask:\n  scheduler: {nowhere[2]}\n")
    env = dask_env(root)
    cases = [
        (["--dask", nowhere[0]], {**env, "NBOPS_DASK": nowhere[1]}, nowhere[0]),
        ([], {**env, "NBOPS_DASK": nowhere[1]}, nowhere[1]),
        ([], env, nowhere[2]),
    ]
    for args, case_env, address in cases:
        t = time.monotonic()
        code, out = run(root, "run", *args, env=case_env)
        assert code == 2, out
        assert address in out and "dask scheduler" in out, out
        assert "Traceback" not in out, out
        assert time.monotonic() - t < 60, "it waited too long for a scheduler that is not there"
    assert not (root / ".nbops" / "runs").exists() or not any((root / ".nbops" / "runs").iterdir())
    code, out = run(root, "run", "--dask", "local:zero")
    assert code == 2 and "local:zero" in out and "Traceback" not in out, out
