"""nbops' own state files (``.nbops/pipeline/state.json``, ``.nbops/hashes.json``) in any shape a
crash, a teammate or an attacker can leave them: ``nbops status`` still answers (the file set
aside to ``<name>.corrupt-<time>``, said once on stderr), never raises another exception, never
hangs; and deps on a FIFO or device are refused without being opened."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nbops import cli
from nbops.errors import ConfigError, NbopsError
from nbops.pipeline import statefile
from nbops.pipeline.hashing import HashCache
from nbops.pipeline.runner import Runner
from nbops.pipeline.state import State
from tests.conftest import notebook


@pytest.fixture(autouse=True)
def no_hang() -> Iterator[None]:
    """Whatever blocks (an open of a FIFO, a read of /dev/zero) fails the test instead."""

    def hung(signum: int, frame: FrameType | None) -> None:
        raise TimeoutError("nbops hung")

    old = signal.signal(signal.SIGALRM, hung)
    signal.alarm(120)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project whose stage ``make`` ran and is up to date (its state written by nbops)."""
    root = tmp_path / "proj"
    (root / "data").mkdir(parents=True)
    (root / "data" / "raw.csv").write_text("a,b\n1,2\n")
    (root / "out.csv").write_text("made\n")
    notebook(root / "make.ipynb", ("n = 3", ["parameters"]), "print(n)")
    (root / "nbops.yaml").write_text(
        "stages:\n  make:\n    notebook: make.ipynb\n    deps: [data/]\n    outs: [out.csv]\n"
    )
    monkeypatch.setenv("NBOPS_PROJECT_ROOT", str(root))
    monkeypatch.chdir(root)
    runner = Runner(root)
    for plan in runner.plan():
        for pt in runner.assess(plan):
            assert pt.fp is not None
            outs = {o: runner.hashes.digest(o) for o in plan.stage.outs}
            runner.state.put(plan.name, pt.key, pt.fp.record(outs, "0" * 32, time.time()))
    runner.state.save()
    runner.hashes.save()
    return root


STATE = Path(".nbops/pipeline/state.json")
HASHES = Path(".nbops/hashes.json")


