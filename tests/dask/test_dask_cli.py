"""``nbops run --dask``: which cluster it uses (``--dask`` > ``NBOPS_DASK`` > nbops.yaml's
``dask: {scheduler:}``), what it says when it cannot use it (exit 2, one message, nothing run,
no run made), and what a run on the shared cluster shows: the worker of each point on its row
and as the tag ``nbops.worker``, the executor's report after the summary; a no-op re-run never
connects.

Every project here sits under ``dask_hidden`` (the workers see it empty) and is a small one of
its own: a 2-point sweep writing one file per point, then a stage that asks for the GPU worker.
"""

from __future__ import annotations

import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from nbops import envvars, tags
from tests.conftest import free_port, nbops_cli, notebook, states, store_uri
from tests.dask.cluster import Cluster, WorkerSpec, own_cluster
from tests.dask.conftest import dask_env

YAML = """\
experiment: h3-cli
stages:
  make:
    notebook: make.ipynb
    outs: ["out/p${seed}.txt"]
    sweep: {seed: [1, 2]}
  gpu:
    notebook: gpu.ipynb
    deps: [out]
    outs: [report.txt]
    resources: {GPU: 1}
"""


def small_project(hidden: Path, extra: str = "") -> Path:
    root = hidden / f"cli-{uuid.uuid4().hex[:8]}"
    (root / ".nbops").mkdir(parents=True)
    (root / "nbops.yaml").write_text(YAML + extra)
    notebook(
        root / "make.ipynb",
        ("seed = 0", ["parameters"]),
        "import os, nbops\n"
        "os.makedirs('out', exist_ok=True)\n"
        "open(f'out/p{seed}.txt', 'w').write(f'point {seed}')\n"
        "nbops.log_metric('twice', 2 * seed)",
    )
    notebook(
        root / "gpu.ipynb",
        "import pathlib\n"
        "seen = sorted(p.read_text() for p in pathlib.Path('out').glob('p*.txt'))\n"
        "pathlib.Path('report.txt').write_text(';'.join(seen))",
    )
    return root


def _clients(dask_scheduler: Any) -> list[str]:
    """The clients connected to a scheduler (run on it)."""
    return [str(c) for c in dask_scheduler.clients if not str(c).startswith("fire-and-forget")]


def made(root: Path) -> list[str]:
    """What an execution leaves: outs, the state, spools, executed notebooks, the store."""
    nbops_dir = root / ".nbops"
    found = [str(p.relative_to(root)) for p in (root / "out", root / "report.txt") if p.exists()]
    for name in ("pipeline/state.json", "spool", "runs", "mlflow.db"):
        p = nbops_dir / name
        if p.exists() and (p.is_file() or any(p.iterdir())):
            found.append(f".nbops/{name}")
    return found


def test_an_unreachable_scheduler_exits_2_naming_it_and_makes_nothing(dask_hidden: Path) -> None:
    root = small_project(dask_hidden, "dask: {scheduler: 'tcp://127.0.0.1:0'}\n")  # never used
    address = f"tcp://127.0.0.1:{free_port()}"  # nothing listens there
    env = {**dask_env(root), envvars.DASK: "not an address"}  # --dask comes first: never used
    out = nbops_cli("run", "--dask", address, cwd=root, env=env, timeout=120)
    assert out.returncode == 2, out
    assert "Traceback" not in out.stderr + out.stdout, out.stderr
    assert address in out.stderr and "dask scheduler" in out.stderr, out.stderr
    assert "not an address" not in out.stderr and "127.0.0.1:0" not in out.stderr
    assert not re.search(r"\brunning\b", out.stdout), out.stdout  # no row ever ran
    assert made(root) == [], made(root)  # no out, no state, no spool, no run, no store


def test_the_address_comes_from_dask_then_the_variable_then_nbops_yaml(dask_hidden: Path) -> None:
    """Three malformed addresses, one per source: the error names the one that is used, and
    where it came from (the file's line for nbops.yaml); nothing is run or connected."""
    root = small_project(dask_hidden, "dask:\n  scheduler: tcp://from-yaml\n")
    env = {**dask_env(root), envvars.DASK: "from-variable:99999"}
    first = nbops_cli("run", "--dask", "http://from-cli:1", cwd=root, env=env, timeout=120)
    second = nbops_cli("run", cwd=root, env=env, timeout=120)
    del env[envvars.DASK]
    third = nbops_cli("run", cwd=root, env=env, timeout=120)
    for out in (first, second, third):
        assert out.returncode == 2 and "Traceback" not in out.stderr, out
        assert "is not a dask scheduler address" in out.stderr, out.stderr
    assert "--dask: 'http://from-cli:1'" in first.stderr and "tcp://HOST:PORT" in first.stderr
    assert "from-variable" not in first.stderr and "from-yaml" not in first.stderr
    assert f"{envvars.DASK}: 'from-variable:99999'" in second.stderr, second.stderr
    assert "from-yaml" not in second.stderr
    assert "nbops.yaml:13: 'tcp://from-yaml'" in third.stderr, third.stderr  # its line
    bad_local = nbops_cli("run", "--dask", "local:0", cwd=root, env=env, timeout=120)
    assert bad_local.returncode == 2 and "local:N" in bad_local.stderr, bad_local
    assert "from 1 to 64" in bad_local.stderr and "Traceback" not in bad_local.stderr
    assert made(root) == [], made(root)


