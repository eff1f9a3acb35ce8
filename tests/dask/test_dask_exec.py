"""The dask executor's runner side (nbops.executors.dask_exec) through the API: addresses, the
example pipeline on the shared cluster (``w0``, and ``w1`` with ``GPU=1``) against the same run
here, resources no worker has, a scheduler nobody started, and ``local:N``.

Every project lives under ``dask_hidden``, which the workers see empty: a stage that used the
shared filesystem instead of what the executor ships fails here.
"""

from __future__ import annotations

import io
import json
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nbops.errors import ClusterUnavailable, ParameterError, StageFailed
from nbops.executors.base import Executor, StageJob, StageResult
from nbops.executors.dask_exec import MAX_LOCAL, DaskExecutor, choose, parse_address, size_text
from nbops.pipeline.progress import Progress
from nbops.pipeline.runner import Runner
from tests.conftest import free_port, notebook
from tests.dask.cluster import Cluster

EVALUATE = "  evaluate:\n    notebook: 03_evaluate.ipynb\n"


class Watching(Executor):
    """The DaskExecutor as the runner sees it, keeping every job, result and note."""

    def __init__(self, inner: DaskExecutor) -> None:
        self.inner = inner
        self.loaded = inner.loaded
        self.jobs: list[StageJob] = []
        self.results: list[StageResult] = []
        self.notes: list[tuple[str, str]] = []
        self.starts: list[tuple[str, str | None]] = []

    def execute(self, job: StageJob) -> StageResult:
        note, start = job.on_note, job.on_start

        def noted(text: str) -> None:
            self.notes.append((job.label, text))
            if note is not None:
                note(text)

        def started() -> None:
            self.starts.append((job.label, job.worker))
            if start is not None:
                start()

        job.on_note, job.on_start = noted, started
        self.jobs.append(job)
        res = self.inner.execute(job)
        self.results.append(res)
        return res

    def stop(self) -> None:
        self.inner.stop()

    def report(self) -> str | None:
        return self.inner.report()

    def worker_name(self, address: str) -> str | None:
        return self.inner.worker_name(address)


def run_on(executor: Executor, root: Path) -> tuple[int, str]:
    out = io.StringIO()
    code = Runner(root, executor=executor, progress=Progress(out, live=False)).run()
    return code, out.getvalue()


def digests(root: Path) -> dict[str, Any]:
    state = json.loads((root / ".nbops" / "pipeline" / "state.json").read_text())
    return {
        stage: {point: rec["outs"] for point, rec in points.items()}
        for stage, points in state["stages"].items()
    }


# --- addresses ------------------------------------------------------------------------------------
def test_addresses_in_every_form_dask_takes_and_the_errors_that_name_the_value_and_its_source() -> (
    None
):
    assert parse_address("tcp://10.0.0.5:8786").scheduler == "tcp://10.0.0.5:8786"
    assert parse_address(" scheduler.example.org:8786 ").scheduler == (
        "tcp://scheduler.example.org:8786"
    )
    assert parse_address("TLS://[::1]:9000").scheduler == "tls://[::1]:9000"
    assert parse_address("local:3").local == 3
    assert parse_address("local").local == max(1, min(MAX_LOCAL, os.cpu_count() or 1))
    for bad, where, says in [
        ("tcp://host", "--dask", "tcp://HOST:PORT"),
        ("ucx://host:8786", "NBOPS_DASK", "tcp://HOST:PORT"),
        ("host:99999", "nbops.yaml:12", "tcp://HOST:PORT"),
        ("local:0", "--dask", "from 1 to 64"),
        ("local:65", "--dask", "from 1 to 64"),
        ("local:zero", "NBOPS_DASK", "from 1 to 64"),
        ("tcp://a b:1", "--dask", "tcp://HOST:PORT"),
    ]:
        with pytest.raises(ParameterError) as err:
            parse_address(bad, where)
        text = str(err.value)
        assert text.startswith(f"{where}: ") and repr(bad.strip()) in text and says in text, text
    # --dask, then NBOPS_DASK, then nbops.yaml; blank counts as unset
    assert choose(" ", "tcp://a:1", "b:2", "nbops.yaml:7") == ("tcp://a:1", "NBOPS_DASK")
    assert choose(None, "", "b:2", "nbops.yaml:7") == ("b:2", "nbops.yaml:7")
    assert choose(None, None, None) is None


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=120))
def test_any_text_is_an_address_or_a_parameter_error_naming_it(text: str) -> None:
    try:
        addr = parse_address(text, "NBOPS_DASK")
    except ParameterError as exc:
        assert exc.message.startswith("NBOPS_DASK: "), exc.message
        assert exc.hint
        return
    assert (addr.scheduler is None) != (addr.local is None)
    if addr.scheduler is not None:  # what dask is given is what it parses
        assert addr.scheduler.startswith(("tcp://", "tls://"))
        assert parse_address(addr.scheduler).scheduler == addr.scheduler
    else:
        assert addr.local is not None and 1 <= addr.local <= MAX_LOCAL


