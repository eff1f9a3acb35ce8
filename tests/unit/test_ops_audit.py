"""The hash-chained audit log: appends, filters, and catches every kind of tampering."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nbops.errors import InvalidInput
from nbops.tracking import audit
from tests.conftest import nbops_cli


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / ".nbops").mkdir()
    monkeypatch.setenv("NBOPS_PROJECT_ROOT", str(tmp_path))
    return tmp_path


def _log(root: Path) -> Path:
    return root / ".nbops" / "audit.jsonl"


def _write_five(root: Path) -> list[str]:
    for i in range(5):
        audit.record("promote" if i % 2 else "run.start", run_id=f"r{i}", model="wine")
    return _log(root).read_text().splitlines()


def test_records_chain_each_to_the_one_before(root):
    lines = _write_five(root)
    recs = [json.loads(x) for x in lines]
    assert [r["seq"] for r in recs] == [1, 2, 3, 4, 5]
    assert recs[0]["prev"] == audit.GENESIS
    for a, b in zip(recs, recs[1:], strict=False):
        assert b["prev"] == a["hash"] == audit.digest(a)
    assert recs[2]["run_id"] == "r2" and recs[2]["who"] and recs[2]["ts"].endswith("Z")
    assert audit.verify() == (5, None)


def test_an_edited_record_is_named(root):
    lines = _write_five(root)
    rec = json.loads(lines[2])
    rec["model"] = "evil"
    lines[2] = json.dumps(rec, sort_keys=True, separators=(",", ":"))
    _log(root).write_text("\n".join(lines) + "\n")
    n, problem = audit.verify()
    assert n == 2 and problem is not None
    assert problem.line == 3 and problem.seq == 3 and "edited" in problem.message


def test_an_edit_that_recomputes_its_own_hash_breaks_the_next_link(root):
    lines = _write_five(root)
    rec = json.loads(lines[1])
    rec["run_id"] = "forged"
    rec["hash"] = audit.digest(rec)
    lines[1] = json.dumps(rec, sort_keys=True, separators=(",", ":"))
    _log(root).write_text("\n".join(lines) + "\n")
    _, problem = audit.verify()
    assert problem is not None and problem.seq == 3 and "chain" in problem.message


def test_a_removed_record_is_named(root):
    lines = _write_five(root)
    del lines[1]
    _log(root).write_text("\n".join(lines) + "\n")
    _, problem = audit.verify()
    assert problem is not None and problem.line == 2 and problem.seq == 2
    assert "record 2 is missing before record 3" in problem.message


def test_removing_the_last_records_is_caught_by_the_head(root):
    lines = _write_five(root)
    _log(root).write_text("\n".join(lines[:3]) + "\n")
    _, problem = audit.verify()
    assert problem is not None and "removed from the end" in problem.message


def test_reordered_records_are_named(root):
    lines = _write_five(root)
    lines[1], lines[2] = lines[2], lines[1]
    _log(root).write_text("\n".join(lines) + "\n")
    _, problem = audit.verify()
    assert problem is not None and problem.line == 2 and "out of order" in problem.message


def test_filters_by_action_prefix_and_time(root):
    _write_five(root)
    assert [r["run_id"] for r in audit.select(action="promote")] == ["r1", "r3"]
    assert len(audit.select(action="run")) == 3  # run.start is under run
    assert len(audit.select(since="1h")) == 5
    assert audit.select(since="2999-01-01") == []
    with pytest.raises(InvalidInput, match="--since 'yesterday'"):
        audit.select(since="yesterday")


def test_reserved_fields_are_refused(root):
    with pytest.raises(InvalidInput, match="'hash' is reserved"):
        audit.record("promote", hash="x")


def test_concurrent_writers_keep_one_valid_chain(root):
    code = (
        "import sys\nfrom nbops.tracking import audit\n"
        "for i in range(40): audit.record('run.start', writer=sys.argv[1], i=i)\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, str(w)], cwd=root) for w in range(4)]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    n, problem = audit.verify()
    assert problem is None and n == 160


def test_record_is_cheap(root):
    audit.record("warm")
    t0 = time.perf_counter()
    for i in range(200):
        audit.record("run.end", run_id=str(i))
    per = (time.perf_counter() - t0) / 200
    assert per < 0.01, f"{per * 1000:.2f} ms a record"


def test_cli_lists_filters_and_verifies(root):
    _write_five(root)
    out = nbops_cli("audit", "--action", "promote", cwd=root)
    assert out.returncode == 0, out.stderr
    assert "r1" in out.stdout and "r3" in out.stdout and "r2" not in out.stdout
    ok = nbops_cli("audit", "--verify", cwd=root)
    assert ok.returncode == 0 and "5 records" in ok.stdout
    lines = _log(root).read_text().splitlines()
    lines[3] = lines[3].replace('"model":"wine"', '"model":"w1ne"')
    _log(root).write_text("\n".join(lines) + "\n")
    bad = nbops_cli("audit", "--verify", cwd=root)
    assert bad.returncode == 1
    assert "line 4 (record 4)" in bad.stderr and "edited" in bad.stderr
