"""The operations and the CLI reach MLflow only through the store facade's methods: with the raw
client made unreachable, promote, rollback, models, lineage, the audit log's store head and
``nbops show`` still work on a real SQLite store, and a missing model is named."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any

import pytest

from nbops import cli, tags
from nbops.errors import NotFound
from nbops.mlflow.store import TrackingStore, open_store
from nbops.ops import lineage, registry
from nbops.tracking import audit


def _no_raw_client(self: TrackingStore) -> Any:
    raise AssertionError("the raw MlflowClient was used outside nbops/mlflow/")


@pytest.fixture
def store(project: Path, client: Any, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Two finished runs that logged a model (by tag) in the project's store, seeded with
    MLflow's own client; then the facade's ``client`` is made to fail."""
    open_store()  # the store as nbops makes it
    exp = client.create_experiment("wine")
    runs = []
    for acc in (0.8, 0.9):
        run = client.create_run(exp, run_name="train", tags={tags.MODEL_PREFIX + "model": "x"})
        client.log_metric(run.info.run_id, "accuracy", acc)
        client.set_terminated(run.info.run_id)
        runs.append(run.info.run_id)
    monkeypatch.setattr(TrackingStore, "client", property(_no_raw_client), raising=False)
    return {"runs": runs, "root": project}


def _main(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        code = cli.main(list(argv))
    return code, out.getvalue()


def test_promote_rollback_and_models_use_only_the_facade(store):
    r1, r2 = store["runs"]
    assert registry.promote(r1, "wine").version == "1"
    p = registry.promote(r2, "wine")
    assert (p.version, p.previous, p.alias) == ("2", "1", "champion")
    assert registry.promote(r2, "wine").reused  # its version is found by paging the registry
    rows = registry.models("wine")
    assert [(r["version"], r["aliases"], r["run_id"]) for r in rows] == [
        ("2", ["champion"], r2),
        ("1", [], r1),
    ]
    assert registry.models() == [{"model": "wine", "aliases": {"champion": "2"}, "latest": "2"}]
    assert registry.rollback("wine") == ("2", "1")
    head = audit.store_head(open_store(), store["root"])  # anchored through set_experiment_tag
    assert head is not None and head.seq == len(audit.select())


def test_lineage_of_an_alias_uses_only_the_facade(store):
    r1, _ = store["runs"]
    registry.promote(r1, "wine")
    tree = lineage.lineage("wine@champion")
    assert tree["model"]["aliases"] == ["champion"]
    assert tree["run"]["run_id"] == r1 and tree["run"]["metrics"] == {"accuracy": 0.8}


def test_a_model_that_is_not_registered_is_named_with_the_ones_that_are(store):
    registry.promote(store["runs"][0], "wine")
    with pytest.raises(NotFound, match="model 'merlot' is not registered") as err:
        registry.registered_model(open_store(), "merlot")
    assert err.value.hint == "registered models: wine"
    with pytest.raises(NotFound, match="model 'wine' has no version '7'"):
        registry.model_version(open_store(), "wine", "7")


def test_show_names_the_experiment_through_the_facade(store):
    code, out = _main("show", store["runs"][0])
    assert code == 0 and "experiment  wine (id " in out
