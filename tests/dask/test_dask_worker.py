"""The worker's side of the dask executor, on the shared real cluster (``dask_cluster``), with
the projects under ``dask_hidden`` (empty for every worker): the blob cache, one job end to end
(its outs, its metrics in the spool, the executed notebook), a job whose blobs are missing, an
ImportError on the worker, and a running job stopped."""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from nbops.executors import dask_worker, shipping
from nbops.executors.base import StageJob
from nbops.executors.dask_protocol import CHUNK, ROOT_MARK, TOPIC, JobReturn
from nbops.tracking.spool import Spool, Start, latest_metrics
from tests.conftest import notebook
from tests.dask.cluster import Cluster


def _project(hidden: Path, *cells: str, dep: bool = True) -> tuple[StageJob, Path]:
    """A project under ``hidden`` with one notebook (``cells``), the dep ``data/in.txt`` and
    the out ``out/``; the StageJob a runner would make for it, logging into a fresh spool."""
    root = hidden / f"w-{uuid.uuid4().hex[:8]}"
    (root / "data").mkdir(parents=True)
    (root / "data" / "in.txt").write_text("21\n")
    nb = notebook(root / "stage.ipynb", ("n = 1", ["parameters"]), *cells, f"# {root.name}")
    spool_dir = root / ".nbops" / "spool" / "r1"
    sp = Spool.create(spool_dir)
    sp.append(Start({"uri": "sqlite:///nowhere.db", "experiment": "e", "name": root.name}))
    sp.close()
    job = StageJob(
        "stage",
        "stage[n=2]",
        nb,
        root / ".nbops" / "runs" / "r1" / "stage.ipynb",
        {"n": 2},
        root,
        env={
            "NBOPS_ATTACH_SPOOL": str(spool_dir),
            "NBOPS_NOTEBOOK": str(nb),
            "NBOPS_PROJECT_ROOT": str(root),
            "PLAIN": "value",
        },
        root=root,
        deps=["data/in.txt"] if dep else [],
        outs=["out"],
    )
    return job, root


def _send(client: Any, blobs: dict[str, Path]) -> None:
    """What the runner does before it submits: every worker gets the blobs it lacks."""
    have = client.run(dask_worker.has_blobs, list(blobs))
    for addr, present in have.items():
        for digest in set(blobs) - set(present):
            data = blobs[digest].read_bytes()
            chunks = [data[i : i + CHUNK] for i in range(0, len(data), CHUNK)] or [b""]
            for i, chunk in enumerate(chunks):
                client.run(
                    dask_worker.put_blob,
                    digest,
                    i * CHUNK,
                    chunk,
                    i == len(chunks) - 1,
                    workers=[addr],
                )


def _worker(cluster: Cluster, name: str) -> str:
    return str(cluster.worker_info()[name]["address"])


def test_blobs_are_kept_by_digest_and_a_wrong_or_malformed_one_is_refused(
    dask_cluster: Cluster, tmp_path: Path
) -> None:
    data = os.urandom(1000)
    digest = shipping.bytes_digest(data)
    with dask_cluster.client() as c:
        w0 = _worker(dask_cluster, "w0")
        assert c.run(dask_worker.has_blobs, [digest], workers=[w0])[w0] == []
        c.run(dask_worker.put_blob, digest, 0, data[:600], False, workers=[w0])
        assert c.run(dask_worker.has_blobs, [digest], workers=[w0])[w0] == []  # not yet
        c.run(dask_worker.put_blob, digest, 600, data[600:], True, workers=[w0])
        assert c.run(dask_worker.has_blobs, [digest], workers=[w0])[w0] == [digest]
        other = shipping.bytes_digest(b"other")
        with pytest.raises(ValueError, match="arrived with the content of"):
            c.run(dask_worker.put_blob, other, 0, b"not other", True, workers=[w0])
        assert c.run(dask_worker.has_blobs, [other], workers=[w0])[w0] == []
        for bad in ("../../etc/passwd", "ABC", digest + "0"):
            with pytest.raises(ValueError, match="not an xxh3-128 digest"):
                c.run(dask_worker.has_blobs, [bad], workers=[w0])
            with pytest.raises(ValueError, match="not an xxh3-128 digest"):
                c.run(dask_worker.put_blob, bad, 0, b"x", True, workers=[w0])


