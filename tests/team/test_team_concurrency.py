"""Many machines at once on one MLflow server (issue 14, item 5): eight processes logging into the
same server lose nothing, and a server killed and restarted mid-run loses nothing either.

"Machines" are project directories of their own (each its own ``.nbops/``: spools, writers,
state), all pointed at the same server. Counts are read back from the server itself.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.conftest import _reap_writers, execute, nbops_cli, notebook, outputs_text, writer_pids
from tests.team.conftest import own_server, unique
from tests.team.servers import MlflowServer, Postgres

# One logging process: start_run, wait for the gate (so that all of them log at the same time),
# N steps of two metrics, a param and a tag at the end, an artifact, end_run; prints its result.
LOGGER = r"""
import json, os, pathlib, sys, time
import nbops

exp, name, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
gate = pathlib.Path(os.environ["GATE"])
run = nbops.start_run(exp, name=name, params={"who": name}, tags={"machine": os.environ["MACHINE"]})
while not gate.exists():
    time.sleep(0.01)
for i in range(n):
    nbops.log_metric("loss", 1.0 / (i + 1), step=i)
    nbops.log_metric("acc", i / n, step=i)
nbops.log_param("steps", n)
nbops.set_tag("finished_by", name)
out = pathlib.Path(name + ".txt")
out.write_text(name)
nbops.log_artifact(out, "outputs")
ok = nbops.end_run()
print(json.dumps({"ok": ok, "run_id": run.id_if_ready()}))
"""


def _client(server: MlflowServer) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(server.url)


def _machine(base: Path, name: str, server: MlflowServer) -> tuple[Path, dict[str, str]]:
    root = base / name
    (root / ".nbops").mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "NBOPS_"))}
    env.update(server.env_for())
    env.update(NBOPS_PROJECT_ROOT=str(root), MACHINE=name, PYTHONWARNINGS="ignore", CI="1")
    return root, env


def _runs(client: Any, experiment: str) -> list[Any]:
    exp = client.get_experiment_by_name(experiment)
    return [] if exp is None else list(client.search_runs([exp.experiment_id], max_results=1000))


def _history(client: Any, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def test_eight_processes_on_two_machines_logging_at_once_lose_nothing(
    team_server: MlflowServer, tmp_path: Path, monkeypatch: Any
) -> None:
    experiment = unique("eight")
    n = 1500
    gate = tmp_path / "go"
    machines = [_machine(tmp_path, m, team_server) for m in ("machine-a", "machine-b")]
    procs: list[tuple[str, subprocess.Popen[str]]] = []
    try:
        for root, env in machines:
            for i in range(4 if root.name == "machine-a" else 3):
                name = f"{root.name}-p{i}"
                proc = subprocess.Popen(
                    [sys.executable, "-c", LOGGER, experiment, name, str(n)],
                    cwd=root,
                    env={**env, "GATE": str(gate)},
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
                procs.append((name, proc))
        # the eighth: a real kernel on machine B with %track, logging while the others do
        root_b, env_b = machines[1]
        for k, v in env_b.items():
            monkeypatch.setenv(k, v)
        nb = notebook(
            root_b / "kernel.ipynb",
            "%load_ext nbops",
            f"%track start -e {experiment} -n machine-b-kernel -t machine=machine-b",
            f"import pathlib\npathlib.Path({str(gate)!r}).touch()",  # and everyone starts
            "%%track -n fit\nlr = 0.05\nscore = 0.5 + 0.25\nprint('fitted')",
            f"import nbops\nfor i in range({n}):\n    nbops.log_metric('loss', 1.0 / (i + 1), "
            f"step=i)\n    nbops.log_metric('acc', i / {n}, step=i)\n"
            "nbops.set_tag('finished_by', 'machine-b-kernel')",
            "%track stop",
        )
        ran = execute(nb)
        assert "fitted" in outputs_text(ran.cells[3])
        results = {}
        for name, proc in procs:
            out, err = proc.communicate(timeout=240)
            assert proc.returncode == 0, f"{name}: {err[-2000:]}"
            results[name] = json.loads(out.strip().splitlines()[-1])
            assert results[name]["ok"] is True, f"{name} did not deliver everything: {err}"

        client = _client(team_server)
        runs = {r.info.run_name: r for r in _runs(client, experiment)}
        assert sorted(runs) == sorted([*results, "machine-b-kernel"])  # eight, none twice
        expected = {"loss": [(i, 1.0 / (i + 1)) for i in range(n)]}
        expected["acc"] = [(i, i / n) for i in range(n)]
        for name, run in runs.items():
            assert run.info.status == "FINISHED", name
            assert run.data.tags["machine"] == name.rsplit("-", 1)[0], name
            assert run.data.tags["finished_by"] == name
            for key, values in expected.items():
                assert _history(client, run.info.run_id, key) == values, (name, key)
            if name == "machine-b-kernel":
                assert run.data.params["lr"] == "0.05" and run.data.metrics["score"] == 0.75
                continue
            assert results[name]["run_id"] == run.info.run_id
            assert run.data.params == {"who": name, "steps": str(n)}
            arts = [a.path for a in client.list_artifacts(run.info.run_id, "outputs")]
            assert arts == [f"outputs/{name}.txt"]
        assert not any(r.info.status == "RUNNING" for r in runs.values())
        for root, _ in machines:  # every spool delivered and removed: nothing left for sync
            spools = root / ".nbops" / "spool"
            assert not any(d / "log.jsonl" for d in spools.iterdir() if (d / "log.jsonl").exists())
    finally:
        for _, proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for root, _ in machines:
            _reap_writers(root)


# A steady logger for the restart test: one metric every few ms until its stop file exists
# (then 20 more steps), so that it logs before, during and after the server is down.
STEADY = r"""
import json, os, pathlib, sys, time
import nbops

