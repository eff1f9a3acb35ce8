"""One comparison: ``nbops.compare()`` and the Compare panel (both readers) pick the same best
run per metric, with one list of lower-is-better names (``latency`` and ``mape`` included)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param

from nbops.mlflow.readers.client import MlflowReader
from nbops.mlflow.readers.sqlite import SqliteReader
from nbops.tracking.query import compare
from tests.conftest import store_uri

# run -> latest metrics: lower latency/val_loss/mape and higher accuracy are better
RUNS = {
    "fast": {"latency": 0.2, "val_loss": 0.9, "accuracy": 0.70, "mape": 0.30},
    "slow": {"latency": 3.0, "val_loss": 0.1, "accuracy": 0.95, "mape": 0.05},
    "mid": {"latency": 1.0, "val_loss": 0.5, "accuracy": 0.80, "mape": 0.10},
}


def _seed(client: Any) -> dict[str, str]:
    exp = client.create_experiment("cmp")
    ids = {}
    for i, (name, metrics) in enumerate(RUNS.items()):
        rid = client.create_run(exp, run_name=name, start_time=1_700_000_000_000 + i).info.run_id
        client.log_batch(
            rid,
            metrics=[Metric(k, v, 0, 0) for k, v in metrics.items()],
            params=[Param("model", "mlp"), Param("width", str(64 * (i + 1)))],
            synchronous=True,
        )
        client.set_terminated(rid, "FINISHED")
        ids[name] = rid
    return ids


def test_compare_and_the_panel_agree_on_the_best_run_of_latency_and_val_loss(
    project: Path, client: Any
) -> None:
    ids = _seed(client)
    run_ids = list(ids.values())
    name_of = {rid: name for name, rid in ids.items()}
    uri = store_uri(project)

    cmp = compare(run_ids, uri)
    label_to_run = dict(zip(cmp.metrics.columns, run_ids, strict=True))
    from_notebook = {k: name_of[label_to_run[label]] for k, label in cmp.best.items()}
    sqlite = SqliteReader(project / ".nbops" / "mlflow.db", lambda: MlflowReader(uri))
    panels = [sqlite.compare(run_ids), MlflowReader(uri).compare(run_ids)]

    want = {"latency": "fast", "val_loss": "slow", "accuracy": "slow", "mape": "slow"}
    assert from_notebook == want
    for panel in panels:
        assert {k: name_of[rid] for k, rid in panel.best.items()} == want
        assert set(panel.params_differ) == {"width"} and panel.params_same == {"model": "mlp"}
    assert list(cmp.params.index) == ["width"] and list(cmp.same_params.index) == ["model"]