# --- the example pipeline on the shared cluster ---------------------------------------------------
def test_the_example_pipeline_on_the_cluster_gives_the_outs_it_gives_here(
    dask_cluster: Cluster, dask_project: Callable[[str], Path]
) -> None:
    here, there = dask_project("here"), dask_project("there")
    for root in (here, there):  # evaluate asks for the worker with the GPU
        yaml = (root / "nbops.yaml").read_text()
        (root / "nbops.yaml").write_text(
            yaml.replace(EVALUATE, EVALUATE + "    resources: {GPU: 1}\n")
        )
    code, out = run_on_local(here)
    assert code == 0, out

    info = dask_cluster.worker_info()
    addresses = {name: w["address"] for name, w in info.items()}
    executor = Watching(DaskExecutor.connect(dask_cluster.address, there))
    assert executor.inner.loaded.is_set() and executor.inner.slots == 2
    code, out = run_on(executor, there)
    assert code == 0, out + dask_cluster.log_text()

    # the same outs, byte for byte, as the run here, and on disk where the runner is
    assert digests(there) == digests(here)
    for points in digests(there).values():
        for outs in points.values():
            for path in outs:
                assert (there / path).is_file(), path
    # every job started once, on a worker, said where; both workers ran some; evaluate on w1
    labels = [j.label for j in executor.jobs]
    assert sorted(labels) == sorted(
        ["prepare", "train[C=0.01]", "train[C=0.1]", "train[C=1.0]", "evaluate"]
    )
    assert sorted(label for label, _ in executor.starts) == sorted(labels)
    assert all(r.ok and r.worker in addresses.values() for r in executor.results)
    assert all(r.job.worker == r.worker for r in executor.results)
    assert {r.worker for r in executor.results} == set(addresses.values())
    (evaluate,) = [r for r in executor.results if r.job.label == "evaluate"]
    assert evaluate.worker == addresses["w1"]
    assert executor.notes == []  # nothing died
    # the rows name the workers; worker_name answers from what the executor knows
    assert executor.inner.worker_name(addresses["w1"]) == "w1"
    assert executor.inner.worker_name("tcp://192.0.2.1:1") is None
    assert any(
        " evaluate " in line and f"w1 ({addresses['w1']})" in line for line in out.splitlines()
    )
    # the counters and the line at the end: 5 jobs; the notebooks and deps went once a worker
    inner = executor.inner
    assert sum(inner.jobs_per_worker.values()) == 5
    assert set(inner.jobs_per_worker) == {"w0", "w1"}
    for name, sent in inner.shipped_files.items():
        assert sent and set(sent.values()) == {1}, (name, sent)  # no blob crossed twice
        assert inner.shipped_bytes[name] > 0
    report = executor.report()
    assert report is not None and report.startswith("dask: 5 jobs on 2 workers (w0: "), report
    assert f"shipped {size_text(sum(inner.shipped_bytes.values()))}: " in report, report
    # stopped: the client is closed, and the workers hold nothing of ours
    assert inner.client.status == "closed"
    with dask_cluster.client() as c:
        assert c.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks)) == 0


def run_on_local(root: Path) -> tuple[int, str]:
    out = io.StringIO()
    code = Runner(root, progress=Progress(out, live=False)).run()
    return code, out.getvalue()


