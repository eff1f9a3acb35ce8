"""promote / rollback / models on a real MLflow Model Registry (SQLite in a temp project)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nbops.errors import ConfigError, GateFailed, InvalidInput, NotFound
from nbops.ops import registry
from nbops.tracking import audit
from tests.conftest import nbops_cli

GATES = """\
experiment: wine
stages:
  train:
    notebook: train.ipynb
gates:
  wine: {stage: train, require: {accuracy: ">= 0.9"}, better_than_current: accuracy}
  wine-loss: {stage: train, better_than_current: log_loss, alias: prod}
"""


def model_run(
    stage: str | None = "train", model: bool = True, writer: bool = False, **metrics: float
) -> str:
    """A finished run in the project's store that logged ``metrics`` and a small sklearn model:
    through ``nbops.start_run`` (a writer process, as in a notebook) with ``writer=True``, else
    delivered in this process by the pipeline's sink (the same Delivery, without a process
    that imports MLflow for every run)."""
    from sklearn.linear_model import LogisticRegression

    import nbops
    from nbops import project
    from nbops.pipeline.sink import Sink
    from nbops.tracking.run import Run

    tags = {"nbops.stage": stage} if stage else {}
    fitted = LogisticRegression().fit([[0.0], [1.0]], [0, 1])
    if writer:  # nbops.log_model: mlflow's save_model infers pip requirements (5-14 s here)
        with nbops.start_run("wine", tags=tags) as run:
            if metrics:
                nbops.log_metrics(metrics)
            if model:
                nbops.log_model(fitted, "model")
        return run.id
    root = project.find_root()
    sink = Sink(project.tracking_uri(root), root)
    run = Run("wine", None, tags, root=root, capture=False, spawn_writer=False)
    sink.add(run)
    if metrics:
        run.log_metrics(metrics)
    if model:  # what log_model logs, with the model saved once for the module
        run.log_artifact(_saved_model(fitted))  # a folder: artifact path model/
        run.set_tag("nbops.model.model", "sklearn")
    run.end("FINISHED")
    assert sink.close(timeout=60)
    rid = sink.run_id(run, timeout=5)
    assert rid is not None
    return rid


_SAVED: list[Path] = []


def _saved_model(fitted: object) -> Path:
    """An MLflow sklearn model directory, saved once (saving infers requirements: slow)."""
    if not _SAVED:
        import tempfile

        from nbops.mlflow import models as model

        target = Path(tempfile.mkdtemp(prefix="nbops-model-")) / "model"
        model.save(fitted, str(target), None)
        _SAVED.append(target)
    return _SAVED[0]


@pytest.fixture
def gated(project: Path) -> Path:
    (project / "nbops.yaml").write_text(GATES)
    return project


def test_gate_passes_registers_and_moves_the_alias(gated, client):
    rid = model_run(accuracy=0.93, writer=True)  # logged as a notebook would
    p = registry.promote(rid, "wine")
    assert (p.version, p.alias, p.previous) == ("1", "champion", None)
    mv = client.get_model_version_by_alias("wine", "champion")
    assert str(mv.version) == "1" and mv.run_id == rid and mv.source == f"runs:/{rid}/model"
    assert [o.passed for o in p.outcomes] == [True, True, True]
    gates = json.loads(client.get_model_version("wine", "1").tags["nbops.gates"])
    assert gates[1]["name"] == "require accuracy >= 0.9"


def test_failed_gate_is_named_exits_1_and_changes_nothing(gated, client):
    good = model_run(accuracy=0.95)
    registry.promote(good, "wine")
    bad = model_run(accuracy=0.80)
    out = nbops_cli("promote", bad, "--model", "wine", cwd=gated)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "gate require accuracy >= 0.9 failed" in out.stderr and "accuracy = 0.8" in out.stderr
    assert client.get_model_version_by_alias("wine", "champion").run_id == good
    assert [str(v.version) for v in client.search_model_versions("name='wine'")] == ["1"]
    refused = audit.select(action="promote.refused")
    assert refused and refused[-1]["run_id"] == bad


def test_better_than_current_compares_with_the_alias_holder(gated, client):
    first = model_run(accuracy=0.95)
    registry.promote(first, "wine")
    worse = model_run(accuracy=0.92)  # passes `require`, but is not better than 0.95
    with pytest.raises(GateFailed, match=r"better_than_current accuracy failed.*0\.92 vs 0\.95"):
        registry.promote(worse, "wine")
    better = model_run(accuracy=0.97)
    assert registry.promote(better, "wine").previous == "1"
    assert client.get_model_version_by_alias("wine", "champion").run_id == better
    # lower is better for a loss, and the gate's own alias is used
    a, b = model_run(log_loss=0.30), model_run(log_loss=0.20)
    assert registry.promote(a, "wine-loss").alias == "prod"
    assert registry.promote(b, "wine-loss").version == "2"
    with pytest.raises(GateFailed, match="lower is better"):
        registry.promote(model_run(log_loss=0.25), "wine-loss")


def test_wrong_stage_fails_its_gate(gated):
    rid = model_run(stage="prepare", accuracy=0.99)
    with pytest.raises(GateFailed, match="gate stage train failed: run .* stage 'prepare'"):
        registry.promote(rid, "wine")


def test_promote_rollback_rollback_walks_back_the_history(gated, client):
    runs = [model_run(accuracy=a) for a in (0.91, 0.92, 0.93)]
    for rid in runs:
        registry.promote(rid, "wine")
    assert str(client.get_model_version_by_alias("wine", "champion").version) == "3"
    out = nbops_cli("rollback", "wine", cwd=gated)
    assert out.returncode == 0, out.stderr
    assert "version 3 -> version 2" in out.stdout
    assert registry.rollback("wine") == ("2", "1")
    assert str(client.get_model_version_by_alias("wine", "champion").version) == "1"
    with pytest.raises(Exception, match="no earlier version to roll back to"):
        registry.rollback("wine")
    # re-promoting a run reuses its version; the history grows from where it is
    p = registry.promote(runs[2], "wine")
    assert p.reused and p.version == "3" and p.previous == "1"
    assert registry.rollback("wine") == ("3", "1")
    actions = [r["action"] for r in audit.select() if r["action"] in ("promote", "rollback")]
    assert actions == ["promote"] * 3 + ["rollback"] * 2 + ["promote", "rollback"]
    # the runs themselves were audited where they were delivered to the store
    ended = {r["run_id"]: r["status"] for r in audit.select(action="run.end")}
    assert all(ended.get(rid) == "FINISHED" for rid in runs)
    assert {r["run_id"] for r in audit.select(action="run.start")} >= set(runs)
    assert audit.verify()[1] is None


def test_models_lists_versions_aliases_gate_metrics_and_runs(gated):
    r1, r2 = model_run(accuracy=0.91), model_run(accuracy=0.96)
    registry.promote(r1, "wine")
    registry.promote(r2, "wine")
    rows = registry.models("wine")
    assert [(r["version"], r["aliases"], r["run_id"]) for r in rows] == [
        ("2", ["champion"], r2),
        ("1", [], r1),
    ]
    assert rows[0]["metrics"] == {"accuracy": 0.96}
    out = nbops_cli("models", "wine", cwd=gated)
    assert out.returncode == 0
    assert "@champion" in out.stdout and r2 in out.stdout and "0.96" in out.stdout
    listing = nbops_cli("models", cwd=gated)
    assert "wine" in listing.stdout and "@champion=v2" in listing.stdout


def test_bad_input_is_named_and_exits_2(gated, client):
    no_model = model_run(model=False, accuracy=0.99)
    with pytest.raises(NotFound, match=f"run {no_model} logged no model"):
        registry.promote(no_model, "wine")
    no_metric = model_run(f1=0.99)
    with pytest.raises(InvalidInput, match="needs metric 'accuracy'.*it logged: f1"):
        registry.promote(no_metric, "wine")
    out = nbops_cli("promote", "0" * 32, "--model", "wine", cwd=gated)
    assert out.returncode == 2 and f"run '{'0' * 32}' does not exist" in out.stderr
    for args, msg in [
        (("rollback", "nope"), "model 'nope' is not registered"),
        (("models", "nope"), "model 'nope' is not registered"),
    ]:
        out = nbops_cli(*args, cwd=gated)
        assert out.returncode == 2 and msg in out.stderr, out.stderr
    # none of it registered anything
    assert client.search_registered_models() == []


def test_promoting_a_sweep_parent_names_its_point_runs(gated, client):
    parent = model_run(model=False, accuracy=0.99)
    exp = client.get_run(parent).info.experiment_id
    points = []
    for c in (0.1, 1.0):
        child = client.create_run(
            exp, tags={"nbops.parent_run": parent, "nbops.sweep_point": f"C={c}"}
        )
        client.set_terminated(child.info.run_id)
        points.append(child.info.run_id)
    with pytest.raises(NotFound, match=f"run {parent} is the parent of a sweep \\(2 points\\)"):
        registry.promote(parent, "wine")
    try:
        registry.promote(parent, "wine")
    except NotFound as err:
        assert all(p in err.hint for p in points), err.hint


def test_without_a_gate_a_model_is_registered_under_champion(project, client):
    rid = model_run(stage=None)
    p = registry.promote(rid, "free")
    assert p.alias == "champion" and p.outcomes == []
    assert client.get_model_version_by_alias("free", "champion").run_id == rid
    with pytest.raises(NotFound, match="has no alias 'prod'"):
        registry.rollback("free", "prod")


def test_a_gate_on_an_unknown_stage_is_a_config_error_at_its_line(project, client):
    (project / "nbops.yaml").write_text(
        GATES.replace("{stage: train, require", "{stage: trian, require")
    )
    rid = model_run(accuracy=0.99)
    with pytest.raises(ConfigError, match=r"nbops.yaml:6:.*gate 'wine' checks stage 'trian'"):
        registry.promote(rid, "wine")
    assert client.search_registered_models() == []
