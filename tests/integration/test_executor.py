"""The local executor: fresh kernels forked by the zygote, with the job's folder and
environment, and nothing left behind when the runner dies."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from nbops.executors.base import StageJob
from nbops.executors.local import LocalExecutor
from tests.conftest import kernel_processes, notebook

PROBE = (
    "import json, os, sys\n"
    "import helper  # a module beside the notebook's working folder\n"
    "print('hello from the first cell')\n"
    "seen_before = 'leftover' in globals()\n"
    "leftover = 1\n"
    "json.dump(dict(pid=os.getpid(), cwd=os.getcwd(), "
    "env=os.environ.get('JOB_MARK'), seen_before=seen_before, i=i, helper=helper.X), "
    "open(f'probe-{i}.json', 'w'))"
)


def _jobs(tmp: Path, n: int) -> list[StageJob]:
    work = tmp / "work"
    work.mkdir()
    (work / "helper.py").write_text("X = 42\n")
    nb = notebook(tmp / "probe.ipynb", ("i = 0", ["parameters"]), PROBE)
    return [
        StageJob(
            "probe",
            f"probe[{i}]",
            nb,
            tmp / "out" / f"{i}.ipynb",
            {"i": i},
            work,
            {"JOB_MARK": f"m{i}"},
        )
        for i in range(n)
    ]


def _run_all(tmp: Path, jobs: list[StageJob]) -> list[dict]:
    ex = LocalExecutor(tmp, warm=2)
    try:
        for job in jobs:
            res = ex.execute(job)
            assert res.ok, res.error
    finally:
        ex.stop()
    return [json.loads((jobs[0].cwd / f"probe-{i}.json").read_text()) for i in range(len(jobs))]


def test_each_job_gets_a_fresh_forked_kernel_in_its_folder_with_its_environment(tmp_path):
    jobs = _jobs(tmp_path, 3)
    probes = _run_all(tmp_path, jobs)
    assert len({p["pid"] for p in probes}) == 3  # a new process per job
    work = str(jobs[0].cwd)
    for i, p in enumerate(probes):
        assert p["cwd"] == work and p["helper"] == 42
        assert p["env"] == f"m{i}" and p["i"] == i
        assert p["seen_before"] is False  # nothing of an earlier job's namespace
    out = json.loads(jobs[0].output.read_text())
    streams = [
        o for c in out["cells"] for o in c.get("outputs", []) if o["output_type"] == "stream"
    ]
    assert any("hello from the first cell" in "".join(o["text"]) for o in streams)  # IOPub joined
    assert kernel_processes(tmp_path) == []  # stop() leaves no kernel and no zygote


def test_launched_kernels_when_the_zygote_is_turned_off(tmp_path, monkeypatch):
    monkeypatch.setenv("NBOPS_ZYGOTE", "0")
    jobs = _jobs(tmp_path, 2)
    probes = _run_all(tmp_path, jobs)
    assert [p["env"] for p in probes] == ["m0", "m1"]
    assert probes[0]["pid"] != probes[1]["pid"]


RUNNER = """
import sys
from pathlib import Path
from nbops.executors.base import StageJob
from nbops.executors.local import LocalExecutor
tmp = Path(sys.argv[1])
nb = tmp / "slow.ipynb"
ex = LocalExecutor(tmp, warm=1)
ex.execute(StageJob("slow", "slow", nb, tmp / "out.ipynb", {}, tmp, {}))
"""


def test_a_runner_killed_with_sigkill_leaves_no_kernel_behind(tmp_path):
    notebook(tmp_path / "slow.ipynb", "import time\nopen('started', 'w').close()\ntime.sleep(600)")
    proc = subprocess.Popen([sys.executable, "-c", RUNNER, str(tmp_path)], cwd=tmp_path)
    deadline = time.monotonic() + 120
    while not (tmp_path / "started").exists():
        assert proc.poll() is None and time.monotonic() < deadline, "the job never started"
        time.sleep(0.05)
    assert kernel_processes(tmp_path)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 30  # the zygote sees its stdin close and kills the kernel
    while kernel_processes(tmp_path):
        assert time.monotonic() < deadline, f"left behind: {kernel_processes(tmp_path)}"
        time.sleep(0.05)


WATCH_CWD = """
import json, os, sys, threading
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from nbops.executors.local import LocalExecutor
from tests.integration.test_executor import _jobs