def status(capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    capsys.readouterr()
    code = cli.main(["status"])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def aside(root: Path, rel: Path) -> list[Path]:
    return sorted((root / rel).parent.glob(rel.name + ".corrupt-*"))


def test_the_fixture_is_up_to_date(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    up = "make                         up to date\neverything is up to date\n"
    assert status(capsys) == (0, up, "")


BAD_JSON = {
    "empty": b"",
    "truncated": b'{"stages": {"make": {"-": {"code": "ab',
    "a list": b"[]",
    "null": b"null",
    "a number": b"3",
    "a string": b'"state"',
    "not utf-8": b"\xff\xfe{}",
    "nested too deeply": b"[" * 200_000,
    "a huge integer": b'{"x": ' + b"9" * 5000 + b"}",
    "NaN text": b"NaN",
}


@pytest.mark.parametrize("case", sorted(BAD_JSON))
@pytest.mark.parametrize("rel", [STATE, HASHES], ids=["state.json", "hashes.json"])
def test_unusable_json_is_set_aside_and_said_once(
    root: Path, rel: Path, case: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (root / rel).write_bytes(BAD_JSON[case])
    code, out, err = status(capsys)
    assert code == 0, err
    warned = [line for line in err.splitlines() if str(root / rel) in line]
    assert len(warned) == 1 and "corrupt-" in warned[0], err
    (moved,) = aside(root, rel)
    assert moved.read_bytes() == BAD_JSON[case]  # nothing is lost
    # state lost: the stage runs again; a cache lost: files are hashed again, still up to date
    assert ("never run" in out) == (rel == STATE), out
    assert status(capsys)[2] == ""  # said once


SHAPES = {
    "stages a list": {"stages": [], "failed": {}},
    "a stage a list": {"stages": {"make": []}},
    "a record null": {"stages": {"make": {"-": None}}},
    "code a number": {"stages": {"make": {"-": {"code": 1, "params": {}, "deps": {}, "env": ""}}}},
    "deps a list": {"stages": {"make": {"-": {"code": "", "params": {}, "deps": [], "env": ""}}}},
    "finished text": {
        "stages": {
            "make": {"-": {"code": "", "params": {}, "deps": {}, "env": "", "finished": "x"}}
        }
    },
    "failed a list": {"failed": [1, 2]},
    "failed numbers": {"failed": {"make": 3}},
}


@pytest.mark.parametrize("case", sorted(SHAPES))
def test_state_of_the_wrong_shape_is_set_aside(
    root: Path, case: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (root / STATE).write_text(json.dumps(SHAPES[case]))
    capsys.readouterr()
    State(root / ".nbops")
    err = capsys.readouterr().err
    assert str(root / STATE) in err and "malformed" in err, err
    (moved,) = aside(root, STATE)
    assert json.loads(moved.read_text()) == SHAPES[case]
    assert status(capsys)[2] == ""


def test_the_sound_records_next_to_a_malformed_one_are_kept(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = json.loads((root / STATE).read_text())
    good["stages"]["other"] = {"-": None, "x": {"code": 1}}
    good["failed"] = {"make": 3, "other": "it failed"}
    (root / STATE).write_text(json.dumps(good))
    state = State(root / ".nbops")
    assert state.get("make", "-") is not None and state.failed == {"other": "it failed"}
    assert "and 2 more problems" in capsys.readouterr().err
    state.save()
    assert State(root / ".nbops").stages.keys() == {"make"}
    assert status(capsys)[1].startswith("make                         up to date")


def test_hash_entries_of_the_wrong_shape_are_dropped(root: Path) -> None:
    entries = json.loads((root / HASHES).read_text())
    keys = set(entries)
    entries.update({"/x": [1, 2], "/y": "z", "/z": [1, 2, 3, 4], "/w": [True, 1, 2, "d"]})
    (root / HASHES).write_text(json.dumps(entries))
    cache = HashCache(root, root / ".nbops")
    assert set(cache.entries) == keys and cache.dirty
    cache.save()
    assert set(json.loads((root / HASHES).read_text())) == keys


def special(root: Path, rel: Path, kind: str) -> None:
    path = root / rel
    path.unlink()
    if kind == "directory":
        path.mkdir()
        (path / "keep.txt").write_text("mine")
    elif kind == "symlink to /dev/zero":
        path.symlink_to("/dev/zero")
    elif kind == "symlink to a FIFO":
        os.mkfifo(root / "fifo")
        path.symlink_to(root / "fifo")
    elif kind == "FIFO":
        os.mkfifo(path)
    elif kind == "huge":
        with open(path, "wb") as f:
            f.truncate(statefile.MAX_BYTES + 1)  # sparse: costs no disk
    elif kind == "socket":
        import socket

        s = socket.socket(socket.AF_UNIX)
        s.bind(str(path))
        s.close()


KINDS = ["directory", "symlink to /dev/zero", "symlink to a FIFO", "FIFO", "huge", "socket"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("rel", [STATE, HASHES], ids=["state.json", "hashes.json"])
def test_something_else_in_place_of_a_state_file_is_moved_aside_unopened(
    root: Path, rel: Path, kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    special(root, rel, kind)
    code, out, err = status(capsys)
    assert code == 0 and str(root / rel) in err and "corrupt-" in err, err
    (moved,) = aside(root, rel)
    if kind == "directory":
        assert (moved / "keep.txt").read_text() == "mine"
    # and the next write makes a plain file again
    if rel == STATE:
        State(root / ".nbops").save()
    else:
        cache = HashCache(root, root / ".nbops")
        cache.digest("out.csv")
        cache.dirty = True
        cache.save()
    assert (root / rel).is_file() and not (root / rel).is_symlink()


def test_a_state_folder_that_is_a_file_is_moved_aside_on_write(root: Path) -> None:
    (root / STATE).unlink()
    (root / STATE).parent.rmdir()
    (root / STATE).parent.write_text("not a folder")
    state = State(root / ".nbops")  # reading: no state
    assert state.stages == {}
    state.save()
    assert (root / STATE).is_file()


def test_an_unwritable_state_file_is_a_one_line_error(root: Path) -> None:
    if os.geteuid() == 0:  # root writes anywhere: a full path makes the write fail instead
        long = root / ".nbops" / ("x" * 300) / "state.json"
        with pytest.raises(NbopsError) as caught:
            statefile.write(long, {})
    else:
        (root / STATE).parent.chmod(0o500)
        with pytest.raises(NbopsError) as caught:
            State(root / ".nbops").save()
    assert "cannot write" in caught.value.message and caught.value.hint


def test_a_hash_cache_that_cannot_be_saved_is_said_not_fatal(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A read-only project still answers ``nbops status``: the cache is only a cache."""
    cache = HashCache(root, root / ".nbops" / ("x" * 300))  # a name no file system takes
    assert cache.digest("out.csv")
    capsys.readouterr()
    cache.save()
    assert "hashes the files again" in capsys.readouterr().err


def test_a_dep_on_a_folder_above_proc_is_refused(root: Path) -> None:
    from nbops.pipeline import spec

    (root / "nbops.yaml").write_text("stages:\n  make:\n    notebook: make.ipynb\n    deps: [/]\n")
    with pytest.raises(ConfigError, match="holds /proc"):
        spec.load(root / "nbops.yaml")


# --- deps that are no regular file ---------------------------------------------------------------
@pytest.mark.parametrize("kind", ["FIFO", "symlink to /dev/zero", "symlink to /proc/kmsg"])
def test_a_dep_folder_holding_a_special_file_is_refused_unopened(
    root: Path, kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    target = root / "data" / "odd"
    if kind == "FIFO":
        os.mkfifo(target)
    else:
        target.symlink_to(kind.removeprefix("symlink to "))
    code, _, err = status(capsys)
    assert code == 2 and "data/" in err and str(target) in err, err
    assert len([line for line in err.splitlines() if not line.startswith("  hint")]) == 1, err


def test_hashing_refuses_what_is_not_a_regular_file(root: Path) -> None:
    os.mkfifo(root / "fifo")
    cache = HashCache(root, root / ".nbops")
    for rel in ("fifo", "/dev/zero", "/dev/null"):
        with pytest.raises(ConfigError, match="not a regular file"):
            cache.digest(rel)


def test_a_fifo_dep_fails_nbops_run_before_anything_runs(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    os.mkfifo(root / "data" / "pipe")
    (root / "nbops.yaml").write_text(
        "stages:\n  make:\n    notebook: make.ipynb\n    deps: [data/pipe]\n    outs: [out.csv]\n"
    )
    for argv in (["status"], ["run", "--dry-run"], ["run"]):
        capsys.readouterr()
        assert cli.main(argv) == 2
        err = capsys.readouterr().err
        assert "nbops.yaml:4:" in err and "'data/pipe' is a FIFO" in err, err


# --- property: random truncations and type swaps --------------------------------------------------
SWAPS: list[Any] = [None, [], {}, 0, -1, 1.5, True, "x", "", 10**30, [1, "a"], {"a": None}]


def nodes(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield path
    if isinstance(value, dict):
        for k, v in value.items():
            yield from nodes(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from nodes(v, (*path, i))


def swapped(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {**value, head: swapped(value[head], rest, new)}
    return [swapped(v, rest, new) if i == head else v for i, v in enumerate(value)]


@st.composite
def damage(draw: st.DrawFn, text: str) -> bytes:
    how = draw(st.sampled_from(["truncate", "swap", "swap", "bytes"]))
    if how == "truncate":
        return text.encode()[: draw(st.integers(0, len(text)))]
    if how == "bytes":
        raw = bytearray(text.encode())
        for _ in range(draw(st.integers(1, 5))):
            raw[draw(st.integers(0, len(raw) - 1))] = draw(st.integers(0, 255))
        return bytes(raw)
    value = json.loads(text)
    where = draw(st.sampled_from(list(nodes(value))))
    return json.dumps(swapped(value, where, draw(st.sampled_from(SWAPS)))).encode()


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_random_damage_to_the_state_files_never_breaks_status(
    root: Path, capsys: pytest.CaptureFixture[str], data: st.DataObject
) -> None:
    pristine = root.parent / "pristine"  # the sound files, kept once for every example
    if not pristine.exists():
        pristine.mkdir()
        for rel in (STATE, HASHES):
            shutil.copy(root / rel, pristine / rel.name)
    texts = {rel: (pristine / rel.name).read_text() for rel in (STATE, HASHES)}
    damaged = {
        rel: data.draw(damage(text), label=rel.name)
        for rel, text in texts.items()
        if data.draw(st.booleans(), label=f"damage {rel.name}")
    }
    for rel, text in texts.items():
        for old in aside(root, rel):
            old.unlink()
        (root / rel).write_bytes(damaged.get(rel, text.encode()))
    code, out, err = status(capsys)
    assert code in (0, 2), err
    assert len([line for line in err.splitlines() if "nbops:" in line]) <= 2, err
    assert out.strip().endswith(("up to date", "stale")), out


def test_state_writes_are_atomic_under_concurrent_readers(root: Path) -> None:
    """A reader never sees half a file: each sees the old state or the new one."""
    import threading

    state = State(root / ".nbops")
    rec = state.get("make", "-")
    assert rec is not None
    stop = threading.Event()
    seen: list[int] = []

    def read() -> None:
        while not stop.is_set():
            seen.append(len(State(root / ".nbops").stages))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for _ in range(100):
            state.put(f"s{random.randrange(1000)}", "-", rec)
            state.save()
    finally:
        stop.set()
        reader.join()
    assert seen and not aside(root, STATE)
