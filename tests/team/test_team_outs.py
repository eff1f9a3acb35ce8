"""Shared outs on a real tracking server (PostgreSQL, proxied artifacts): machine A runs the
example pipeline; machine B, a second copy of the same files with an EMPTY ``.nbops/``, finds
everything up to date, re-runs nothing and gets A's outs byte for byte; an unchanged out is
uploaded once; a damaged blob on the server is refused naming the out and digest, and
``nbops push --verify`` repairs it; ``nbops push`` / ``pull`` say what they moved."""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import nbops_cli, states
from tests.team.conftest import unique
from tests.team.servers import MlflowServer

EXAMPLE = Path(__file__).resolve().parents[2] / "example_notebooks"
OUTS = [
    "data/train.csv",
    "data/test.csv",
    "models/model-C0.01.pkl",
    "models/model-C0.1.pkl",
    "models/model-C1.0.pkl",
    "reports/metrics.json",
]


def _clone(dst: Path, experiment: str, seed: int) -> Path:
    """The example's source files, as a git clone has them: no outs, an empty .nbops/. The
    experiment and seed are this test's own, so its outs' contents are too (the server's blob
    store is shared by every test of the session)."""
    shutil.copytree(
        EXAMPLE,
        dst,
        ignore=shutil.ignore_patterns(".nbops", "models", "reports", "train.csv", "test.csv"),
    )
    spec = (dst / "nbops.yaml").read_text()
    spec = spec.replace("experiment: wine", f"experiment: {experiment}")
    spec = spec.replace("seed: 0}", f"seed: {seed}}}")
    (dst / "nbops.yaml").write_text(spec)
    (dst / ".nbops").mkdir()
    return dst


def _env(root: Path, server: MlflowServer) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "NBOPS_"))}
    env.update(server.env_for())
    env["NBOPS_PROJECT_ROOT"] = str(root)
    env["NBOPS_ZYGOTE"] = "0"
    return env


def _cli(root: Path, server: MlflowServer, *args: str) -> Any:
    return nbops_cli(*args, cwd=root, env=_env(root, server))


def _blob_files(server: MlflowServer) -> dict[str, Path]:
    """The blobs the server's artifact store holds, by digest (as files under its destination)."""
    return {
        p.name: p
        for p in server.artifacts.rglob("*")
        if p.is_file() and p.parent.parent.name == "blobs"
    }


@pytest.fixture(scope="module")
def machines(tmp_path_factory: pytest.TempPathFactory, team_server: MlflowServer) -> Any:
    base = tmp_path_factory.mktemp("outs")
    experiment, seed = unique("outs"), random.randint(1, 10**6)
    a = _clone(base / "a" / "wine", experiment, seed)
    b = _clone(base / "b" / "wine", experiment, seed)
    first = _cli(a, team_server, "run")
    assert first.returncode == 0, first.stdout + first.stderr
    return {"a": a, "b": b, "first": first}


def test_a_second_machine_reruns_nothing_and_gets_the_same_bytes(
    machines: Any, team_server: MlflowServer
) -> None:
    a, b, first = machines["a"], machines["b"], machines["first"]
    assert "shared outs: uploaded" in first.stderr, first.stderr
    # the blob store holds every out file of A's run once
    blobs = _blob_files(team_server)
    cache_a = {p.name for p in (a / ".nbops" / "cache").rglob("*") if p.is_file()}
    assert cache_a and cache_a <= set(blobs)
    # B: empty .nbops/, no outs; status answers from the server: all up to date
    assert not any((b / o).exists() for o in OUTS)
    status = _cli(b, team_server, "status", "--check")
    assert status.returncode == 0, status.stdout + status.stderr
    assert "everything is up to date" in status.stdout
    assert "on the tracking server" in status.stdout  # the outs are to fetch: said so
    # B's run re-runs nothing: each stage's outs are fetched
    run = _cli(b, team_server, "run")
    assert run.returncode == 0, run.stdout + run.stderr
    got = states(run.stdout)
    assert set(got.values()) == {"fetched"}, run.stdout
    assert set(got) == {"prepare", "train", "evaluate"}
    assert "done" not in run.stdout and "running" not in run.stdout
    for out in OUTS:
        assert (b / out).read_bytes() == (a / out).read_bytes(), out
    # and now B's own state knows: the next run is a no-op without asking the server
    again = _cli(b, team_server, "run")
    assert set(states(again.stdout).values()) == {"up to date"}, again.stdout
    # the blob store is nbops' own: listings of runs leave it out
    listed = _cli(b, team_server, "runs", "--json")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert "nbops-blobs" not in listed.stdout and "shared outs" not in listed.stdout