tmp = Path(sys.argv[1])
os.chdir(tmp)
jobs = _jobs(tmp, 4)
for i, job in enumerate(jobs):  # each job in a folder of its own
    job.cwd = tmp / f"w{i}"
    job.cwd.mkdir()
    (job.cwd / "helper.py").write_text("X = 42\\n")
seen = set()
stop = threading.Event()

def watch():
    while not stop.is_set():
        seen.add(os.getcwd())

watcher = threading.Thread(target=watch)
watcher.start()
ex = LocalExecutor(tmp, warm=2)
try:
    threads = [threading.Thread(target=lambda j=j: ex.execute(j)) for j in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
finally:
    stop.set()
    watcher.join()
    ex.stop()
print(json.dumps(sorted(seen)))
"""


def test_parallel_jobs_leave_the_runners_working_directory_alone(tmp_path):
    """In a process of its own (a thread left by another test of this session could move the
    pytest process' directory and blame the executor): 4 jobs in 2 kernels at once, each job in
    its own folder, and the runner's directory never moves."""
    repo = Path(__file__).resolve().parents[2]
    p = subprocess.run(
        [sys.executable, "-c", WATCH_CWD, str(tmp_path), str(repo)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr
    seen = json.loads(p.stdout.strip().splitlines()[-1])
    for i in range(4):
        probe = json.loads((tmp_path / f"w{i}" / f"probe-{i}.json").read_text())
        assert probe["cwd"] == str(tmp_path / f"w{i}")
    assert seen == [str(tmp_path)]  # the runner process itself never changed directory


def test_a_job_is_told_when_it_really_starts_and_ends_around_its_cells_and_never_if_it_cannot(
    tmp_path,
):
    """on_start comes once a kernel is ready (before the first cell), on_end once the notebook is
    done (after the last cell) or has failed; a job refused by a stopped executor gets neither."""
    nb = notebook(
        tmp_path / "clock.ipynb",
        "import json, time\nfirst = time.time()",
        "time.sleep(0.2)",
        "json.dump({'first': first, 'last': time.time()}, open('clock.json', 'w'))",
    )
    bad = notebook(tmp_path / "bad.ipynb", "raise ValueError('no')")
    told: list[tuple[str, str, float]] = []

    def job(label: str, path: Path) -> StageJob:
        return StageJob(
            "clock",
            label,
            path,
            tmp_path / "out" / f"{label}.ipynb",
            {},
            tmp_path,
            on_start=lambda: told.append((label, "start", time.time())),
            on_end=lambda: told.append((label, "end", time.time())),
        )

    ex = LocalExecutor(tmp_path, warm=1)
    try:
        assert ex.execute(job("ok", nb)).ok
        failed = ex.execute(job("bad", bad))
        assert not failed.ok and "ValueError" in failed.error.message
    finally:
        ex.stop()
    refused = ex.execute(job("late", nb))  # stopped: it never starts
    assert not refused.ok
    assert [(label, what) for label, what, _ in told] == [
        ("ok", "start"),
        ("ok", "end"),
        ("bad", "start"),
        ("bad", "end"),
    ]
    clock = json.loads((tmp_path / "clock.json").read_text())
    assert told[0][2] <= clock["first"] and clock["last"] <= told[1][2]


def test_a_notebook_written_without_metadata_runs_in_the_executors_kernel(tmp_path):
    """nbformat.v4.new_notebook() has no kernelspec nor language_info: papermill refused it
    ("No language found in notebook"); the kernel it runs in says the language."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("i = 0")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell("open('seen.txt', 'w').write(str(i))")]
    assert not nb.metadata
    path = tmp_path / "bare.ipynb"
    nbformat.write(nb, path)
    ex = LocalExecutor(tmp_path, warm=0)
    try:
        res = ex.execute(StageJob("bare", "bare", path, tmp_path / "out.ipynb", {"i": 7}, tmp_path))
    finally:
        ex.stop()
    assert res.ok, res.error
    assert (tmp_path / "seen.txt").read_text() == "7"
