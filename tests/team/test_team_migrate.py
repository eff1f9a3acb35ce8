"""``nbops migrate --to URI``: a real project (the example pipeline, its sweep, two promotions) on
the embedded store, copied onto the shared team server (PostgreSQL, proxied artifacts) and
checked field by field; again (nothing copied twice); after a simulated interruption (only the
missing and the half-made copies are copied); and the usage errors, each one line and exit 2."""

from __future__ import annotations

import contextlib
import filecmp
import io
import json
import os
import re
import shutil
import socket
from pathlib import Path
from typing import Any

import pytest

from nbops import tags
from tests.conftest import free_port, nbops_cli
from tests.team.conftest import unique
from tests.team.servers import MlflowServer

EXAMPLE = Path(__file__).resolve().parents[2] / "example_notebooks"
COPIED = re.compile(r"^copied run ([0-9a-f]{32}) -> ([0-9a-f]{32}) ", re.M)


def _local_env(root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_TRACKING_")}
    env["NBOPS_PROJECT_ROOT"] = str(root)
    return env


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The example pipeline run on its embedded store; its best point promoted @champion twice
    (an alias history), another @challenger; one hand-logged run with a 2,500-step history,
    nested artifacts and a child run."""
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    root = tmp_path_factory.mktemp("migrate") / "wine"
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns(".nbops", "models", "reports"))
    experiment = unique("wine-migrate")
    spec = root / "nbops.yaml"
    spec.write_text(spec.read_text().replace("experiment: wine", f"experiment: {experiment}"))
    env = _local_env(root)
    out = nbops_cli("run", cwd=root, env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    local = MlflowClient(f"sqlite:///{root / '.nbops' / 'mlflow.db'}")
    exp = local.get_experiment_by_name(experiment)
    by = {}
    for r in local.search_runs([exp.experiment_id]):
        key = r.data.tags.get(tags.SWEEP_POINT) or r.data.tags.get(tags.STAGE) or "pipeline"
        by[key] = r.info.run_id
    model = unique("wine-clf")
    for point, alias in (("train[C=0.1]", "champion"), ("train[C=1.0]", "champion")):
        out = nbops_cli("promote", by[point], "--model", model, "--alias", alias, cwd=root, env=env)
        assert out.returncode == 0, out.stdout + out.stderr
    out = nbops_cli("promote", by["train[C=0.1]"], "--model", model, "--alias", "challenger",
                    cwd=root, env=env)  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr

    hand = local.create_run(exp.experiment_id, run_name="hand-logged")
    history = [Metric("loss", 1.0 / (i + 1), 1_700_000_000_000 + i, i) for i in range(2500)]
    for i in range(0, len(history), 1000):
        local.log_batch(hand.info.run_id, metrics=history[i : i + 1000])
    local.log_batch(hand.info.run_id, metrics=[Metric("loss", float("nan"), 1_700_000_099_000, 7)])
    nested = root / "nested"
    (nested / "a" / "b").mkdir(parents=True)
    (nested / "a" / "b" / "deep.bin").write_bytes(os.urandom(3000))
    (nested / "top.txt").write_text("top\n")
    local.log_artifacts(hand.info.run_id, str(nested), "tree")
    local.set_terminated(hand.info.run_id, "FAILED", end_time=1_700_000_100_000)
    child = local.create_run(
        exp.experiment_id, run_name="child", tags={tags.MLFLOW_PARENT_RUN_ID: hand.info.run_id}
    )
    local.set_terminated(child.info.run_id)
    by["hand"], by["child"] = hand.info.run_id, child.info.run_id
    return {"root": root, "experiment": experiment, "model": model, "runs": by, "local": local}


def _server_env(root: Path, server: MlflowServer) -> dict[str, str]:
    return {**_local_env(root), **server.env_for()}


def _migrate(root: Path, server: MlflowServer, *extra: str) -> Any:
    return nbops_cli("migrate", "--to", server.url, *extra, cwd=root, env=_local_env(root))


def _all_points(client: Any, run: Any) -> dict[str, list[tuple[str, int, int]]]:
    return {
        k: sorted((repr(m.value), m.timestamp, m.step) for m in client.get_metric_history(
            run.info.run_id, k))
        for k in run.data.metrics
    }  # fmt: skip


def test_migrate_copies_a_project_onto_the_server_field_by_field_and_only_once(
    project: dict[str, Any], team_server: MlflowServer, tmp_path: Path
) -> None:
    from mlflow.tracking import MlflowClient

    root, local = project["root"], project["local"]
    remote = MlflowClient(tracking_uri=team_server.url, registry_uri=team_server.url)
    state_before = (root / ".nbops" / "pipeline" / "state.json").read_text()

    dry = _migrate(root, team_server, "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "dry run: nothing was written" in dry.stdout
    assert re.search(
        rf"experiment {project['experiment']}\s+new\s+{len(project['runs'])}\s+0", dry.stdout
    ), dry.stdout
    assert re.search(rf"model {project['model']}\s+new\s+2\s", dry.stdout), dry.stdout
    assert remote.get_experiment_by_name(project["experiment"]) is None
    assert remote.search_registered_models(f"name = '{project['model']}'") == []

    out = _migrate(root, team_server)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Traceback" not in out.stderr
    ids = dict(COPIED.findall(out.stdout))
    assert set(ids) == set(project["runs"].values())
    assert f"export MLFLOW_TRACKING_URI={team_server.url}" in out.stdout
    assert (root / ".nbops" / "mlflow.db").is_file()  # the local store is kept
    row = re.search(rf"experiment {project['experiment']}\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)",
                    out.stdout)  # fmt: skip
    assert row is not None, out.stdout
    for cell in row.groups():
        a, b = cell.split("/")
        assert a == b and int(a) > 0, out.stdout
    assert re.search(rf"model {project['model']}(\s+-){{5}}\s+2/2\s+2/2", out.stdout), out.stdout

    # every run, field by field
    src_exp = local.get_experiment_by_name(project["experiment"])
    dst_exp = remote.get_experiment_by_name(project["experiment"])
    assert dst_exp.artifact_location.startswith("mlflow-artifacts:")  # the server's, not a path
    assert dst_exp.tags[tags.MIGRATED_FROM] == src_exp.experiment_id
    copies = {
        r.data.tags[tags.MIGRATED_FROM]: r for r in remote.search_runs([dst_exp.experiment_id])
    }
    assert set(copies) == set(ids) and all(copies[o].info.run_id == n for o, n in ids.items())

    def renamed(value: str) -> str:
        for old, new in ids.items():
            value = value.replace(old, new)
        return value

    for src in local.search_runs([src_exp.experiment_id]):
        dst = copies[src.info.run_id]
        assert dst.data.params == src.data.params
        want = {k: renamed(v) for k, v in src.data.tags.items()}
        got = {k: v for k, v in dst.data.tags.items() if k != tags.MIGRATED_FROM}
        assert got == want
        for attr in ("run_name", "status", "start_time", "end_time"):
            assert getattr(dst.info, attr) == getattr(src.info, attr), attr
        assert _all_points(remote, dst) == _all_points(local, src)
        assert len(dst.inputs.dataset_inputs) == len(src.inputs.dataset_inputs)
        a = Path(
            local.download_artifacts(src.info.run_id, "", str(tmp_path / "a" / src.info.run_id))
        )
        b = Path(
            remote.download_artifacts(dst.info.run_id, "", str(tmp_path / "b" / src.info.run_id))
        )
        cmp = filecmp.dircmp(a, b)
        assert not cmp.left_only and not cmp.right_only and not cmp.diff_files
        files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
        assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
        assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)

    runs = project["runs"]
    hand = copies[runs["hand"]]
    assert len(remote.get_metric_history(hand.info.run_id, "loss")) == 2501
    assert copies[runs["child"]].data.tags[tags.MLFLOW_PARENT_RUN_ID] == ids[runs["hand"]]
    point = copies[runs["train[C=0.1]"]]
    src_point = local.get_run(runs["train[C=0.1]"]).data.tags
    assert point.data.tags[tags.PARENT_RUN] == ids[src_point[tags.PARENT_RUN]]
    assert point.data.tags[tags.MLFLOW_PARENT_RUN_ID] == ids[runs["train"]]

    # the registry: versions from the new runs, aliases and their history on the copies
    model = project["model"]
    rm = remote.get_registered_model(model)
    versions = {v.version: v for v in remote.search_model_versions(f"name = '{model}'")}
    assert len(versions) == 2
    champion, challenger = versions[rm.aliases["champion"]], versions[rm.aliases["challenger"]]
    assert champion.run_id == ids[runs["train[C=1.0]"]]
    assert challenger.run_id == ids[runs["train[C=0.1]"]]
    assert json.loads(rm.tags[tags.ALIAS_HISTORY_PREFIX + "champion"]) == [
        challenger.version, champion.version
    ]  # fmt: skip
    assert champion.tags[tags.MIGRATED_FROM] == f"{runs['train[C=1.0]']}/v2"
    src_champion = local.get_model_version_by_alias(model, "champion")
    assert champion.tags.get(tags.STAGE) == src_champion.tags.get(tags.STAGE) == "train"

    # the project on the server: lineage of the alias, and the pipeline is up to date
    env = _server_env(root, team_server)
    lineage = nbops_cli("lineage", f"{model}@champion", "--json", cwd=root, env=env)
    assert lineage.returncode == 0, lineage.stdout + lineage.stderr
    tree = json.loads(lineage.stdout)
    assert tree["run"]["run_id"] == ids[runs["train[C=1.0]"]]
    state = json.loads((root / ".nbops" / "pipeline" / "state.json").read_text())
    recorded = {r["run_id"] for pts in state["stages"].values() for r in pts.values()}
    assert recorded and recorded <= set(ids.values())
    backup = root / ".nbops" / "pipeline" / "state.json.before-migrate"
    assert backup.read_text() == state_before
    status = nbops_cli("status", cwd=root, env=env)
    assert status.returncode == 0, status.stdout + status.stderr
    assert "stale" not in status.stdout.lower(), status.stdout

    # again: nothing is copied twice
    again = _migrate(root, team_server)
    assert again.returncode == 0, again.stdout + again.stderr
    assert not COPIED.search(again.stdout) and "copied " not in again.stdout
    assert "nothing to copy" in again.stdout
    assert len(remote.search_runs([dst_exp.experiment_id])) == len(ids)
    assert len(remote.search_model_versions(f"name = '{model}'")) == 2

    # an interrupted migrate: one copy never made, one left half-made (still RUNNING)
    remote.delete_run(ids[runs["hand"]])
    remote.update_run(ids[runs["evaluate"]], status="RUNNING")
    resumed = _migrate(root, team_server)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    redone = dict(COPIED.findall(resumed.stdout))
    assert set(redone) == {runs["hand"], runs["evaluate"]}
    assert f"a partial copy {ids[runs['evaluate']]} is copied again" in resumed.stdout
    live = remote.search_runs([dst_exp.experiment_id])
    assert len(live) == len(ids)
    new_hand = redone[runs["hand"]]
    assert {r.info.run_id for r in live if r.data.tags.get(tags.MLFLOW_PARENT_RUN_ID) == new_hand}
    assert remote.get_run(ids[runs["evaluate"]]).info.lifecycle_stage == "deleted"


def test_migrate_refuses_bad_usage_in_one_line_with_exit_2(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    team_server: MlflowServer,
    auth_server: MlflowServer,
) -> None:
    from mlflow.tracking import MlflowClient

    from nbops import cli

    root = tmp_path / "proj"
    (root / ".nbops").mkdir(parents=True)
    MlflowClient(f"sqlite:///{root / '.nbops' / 'mlflow.db'}").create_experiment("e")
    monkeypatch.setenv("NBOPS_PROJECT_ROOT", str(root))
    monkeypatch.chdir(root)
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.delenv(var, raising=False)

    def run(*argv: str) -> tuple[int, str]:
        err = io.StringIO()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            code = cli.main(["migrate", *argv])
        return code, err.getvalue()

    nowhere = f"http://127.0.0.1:{free_port()}"
    cases = [
        ((), "nbops migrate needs --to URI"),
        (("--to", "ftp://mlflow.example"), "is not a tracking server URI"),
        (("--to", "http://host:99999"), "is not a tracking server URI"),
        (("--to", "postgresql://postgres@127.0.0.1/mlflow"), "is a database"),
        (("--to", nowhere), f"--to {nowhere} does not answer"),
        (("--to", team_server.url, "--from", team_server.url + "/"), "the same"),
        (("--to", team_server.url, "--from", "sqlite:////nonexistent/mlflow.db"), "no store"),
    ]
    for args, says in cases:
        code, err = run(*args)
        lines = err.strip().splitlines()
        assert code == 2 and says in lines[0], (args, err)
        assert len(lines) == 2 and lines[1].startswith("  hint: "), (args, err)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", team_server.url)  # already pointed at the server:
    code, err = run("--to", team_server.url, "--dry-run")  # the embedded store is the source
    assert code == 0, err
    for key, value in auth_server.env_for("admin", "not-the-password").items():
        monkeypatch.setenv(key, value)
    code, err = run("--to", auth_server.url)
    assert code == 2, err
    line = err.splitlines()[0]
    assert f"the target {auth_server.url} refused the login (HTTP 401, user 'admin')" in line
    assert "MLFLOW_TRACKING_PASSWORD" in err and "Traceback" not in err


def test_migrate_uploads_nothing_from_outside_the_stores_artifacts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, team_server: MlflowServer
) -> None:
    """A symbolic link in a run's artifacts to a file elsewhere, a run whose artifact location
    is outside the store's artifact root or on a host of its own (never contacted), and a model
    version whose run is deleted (its files on this machine only) are not uploaded: notes name
    them, the verification names the runs and the version, exit 1. A link to a file of the run
    itself is copied."""
    from mlflow.tracking import MlflowClient

    from nbops import cli

    root = tmp_path / "proj"
    (root / ".nbops").mkdir(parents=True)
    secret = tmp_path / "secret.txt"
    secret.write_text("not for the server\n")
    elsewhere = tmp_path / "elsewhere"
    local = MlflowClient(f"sqlite:///{root / '.nbops' / 'mlflow.db'}")
    inside = local.create_experiment(
        unique("inside"), artifact_location=(root / ".nbops" / "artifacts" / "in").as_uri()
    )
    outside = local.create_experiment(unique("outside"), artifact_location=elsewhere.as_uri())
    files = tmp_path / "files"
    files.mkdir()
    (files / "own.txt").write_text("mine\n")
    linked = local.create_run(inside, run_name="linked").info.run_id
    local.log_artifacts(linked, str(files))
    run_dir = root / ".nbops" / "artifacts" / "in" / linked / "artifacts"
    (run_dir / "leak.txt").symlink_to(secret)
    (run_dir / "alias.txt").symlink_to(run_dir / "own.txt")
    far = local.create_run(outside, run_name="far").info.run_id
    local.log_artifacts(far, str(files))
    trap = socket.socket()  # a host a run's row names: migrate must never connect to it
    trap.bind(("127.0.0.1", 0))
    trap.listen(8)
    trap.setblocking(False)
    hosted = local.create_experiment(
        unique("hosted"), artifact_location=f"http://127.0.0.1:{trap.getsockname()[1]}/steal"
    )
    foreign = local.create_run(hosted, run_name="foreign").info.run_id
    gone = local.create_run(inside, run_name="gone").info.run_id
    local.log_artifacts(gone, str(files), "model")
    model = unique("from-a-deleted-run")
    local.create_registered_model(model)
    local.create_model_version(model, f"runs:/{gone}/model", run_id=gone)
    for rid in (linked, far, gone, foreign):
        local.set_terminated(rid)
    local.delete_run(gone)
    monkeypatch.setenv("NBOPS_PROJECT_ROOT", str(root))
    monkeypatch.chdir(root)
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.delenv(var, raising=False)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(["migrate", "--to", team_server.url])
    assert code == 1, out.getvalue() + err.getvalue()
    ids = dict(COPIED.findall(out.getvalue()))
    assert f"note: run {linked}: artifact leak.txt links outside the run: not copied" in (
        out.getvalue()
    )
    assert f"note: run {far} keeps its artifacts in {elsewhere}" in out.getvalue()
    assert f"differs: run {linked} " in err.getvalue() and f"differs: run {far} " in err.getvalue()
    assert (
        f"note: model {model} version 1 is not copied: its run {gone} is not an active run"
        in out.getvalue()
    )
    assert f"differs: model {model}: version {gone}/v1 is not on the target" in err.getvalue()
    assert gone not in ids
    assert f"note: run {foreign} keeps its artifacts at http://127.0.0.1:" in out.getvalue()
    assert f"differs: run {foreign} " in err.getvalue()
    with pytest.raises(BlockingIOError):
        trap.accept()  # nothing connected
    trap.close()
    remote = MlflowClient(tracking_uri=team_server.url)
    assert sorted(a.path for a in remote.list_artifacts(ids[linked])) == ["alias.txt", "own.txt"]
    assert remote.list_artifacts(ids[far]) == []
