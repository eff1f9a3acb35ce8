"""The Python API against a real SQLite MLflow store, through the real writer process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import nbops
from nbops.errors import InvalidInput, NotFound
from nbops.tracking import fluent


def test_logged_values_reach_the_store_and_the_run_ends_finished(project, client):
    (project / "data.csv").write_text("a,b\n1,2\n3,4\n5,6\n")
    (project / "model.txt").write_text("weights")
    with nbops.start_run("api", name="first", tags={"team": "ml"}) as run:
        nbops.log_params({"lr": 0.1, "kind": "rf"})
        for step in range(1500):  # more than one log_batch request
            nbops.log_metric("loss", 1.0 / (step + 1), step=step)
        nbops.log_metrics({"acc": 0.9, "f1": 0.8})
        nbops.set_tag("stage", "dev")
        nbops.log_artifact(project / "model.txt", "models")
        nbops.log_text("hello", "notes/readme.txt")
        fp = nbops.track_data(project / "data.csv")
    assert fp["rows"] == 3 and fp["cols"] == 2 and len(fp["xxh3"]) == 32
    got = client.get_run(run.id)
    assert got.info.status == "FINISHED"
    assert got.info.run_name == "first"
    assert got.data.params == {"lr": "0.1", "kind": "rf"}
    assert got.data.metrics["acc"] == 0.9
    assert got.data.tags["team"] == "ml" and got.data.tags["stage"] == "dev"
    assert got.data.tags["nbops.data.input.data.csv"] == fp["xxh3"]
    assert got.data.tags["nbops.host"]
    history = client.get_metric_history(run.id, "loss")
    assert sorted(m.step for m in history) == list(range(1500))
    arts = {a.path for a in client.list_artifacts(run.id)}
    assert {"environment.txt", "models", "notes"} <= arts
    assert [a.path for a in client.list_artifacts(run.id, "models")] == ["models/model.txt"]
    env_txt = client.download_artifacts(run.id, "environment.txt")
    assert "mlflow==" in Path(env_txt).read_text().lower()
    assert got.inputs.dataset_inputs[0].dataset.name == "data.csv"
    exp = client.get_experiment(got.info.experiment_id)
    assert exp.name == "api"
    assert ".nbops/artifacts" in exp.artifact_location  # beside the store, not ./mlruns


def test_an_exception_inside_the_context_manager_marks_the_run_failed(project, client):
    with pytest.raises(ZeroDivisionError), nbops.start_run("api") as run:
        nbops.log_metric("before", 1)
        1 / 0  # noqa: B018
    assert client.get_run(run.id).info.status == "FAILED"
    assert client.get_run(run.id).data.metrics["before"] == 1


def test_the_spool_keeps_artifact_content_as_it_was_at_call_time(project, client):
    f = project / "a.txt"
    f.write_text("v1")
    run = nbops.start_run("api")
    nbops.log_artifact(f)
    f.write_text("v2 changed later")
    nbops.end_run()
    path = client.download_artifacts(run.id, "a.txt")
    assert Path(path).read_text() == "v1"


def test_changing_a_param_is_refused_at_call_time_with_the_fix(project):
    nbops.start_run("api")
    nbops.log_param("lr", 0.1)
    nbops.log_param("lr", 0.1)  # same value: fine
    with pytest.raises(InvalidInput) as err:
        nbops.log_param("lr", 0.2)
    assert "'lr'" in err.value.message and "'0.1'" in err.value.message
    assert "new run" in err.value.hint


def test_bad_values_fail_in_the_callers_hand_and_nothing_is_spooled(project):
    run = nbops.start_run("api")
    size = run.spool.size()
    for bad in (
        lambda: nbops.log_metric("x", float("nan")),
        lambda: nbops.log_metric("x", "1"),
        lambda: nbops.log_metric("bad key!", 1),
        lambda: nbops.log_metric("x", 1, step=1.5),
    ):
        with pytest.raises(InvalidInput):
            bad()
    assert run.spool.size() == size


def test_missing_artifact_and_data_files_name_the_path(project):
    nbops.start_run("api")
    with pytest.raises(NotFound, match="nope.txt"):
        nbops.log_artifact("nope.txt")
    with pytest.raises(NotFound, match="nope.csv"):
        nbops.track_data("nope.csv")


def test_logging_after_end_is_refused(project):
    run = nbops.start_run("api")
    run.end()
    with pytest.raises(InvalidInput, match="has ended"):
        run.log_metric("x", 1)


def test_first_log_call_starts_a_run_in_the_default_experiment(project, client):
    nbops.log_metric("auto", 2.0)
    run = fluent.active_run()
    assert run is not None
    nbops.end_run()
    got = client.get_run(run.id)
    assert client.get_experiment(got.info.experiment_id).name == "Default"
    assert got.data.metrics["auto"] == 2.0


def test_runs_and_compare_return_dataframes(project, client):
    ids = []
    for c in (0.1, 1.0):
        with nbops.start_run("cmp", name=f"C={c}") as run:
            nbops.log_params({"C": c, "seed": 0})
            nbops.log_metrics({"accuracy": 0.8 + c / 10, "loss": 1 - c / 2})
        ids.append(run.id)
    df = nbops.runs("cmp")
    assert set(df.run_id) == set(ids)
    assert {"params.C", "metrics.accuracy", "status"} <= set(df.columns)
    filtered = nbops.runs("cmp", filter="metrics.accuracy > 0.85")
    assert list(filtered.run_id) == [ids[1]]
    cmp = nbops.compare(ids)
    assert list(cmp.params.index) == ["C"]  # seed is the same: folded away
    assert list(cmp.same_params.index) == ["seed"]
    assert cmp.best["accuracy"] == "C=1.0" and cmp.best["loss"] == "C=1.0"
    assert "Params that differ" in cmp._repr_html_()


def test_unknown_run_and_experiment_are_named(project):
    with pytest.raises(NotFound, match="no-such-run"):
        nbops.compare(["no-such-run"])
    with pytest.raises(NotFound, match="nope"):
        nbops.runs("nope")


def test_a_script_that_exits_ends_its_run_finished(project, client):
    code = "import nbops\nnbops.start_run('script')\nnbops.log_metric('m', 3.0)\n"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    runs = client.search_runs([client.get_experiment_by_name("script").experiment_id])
    assert [r.info.status for r in runs] == ["FINISHED"]
    assert runs[0].data.metrics["m"] == 3.0


def test_a_git_work_tree_is_captured_with_its_diff(project, client):
    git = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], cwd=project, check=True)
    (project / "train.py").write_text("print(1)\n")
    subprocess.run([*git, "add", "train.py"], cwd=project, check=True)
    subprocess.run([*git, "commit", "-qm", "init"], cwd=project, check=True)
    (project / "train.py").write_text("print(2)\n")
    with nbops.start_run("git") as run:
        pass
    tags = client.get_run(run.id).data.tags
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=project, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert tags["nbops.git.commit"] == head == tags["mlflow.source.git.commit"]
    assert tags["nbops.git.dirty"] == "true"
    diff = client.download_artifacts(run.id, "git/diff.patch")
    assert "+print(2)" in Path(diff).read_text()


def test_the_writer_beats_a_heartbeat_while_the_run_lives(project, client, monkeypatch):
    import time

    monkeypatch.setenv("NBOPS_HEARTBEAT", "0.2")
    run = nbops.start_run("beat")
    first = int(client.get_run(run.id).data.tags["nbops.heartbeat"])
    assert first == run.start_ms
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        beat = int(client.get_run(run.id).data.tags["nbops.heartbeat"])
        if beat > first:
            break
        time.sleep(0.1)
    assert beat > first
    nbops.end_run()


def test_a_run_started_without_a_name_is_named_after_what_ran_not_at_random(project, client):
    """No notebook path (a script, plain Python): ``python-<date>-<time>``, never MLflow's
    random adjective-animal name."""
    import re

    with nbops.start_run("api-unnamed") as run:
        nbops.log_metric("x", 1.0)
    got = client.get_run(run.id)
    assert re.fullmatch(r"python-\d{8}-\d{6}", got.info.run_name), got.info.run_name