def small_project(hidden: Path, yaml_extra: str = "", cells: tuple[str, ...] = ()) -> Path:
    root = hidden / f"small-{uuid.uuid4().hex[:8]}"
    (root / ".nbops").mkdir(parents=True)
    (root / "nbops.yaml").write_text(
        "experiment: small\nstages:\n  one:\n    notebook: one.ipynb\n    outs: [one.txt]\n"
        + yaml_extra
    )
    notebook(root / "one.ipynb", *(cells or ("open('one.txt', 'w').write('one')",)))
    return root


def test_a_stage_needing_what_no_worker_has_fails_at_once_naming_it_and_the_workers(
    dask_cluster: Cluster, dask_hidden: Path
) -> None:
    root = small_project(dask_hidden, "    resources: {TPU: 1, memory: 1TB}\n")
    executor = Watching(DaskExecutor.connect(dask_cluster.address, root))
    t = time.monotonic()
    code, out = run_on(executor, root)
    assert code == 1, out
    assert time.monotonic() - t < 30, "it waited for a worker that does not exist"
    (res,) = executor.results
    assert not res.ok and isinstance(res.error, StageFailed)
    text = str(res.error)
    assert "TPU=1" in text and "memory 1.0 TB" in text, text
    assert "w0 has no resources" not in text or "memory" in text  # what each has is said
    assert "w0 has" in text and "w1 has GPU=1" in text, text
    assert f'dask worker {dask_cluster.address} --resources "TPU=1" --memory-limit 1TB' in text
    assert executor.starts == [] and res.worker is None  # it never started anywhere
    assert not (root / "one.txt").exists()


# --- no cluster -----------------------------------------------------------------------------------
def test_a_scheduler_nobody_started_is_cluster_unavailable_at_once_naming_it(
    dask_hidden: Path,
) -> None:
    root = small_project(dask_hidden)
    for address, why in [
        (f"tcp://127.0.0.1:{free_port()}", "connection refused"),
        ("tcp://no-such-host.invalid:8786", "is not known"),
    ]:
        t = time.monotonic()
        with pytest.raises(ClusterUnavailable) as err:
            DaskExecutor.connect(address, root, where="NBOPS_DASK")
        assert time.monotonic() - t < 8, "it waited for a scheduler that is not there"
        text = str(err.value)
        assert text.startswith(f"NBOPS_DASK: the dask scheduler {address} is unreachable"), text
        assert why in text and "`dask scheduler`" in text, text
        assert f"`dask worker {address}`" in text and "Traceback" not in text, text
        assert err.value.exit_code == 2


def children() -> set[int]:
    """This process's live descendants, but multiprocessing's resource tracker (one per
    process that ever spawned one, ending with it)."""
    found: dict[int, int] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if stat[0] != "Z":
                found[int(d.name)] = int(stat[1])
            if b"resource_tracker" in (d / "cmdline").read_bytes():
                found.pop(int(d.name), None)
    mine, grew = {os.getpid()}, True
    while grew:
        more = {pid for pid, parent in found.items() if parent in mine} - mine
        grew = bool(more)
        mine |= more
    return mine - {os.getpid()}


def test_local_n_starts_its_workers_runs_a_stage_and_leaves_no_process(tmp_path: Path) -> None:
    root = small_project(
        tmp_path, cells=("import os\nopen('one.txt', 'w').write(str(os.getpid()))",)
    )
    before = children()
    executor = Watching(DaskExecutor.connect("local:2", root))
    assert executor.inner.slots == 2 and len(executor.inner.client.scheduler_info()["workers"]) == 2
    assert len(children() - before) >= 2  # the worker processes (and their nannies' kin)
    code, out = run_on(executor, root)
    assert code == 0, out
    kernel = int((root / "one.txt").read_text())
    assert kernel not in children()  # the kernel is gone
    (res,) = executor.results
    assert res.ok and res.worker is not None and res.worker.startswith("tcp://127.0.0.1:")
    executor.stop()  # again: idempotent
    deadline = time.monotonic() + 30
    while children() - before and time.monotonic() < deadline:
        time.sleep(0.1)  # polling processes another part of the system reaps
    assert children() - before == set()
