"""The tracking store facade (nbops.mlflow.store) on a real SQLite store: each method answers for
what exists and names what does not (NotFound or None, as its docstring says), and the store hands
out no MlflowClient."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from nbops.errors import NotFound
from nbops.mlflow import failures
from nbops.mlflow.store import TrackingStore, open_store

MISSING_RUN = "0" * 32


@dataclass
class Seeded:
    store: TrackingStore
    experiment_id: str
    run_ids: list[str]  # oldest first; run_ids[0] has metric "loss" and artifacts
    model: str
    version: str


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Seeded:
    """A store with one experiment of three runs (the first with a metric history, an artifact
    file and a model folder) and one registered model with one version of the first run."""
    d = tmp_path_factory.mktemp("facade")
    store = TrackingStore(f"sqlite:///{d / 'mlflow.db'}")
    eid = store.experiment_id("facade")
    run_ids = [store.create_run(eid, 1000 + i, f"r{i}", {"k": str(i)}) for i in range(3)]
    first = run_ids[0]
    store.log_batch(first, metrics=[("loss", 1.0 - s / 10, s, 1000 + s) for s in range(3)])
    src = d / "src"
    (src / "model").mkdir(parents=True)
    (src / "model" / "MLmodel").write_text("flavors: {}\n")
    (src / "outs.json").write_text("{}")
    store.log_artifact(first, str(src / "outs.json"), None)
    store.log_artifact(first, str(src / "model"), "model")
    store.create_registered_model("facade-model", {"owner": "test"}, "for the facade test")
    mv = store.create_model_version("facade-model", f"runs:/{first}/model", first, {"t": "1"})
    return Seeded(store, eid, run_ids, "facade-model", str(mv.version))


# --- the boundary -----------------------------------------------------------------------------
def test_no_public_attribute_of_the_store_is_an_mlflow_client(seeded: Seeded) -> None:
    from mlflow.tracking import MlflowClient

    exposed = [
        name
        for name in dir(seeded.store)
        if not name.startswith("_") and isinstance(getattr(seeded.store, name), MlflowClient)
    ]
    assert exposed == []
    assert isinstance(seeded.store._client, MlflowClient)  # kept inside, under a private name
    assert not hasattr(seeded.store, "client")


def test_open_store_gives_one_store_per_uri(tmp_path: Path) -> None:
    a = f"sqlite:///{tmp_path / 'a.db'}"
    b = f"sqlite:///{tmp_path / 'b.db'}"
    assert open_store(a) is open_store(a)
    assert open_store(a) is not open_store(b)


def test_importing_the_boundary_package_imports_no_mlflow_and_sets_no_environment() -> None:
    code = (
        "import os, sys, nbops.mlflow, nbops.mlflow.failures, nbops.mlflow.entities\n"
        "print('mlflow' in sys.modules)\n"
        "import nbops.mlflow.store\n"
        "print(os.environ.get('MLFLOW_HTTP_REQUEST_MAX_RETRIES'))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_HTTP_REQUEST")}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert out.stdout.split() == ["False", "None"]


def test_opening_a_store_makes_mlflow_http_fail_fast_unless_told_otherwise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "99")
    TrackingStore(f"sqlite:///{tmp_path / 'm.db'}")
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "0"
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "99"  # a person's setting wins


# --- experiments ------------------------------------------------------------------------------
def test_get_experiment_answers_and_names_a_missing_one(seeded: Seeded) -> None:
    assert seeded.store.get_experiment(seeded.experiment_id).name == "facade"
    for missing in ("987654", "not-a-number"):
        with pytest.raises(NotFound) as err:
            seeded.store.get_experiment(missing)
        assert repr(missing) in err.value.message


def test_experiment_by_name_is_none_for_a_missing_one(seeded: Seeded) -> None:
    found = seeded.store.experiment_by_name("facade")
    assert found is not None and str(found.experiment_id) == seeded.experiment_id
    assert seeded.store.experiment_by_name("no such experiment") is None


def test_set_experiment_tag_sets_it_and_names_a_missing_experiment(seeded: Seeded) -> None:
    seeded.store.set_experiment_tag(seeded.experiment_id, "nbops.test", "yes")
    assert seeded.store.get_experiment(seeded.experiment_id).tags["nbops.test"] == "yes"
    with pytest.raises(NotFound) as err:
        seeded.store.set_experiment_tag("987654", "nbops.test", "yes")
    assert "'987654'" in err.value.message


# --- runs ---------------------------------------------------------------------------------------
def test_search_runs_page_pages_through_every_run_and_ends_with_no_token(seeded: Seeded) -> None:
    seen: list[str] = []
    token: str | None = None
    pages = 0
    while True:
        runs, token = seeded.store.search_runs_page(
            [seeded.experiment_id], "", ["attributes.start_time ASC"], 1, token
        )
        pages += 1
        seen += [r.info.run_id for r in runs]
        if token is None:
            break
        assert isinstance(token, str)
    assert seen == seeded.run_ids and pages >= 3


def test_search_runs_page_passes_mlflow_syntax_errors_with_their_code(seeded: Seeded) -> None:
    with pytest.raises(Exception) as err:
        seeded.store.search_runs_page([seeded.experiment_id], "metrics.loss >>> 1")
    assert failures.error_code(err.value) == failures.INVALID_PARAMETER_VALUE


def test_metric_history_answers_in_order_and_names_a_missing_run(seeded: Seeded) -> None:
    hist = seeded.store.metric_history(seeded.run_ids[0], "loss")
    assert [(p.step, p.value) for p in sorted(hist, key=lambda p: p.step)] == [
        (0, 1.0),
        (1, 0.9),
        (2, 0.8),
    ]
    assert seeded.store.metric_history(seeded.run_ids[1], "loss") == []  # the run logged none
    with pytest.raises(NotFound) as err:
        seeded.store.metric_history(MISSING_RUN, "loss")
    assert MISSING_RUN in err.value.message


# --- artifacts ----------------------------------------------------------------------------------
def test_list_artifacts_answers_and_names_a_missing_run(seeded: Seeded) -> None:
    top = {(a.path, a.is_dir) for a in seeded.store.list_artifacts(seeded.run_ids[0])}
    assert top == {("outs.json", False), ("model", True)}
    inside = [a.path for a in seeded.store.list_artifacts(seeded.run_ids[0], "model")]
    assert inside == ["model/MLmodel"]
    with pytest.raises(NotFound) as err:
        seeded.store.list_artifacts(MISSING_RUN)
    assert MISSING_RUN in err.value.message


def test_download_artifacts_answers_and_names_the_missing_run_or_path(
    seeded: Seeded, tmp_path: Path
) -> None:
    local = seeded.store.download_artifacts(seeded.run_ids[0], "outs.json", str(tmp_path))
    assert Path(local).read_text() == "{}" and Path(local).parent == tmp_path
    with pytest.raises(NotFound) as err:
        seeded.store.download_artifacts(MISSING_RUN, "outs.json", str(tmp_path))
    assert f"run {MISSING_RUN!r} does not exist" in err.value.message
    with pytest.raises(NotFound) as err:
        seeded.store.download_artifacts(seeded.run_ids[1], "outs.json", str(tmp_path))
    assert "has no artifact 'outs.json'" in err.value.message


# --- registry -----------------------------------------------------------------------------------
def test_get_registered_model_answers_or_is_none(seeded: Seeded) -> None:
    rm = seeded.store.get_registered_model(seeded.model)
    assert rm is not None and rm.tags == {"owner": "test"}
    assert rm.description == "for the facade test"
    assert seeded.store.get_registered_model("no-such-model") is None


def test_search_registered_models_lists_them(seeded: Seeded) -> None:
    assert [m.name for m in seeded.store.search_registered_models()] == [seeded.model]


def test_create_registered_model_twice_is_mlflows_already_exists(seeded: Seeded) -> None:
    with pytest.raises(Exception) as err:
        seeded.store.create_registered_model(seeded.model)
    assert failures.error_code(err.value) == failures.ALREADY_EXISTS


def test_create_model_version_names_a_model_that_is_not_registered(seeded: Seeded) -> None:
    with pytest.raises(NotFound) as err:
        seeded.store.create_model_version("unregistered", f"runs:/{seeded.run_ids[0]}/model")
    assert "'unregistered' is not registered" in err.value.message


def test_get_model_version_answers_or_is_none(seeded: Seeded) -> None:
    mv = seeded.store.get_model_version(seeded.model, seeded.version)
    assert mv is not None and mv.run_id == seeded.run_ids[0]
    assert mv.source == f"runs:/{seeded.run_ids[0]}/model"
    assert seeded.store.get_model_version(seeded.model, "999") is None
    assert seeded.store.get_model_version("no-such-model", "1") is None


def test_search_model_versions_pages_and_ends_with_no_token(seeded: Seeded) -> None:
    found, token = seeded.store.search_model_versions(f"name='{seeded.model}'", 1000, None)
    assert [(m.name, str(m.version)) for m in found] == [(seeded.model, seeded.version)]
    assert token is None
    assert seeded.store.search_model_versions("name='no-such-model'") == ([], None)


def test_set_registered_model_alias_moves_it_and_names_a_missing_version(seeded: Seeded) -> None:
    seeded.store.set_registered_model_alias(seeded.model, "champion", seeded.version)
    rm = seeded.store.get_registered_model(seeded.model)
    assert rm is not None and str(rm.aliases["champion"]) == seeded.version
    with pytest.raises(NotFound) as err:
        seeded.store.set_registered_model_alias(seeded.model, "champion", "999")
    assert "has no version '999'" in err.value.message


def test_set_registered_model_tag_sets_it_and_names_a_missing_model(seeded: Seeded) -> None:
    seeded.store.set_registered_model_tag(seeded.model, "nbops.alias_history.x", "[]")
    rm = seeded.store.get_registered_model(seeded.model)
    assert rm is not None and rm.tags["nbops.alias_history.x"] == "[]"
    with pytest.raises(NotFound) as err:
        seeded.store.set_registered_model_tag("no-such-model", "k", "v")
    assert "'no-such-model' is not registered" in err.value.message


def test_set_model_version_tag_sets_it_and_names_a_missing_version(seeded: Seeded) -> None:
    seeded.store.set_model_version_tag(seeded.model, seeded.version, "nbops.gates", "[]")
    mv = seeded.store.get_model_version(seeded.model, seeded.version)
    assert mv is not None and mv.tags["nbops.gates"] == "[]"
    with pytest.raises(NotFound) as err:
        seeded.store.set_model_version_tag(seeded.model, "999", "k", "v")
    assert "has no version '999'" in err.value.message


def test_get_run_names_a_missing_run(seeded: Seeded) -> None:
    assert seeded.store.get_run(seeded.run_ids[2]).data.tags["k"] == "2"
    with pytest.raises(NotFound) as err:
        seeded.store.get_run(MISSING_RUN)
    assert MISSING_RUN in err.value.message