def test_a_job_runs_on_a_worker_that_sees_nothing_of_the_project(
    dask_cluster: Cluster, dask_hidden: Path
) -> None:
    job, root = _project(
        dask_hidden,
        "import os, nbops\n"
        "x = int(open('data/in.txt').read()) * n\n"
        "os.makedirs('out/sub', exist_ok=True)\n"
        "open('out/sub/result.txt', 'w').write(str(x))\n"
        "open('out/note.txt', 'w').write(os.environ['PLAIN'])\n"
        "open('fig.txt', 'w').write('figure')\n"
        "nbops.log_metric('x', x)\n"
        "nbops.log_param('where', os.getcwd())\n"
        "nbops.log_artifact('fig.txt')\n"
        "os.makedirs('big/parts', exist_ok=True)\n"
        "open('big/parts/p1.bin', 'wb').write(b'1' * 1000)\n"
        "import json\n"  # as the spool records an artifact too big to copy: where it is
        "with open(os.path.join(os.environ['NBOPS_ATTACH_SPOOL'], 'log.jsonl'), 'a') as f:\n"
        "    f.write(json.dumps(['a', os.path.abspath('big'), 'big', False]) + '\\n')\n"
        "print('ran in', os.environ['NBOPS_PROJECT_ROOT'])",
    )
    spec, blobs = shipping.spec_of(job, f"k-{uuid.uuid4().hex[:6]}")
    assert spec.files == {
        "stage.ipynb": shipping.file_digest(root / "stage.ipynb"),
        "data/in.txt": shipping.file_digest(root / "data" / "in.txt"),
        ".nbops/spool/r1/log.jsonl": spec.files[".nbops/spool/r1/log.jsonl"],
    }
    events: list[Any] = []
    with dask_cluster.client() as c:
        c.subscribe_topic(TOPIC, lambda ev: events.append(ev))
        _send(c, blobs)
        w1 = _worker(dask_cluster, "w1")
        before = c.run(lambda: dask_worker.JOBS_RUN, workers=[w1])[w1]
        ret: JobReturn = c.submit(dask_worker.run_job, spec, workers=[w1], pure=False).result()
        after = c.run(lambda: dask_worker.JOBS_RUN, workers=[w1])[w1]
        leftover = c.run(lambda dask_worker: _jobs_dir(dask_worker), workers=[w1])[w1]
    assert ret.ok, ret.error
    assert (ret.worker, ret.name) == (w1, "w1")
    assert after == before + 1
    assert leftover == []  # the scratch folder is gone
    assert ret.outs == {"out/sub/result.txt": b"42", "out/note.txt": b"value"}
    assert ROOT_MARK in ret.spool_log.decode() and "nbops-jobs" not in ret.spool_log.decode()
    deadline = time.monotonic() + 10
    while not events and time.monotonic() < deadline:
        time.sleep(0.05)  # the event travels through the scheduler to this client
    assert any(
        ev[1] == {"event": "started", "key": spec.key, "worker": w1, "name": "w1"} for ev in events
    ), events

    shipping.apply(ret, job)
    assert (root / "out" / "sub" / "result.txt").read_text() == "42"
    assert (root / "out" / "note.txt").read_text() == "value"
    assert not (root / "fig.txt").exists()  # not an out: it stays on the worker
    executed = json.loads(job.output.read_text())
    text = json.dumps(executed)
    assert "ran in" in text and '"n": 2' in text.replace("n = 2", '"n": 2')
    spool_dir = root / ".nbops" / "spool" / "r1"
    assert latest_metrics(spool_dir / "log.jsonl") == {"x": 42.0}
    records = [json.loads(line) for line in (spool_dir / "log.jsonl").read_text().splitlines()]
    assert [r[0] for r in records].count("start") == 1
    assert ["p", "where", str(root)] in records  # the kernel's cwd was the project's root
    art, big = [r for r in records if r[0] == "a"]
    assert art[1].startswith(str(spool_dir / "files")) and Path(art[1]).read_text() == "figure"
    # the big one came back under files/remote/ and its record points there
    assert big == ["a", str(spool_dir / "files" / "remote" / "big"), "big", True]
    assert (Path(big[1]) / "parts" / "p1.bin").read_bytes() == b"1" * 1000


def test_a_job_whose_blobs_the_worker_lacks_runs_nothing(
    dask_cluster: Cluster, dask_hidden: Path
) -> None:
    job, root = _project(dask_hidden, "x = 1")
    (root / "data" / "in.txt").write_text(root.name)  # content no worker has
    spec, blobs = shipping.spec_of(job, f"k-{uuid.uuid4().hex[:6]}")
    with dask_cluster.client() as c:
        w0 = _worker(dask_cluster, "w0")
        before = c.run(lambda: dask_worker.JOBS_RUN, workers=[w0])[w0]
        ret = c.submit(dask_worker.run_job, spec, workers=[w0], pure=False).result()
        after = c.run(lambda: dask_worker.JOBS_RUN, workers=[w0])[w0]
    assert not ret.ok and ret.error is None
    assert sorted(ret.missing) == sorted(set(spec.files.values()))
    assert after == before and ret.notebook is None


