"""The MLflow calls of ``nbops migrate`` (:mod:`nbops.ops.migrate`): reading everything a store
holds and writing it into another, as plain data (no MLflow type leaves this module except the
opaque dataset inputs, which are handed back unchanged).

An :class:`Endpoint` is one store (the source or the target) behind its own ``MlflowClient``; every
call runs inside :func:`nbops.mlflow.quiet` and turns what the server answers into nbops' errors:
a refused login or permission is :class:`~nbops.errors.AccessDenied` naming the server and what
to set, a server that does not answer is :class:`~nbops.errors.StoreUnavailable`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from nbops import envvars, tags
from nbops.errors import AccessDenied, NbopsError, StoreUnavailable
from nbops.mlflow import credentials, quiet
from nbops.mlflow.failures import DOES_NOT_EXIST, INVALID_PARAMETER_VALUE, error_code

# MLflow's request limits for one log_batch
MAX_METRICS = 1000
MAX_PARAMS_TAGS = 100
PAGE = 1000


@dataclass
class Experiment:
    id: str
    name: str
    tags: dict[str, str]
    active: bool = True


@dataclass
class Run:
    id: str
    experiment_id: str
    name: str
    status: str
    start: int | None
    end: int | None
    params: dict[str, str]
    tags: dict[str, str]
    metric_keys: list[str]
    artifact_uri: str
    inputs: list[Any] = field(default_factory=list)  # MLflow's DatasetInput, passed through


@dataclass
class Version:
    name: str
    version: str
    source: str
    run_id: str | None
    tags: dict[str, str]
    description: str


@dataclass
class Model:
    name: str
    description: str
    tags: dict[str, str]
    aliases: dict[str, str]  # alias -> version


# a metric value as it is compared and copied: (value, timestamp ms, step)
Point = tuple[float, int, int]


def _status_of(exc: BaseException) -> int | None:
    """The HTTP status a server refused with (401, 403), read from MLflow's error."""
    code = error_code(exc)
    if code in ("UNAUTHENTICATED",):
        return 401
    if code in ("PERMISSION_DENIED",):
        return 403
    text = str(exc)
    for status in (401, 403):
        if f"error code {status}" in text or f"{status} Client Error" in text:
            return status
    return None


