"""What a job ships to a dask worker (``shipping.spec_of``) and what the runner does with the
worker's answer (``shipping.apply``): project-relative paths only, deps walked without following
symlinked folders, env values under the project made relative, and an answer that tries to write
anywhere but the job's outs and its run's spool refused whole."""

from __future__ import annotations

import json
import os
import tempfile
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nbops.errors import StageFailed
from nbops.executors import shipping
from nbops.executors.base import StageJob
from nbops.executors.dask_protocol import ROOT_MARK, JobReturn
from nbops.tracking.spool import Spool, Start, latest_metrics, read_records


def _job(root: Path, *, deps: list[str] | None = None, outs: list[str] | None = None) -> StageJob:
    nb = root / "nbs" / "train.ipynb"
    nb.parent.mkdir(parents=True, exist_ok=True)
    nb.write_text('{"cells": []}')
    spool_dir = root / ".nbops" / "spool" / "r1"
    if not (spool_dir / "log.jsonl").exists():
        sp = Spool.create(spool_dir)
        sp.append(Start({"uri": "sqlite:///x.db", "experiment": "e", "name": "train"}))
        sp.close()
    return StageJob(
        "train",
        "train[C=1]",
        nb,
        root / ".nbops" / "runs" / "r1" / "train.ipynb",
        {"C": 1},
        nb.parent,
        env={
            "NBOPS_ATTACH_SPOOL": str(spool_dir),
            "NBOPS_NOTEBOOK": str(nb),
            "NBOPS_PROJECT_ROOT": str(root),
            "SIBLING": str(root) + "2/data",  # beside the project, not in it
            "PLAIN": "x",
        },
        root=root,
        deps=deps or [],
        outs=outs if outs is not None else ["models", "reports/score.json"],
    )


def _ret(**kw: object) -> JobReturn:
    return JobReturn(key="k", worker="tcp://w:1", name="w", ok=True, **kw)  # type: ignore[arg-type]


def test_a_spec_names_project_relative_files_of_every_dep_and_follows_no_symlinked_folder(
    tmp_path: Path,
) -> None:
    root = tmp_path / "proj"
    (root / "data" / "raw" / "deep").mkdir(parents=True)
    (root / "data" / "raw" / "a.csv").write_text("a")
    (root / "data" / "raw" / "deep" / "b.csv").write_text("b")
    outside = tmp_path / "elsewhere"
    (outside / "big").mkdir(parents=True)
    (outside / "big" / "huge.bin").write_text("never shipped")
    (outside / "one.txt").write_text("linked file")
    (root / "data" / "raw" / "linked-dir").symlink_to(outside / "big")
    (root / "data" / "raw" / "linked.txt").symlink_to(outside / "one.txt")
    (root / "data" / "raw" / "dangling").symlink_to(tmp_path / "gone")
    (root / "config.yaml").write_text("k: 1")
    (root / "models").mkdir()
    job = _job(root, deps=["data/raw", "config.yaml", "missing.csv", str(root / "config.yaml")])

    spec, blobs = shipping.spec_of(job, "key-1")

    assert spec.key == "key-1" and spec.notebook == "nbs/train.ipynb"
    assert set(spec.files) == {
        "nbs/train.ipynb",
        "data/raw/a.csv",
        "data/raw/deep/b.csv",
        "data/raw/linked.txt",  # a symlinked file counts by its content
        "config.yaml",
        ".nbops/spool/r1/log.jsonl",  # the spool's start line, for the kernel to attach
    }
    assert blobs[spec.files["data/raw/linked.txt"]].read_text() == "linked file"
    for rel, digest in spec.files.items():
        assert shipping.file_digest(blobs[digest]) == digest, rel
    start = blobs[spec.files[".nbops/spool/r1/log.jsonl"]].read_bytes()
    assert start == (root / ".nbops/spool/r1/log.jsonl").read_bytes().splitlines(True)[0]
    assert spec.env == {"SIBLING": str(root) + "2/data", "PLAIN": "x"}
    assert spec.env_paths == {
        "NBOPS_ATTACH_SPOOL": ".nbops/spool/r1",
        "NBOPS_NOTEBOOK": "nbs/train.ipynb",
        "NBOPS_PROJECT_ROOT": ".",
    }
    assert spec.cwd == "nbs" and spec.output == ".nbops/runs/r1/train.ipynb"
    assert spec.spool == ".nbops/spool/r1"
    assert spec.outs == ["models", "reports/score.json"]
    assert spec.dirs == [".nbops/runs/r1", ".nbops/spool/r1/files", "models", "reports"]
    assert spec.parameters == {"C": 1}
    assert not any(str(tmp_path) in json.dumps(v) for v in (spec.files, spec.dirs, spec.outs))