def test_an_unchanged_out_is_uploaded_once(machines: Any, team_server: MlflowServer) -> None:
    a = machines["a"]
    before = set(_blob_files(team_server))
    rerun = _cli(a, team_server, "run", "--force", "prepare")  # the same split again
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert states(rerun.stdout)["prepare"] == "done"
    assert "shared outs: uploaded 0 files (0 B), 2 already there" in rerun.stderr, rerun.stderr
    assert set(_blob_files(team_server)) == before


def test_checkout_of_a_sweep_point_on_an_empty_cache_fetches_its_bytes(
    machines: Any, team_server: MlflowServer
) -> None:
    a, b = machines["a"], machines["b"]
    state = json.loads((a / ".nbops" / "pipeline" / "state.json").read_text())
    point = next(r for r in state["stages"]["train"].values() if "C0.1" in str(r["outs"]))
    shutil.rmtree(b / ".nbops" / "cache", ignore_errors=True)
    (b / "models" / "model-C0.1.pkl").write_bytes(b"edited")
    out = _cli(b, team_server, "checkout", point["run_id"])
    assert out.returncode == 0, out.stdout + out.stderr
    assert "restored models/model-C0.1.pkl" in out.stdout
    for name in ("model-C0.1.pkl", "model-C0.1.json"):
        assert (b / "models" / name).read_bytes() == (a / "models" / name).read_bytes()

    # a damaged blob on the server: refused at checkout, naming the file and its digest
    digest = point["outs"]["models/model-C0.1.pkl"]
    blob = _blob_files(team_server)[digest]
    good = blob.read_bytes()
    blob.write_bytes(bytes(len(good)))  # same size: only the digest tells
    try:
        shutil.rmtree(b / ".nbops" / "cache")
        (b / "models" / "model-C0.1.pkl").write_bytes(b"edited")
        bad = _cli(b, team_server, "checkout", point["run_id"])
        assert bad.returncode == 2, bad.stdout + bad.stderr
        assert "models/model-C0.1.pkl" in bad.stderr and digest in bad.stderr
        assert "damaged" in bad.stderr and "Traceback" not in bad.stderr
        assert (b / "models" / "model-C0.1.pkl").read_bytes() == b"edited"  # nothing restored
        assert not (b / ".nbops" / "cache" / digest[:2] / digest).exists()
        # A's cache holds the real content: push --verify replaces the damaged copy
        fix = _cli(a, team_server, "push", "--verify", "--json")
        assert fix.returncode == 0, fix.stdout + fix.stderr
        assert json.loads(fix.stdout)["replaced"] == [digest]
        assert blob.read_bytes() == good
        ok = _cli(b, team_server, "checkout", point["run_id"])
        assert ok.returncode == 0, ok.stdout + ok.stderr
        assert (b / "models" / "model-C0.1.pkl").read_bytes() == good
    finally:
        blob.write_bytes(good)


def test_push_and_pull_say_what_they_moved(
    machines: Any, team_server: MlflowServer, tmp_path: Path
) -> None:
    a, b = machines["a"], machines["b"]
    shutil.rmtree(b / ".nbops" / "cache", ignore_errors=True)
    pulled = _cli(b, team_server, "pull", "--json")
    assert pulled.returncode == 0, pulled.stdout + pulled.stderr
    report = json.loads(pulled.stdout)
    assert (
        report["files"] == 9 and report["already"] == 0
    )  # 2 csv, 3 x (pkl, json), 1 report and report["bytes"] > 0
    assert len(report["runs"]) == 3  # the latest run of each stage (train's: its sweep's)
    again = _cli(b, team_server, "pull", "train")
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.strip() == "pulled 0 files (0 B), 6 already there"
    pushed = _cli(a, team_server, "push")
    assert pushed.returncode == 0, pushed.stdout + pushed.stderr
    assert pushed.stdout.startswith("pushed 0 files (0 B), ")
    bad = _cli(b, team_server, "pull", "nosuchstage")
    assert bad.returncode == 2 and "nosuchstage" in bad.stderr and "Traceback" not in bad.stderr
    assert "nbops pull: 'nosuchstage': no stage of that name" in bad.stderr  # said once
    # the embedded store shares nothing: one line, exit 2
    env = _env(a, team_server)
    env.pop("MLFLOW_TRACKING_URI")
    for verb in ("push", "pull"):
        local = nbops_cli(verb, cwd=a, env=env)
        assert local.returncode == 2, local.stdout + local.stderr
        assert "nothing to share: the store is .nbops/mlflow.db" in local.stderr
        assert "set MLFLOW_TRACKING_URI to a server" in local.stderr
        assert len(local.stderr.strip().splitlines()) <= 2, local.stderr