def test_failures_are_answered_by_kind_an_import_naming_the_package(
    dask_cluster: Cluster, dask_hidden: Path
) -> None:
    cases = {
        "import": ["x = 1", "import nbops_no_such_package_xyz"],
        "execution": ["x = 1", "raise ValueError(f'bad data in {__import__(\"os\").getcwd()}')"],
        "kernel": ["import time\ntime.sleep(60)"],  # the cell's timeout
    }
    specs = {}
    for kind, cells in cases.items():
        job, _ = _project(dask_hidden, *cells, dep=False)
        job.timeout = 2 if kind == "kernel" else None
        specs[kind] = shipping.spec_of(job, f"k-{kind}-{uuid.uuid4().hex[:6]}")
    with dask_cluster.client() as c:
        for _, blobs in specs.values():
            _send(c, blobs)
        futs = {k: c.submit(dask_worker.run_job, s, pure=False) for k, (s, _) in specs.items()}
        rets = {k: f.result() for k, f in futs.items()}
    for kind, ret in rets.items():
        assert not ret.ok and ret.error is not None, kind
        assert ret.error["kind"] == kind, ret.error
        assert "nbops-jobs" not in json.dumps(ret.error)  # no scratch path in what is said
        assert ret.notebook is not None  # the executed notebook, with its error, comes back
    imp, exe = rets["import"].error, rets["execution"].error
    assert imp is not None and exe is not None
    assert "ModuleNotFoundError" in imp["message"]
    assert "nbops_no_such_package_xyz" in imp["message"]
    assert imp["cell"] is not None and exe["cell"] is not None
    assert f"ValueError: bad data in {ROOT_MARK}" in exe["message"]
    assert f"{ROOT_MARK}/.nbops/runs/r1/stage.ipynb" in str(exe["hint"])


def test_cancel_kills_a_running_jobs_kernel_at_once(
    dask_cluster: Cluster, dask_hidden: Path
) -> None:
    pidfile = Path("/tmp") / f"nbops-cancel-{uuid.uuid4().hex[:8]}.pid"  # the workers see /tmp
    job, _ = _project(
        dask_hidden,
        f"import os, time\nopen({str(pidfile)!r}, 'w').write(str(os.getpid()))\ntime.sleep(300)",
        dep=False,
    )
    spec, blobs = shipping.spec_of(job, f"k-{uuid.uuid4().hex[:6]}")
    try:
        with dask_cluster.client() as c:
            _send(c, blobs)
            w0 = _worker(dask_cluster, "w0")
            fut = c.submit(dask_worker.run_job, spec, workers=[w0], pure=False)
            deadline = time.monotonic() + 60
            while not (pidfile.exists() and pidfile.read_text()):
                assert time.monotonic() < deadline and not fut.done(), fut
                time.sleep(0.05)  # the kernel is in its sleep once it wrote its pid
            pid = int(pidfile.read_text())
            t0 = time.monotonic()
            stopped = c.run(dask_worker.cancel, [spec.key])
            ret = fut.result(timeout=30)
            took = time.monotonic() - t0
            children = c.run(_children, workers=[w0])[w0]
    finally:
        pidfile.unlink(missing_ok=True)
    assert stopped[w0] == 1 and sum(stopped.values()) == 1
    assert not ret.ok and ret.error is not None and ret.error["kind"] == "stopped"
    assert took < 10, took
    assert pid not in children
    assert not Path(f"/proc/{pid}").exists() or _zombie(pid)


def _children() -> list[int]:
    import psutil

    return [p.pid for p in psutil.Process().children(recursive=True) if p.status() != "zombie"]


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def _jobs_dir(worker: Any) -> list[str]:
    d = dask_worker.cache_dir(worker).parent / dask_worker.JOBS
    return os.listdir(d) if d.exists() else []


def _zygotes() -> int:
    """This worker's kernel zygotes (children of this process running nbops.executors.zygote)."""
    me, found = str(os.getpid()), 0
    for pid in os.listdir("/proc"):
        try:
            with open(f"/proc/{pid}/stat") as f:
                ppid = f.read().rsplit(")", 1)[1].split()[1]
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read()
        except (OSError, IndexError):
            continue
        found += ppid == me and b"nbops.executors.zygote" in cmd
    return found


def test_warm_readies_a_kernel_zygote_on_every_worker_and_ignores_a_bad_name(
    dask_cluster: Cluster,
) -> None:
    with dask_cluster.client() as c:
        c.run(dask_worker.warm, "")  # not a kernel name: nothing happens, nothing raises
        c.run(dask_worker.warm, "python3")  # returns at once: the kernel starts meanwhile
        deadline = time.monotonic() + 60
        while True:
            counts = c.run(_zygotes)
            if all(n == 1 for n in counts.values()) or time.monotonic() > deadline:
                break
            time.sleep(0.1)  # polling for the processes warm started
    assert counts and all(n == 1 for n in counts.values()), counts