def test_a_digest_is_computed_once_per_unchanged_file(tmp_path: Path) -> None:
    f = tmp_path / "dep.bin"
    f.write_bytes(b"A" * 4096)
    first = shipping.file_digest(f)
    st = f.stat()
    with open(f, "r+b") as h:  # same size, same inode, same mtime: not read again
        h.write(b"B" * 4096)
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert shipping.file_digest(f) == first
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1))  # touched: read again
    assert shipping.file_digest(f) == shipping.bytes_digest(b"B" * 4096) != first


def test_sweep_points_asking_for_one_big_dep_at_once_read_it_once(tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(1 << 20) * 24)  # 24 MiB
    threads = 8
    barrier = threading.Barrier(threads)
    got: list[str] = []

    def ask() -> None:
        barrier.wait()
        got.append(shipping.file_digest(big))

    before = _bytes_read()
    pool = [threading.Thread(target=ask) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    read = _bytes_read() - before
    assert len(got) == threads and len(set(got)) == 1
    assert big.stat().st_size <= read < 2 * big.stat().st_size, read


def _bytes_read() -> int:
    """Bytes this process has read with read() calls so far (/proc/self/io's rchar)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


@pytest.mark.parametrize(
    ("change", "what"),
    [
        ({"deps": ["../secret.txt"]}, "dep ../secret.txt is outside the project"),
        ({"outs": ["/etc/passwd"]}, "out /etc/passwd is outside the project"),
        ({"outs": ["."]}, "out . is the whole project"),
    ],
)
def test_a_path_outside_the_project_is_a_stage_failure_naming_it(
    tmp_path: Path, change: dict[str, list[str]], what: str
) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    (tmp_path / "secret.txt").write_text("s")
    job = _job(root, **change)
    with pytest.raises(StageFailed, match=what):
        shipping.spec_of(job, "k")


def test_a_dep_that_leads_to_a_pseudo_file_system_is_refused_before_anything_is_read(
    tmp_path: Path,
) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    (root / "stats").symlink_to("/proc/self")
    with pytest.raises(StageFailed, match=r"dep stats leads to /proc/\d+, on /proc"):
        shipping.spec_of(_job(root, deps=["stats"]), "k")


def test_a_notebook_outside_the_project_is_a_stage_failure(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    job = _job(root)
    job.notebook = tmp_path / "other.ipynb"
    job.notebook.write_text("{}")
    with pytest.raises(StageFailed, match=r"notebook .*other.ipynb is outside the project"):
        shipping.spec_of(job, "k")


def test_apply_writes_outs_notebook_and_spool_as_if_the_job_ran_here(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    (root / "models").mkdir(parents=True)
    job = _job(root)
    spool_dir = root / ".nbops" / "spool" / "r1"
    log = [
        ["start", {"name": "duplicate"}],  # the runner's own kinds: never taken from a worker
        ["began", 1],
        ["m", "acc", 0.9, 0, 5],
        ["p", "data", f"{ROOT_MARK}/data/raw"],
        ["d", {"path": f"{ROOT_MARK}/data", "nested": [{"src": f"{ROOT_MARK}/x"}], "n": 3}],
        ["a", f"{ROOT_MARK}/.nbops/spool/r1/files/1/fig.png", "figures", True],
        ["end", "FINISHED", 9],
    ]
    raw = b"".join(json.dumps(r).encode() + b"\n" for r in log)
    raw += b'"not an array"\n{"nor": "this"}\n' + b"[" * 5000 + b"]" * 5000 + b"\n"
    raw += b'["m", "nan", NaN, 0, 1]\n'  # not JSON the spool accepts
    raw += b'["m", "acc", 0.95, 1, 6]\n["m", "torn'
    ret = _ret(
        outs={"models/m.pkl": b"model", "models/sub/w.bin": b"w", "reports/score.json": b"{}"},
        notebook=b'{"cells": [1]}',
        spool_log=raw,
        spool_files={"files/1/fig.png": b"png"},
        error={"message": f"failed, see {ROOT_MARK}/nbs/x.ipynb", "hint": None},
    )
    shipping.apply(ret, job)

    assert (root / "models" / "m.pkl").read_bytes() == b"model"
    assert (root / "models" / "sub" / "w.bin").read_bytes() == b"w"
    assert (root / "reports" / "score.json").read_bytes() == b"{}"
    assert job.output.read_bytes() == b'{"cells": [1]}'
    assert (spool_dir / "files" / "1" / "fig.png").read_bytes() == b"png"
    assert ret.error is not None and ret.error["message"] == f"failed, see {root}/nbs/x.ipynb"
    records = [r.encode() for r in read_records(spool_dir / "log.jsonl")]
    assert [r[0] for r in records] == ["start", "m", "p", "d", "a", "m"]
    assert records[0][1]["name"] == "train"  # the runner's start record, alone
    assert records[2] == ["p", "data", f"{root}/data/raw"]
    assert records[3][1] == {"path": f"{root}/data", "nested": [{"src": f"{root}/x"}], "n": 3}
    assert records[4][1] == f"{spool_dir}/files/1/fig.png"
    assert latest_metrics(spool_dir / "log.jsonl") == {"acc": 0.95}
    assert (spool_dir / "log.jsonl").read_bytes().endswith(b"\n")  # the torn line left out
    assert not [p for p in root.rglob("*.part")]


@pytest.mark.parametrize(
    "bad",
    [
        {"outs": {"../escape.txt": b"x"}},
        {"outs": {"models/../../escape.txt": b"x"}},
        {"outs": {"/tmp/escape.txt": b"x"}},
        {"outs": {"data/not-an-out.csv": b"x"}},
        {"outs": {"modelsX/m.pkl": b"x"}},  # beside an out, not under it
        {"outs": {"reports/other.json": b"x"}},  # beside a file out
        {"outs": {"": b"x"}},
        {"outs": {"models\\..\\..\\escape": b"x"}},
        {"spool_files": {"log.jsonl": b"x"}},  # only files/ of the spool
        {"spool_files": {"files/../ack": b"x"}},
        {"spool_files": {"/etc/x": b"x"}},
        {"spool_log": b'["a", "/etc/passwd", null, false]\n'},  # an upload of the runner's file
        {"spool_log": f'["a", "{ROOT_MARK}/../../etc/passwd", null, true]\n'.encode()},
    ],
)
def test_apply_refuses_an_answer_that_writes_outside_the_outs_and_writes_nothing(
    tmp_path: Path, bad: dict[str, object]
) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    job = _job(root)
    before = _tree(tmp_path)
    ret = _ret(outs={"models/ok.pkl": b"fine"}, notebook=b"{}")
    for name, value in bad.items():
        setattr(ret, name, {**ret.outs, **value} if name == "outs" else value)  # type: ignore[dict-item]
    with pytest.raises(StageFailed, match="the worker sent back") as exc:
        shipping.apply(ret, job)
    assert "nothing it sent was written" in exc.value.message
    assert _tree(tmp_path) == before


def _tree(top: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(top)): p.read_bytes() if p.is_file() else b"/"
        for p in sorted(top.rglob("*"))
    }


_segment = st.sampled_from(["..", ".", "", "models", "reports", "score.json", "m", "/", "\\"])


@settings(max_examples=150, deadline=None)
@given(
    path=st.one_of(
        st.lists(_segment, min_size=1, max_size=6).map("/".join),
        st.text(min_size=0, max_size=30),
    ),
    spool=st.booleans(),
)
def test_no_returned_path_writes_outside_the_outs_or_the_spool(path: str, spool: bool) -> None:
    with tempfile.TemporaryDirectory() as d:
        top = Path(d)
        root = top / "proj"
        root.mkdir()
        job = _job(root)
        before = _tree(top)
        ret = _ret(spool_files={path: b"x"}) if spool else _ret(outs={path: b"x"})
        try:
            shipping.apply(ret, job)
        except StageFailed:
            assert _tree(top) == before
            return
        written = {k for k, v in _tree(top).items() if before.get(k) != v and v != b"/"}
        assert len(written) == 1, written
        (w,) = written
        outs = [".nbops/spool/r1/files"] if spool else ["models", "reports/score.json"]
        assert any(w.startswith(f"proj/{o}/") or w == f"proj/{o}" for o in outs), w
