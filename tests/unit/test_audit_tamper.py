"""Tampering with the end of the audit log is found: every variant, with and without a later
append, with and without the tracking store as a second witness; random tamperings too."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nbops import project
from nbops.tracking import audit
from tests.conftest import nbops_cli

N = 5


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / ".nbops").mkdir()
    monkeypatch.setenv("NBOPS_PROJECT_ROOT", str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path


@pytest.fixture(scope="module")
def shared_store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One SQLite MLflow store for the module's projects (made once: a schema takes seconds);
    each project keeps its own head in it, as projects sharing a tracking server do."""
    from nbops.mlflow.store import open_store

    uri = f"sqlite:///{tmp_path_factory.mktemp('store') / 'mlflow.db'}"
    open_store(uri)
    return uri


@pytest.fixture
def stored(root: Path, shared_store: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project whose tracking store exists (the second witness of the log's end)."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", shared_store)
    return root


def _log(root: Path) -> Path:
    return root / ".nbops" / "audit.jsonl"


def _head(root: Path) -> Path:
    return root / ".nbops" / "audit.head"


def _write(root: Path, n: int = N) -> list[str]:
    for i in range(n):
        audit.record("promote", root=root, run_id=f"r{i}", model="wine")
    return _log(root).read_text().splitlines()


def _put(root: Path, lines: list[str]) -> None:
    _log(root).write_text("".join(x + "\n" for x in lines))


# --- the variants ---------------------------------------------------------------------------
def delete_last(root: Path, lines: list[str]) -> None:
    _put(root, lines[:-1])


def delete_last_two(root: Path, lines: list[str]) -> None:
    _put(root, lines[:-2])


def edit_field(root: Path, lines: list[str]) -> None:
    lines[2] = lines[2].replace('"model":"wine"', '"model":"evil"')
    _put(root, lines)


def reorder(root: Path, lines: list[str]) -> None:
    lines[1], lines[2] = lines[2], lines[1]
    _put(root, lines)


def delete_head(root: Path, lines: list[str]) -> None:
    _head(root).unlink()


def delete_head_and_last_two(root: Path, lines: list[str]) -> None:
    _head(root).unlink()
    _put(root, lines[:-2])


def delete_log(root: Path, lines: list[str]) -> None:
    _log(root).unlink()


def empty_log(root: Path, lines: list[str]) -> None:
    _log(root).write_text("")


def delete_log_and_head(root: Path, lines: list[str]) -> None:
    _log(root).unlink()
    _head(root).unlink()


def truncate_mid_line(root: Path, lines: list[str]) -> None:
    data = _log(root).read_bytes()
    _log(root).write_bytes(data[: len(data) - len(lines[-1]) // 2])


def duplicate(root: Path, lines: list[str]) -> None:
    _put(root, [*lines[:3], lines[2], *lines[3:]])


def duplicate_last(root: Path, lines: list[str]) -> None:
    _put(root, [*lines, lines[-1]])


def deeply_nested_line(root: Path, lines: list[str]) -> None:
    """A line json.loads gives up on with RecursionError, not ValueError."""
    _put(root, [*lines[:3], "[" * 100_000 + "]" * 100_000, *lines[3:]])


def rewind_head_too(root: Path, lines: list[str]) -> None:
    """Cut the last two records and rewrite audit.head to match: only the store can tell."""
    _put(root, lines[:-2])
    rec = json.loads(lines[-3])
    _head(root).write_text(json.dumps({"seq": rec["seq"], "hash": rec["hash"]}))


# (tampering, first bad seq, words of the message) found with the local witness alone
LOCAL = [
    (delete_last, 5, "ends at record 4 but audit.head says record 5"),
    (delete_last_two, 4, "records 4..5 removed from the end"),
    (edit_field, 3, "record 3's content does not match its hash"),
    (reorder, 2, "record 3 is out of order: record 2 belongs here"),
    (delete_head, 6, "audit.head is missing"),
    (delete_head_and_last_two, 4, "audit.head is missing"),
    (delete_log, 1, "ends at record 0 but audit.head says record 5"),
    (empty_log, 1, "ends at record 0 but audit.head says record 5"),
    (truncate_mid_line, 5, "not a JSON record (truncated mid-line"),
    (duplicate, 3, "record 3 appears a second time"),
    (duplicate_last, 5, "record 5 appears a second time"),
    (deeply_nested_line, 4, "not a JSON record"),
]
# found only because the store holds the head too
STORED = [
    (delete_head_and_last_two, 4, "ends at record 3 but the store's head"),
    (delete_log_and_head, 1, "ends at record 0 but the store's head"),
    (rewind_head_too, 4, "ends at record 3 but the store's head"),
]


def _name(case: tuple[Callable[..., None], int, str]) -> str:
    return case[0].__name__


@pytest.mark.parametrize("append", [False, True], ids=["as-left", "then-appended"])
@pytest.mark.parametrize("case", LOCAL, ids=_name)
def test_each_tampering_is_found_naming_the_first_bad_record(root, case, append):
    tamper, seq, words = case
    tamper(root, _write(root))
    if append:  # an append after the tampering must not hide it
        audit.record("run.start", root=root, run_id="after")
        audit.record("run.end", root=root, run_id="after")
    n, problem = audit.verify(root)
    assert problem is not None, "tampering not found"
    assert problem.seq == seq, str(problem)
    mid_log = (
        edit_field,
        reorder,
        truncate_mid_line,
        duplicate,
        duplicate_last,
        deeply_nested_line,
    )
    if not append or tamper in mid_log:
        assert words in problem.message, str(problem)
    elif tamper in (delete_head, delete_head_and_last_two):
        assert "the append at" in problem.message, str(problem)  # it recorded what it found
        assert "audit.head was missing" in problem.message, str(problem)
    else:
        assert "the append at" in problem.message, str(problem)
        assert "audit.head said record 5 was written last" in problem.message, str(problem)
    assert n == (seq if "appears a second time" in words else min(seq - 1, N))


@pytest.mark.parametrize("append", [False, True], ids=["as-left", "then-appended"])
@pytest.mark.parametrize("case", STORED, ids=_name)
def test_the_store_catches_what_the_local_files_cannot(stored, case, append):
    tamper, seq, words = case
    tamper(stored, _write(stored))
    if append:
        audit.record("run.start", root=stored, run_id="after")
    _, problem = audit.verify(stored)
    assert problem is not None, "tampering not found"
    assert problem.seq == seq, str(problem)
    if append:  # the append read the store's head and recorded the gap
        assert "the store said record 5 was written last" in problem.message, str(problem)
    else:
        assert words in problem.message, str(problem)
    # without the store as a witness the rewinds that also rewrote the head are invisible
    if tamper is not delete_head_and_last_two and not append:
        assert audit.verify(stored, use_store=False)[1] is None


def test_an_append_after_a_cut_continues_from_the_head_with_a_visible_gap(root):
    lines = _write(root)
    _put(root, lines[:-2])
    rec = audit.record("promote", root=root, run_id="later")
    recs = [json.loads(x) for x in _log(root).read_text().splitlines()]
    gap = recs[3]
    assert gap["action"] == audit.GAP and gap["seq"] == 6 and gap["log_end"] == 3
    assert gap["witness_seq"] == 5 and gap["prev"] == json.loads(lines[-1])["hash"]
    assert rec["seq"] == 7 and rec["prev"] == gap["hash"]
    listed = nbops_cli("audit", "--action", "audit", cwd=root)
    assert listed.returncode == 0 and "audit.gap" in listed.stdout


def test_a_head_behind_the_log_after_a_crash_is_not_tampering(root):
    """A crash between writing the record and writing audit.head leaves the head one behind."""
    lines = _write(root)
    rec = json.loads(lines[-2])
    _head(root).write_text(json.dumps({"seq": rec["seq"], "hash": rec["hash"]}))
    assert audit.verify(root) == (N, None)
    audit.record("run.end", root=root)
    assert audit.verify(root) == (N + 1, None)


def test_a_store_head_that_lags_the_log_is_not_tampering(stored, monkeypatch):
    _write(stored, 3)  # anchored in the store (MLflow is loaded in this process)
    from nbops.mlflow.store import open_store

    store = open_store(project.tracking_uri(stored))
    assert audit.store_head(store, stored) == audit.Head(
        3, json.loads(_log(stored).read_text().splitlines()[-1])["hash"]
    )
    code = (
        "from nbops.tracking import audit\nfor i in range(4): audit.record('schedule.add', i=i)\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=stored, check=True, timeout=120)
    assert audit.store_head(store, stored).seq == 3  # that process had no MLflow: no anchor
    v = audit.check(stored)
    assert v.problem is None and v.records == 7 and "the tracking store" in v.checked


def test_cli_verify_names_the_store_when_log_and_head_are_gone(stored):
    _write(stored)
    delete_log_and_head(stored, [])
    out = nbops_cli("audit", "--verify", cwd=stored)
    assert out.returncode == 1, out.stdout + out.stderr
    line = out.stderr.strip().splitlines()[-1]
    assert "the log ends at record 0 but the store's head" in line
    assert "says record 5 was written last" in line and "Traceback" not in out.stderr


def test_eight_concurrent_appenders_keep_one_valid_chain(root):
    code = (
        "import sys\nfrom nbops.tracking import audit\n"
        "for i in range(25): audit.record('run.start', writer=sys.argv[1], i=i)\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, str(w)], cwd=root) for w in range(8)]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    recs = [json.loads(x) for x in _log(root).read_text().splitlines()]
    assert [r["seq"] for r in recs] == list(range(1, 201))
    assert not [r for r in recs if r["action"] == audit.GAP]
    assert audit.verify(root) == (200, None)


# --- random tamperings ----------------------------------------------------------------------
@st.composite
def tamperings(draw: st.DrawFn) -> tuple[str, tuple[int, ...], int]:
    kind = draw(st.sampled_from(["delete", "edit", "swap", "duplicate", "truncate", "head"]))
    a = draw(st.integers(0, N - 1))
    b = draw(st.integers(0, N))
    appends = draw(st.integers(0, 2))
    return kind, (a, b), appends


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(t=tamperings(), cut=st.integers(0, 10_000))
def test_random_tamperings_are_always_found(root, t, cut):
    kind, (a, b), appends = t
    for f in (_log(root), _head(root)):
        f.unlink(missing_ok=True)
    lines = _write(root)
    if kind == "delete":
        lo, hi = sorted((a, max(b, a + 1)))
        _put(root, lines[:lo] + lines[hi:])
    elif kind == "edit":
        rec = json.loads(lines[a])
        rec["run_id"] = rec["run_id"] + "x"
        lines_edited = list(lines)
        lines_edited[a] = json.dumps(rec, sort_keys=True, separators=(",", ":"))
        _put(root, lines_edited)
    elif kind == "swap":
        c = (a + 1 + b % (N - 1)) % N
        swapped = list(lines)
        swapped[a], swapped[c] = swapped[c], swapped[a]
        _put(root, swapped)
    elif kind == "duplicate":
        _put(root, [*lines[:b], lines[a], *lines[b:]])
    elif kind == "truncate":
        data = _log(root).read_bytes()
        _log(root).write_bytes(data[: cut % (len(data) - 1)])  # shorter than minus its newline
    else:
        _head(root).unlink()
    now = _log(root).read_text().splitlines()
    # the first line that differs from the log as written (N if only the head was touched)
    first = next(
        (i for i, (x, y) in enumerate(zip(now, lines, strict=False)) if x != y), min(len(now), N)
    )
    for i in range(appends):
        audit.record("run.end", root=root, i=i)
    n, problem = audit.verify(root)
    assert problem is not None, f"{kind} {a} {b} {appends} not found"
    assert isinstance(problem.seq, int) and problem.seq <= first + 1, str(problem)
    assert n <= first


# --- what the files are ------------------------------------------------------------------------
def test_a_log_that_is_a_link_or_a_device_is_refused_and_its_target_untouched(root, tmp_path):
    outside = tmp_path.parent / f"{tmp_path.name}-outside.txt"
    outside.write_text("precious\n")
    _log(root).symlink_to(outside)
    with pytest.raises(audit.InvalidInput, match="cannot be opened for appending"):
        audit.record("promote", root=root)
    audit.safe_record("promote", root=root)  # run logging never fails because of it
    assert outside.read_text() == "precious\n"
    _log(root).unlink()
    _log(root).symlink_to("/dev/null")
    with pytest.raises(audit.InvalidInput):
        audit.record("promote", root=root)


def test_a_fifo_head_does_not_hang_verify_and_a_planted_temp_link_is_not_followed(root, tmp_path):
    import os

    _write(root, 2)
    _head(root).unlink()
    os.mkfifo(_head(root))
    _, problem = audit.verify(root)  # returns: a FIFO is never read
    assert problem is not None and "unreadable" in problem.message
    _head(root).unlink()
    outside = tmp_path.parent / f"{tmp_path.name}-victim.txt"
    outside.write_text("precious\n")
    code = (
        "import os, sys\nfrom pathlib import Path\nfrom nbops.tracking import audit\n"
        "tmp = Path(sys.argv[1]) / '.nbops' / f'.audit.head.{os.getpid()}'\n"
        "tmp.symlink_to(sys.argv[2])\naudit.record('run.end')\n"
    )
    subprocess.run([sys.executable, "-c", code, str(root), str(outside)], cwd=root, check=True)
    assert outside.read_text() == "precious\n"
    assert json.loads(_head(root).read_text())["seq"] == 4  # gap for the missing head, then it