class Endpoint:
    """One MLflow store, read or written by ``nbops migrate``. Opening it reaches it once: an
    unreachable server, a refused login or a store MLflow cannot open fails here."""

    def __init__(self, uri: str, role: str) -> None:
        self.uri = uri
        self.role = role  # "source" or "target": named in every error
        os.environ.setdefault(envvars.MLFLOW_HTTP_REQUEST_MAX_RETRIES, "0")
        os.environ.setdefault(envvars.MLFLOW_HTTP_REQUEST_TIMEOUT, "15")
        with self._calling("open the store"):
            from mlflow.tracking import MlflowClient

            self._client = MlflowClient(tracking_uri=uri, registry_uri=uri)
            self._client.search_experiments(max_results=1)

    @contextlib.contextmanager
    def _calling(self, what: str) -> Iterator[None]:
        """MLflow's failures as nbops' errors naming this store and ``what`` was being done."""
        try:
            with quiet():
                yield
        except NbopsError:
            raise
        except Exception as exc:  # noqa: BLE001 - every failure of the store is named below
            status = _status_of(exc)
            where = credentials.server(self.uri)
            name = credentials.login(self.uri)
            who = f"user {name!r}" if name else "no login"
            if status == 401:
                raise AccessDenied(
                    f"the {self.role} {where} refused the login (HTTP 401, {who}) to {what}",
                    f"set {envvars.MLFLOW_TRACKING_USERNAME} and "
                    f"{envvars.MLFLOW_TRACKING_PASSWORD} to your account on that server (its "
                    "admin creates accounts)",
                ) from exc
            if status == 403:
                raise AccessDenied(
                    f"the {self.role} {where} refused permission (HTTP 403, {who}) to {what}",
                    "ask its admin for EDIT on the experiments and models being copied, or "
                    "migrate as a user who has it; run `nbops migrate` again afterwards: it goes "
                    "on where it stopped",
                ) from exc
            if self._is_missing(exc):
                raise
            from nbops.mlflow.store import why_unreachable  # MLflow is loaded by now

            raise StoreUnavailable(
                f"the {self.role} {where} cannot {what}: {why_unreachable(exc, self.uri)}",
                "check that the server is running and the URI is right, then run "
                "`nbops migrate` again: it goes on where it stopped",
            ) from exc

    @staticmethod
    def _is_missing(exc: BaseException) -> bool:
        return error_code(exc) in (DOES_NOT_EXIST, INVALID_PARAMETER_VALUE)

    # --- experiments ------------------------------------------------------------------------
    def experiments(self) -> list[Experiment]:
        """Every active experiment."""
        out: list[Experiment] = []
        token = None
        with self._calling("list experiments"):
            while True:
                page = self._client.search_experiments(max_results=PAGE, page_token=token)
                out += [_experiment(x) for x in page]
                token = getattr(page, "token", None)
                if not token:
                    return out

    def experiment_named(self, name: str) -> Experiment | None:
        """The experiment named ``name`` (active or deleted), None when there is none."""
        with self._calling(f"read experiment {name!r}"):
            found = self._client.get_experiment_by_name(name)
        return None if found is None else _experiment(found)

    def create_experiment(self, name: str, experiment_tags: dict[str, str]) -> str:
        """A new experiment whose artifacts live where the server keeps them."""
        with self._calling(f"create experiment {name!r}"):
            return str(self._client.create_experiment(name, tags=experiment_tags))

    def set_experiment_tag(self, experiment_id: str, key: str, value: str) -> None:
        with self._calling(f"tag experiment {experiment_id}"):
            self._client.set_experiment_tag(experiment_id, key, value)

    # --- runs -------------------------------------------------------------------------------
    def runs(self, experiment_id: str, filter_string: str = "") -> list[Run]:
        """Every active run of an experiment (matching ``filter_string``), oldest first."""
        out: list[Run] = []
        token = None
        with self._calling(f"list the runs of experiment {experiment_id}"):
            while True:
                page = self._client.search_runs(
                    [experiment_id],
                    filter_string=filter_string,
                    max_results=PAGE,
                    order_by=["attributes.start_time ASC"],
                    page_token=token,
                )
                out += [_run(r) for r in page]
                token = getattr(page, "token", None)
                if not token:
                    return out

    def migrated_runs(self, experiment_id: str) -> dict[str, Run]:
        """The runs of an experiment that ``nbops migrate`` copied, by the source's run id."""
        found = self.runs(experiment_id, f"tags.`{tags.MIGRATED_FROM}` LIKE '%'")
        return {r.tags[tags.MIGRATED_FROM]: r for r in found if r.tags.get(tags.MIGRATED_FROM)}

    def history(self, run_id: str, key: str) -> list[Point]:
        """Every logged value of metric ``key``, in (step, timestamp) order."""
        with self._calling(f"read metric {key!r} of run {run_id}"):
            hist = self._client.get_metric_history(run_id, key)
        return sorted(((float(m.value), int(m.timestamp), int(m.step)) for m in hist), key=_order)

    def create_run(self, experiment_id: str, name: str, start: int | None, user: str | None) -> str:
        first = {tags.MLFLOW_USER: user} if user else {}
        with self._calling(f"create a run in experiment {experiment_id}"):
            run = self._client.create_run(
                experiment_id, start_time=start, tags=first, run_name=name or None
            )
        return str(run.info.run_id)

    def log_batch(
        self,
        run_id: str,
        metrics: Sequence[tuple[str, Point]] = (),
        params: Sequence[tuple[str, str]] = (),
        run_tags: Sequence[tuple[str, str]] = (),
    ) -> None:
        """Log everything, in as many requests as MLflow's limits need."""
        from mlflow.entities import Metric, Param, RunTag

        with self._calling(f"log into run {run_id}"):
            for i in range(0, len(params), MAX_PARAMS_TAGS):
                chunk = params[i : i + MAX_PARAMS_TAGS]
                self._client.log_batch(run_id, params=[Param(k, v) for k, v in chunk])
            for i in range(0, len(run_tags), MAX_PARAMS_TAGS):
                chunk = run_tags[i : i + MAX_PARAMS_TAGS]
                self._client.log_batch(run_id, tags=[RunTag(k, v) for k, v in chunk])
            for i in range(0, len(metrics), MAX_METRICS):
                batch = [
                    Metric(k, value, ts, step)
                    for k, (value, ts, step) in metrics[i : i + MAX_METRICS]
                ]
                self._client.log_batch(run_id, metrics=batch)

    def log_inputs(self, run_id: str, inputs: list[Any]) -> None:
        """The datasets a run read (MLflow's DatasetInput, as the source answered them)."""
        if inputs:
            with self._calling(f"log the datasets of run {run_id}"):
                self._client.log_inputs(run_id, datasets=inputs)

    def terminate(self, run_id: str, status: str, end: int | None) -> None:
        with self._calling(f"end run {run_id}"):
            self._client.set_terminated(run_id, status=status, end_time=end)

    def delete_run(self, run_id: str) -> None:
        with self._calling(f"delete the partial copy {run_id}"):
            self._client.delete_run(run_id)

    # --- artifacts --------------------------------------------------------------------------
    def artifact_files(self, run: Run) -> dict[str, int]:
        """{path: size} of every artifact file of a run (directories walked); ForeignArtifacts
        when they are kept on a host of their own (not even listed: the login would go there)."""
        if foreign_host(run.artifact_uri):
            raise ForeignArtifacts(run.artifact_uri)
        run_id = run.id
        out: dict[str, int] = {}
        todo: list[str | None] = [None]
        with self._calling(f"list the artifacts of run {run_id}"):
            while todo:
                for item in self._client.list_artifacts(run_id, todo.pop()):
                    if item.is_dir:
                        todo.append(item.path)
                    else:
                        out[item.path] = int(item.file_size or 0)
        return out

    def local_artifacts(self, run: Run) -> Path | None:
        """The directory of a run's artifacts when they are files on this machine."""
        parsed = urlparse(run.artifact_uri)
        if parsed.scheme not in ("", "file"):
            return None
        path = Path(unquote(parsed.path))
        return path if path.is_dir() else None

    def fetch_artifacts(self, run: Run, scratch: Path) -> Path:
        """A local directory holding every artifact of ``run`` (downloaded into ``scratch`` when
        they are not local files)."""
        local = self.local_artifacts(run)
        if local is not None:
            return local
        if foreign_host(run.artifact_uri):
            raise ForeignArtifacts(run.artifact_uri)
        with self._calling(f"download the artifacts of run {run.id}"):
            from mlflow.artifacts import download_artifacts

            return Path(
                download_artifacts(run_id=run.id, dst_path=str(scratch), tracking_uri=self.uri)
            )

    def upload_artifacts(self, run_id: str, local_dir: Path) -> None:
        with self._calling(f"upload the artifacts of run {run_id}"):
            self._client.log_artifacts(run_id, str(local_dir))

    # --- model registry ---------------------------------------------------------------------
    def models(self) -> list[Model]:
        out: list[Model] = []
        token = None
        with self._calling("list registered models"):
            while True:
                page = self._client.search_registered_models(max_results=PAGE, page_token=token)
                out += [_model(m) for m in page]
                token = getattr(page, "token", None)
                if not token:
                    return out

    def model(self, name: str) -> Model | None:
        try:
            with self._calling(f"read registered model {name!r}"):
                return _model(self._client.get_registered_model(name))
        except Exception as exc:
            if self._is_missing(exc):
                return None
            raise

    def versions(self, name: str) -> list[Version]:
        """Every version of model ``name``, oldest first."""
        out: list[Version] = []
        token = None
        quoted = name.replace("'", "\\'")
        with self._calling(f"list the versions of model {name!r}"):
            while True:
                page = self._client.search_model_versions(
                    f"name = '{quoted}'", max_results=PAGE, page_token=token
                )
                out += [_version(v) for v in page]
                token = getattr(page, "token", None)
                if not token:
                    return sorted(out, key=lambda v: int(v.version))

    def create_model(self, name: str, description: str) -> None:
        with self._calling(f"register model {name!r}"):
            self._client.create_registered_model(name, description=description or None)

    def set_model_tag(self, name: str, key: str, value: str) -> None:
        with self._calling(f"tag model {name!r}"):
            self._client.set_registered_model_tag(name, key, value)

    def set_model_description(self, name: str, description: str) -> None:
        with self._calling(f"describe model {name!r}"):
            self._client.update_registered_model(name, description=description)

    def create_version(
        self, name: str, source: str, run_id: str | None, version_tags: dict[str, str], text: str
    ) -> str:
        with self._calling(f"add a version to model {name!r}"):
            mv = self._client.create_model_version(
                name, source, run_id=run_id, tags=version_tags, description=text or None
            )
        return str(mv.version)

    def set_alias(self, name: str, alias: str, version: str) -> None:
        with self._calling(f"point {name}@{alias} at version {version}"):
            self._client.set_registered_model_alias(name, alias, version)