def test_a_run_on_the_cluster_says_where_each_point_ran_and_a_no_op_rerun_connects_nowhere(
    dask_cluster: Cluster, dask_hidden: Path
) -> None:
    from mlflow.tracking import MlflowClient

    root = small_project(dask_hidden)
    env = dask_env(root)
    workers = {name: w["address"] for name, w in dask_cluster.worker_info().items()}
    out = nbops_cli("run", "--dask", dask_cluster.address, cwd=root, env=env, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr + dask_cluster.log_text()
    assert states(out.stdout) == {
        "make[seed=1]": "done",
        "make[seed=2]": "done",
        "make": "done",
        "gpu": "done",
    }, out.stdout
    assert (root / "report.txt").read_text() == "point 1;point 2"
    # each point's row names its worker, by name and address, while it runs and once done
    placed = dict(
        re.findall(r"^\[.*?\]\s+(\S+)\s+done\s+in [\d.]+ s on (\S+) \(", out.stdout, re.M)
    )
    assert placed["gpu"] == "w1", out.stdout  # the only worker with a GPU
    assert set(placed.values()) == {"w0", "w1"}, out.stdout  # the two points ran side by side
    for name, address in workers.items():
        assert f"on {name} ({address})" in out.stdout
    # the executor's report: the line after the summary
    lines = out.stdout.splitlines()
    summary = next(i for i, ln in enumerate(lines) if ln.startswith("nbops run: "))
    assert summary + 1 < len(lines) and lines[summary + 1].startswith("dask: "), out.stdout
    # every point's run carries the address of the worker its row named
    client = MlflowClient(store_uri(root))
    exp = client.get_experiment_by_name("h3-cli")
    runs = client.search_runs([exp.experiment_id])
    by_label = {
        r.data.tags.get(tags.SWEEP_POINT) or r.data.tags.get(tags.STAGE, "pipeline"): r
        for r in runs
    }
    for label in ("make[seed=1]", "make[seed=2]", "gpu"):
        assert by_label[label].data.tags[tags.WORKER] == workers[placed[label]], label
        assert by_label[label].info.status == "FINISHED"
    assert tags.WORKER not in by_label["make"].data.tags  # a sweep's run ran nowhere itself
    shown = nbops_cli("show", by_label["gpu"].info.run_id, cwd=root, env=env, timeout=120)
    assert f"{tags.WORKER} = {workers['w1']}" in shown.stdout, shown
    # a no-op re-run touches no worker: an unreachable scheduler is never asked
    env[envvars.DASK] = f"tcp://127.0.0.1:{free_port()}"
    again = nbops_cli("run", cwd=root, env=env, timeout=120)
    assert again.returncode == 0, again
    assert set(states(again.stdout).values()) == {"up to date"}, again.stdout
    assert "unreachable" not in again.stderr and "dask:" not in again.stdout
    status = nbops_cli("status", "--check", cwd=root, env=env, timeout=120)
    assert status.returncode == 0 and "everything is up to date" in status.stdout, status


def test_nbops_run_without_a_cluster_imports_nothing_of_dask(dask_hidden: Path) -> None:
    """Without --dask, NBOPS_DASK or dask: nothing of the executor is imported; with one named,
    its address is checked (dask_exec, standard library) but dask waits for a stage to run."""
    root = small_project(dask_hidden)
    probe = (
        "import sys\n"
        "from pathlib import Path\n"
        "from nbops.pipeline.runner import Runner\n"
        f"assert Runner(Path({str(root)!r})).run(dry_run=True) == 0\n"
        "print(sorted(m for m in ('dask', 'distributed', 'nbops.executors.dask_exec') "
        "if m in sys.modules))\n"
    )
    env = dask_env(root)
    plain = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=False
    )
    assert plain.returncode == 0 and plain.stdout.splitlines()[-1] == "[]", plain
    env[envvars.DASK] = "tcp://127.0.0.1:1"
    named = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=False
    )
    assert named.returncode == 0, named
    assert named.stdout.splitlines()[-1] == "['nbops.executors.dask_exec']", named


def test_ctrl_c_while_waiting_for_a_worker_stops_at_once_and_makes_nothing(
    tmp_path: Path, dask_hidden: Path
) -> None:
    """A scheduler without workers makes the connection wait (for a worker to join): Ctrl-C
    then stops nbops at once (exit 130), as before anything ran, leaving nothing behind."""
    import os
    import signal
    import time

    from nbops.errors import Exit

    root = small_project(dask_hidden)
    with own_cluster(tmp_path / "c", dask_hidden, [WorkerSpec("gone")]) as bare:
        gone = bare.workers["gone"]  # its nanny and worker stop: the scheduler has none left
        os.killpg(gone.pid, signal.SIGTERM)
        gone.wait(30)
        with bare.client() as watcher:
            deadline = time.monotonic() + 60
            while watcher.scheduler_info(n_workers=-1)["workers"]:
                assert time.monotonic() < deadline, "the worker never left"
                time.sleep(0.05)  # polling the scheduler until it has seen the worker go
        code = (
            "import signal, sys\n"
            # a background job's SIGINT is ignored: give the process a terminal's Ctrl-C
            "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
            "from nbops import cli\n"
            f"sys.exit(cli.main(['run', '--dask', {bare.address!r}]))\n"
        )
        proc = subprocess.Popen(
            [sys.executable, "-c", code],
            cwd=root,
            env=dask_env(root),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        with bare.client() as watcher:  # until nbops is connected and waiting for a worker
            deadline = time.monotonic() + 60
            while len(watcher.run_on_scheduler(_clients)) < 2:  # the watcher and nbops
                assert proc.poll() is None, proc.communicate()
                assert time.monotonic() < deadline, "nbops never connected"
                time.sleep(0.05)  # polling the scheduler for the second client
        t0 = time.monotonic()
        os.kill(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        took = time.monotonic() - t0
    assert proc.returncode == Exit.INTERRUPTED, (out, err)
    assert err.strip().endswith("nbops run: interrupted") and "Traceback" not in err, err
    assert took < 10, took  # not the 30 s a worker is waited for
    assert made(root) == [], made(root)