exp, name, stop = sys.argv[1], sys.argv[2], pathlib.Path(sys.argv[3])
run = nbops.start_run(exp, name=name, params={"who": name})
i, extra = 0, None
while extra is None or extra > 0:
    nbops.log_metric("value", i * 0.5, step=i)
    i += 1
    if extra is None and stop.exists():
        extra = 20
    elif extra is not None:
        extra -= 1
    time.sleep(0.004)
nbops.set_tag("steps", str(i))
ok = nbops.end_run(timeout=5)
print(json.dumps({"steps": i, "ok": ok}))
"""


def _steady(
    root: Path, env: dict[str, str], experiment: str, name: str, stop: Path
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", STEADY, experiment, name, str(stop)],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait(what: str, cond: Any, timeout: float) -> float:
    """Poll ``cond`` until true; the seconds it took."""
    t0 = time.monotonic()
    while not cond():
        assert time.monotonic() - t0 < timeout, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.1)
    return time.monotonic() - t0


def _incomplete(client: Any, experiment: str, steps: dict[str, int]) -> list[str]:
    """The runs named in ``steps`` that are not yet FINISHED in the server with each value."""
    try:
        runs = {r.info.run_name: r for r in _runs(client, experiment)}
    except Exception as exc:  # noqa: BLE001 - the server may still be starting
        return [f"server: {exc}"]
    out = []
    for name, n in steps.items():
        run = runs.get(name)
        if run is None:
            out.append(f"{name}: no run")
            continue
        got = len(client.get_metric_history(run.info.run_id, "value"))
        if run.info.status != "FINISHED" or got != n:
            out.append(f"{name}: {run.info.status}, {got} of {n} values")
    return out


def _spool_report(*roots: Path) -> str:
    lines = []
    for root in roots:
        for d in sorted((root / ".nbops" / "spool").iterdir()):
            state = (d / "state.json").read_text()[:300] if (d / "state.json").exists() else "-"
            log = d / "writer.log"
            tail = log.read_text(errors="replace").splitlines()[-3:] if log.exists() else []
            lines.append(f"{d}: {state}\n    " + "\n    ".join(t[:300] for t in tail))
    return "\n".join(lines)


def test_a_server_killed_and_restarted_mid_run_loses_nothing(
    postgres: Postgres, tmp_path: Path
) -> None:
    # one worker: uvicorn's supervisor of several kills a worker that misses its health check,
    # which on a starved machine drops requests again and again after the restart (nbops retries
    # them, losing nothing, but the test then measures the machine, not the restart)
    server = own_server(postgres, tmp_path / "server")
    experiment = unique("restart")
    root, env = _machine(tmp_path, "machine-a", server)
    # alone on its machine, so that no other writer's recovery delivers its spool for it: its
    # own writer must, after its process is gone
    root_c, env_c = _machine(tmp_path, "machine-c", server)
    killed, finish = tmp_path / "killed", tmp_path / "finish"
    procs: dict[str, subprocess.Popen[str]] = {}
    try:
        client = _client(server)
        # steady loggers through the outage; one that ends while the server is down
        for name in ("through-1", "through-2"):
            procs[name] = _steady(root, env, experiment, name, finish)
        procs["ends-while-down"] = _steady(root_c, env_c, experiment, "ends-while-down", killed)
        _wait(
            "three runs logging into the server",
            lambda: len([r for r in _runs(client, experiment) if r.data.metrics]) == 3,
            120,
        )
        server.kill()  # SIGKILL, as a crash, in the middle of everything
        killed.touch()
        # one that starts while the server is down (its run is created once it is back), and
        # one whose whole life is inside the outage (nbops sync delivers it)
        procs["starts-while-down"] = _steady(root, env, experiment, "starts-while-down", finish)
        whole = subprocess.run(
            [sys.executable, "-c", LOGGER, experiment, "whole-outage", "50"],
            cwd=root,
            env={**env, "GATE": str(killed), "PYTHONWARNINGS": "default"},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert whole.returncode == 0, whole.stderr
        # said once, as a warning naming the spool; nothing else (no traceback)
        assert "is unreachable" in whole.stderr and "nbops sync" in whole.stderr, whole.stderr
        assert "Traceback" not in whole.stderr
        assert json.loads(whole.stdout.strip().splitlines()[-1])["ok"] is False
        out, err = procs["ends-while-down"].communicate(timeout=120)
        assert procs["ends-while-down"].returncode == 0, err
        ended_down = json.loads(out.strip().splitlines()[-1])
        assert ended_down["ok"] is False  # it could not wait for the store: handed to its writer
        server.start()  # the same port, the same database
        back = time.monotonic()
        finish.touch()
        steps = {"ends-while-down": ended_down["steps"]}
        for name in ("through-1", "through-2", "starts-while-down"):
            out, err = procs[name].communicate(timeout=180)
            assert procs[name].returncode == 0, err
            steps[name] = json.loads(out.strip().splitlines()[-1])["steps"]
        # the writers deliver by themselves (within their back-off), even for the run whose
        # process ended while the server was down
        try:
            _wait(
                "every run complete in the server",
                lambda: not _incomplete(client, experiment, steps),
                180,
            )
        except AssertionError as exc:
            left = _incomplete(client, experiment, steps)
            raise AssertionError(f"{exc}: {left}\n{_spool_report(root, root_c)}") from None
        resumed = time.monotonic() - back
        # the writers' back-off is at most 15 s; the rest is the delivery itself on a busy machine
        assert resumed < 120, f"delivery resumed {resumed:.0f} s after the server was back"
        # the run that lived only inside the outage: nbops sync (or another writer) delivers it
        synced = nbops_cli("sync", cwd=root, env=env)
        assert synced.returncode == 0, synced.stdout + synced.stderr
        steps_all = {**steps, "whole-outage": 0}
        runs = {r.info.run_name: r for r in _runs(client, experiment)}
        assert sorted(runs) == sorted(steps_all)  # no run created twice
        assert not [r for r in runs.values() if r.info.status != "FINISHED"]
        for name, n in steps.items():
            run = runs[name]
            hist = _history(client, run.info.run_id, "value")
            assert hist == [(i, i * 0.5) for i in range(n)], name
            assert run.data.tags["steps"] == str(n) and run.data.params == {"who": name}
        whole_run = runs["whole-outage"]
        assert len(client.get_metric_history(whole_run.info.run_id, "loss")) == 50
        assert whole_run.data.params == {"who": "whole-outage", "steps": "50"}
        assert [a.path for a in client.list_artifacts(whole_run.info.run_id, "outputs")] == [
            "outputs/whole-outage.txt"
        ]
        for r in (root, root_c):
            _wait("the writers to exit", lambda r=r: not writer_pids(r), 30)
            assert not [d for d in (r / ".nbops" / "spool").iterdir() if (d / "log.jsonl").exists()]
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        _reap_writers(root)
        _reap_writers(root_c)
        server.stop()


# --- a pipeline on machine A, the same pipeline's schedule on machine B -------------------------
GATED = (
    "import os, pathlib, time\n"
    "gate = os.environ.get('H7_GATE')  # only machine A's run waits here: a long stage\n"
    "while gate and not pathlib.Path(gate).exists():\n"
    "    time.sleep(0.05)"
)


def _pipeline_project(root: Path, experiment: str) -> None:
    """The same small project on each machine: prep -> train (a 2-point sweep)."""
    (root / ".nbops").mkdir(parents=True)
    (root / "nbops.yaml").write_text(
        f"experiment: {experiment}\n"
        "stages:\n"
        "  prep:\n"
        "    notebook: prep.ipynb\n"
        "    params: {n: 5}\n"
        "    outs: [data.txt]\n"
        "  train:\n"
        "    notebook: train.ipynb\n"
        "    deps: [data.txt]\n"
        "    sweep: {lr: [0.1, 0.2]}\n"
        '    outs: ["model-${lr}.txt"]\n'
    )
    notebook(
        root / "prep.ipynb",
        ("n = 5", ["parameters"]),
        "import pathlib, nbops\npathlib.Path('data.txt').write_text(str(list(range(n))))\n"
        "nbops.log_metric('rows', n)",
    )
    notebook(
        root / "train.ipynb",
        ("lr = 0.1", ["parameters"]),
        GATED,
        "import pathlib, nbops\nrows = len(eval(pathlib.Path('data.txt').read_text()))\n"
        "pathlib.Path(f'model-{lr}.txt').write_text(str(lr * rows))\n"
        "nbops.log_metric('score', lr * rows)",
    )


def _state_run_ids(root: Path) -> set[str]:
    found: set[str] = set()

    def walk(x: Any) -> None:
        if isinstance(x, dict):
            for k, v in x.items():
                if k == "run_id" and isinstance(v, str):
                    found.add(v)
                else:
                    walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)

    walk(json.loads((root / ".nbops" / "pipeline" / "state.json").read_text()))
    return found


def _tree(runs: dict[str, Any], top: str) -> set[str]:
    """The run ids under ``top`` (itself included), by mlflow.parentRunId."""
    from nbops import tags

    out = {top}
    grew = True
    while grew:
        more = {
            rid
            for rid, r in runs.items()
            if r.data.tags.get(tags.MLFLOW_PARENT_RUN_ID) in out and rid not in out
        }
        out |= more
        grew = bool(more)
    return out


def test_a_pipeline_on_one_machine_and_its_schedule_on_another_keep_apart(
    team_server: MlflowServer, tmp_path: Path
) -> None:
    from nbops import tags

    experiment = unique("two-machines")
    gate = tmp_path / "release-a"
    (root_a, env_a), (root_b, env_b) = (
        _machine(tmp_path, m, team_server) for m in ("machine-a", "machine-b")
    )
    for root in (root_a, root_b):
        (root / ".nbops").rmdir()
        _pipeline_project(root, experiment)
    env_a.update(H7_GATE=str(gate), NBOPS_HEARTBEAT="1")  # A beats every second
    client = _client(team_server)
    run_a = subprocess.Popen(
        [sys.executable, "-m", "nbops", "run"],
        cwd=root_a,
        env=env_a,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def a_training() -> bool:
            return (
                len(
                    [
                        r
                        for r in _runs(client, experiment)
                        if r.data.tags.get(tags.PID) == str(run_a.pid)
                        and r.data.tags.get(tags.SWEEP_POINT)
                        and r.info.status == "RUNNING"
                    ]
                )
                >= 1
            )

        _wait("machine A's train stage to be running", a_training, 240)
        # machine B: the same pipeline, from a schedule, while A's train stage is running
        added = nbops_cli(
            "schedule", "add", "nightly", "--cron", "0 3 * * *", cwd=root_b, env=env_b
        )
        assert added.returncode == 0, added.stdout + added.stderr
        ran_b = nbops_cli("schedule", "run", "nightly", "--foreground", cwd=root_b, env=env_b)
        assert ran_b.returncode == 0, ran_b.stdout + ran_b.stderr
        # ... and B's nbops sync, as another host, with a short staleness window: A's live runs
        # stay RUNNING (their heartbeats are fresh), nothing of A's is touched
        sync_env = {**env_b, "NBOPS_STALE_AFTER": "4"}
        assert (
            time.time() * 1000 - min(r.info.start_time for r in _runs(client, experiment)) > 4000
        )  # A's runs are older than the window: only their heartbeats keep them alive
        synced = subprocess.run(
            [
                "unshare",
                "--uts",
                "sh",
                "-c",
                f"hostname machine-b && exec {sys.executable} -m nbops sync",
            ],
            cwd=root_b,
            env=sync_env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert synced.returncode == 0, synced.stdout + synced.stderr
        assert "KILLED" not in synced.stdout, synced.stdout
        live_a = [
            r
            for r in _runs(client, experiment)
            if r.data.tags.get(tags.PID) == str(run_a.pid) and r.info.status == "RUNNING"
        ]
        assert live_a, "machine A's runs were ended by machine B's sync"
        gate.touch()
        out_a, err_a = run_a.communicate(timeout=240)
        assert run_a.returncode == 0, out_a + err_a

        runs = {r.info.run_id: r for r in _runs(client, experiment)}
        assert all(r.info.status == "FINISHED" for r in runs.values()), {
            r.data.tags.get(tags.STAGE): r.info.status for r in runs.values()
        }
        assert not [r for r in runs.values() if tags.END_REASON in r.data.tags]
        tops = [r for r in runs.values() if tags.PIPELINE in r.data.tags]
        assert len(tops) == 2
        by_pid = {r.data.tags[tags.PID]: r for r in tops}
        top_a = by_pid.pop(str(run_a.pid))
        (top_b,) = by_pid.values()
        assert top_b.data.tags.get(tags.SCHEDULE) == "nightly"
        assert tags.SCHEDULE not in top_a.data.tags
        tree_a, tree_b = _tree(runs, top_a.info.run_id), _tree(runs, top_b.info.run_id)
        assert not tree_a & tree_b and tree_a | tree_b == set(runs)
        for tree, top in ((tree_a, top_a), (tree_b, top_b)):
            # pipeline run -> prep, train -> 2 points: 5 runs, each from that machine's runner
            assert len(tree) == 5
            assert {runs[r].data.tags[tags.PID] for r in tree} == {top.data.tags[tags.PID]}
            points = [runs[r] for r in tree if tags.SWEEP_POINT in runs[r].data.tags]
            assert sorted(p.data.metrics["score"] for p in points) == [0.5, 1.0]
        # each machine's state names only its own runs, and each is up to date by itself
        assert _state_run_ids(root_a) and _state_run_ids(root_a) <= tree_a
        assert _state_run_ids(root_b) and _state_run_ids(root_b) <= tree_b
        for root, env in ((root_a, env_a), (root_b, env_b)):
            status = nbops_cli("status", "--check", cwd=root, env=env)
            assert status.returncode == 0, status.stdout + status.stderr
            assert not (root / ".nbops" / "pipeline" / "executions").exists() or not list(
                (root / ".nbops" / "pipeline" / "executions").iterdir()
            )
        assert not (root_a / ".nbops" / "scheduler").exists()  # B's schedule wrote nothing on A
    finally:
        if run_a.poll() is None:
            gate.touch()
            run_a.kill()
            run_a.communicate()
        for root in (root_a, root_b):
            _reap_writers(root)
