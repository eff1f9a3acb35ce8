"""``nbops checkout RUN`` restores only inside the project: an ``outs.json`` artifact with hostile
names (``../``, absolute, through a symlink, ``.nbops/``, ``nbops.yaml``, a digest that is a path)
in a real store exits 2 naming the entry, and writes nothing anywhere, outside the root or in."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest
import xxhash

from nbops import cli

EVIL = b"written by a hostile outs.json\n"


def tree(top: Path) -> dict[str, str]:
    """Every path under ``top`` (not following symlinks, without the store's database) with a
    hash of what it holds."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            if name.startswith("mlflow.db"):  # the store itself: reads touch its WAL
                continue
            if p == top / "proj" / ".nbops" / "tmp":  # nbops' scratch space (kept empty)
                assert not any(p.iterdir()), list(p.iterdir())
                continue
            kind = "l" if p.is_symlink() else "d" if p.is_dir() else "f"
            body = hashlib.sha1(p.read_bytes()).hexdigest() if kind == "f" else ""
            found[str(p.relative_to(top))] = kind + body
    return found


@pytest.fixture
def stage_run(project: Path, client: Any) -> Any:
    """A project with nbops.yaml, content EVIL in the out cache, and a function that logs an
    ``outs.json`` to a new stage run (as the runner does) and returns the run id."""
    (project / "nbops.yaml").write_text("stages:\n  make:\n    notebook: make.ipynb\n")
    (project / "make.ipynb").write_text("{}")
    digest = xxhash.xxh3_128(EVIL).hexdigest()  # how nbops names content in its cache
    blob = project / ".nbops" / "cache" / digest[:2] / digest
    blob.parent.mkdir(parents=True)
    blob.write_bytes(EVIL)
    artifacts = (project / ".nbops" / "artifacts" / "exp").as_uri()
    exp = client.create_experiment("exp", artifact_location=artifacts)

    def log(record: Any) -> str:
        run = client.create_run(exp, tags={"nbops.stage": "make"})
        client.log_text(run.info.run_id, json.dumps(record), "outs.json")
        client.set_terminated(run.info.run_id)
        return str(run.info.run_id)

    log.digest = digest  # type: ignore[attr-defined]
    return log


def checkout(run_id: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    capsys.readouterr()
    code = cli.main(["checkout", run_id])
    return code, capsys.readouterr().err


def error_line(err: str) -> str:
    """The one line nbops says (MLflow's download progress bar may come before it)."""
    lines = [line for line in err.splitlines() if line.startswith("nbops checkout: ")]
    assert len(lines) == 1, err
    return lines[0]


HOSTILE = {
    "dot-dot": lambda d, tmp: {"../escaped.txt": {"digest": d}},
    "dot-dot-deep": lambda d, tmp: {"sub/../../../escaped.txt": {"digest": d}},
    "absolute": lambda d, tmp: {str(tmp / "escaped.txt"): {"digest": d}},
    "absolute-inside": lambda d, tmp: {str(tmp / "proj" / "a.txt"): {"digest": d}},
    "symlink": lambda d, tmp: {"link/escaped.txt": {"digest": d}},
    "symlink-folder": lambda d, tmp: {"link": {"digest": None, "files": {"model.pkl": d}}},
    "state": lambda d, tmp: {".nbops/mlflow.db": {"digest": d}},
    "state-cache": lambda d, tmp: {f".nbops/cache/{d[:2]}/{d}": {"digest": d}},
    "config": lambda d, tmp: {"nbops.yaml": {"digest": d}},
    "git": lambda d, tmp: {".git/config": {"digest": d}},
    "folder-escape": lambda d, tmp: {"models": {"digest": None, "files": {"../../x.txt": d}}},
    "folder-absolute": lambda d, tmp: {"models": {"files": {str(tmp / "x.txt"): d}}},
    "digest-path": lambda d, tmp: {"a.txt": {"digest": "../../../../../etc/hostname"}},
    "digest-type": lambda d, tmp: {"a.txt": {"digest": 12}},
    "nul": lambda d, tmp: {"a\x00.txt": {"digest": d}},
    "good-then-bad": lambda d, tmp: {"ok.txt": {"digest": d}, "../escaped.txt": {"digest": d}},
    "list": lambda d, tmp: [["../escaped.txt", d]],
    "entry-null": lambda d, tmp: {"a.txt": None},
}


def test_checkout_of_a_hostile_outs_json_exits_2_and_writes_nothing(
    stage_run: Any, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One store, one run per hostile record (a store per case would cost a second each)."""
    outside = project.parent / "outside"
    outside.mkdir()
    (project / "link").symlink_to(outside)
    (project / ".git").mkdir()
    (project / ".git" / "config").write_text("[core]\n")
    for case, make in HOSTILE.items():
        record = make(stage_run.digest, project.parent)
        run_id = stage_run(record)
        before = tree(project.parent)
        code, err = checkout(run_id, capsys)
        assert code == 2, (case, err)
        assert "Traceback" not in err, (case, err)
        said = error_line(err)
        assert "nothing was restored" in said and f"run {run_id}" in said, (case, err)
        if isinstance(record, dict) and case != "good-then-bad":
            assert repr(next(iter(record)))[:-1] in said, (case, err)
        after = tree(project.parent)
        assert after == before, (case, set(after.items()) ^ set(before.items()))
    db = project / ".nbops" / "mlflow.db"
    assert db.read_bytes().startswith(b"SQLite format 3\x00")


def test_checkout_of_a_sound_outs_json_restores_files_and_folders(
    stage_run: Any, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = stage_run.digest
    run_id = stage_run({"a.txt": {"digest": d}, "models": {"digest": None, "files": {"m/x": d}}})
    code, err = checkout(run_id, capsys)
    assert code == 0, err
    assert (project / "a.txt").read_bytes() == EVIL
    assert (project / "models" / "m" / "x").read_bytes() == EVIL


def test_the_refusal_names_the_run_and_the_entry(tmp_path: Path) -> None:
    from nbops.errors import InvalidInput
    from nbops.pipeline.cache import OutCache, load_record
    from nbops.pipeline.hashing import HashCache

    state = tmp_path / ".nbops"
    cache = OutCache(tmp_path, state, HashCache(tmp_path, state))
    with pytest.raises(InvalidInput) as caught:
        cache.restore({"../x": {"digest": "0" * 32}}, run="abc123")
    assert caught.value.message.startswith("run abc123: outs.json entry '../x' leaves the project")
    for body in (b"", b"{", b"\xff", b"[" * 100_000):
        (tmp_path / "outs.json").write_bytes(body)
        with pytest.raises(InvalidInput, match="^run abc123: its outs.json "):
            load_record(tmp_path / "outs.json", "abc123")
    with pytest.raises(InvalidInput, match="does not exist"):
        load_record(tmp_path / "missing.json", "abc123")