class ForeignArtifacts(Exception):
    """A run's artifact location names a host of its own: not fetched."""


def foreign_host(uri: str) -> bool:
    """True when artifacts at ``uri`` would be fetched from a host the run's row names
    (``http(s)://``, ``mlflow-artifacts://host/``): a run's artifact location is its creator's
    choice, and MLflow would send that host the tracking login. ``mlflow-artifacts:/`` without a
    host (the server's own proxy), local paths and cloud stores (their own credentials) are not."""
    parsed = urlparse(uri)
    if parsed.scheme in ("http", "https"):
        return True
    return parsed.scheme == "mlflow-artifacts" and bool(parsed.netloc)


def _order(p: Point) -> tuple[int, int, str]:
    return (p[2], p[1], repr(p[0]))


def _experiment(x: Any) -> Experiment:
    return Experiment(
        id=str(x.experiment_id),
        name=str(x.name),
        tags=dict(x.tags or {}),
        active=x.lifecycle_stage == "active",
    )


def _run(r: Any) -> Run:
    inputs = list(getattr(getattr(r, "inputs", None), "dataset_inputs", None) or [])
    return Run(
        id=str(r.info.run_id),
        experiment_id=str(r.info.experiment_id),
        name=str(r.info.run_name or ""),
        status=str(r.info.status),
        start=r.info.start_time,
        end=r.info.end_time,
        params=dict(r.data.params),
        tags=dict(r.data.tags),
        metric_keys=sorted(r.data.metrics),
        artifact_uri=str(r.info.artifact_uri or ""),
        inputs=inputs,
    )


def _model(m: Any) -> Model:
    return Model(
        name=str(m.name),
        description=str(m.description or ""),
        tags=dict(m.tags or {}),
        aliases={str(a): str(v) for a, v in (m.aliases or {}).items()},
    )


def _version(v: Any) -> Version:
    return Version(
        name=str(v.name),
        version=str(v.version),
        source=str(v.source or ""),
        run_id=str(v.run_id) if v.run_id else None,
        tags=dict(v.tags or {}),
        description=str(v.description or ""),
    )
