"""The one module that talks to MLflow for tracking. Imported only by the writer process and by
queries (``nbops.runs``, the CLI), never on the path of ``import nbops`` or ``%load_ext nbops``."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any

from nbops import project
from nbops.errors import NotFound, StoreUnavailable
from nbops.tracking.schema import SchemaRefused, enable_wal, ensure_schema

# nbops retries on its own schedule (the spool keeps the data): MLflow's HTTP client must fail fast.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "15")

import mlflow  # noqa: E402
from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, Param, RunTag  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

# MLflow's request limits for log_batch
MAX_METRICS = 1000
MAX_PARAMS_TAGS = 100
MAX_ENTITIES = 1000

_PERMANENT = {
    "INVALID_PARAMETER_VALUE",
    "RESOURCE_ALREADY_EXISTS",
    "RESOURCE_DOES_NOT_EXIST",
    "INVALID_STATE",
    "BAD_REQUEST",
    "PERMISSION_DENIED",
}


def is_permanent(exc: BaseException) -> bool:
    """True when retrying the same request cannot succeed (a bad value, a deleted run)."""
    if isinstance(exc, MlflowException):
        text = str(exc).lower()
        if "locked" in text or "timed out" in text or "connection" in text:
            return False
        return exc.error_code in _PERMANENT
    return isinstance(exc, (FileNotFoundError, IsADirectoryError, NotADirectoryError))


class Store:
    """An MLflow tracking store, opened once per process."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        art = project.artifact_root_for(uri)
        self.artifact_root = art
        db = project.sqlite_path(uri)
        try:
            # one process at a time creates, upgrades or repairs an SQLite store's schema
            ensure_schema(uri, art)
            self.client = MlflowClient(tracking_uri=uri)
            # opening the store is lazy in MLflow: touch it so an unreachable store fails here
            self.client.search_experiments(max_results=1)
        except SchemaRefused:
            raise  # names the file and the fix already; retrying does not help
        except Exception as exc:  # noqa: BLE001 - any failure to open is "unavailable"
            raise StoreUnavailable(
                f"tracking store {uri} cannot be opened: {_first_line(exc)}",
                "start the tracking server or fix MLFLOW_TRACKING_URI; logged data stays in "
                "the spool and `nbops sync` delivers it later",
            ) from exc
        if db is not None and db.parent.name == project.STATE_DIR:
            enable_wal(db)

    # --- runs -----------------------------------------------------------------------------
    def experiment_id(self, name: str) -> str:
        exp = self.client.get_experiment_by_name(name)
        if exp is not None:
            return str(exp.experiment_id)
        location = None
        if self.artifact_root is not None:
            location = (self.artifact_root / _slug(name)).as_uri()
        try:
            return str(self.client.create_experiment(name, artifact_location=location))
        except MlflowException:
            exp = self.client.get_experiment_by_name(name)  # another process created it
            if exp is None:
                raise
            return str(exp.experiment_id)

    def create_run(
        self, experiment_id: str, start_ms: int, name: str | None, tags: dict[str, str]
    ) -> str:
        run = self.client.create_run(
            experiment_id, start_time=start_ms, tags=tags, run_name=name or None
        )
        return str(run.info.run_id)

    def run_experiment(self, run_id: str) -> str:
        return str(self.get_run(run_id).info.experiment_id)

    def get_run(self, run_id: str) -> Any:
        try:
            return self.client.get_run(run_id)
        except MlflowException as exc:
            if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                raise NotFound(
                    f"run {run_id!r} does not exist in {self.uri}",
                    "list runs with `nbops runs` (ids are MLflow run ids)",
                ) from exc
            raise

    def log_batch(
        self,
        run_id: str,
        metrics: Sequence[tuple[str, float, int, int]] = (),
        params: Iterable[tuple[str, str]] = (),
        tags: Iterable[tuple[str, str]] = (),
    ) -> None:
        self.client.log_batch(
            run_id,
            metrics=[Metric(k, v, ts, step) for k, v, step, ts in metrics],
            params=[Param(k, v) for k, v in params],
            tags=[RunTag(k, v) for k, v in tags],
            synchronous=True,
        )

    def log_artifact(self, run_id: str, src: str, artifact_path: str | None) -> None:
        if os.path.isdir(src):
            self.client.log_artifacts(run_id, src, artifact_path)
        else:
            self.client.log_artifact(run_id, src, artifact_path)

    def log_dataset(self, run_id: str, fp: dict[str, Any]) -> None:
        import json

        ds = Dataset(
            name=fp["name"],
            digest=fp["xxh3"][:36],
            source_type="local",
            source=json.dumps({"uri": fp["path"]}),
            profile=json.dumps(
                {k: fp[k] for k in ("size", "rows", "cols") if fp.get(k) is not None}
            ),
        )
        self.client.log_inputs(
            run_id, [DatasetInput(ds, [InputTag("mlflow.data.context", fp.get("role", "input"))])]
        )

    def set_terminated(self, run_id: str, status: str, end_ms: int | None) -> None:
        self.client.set_terminated(run_id, status=status, end_time=end_ms)

    def search_runs(
        self,
        experiment_ids: list[str],
        filter_string: str = "",
        order_by: list[str] | None = None,
        max_results: int = 1000,
    ) -> list[Any]:
        return list(
            self.client.search_runs(
                experiment_ids,
                filter_string=filter_string,
                order_by=order_by,
                max_results=max_results,
            )
        )

    def experiments(self) -> list[Any]:
        return list(self.client.search_experiments())


def _slug(name: str) -> str:
    out = "".join(c if c.isalnum() or c in "-_." else "_" for c in name).strip("._")
    return out or "experiment"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


__all__ = ["SchemaRefused", "Store", "ensure_schema", "is_permanent", "mlflow"]
