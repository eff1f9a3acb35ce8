"""The tracking store facade: the one object through which nbops talks to an MLflow store.

Imported only by the writer process and by queries (``nbops.runs``, the CLI, the server), never on
the path of ``import nbops`` or ``%load_ext nbops``. It hands out no ``MlflowClient``: every
operation a caller needs is a method here, with MLflow's "does not exist" translated into
``None`` or :class:`~nbops.errors.NotFound` as each method documents. Other MLflow errors pass
through; :func:`nbops.mlflow.failures.error_code` reads their code.

Every call to MLflow goes through one guard (:class:`_Guarded`): it runs inside
:func:`nbops.mlflow.quiet` (no MLflow lines, no "View run ... at:" on a server) and turns a
tracking server's refusal (HTTP 401: the login; 403: a permission) into
:class:`~nbops.errors.AccessDenied` naming the server, the user and the experiment or model
(:func:`nbops.mlflow.credentials.refused`), from any method and from opening the store. No message
shows a password written into the URI (:func:`nbops.mlflow.credentials.server`). The other modules
of ``nbops/mlflow/`` that need calls the facade lacks take the same guard with
:func:`guarded_client` (never handed outside ``nbops/mlflow/``).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, cast

import mlflow
from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from nbops import envvars, project, tags
from nbops.errors import AccessDenied, NotFound, SchemaRefused, StoreUnavailable
from nbops.mlflow import credentials, quiet
from nbops.mlflow import entities as e
from nbops.mlflow.bulk import BulkWriter
from nbops.mlflow.failures import (
    DOES_NOT_EXIST,
    INVALID_PARAMETER_VALUE,
    access_status,
    is_permanent,
)
from nbops.mlflow.schema import enable_wal, ensure_schema

# MLflow's request limits for log_batch
MAX_METRICS = 1000
MAX_PARAMS_TAGS = 100
MAX_ENTITIES = 1000
# metrics per log_batch call when the store takes direct bulk writes (nbops.mlflow.bulk): one
# SQLite transaction each; larger batches gain little and hold the write lock longer
BULK_MAX_METRICS = 20_000

_MISSING = (DOES_NOT_EXIST, INVALID_PARAMETER_VALUE)  # an id MLflow does not know or cannot parse


@contextlib.contextmanager
def _missing_is(
    not_found: Callable[[], NotFound], codes: tuple[str, ...] = _MISSING
) -> Iterator[None]:
    """MLflow's "does not exist" (an error with one of ``codes``) as nbops' NotFound; every
    other MLflow error passes through."""
    try:
        yield
    except MlflowException as exc:
        if _code(exc) in codes:
            raise not_found() from exc
        raise


def _http_defaults() -> None:
    """nbops retries on its own schedule (the spool keeps the data): MLflow's HTTP client must fail
    fast. MLflow reads these when it sends a request, so setting them at opening is in time."""
    os.environ.setdefault(envvars.MLFLOW_HTTP_REQUEST_MAX_RETRIES, "0")
    os.environ.setdefault(envvars.MLFLOW_HTTP_REQUEST_TIMEOUT, "15")


def _code(exc: MlflowException) -> str:
    return str(exc.error_code)


# MlflowClient methods whose first argument (or ``run_id``) is a run, an experiment, a model
_ON_EXPERIMENT = {"create_run", "get_experiment", "set_experiment_tag", "delete_experiment"}
_ON_MODEL_PREFIXES = ("create_model_version", "set_registered_model", "delete_registered_model")
_ON_MODEL = {
    "get_registered_model",
    "get_model_version",
    "set_model_version_tag",
    "delete_model_version",
    "create_registered_model",
    "transition_model_version_stage",
}


class _Guarded(MlflowClient):
    """An ``MlflowClient`` whose every public method runs inside :func:`quiet` and raises a
    tracking server's 401/403 as :class:`AccessDenied` (the one place that translates them)."""

    def __init__(self, uri: str) -> None:
        super().__init__(tracking_uri=uri)
        self._uri = uri

    def __getattribute__(self, name: str) -> Any:
        attr = super().__getattribute__(name)
        if name.startswith("_") or not callable(attr):
            return attr

        @functools.wraps(attr)
        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                with quiet():
                    return attr(*args, **kwargs)
            except Exception as exc:
                status = access_status(exc)
                if status is None:
                    raise
                target = self._target(name, args, kwargs)
                raise credentials.refused(self._uri, status, name, target) from exc

        return call

    def _target(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
        """What the refused call was about, as the message names it."""
        first = args[0] if args else None
        if name in _ON_MODEL or name.startswith(_ON_MODEL_PREFIXES):
            model = kwargs.get("name", first)
            return f"model {model!r}" if model is not None else None
        if name == "search_runs":
            ids = kwargs.get("experiment_ids", first) or []
            return ", ".join(self._experiment(str(i)) for i in ids) or None
        if name in _ON_EXPERIMENT:
            eid = kwargs.get("experiment_id", first)
            return self._experiment(str(eid)) if eid is not None else None
        if name == "create_experiment":
            return f"experiment {kwargs.get('name', first)!r}"
        run_id = kwargs.get("run_id", first)
        if isinstance(run_id, str) and run_id and name not in ("search_experiments",):
            return self._run(run_id)
        return None

    def _experiment(self, experiment_id: str) -> str:
        try:  # READ is MLflow's default permission: the name can usually be read
            with quiet():
                exp = MlflowClient.get_experiment(self, experiment_id)
            return f"experiment {exp.name!r} (id {experiment_id})"
        except Exception:  # noqa: BLE001 - the id alone still names it
            return f"experiment {experiment_id}"

    def _run(self, run_id: str) -> str:
        try:
            with quiet():
                eid = str(MlflowClient.get_run(self, run_id).info.experiment_id)
        except Exception:  # noqa: BLE001 - the run id alone still names it
            return f"run {run_id}"
        return f"run {run_id} of {self._experiment(eid)}"


def guarded_client(uri: str) -> MlflowClient:
    """An ``MlflowClient`` for the modules of ``nbops/mlflow/`` that need calls the facade lacks
    (the audit trail, shared outs, migration): every call quiet, a server's 401/403 raised as
    :class:`AccessDenied` naming the server, user and target, as the facade's own calls are."""
    return _Guarded(uri)


def _as_login(uri: str, run_tags: dict[str, str], add: bool) -> dict[str, str]:
    """``run_tags`` with ``mlflow.user`` set to the server login when there is one (MLflow does
    not set it from the login, and the OS user nbops captures may be ``root`` in a container):
    replaced where it is set, added too when ``add``."""
    name = credentials.login(uri) if credentials.is_http(uri) else None
    if name is None or not (add or tags.MLFLOW_USER in run_tags):
        return run_tags
    return {**run_tags, tags.MLFLOW_USER: name}


class TrackingStore:
    """An MLflow tracking store (and its model registry), opened once per process per URI
    (:func:`open_store`)."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.shown = credentials.server(uri)  # the URI as messages show it: no password
        art = project.artifact_root_for(uri)
        self.artifact_root = art
        db = project.sqlite_path(uri)
        _http_defaults()
        try:
            with quiet():
                # one process at a time creates, upgrades or repairs an SQLite store's schema
                ensure_schema(uri, art)
                self._client: MlflowClient = _Guarded(uri)
                # opening the store is lazy in MLflow: touch it so an unreachable store fails
                # (and a server that refuses the login says so: AccessDenied)
                self._client.search_experiments(max_results=1)
        except (SchemaRefused, AccessDenied):
            raise  # names the file or the login and the fix already
        except Exception as exc:  # noqa: BLE001 - any failure to open is "unavailable"
            raise StoreUnavailable(
                f"tracking store {self.shown} cannot be opened: {why_unreachable(exc, uri)}",
                "start the tracking server or fix MLFLOW_TRACKING_URI; logged data stays in "
                "the spool and `nbops sync` delivers it later",
            ) from exc
        if db is not None and db.parent.name == project.STATE_DIR:
            enable_wal(db)
        # an SQLite store takes metrics, params and tags by direct bulk writes (same rows as
        # MlflowClient.log_batch; another schema revision goes through MLflow)
        self._bulk = BulkWriter(db) if db is not None else None

    @property
    def max_batch_metrics(self) -> int:
        """How many metrics one :meth:`log_batch` call should carry: MLflow's request limit,
        or :data:`BULK_MAX_METRICS` while direct bulk writes are on."""
        bulk = self._bulk
        return BULK_MAX_METRICS if bulk is not None and bulk.disabled is None else MAX_METRICS

    # --- experiments ------------------------------------------------------------------------
    def experiments(self) -> list[e.Experiment]:
        """Every active experiment of the store."""
        return list(self._client.search_experiments())

    def get_experiment(self, experiment_id: str) -> e.Experiment:
        """The experiment with this id; NotFound when the store has none (or the id is not one
        MLflow can parse)."""
        with _missing_is(lambda: self._no_experiment(experiment_id)):
            return cast(e.Experiment, self._client.get_experiment(str(experiment_id)))

    def experiment_by_name(self, name: str) -> e.Experiment | None:
        """The experiment named ``name``, or None when there is none."""
        return cast("e.Experiment | None", self._client.get_experiment_by_name(name))

    def experiment_id(self, name: str) -> str:
        """The id of the experiment named ``name``, created (with its artifacts under the
        project's artifact root) when there is none yet."""
        exp = self._client.get_experiment_by_name(name)
        if exp is not None:
            return str(exp.experiment_id)
        location = None
        if self.artifact_root is not None:
            location = (self.artifact_root / _slug(name)).as_uri()
        try:
            return str(self._client.create_experiment(name, artifact_location=location))
        except MlflowException:
            exp = self._client.get_experiment_by_name(name)  # another process created it
            if exp is None:
                raise
            return str(exp.experiment_id)

    def set_experiment_tag(self, experiment_id: str, key: str, value: str) -> None:
        """Set a tag on an experiment; NotFound when the experiment does not exist."""
        with _missing_is(lambda: self._no_experiment(experiment_id)):
            self._client.set_experiment_tag(str(experiment_id), key, value)

    def _no_experiment(self, experiment_id: str) -> NotFound:
        return NotFound(
            f"experiment {experiment_id!r} does not exist in {self.shown}",
            "list experiments with `nbops runs` or in the Runs panel",
        )

    # --- runs -------------------------------------------------------------------------------
    def create_run(
        self, experiment_id: str, start_ms: int, name: str | None, tags: dict[str, str]
    ) -> str:
        run = self._client.create_run(
            experiment_id,
            start_time=start_ms,
            tags=_as_login(self.uri, tags, add=True),
            run_name=name or None,
        )
        return str(run.info.run_id)

    def run_experiment(self, run_id: str) -> str:
        return str(self.get_run(run_id).info.experiment_id)

    def get_run(self, run_id: str) -> Any:
        """The run (an :class:`~nbops.mlflow.entities.Run`); NotFound when the store has none."""
        with _missing_is(lambda: self._no_run(run_id)):
            return self._client.get_run(run_id)

    def _no_run(self, run_id: str) -> NotFound:
        return NotFound(
            f"run {run_id!r} does not exist in {self.shown}",
            "list runs with `nbops runs` (ids are MLflow run ids)",
        )

    def log_batch(
        self,
        run_id: str,
        metrics: Sequence[tuple[str, float, int, int]] = (),
        params: Iterable[tuple[str, str]] = (),
        tags: Iterable[tuple[str, str]] = (),
    ) -> None:
        """Log metrics (key, value, step, timestamp ms), params and tags, as
        ``MlflowClient.log_batch`` does (any number: split into MLflow's requests); on an SQLite
        store by direct bulk writes (:mod:`nbops.mlflow.bulk`), one transaction, same rows and
        same errors (a changed param: MLflow's INVALID_PARAMETER_VALUE naming the key)."""
        if self._bulk is not None:
            params, tags = list(params), list(tags)
            with quiet():  # MLflow's validators warn of a truncated value, as in MLflow's path
                if self._bulk.log_batch(run_id, metrics, params, tags):
                    return
        run_tags = _as_login(self.uri, dict(tags), add=False)
        self._client.log_batch(
            run_id,
            metrics=[Metric(k, v, ts, step) for k, v, step, ts in metrics],
            params=[Param(k, v) for k, v in params],
            tags=[RunTag(k, v) for k, v in run_tags.items()],
            synchronous=True,
        )

    def log_artifact(self, run_id: str, src: str, artifact_path: str | None) -> None:
        with quiet():  # no upload progress bar in nbops' output
            if os.path.isdir(src):
                self._client.log_artifacts(run_id, src, artifact_path)
            else:
                self._client.log_artifact(run_id, src, artifact_path)

    def log_dataset(self, run_id: str, fp: dict[str, Any]) -> None:
        ds = Dataset(
            name=fp["name"],
            digest=fp["xxh3"][:36],
            source_type="local",
            source=json.dumps({"uri": fp["path"]}),
            profile=json.dumps(
                {k: fp[k] for k in ("size", "rows", "cols") if fp.get(k) is not None}
            ),
        )
        context = InputTag(tags.MLFLOW_DATA_CONTEXT, fp.get("role", "input"))
        self._client.log_inputs(run_id, [DatasetInput(ds, [context])])

    def set_terminated(self, run_id: str, status: str, end_ms: int | None) -> None:
        self._client.set_terminated(run_id, status=status, end_time=end_ms)

    def search_runs(
        self,
        experiment_ids: list[str],
        filter_string: str = "",
        order_by: list[str] | None = None,
        max_results: int = 1000,
    ) -> list[Any]:
        """The first ``max_results`` runs (:class:`~nbops.mlflow.entities.Run`) matching; a
        filter or order MLflow cannot parse raises MLflow's INVALID_PARAMETER_VALUE."""
        return list(
            self._client.search_runs(
                experiment_ids,
                filter_string=filter_string,
                order_by=order_by,
                max_results=max_results,
            )
        )

    def search_runs_page(
        self,
        experiment_ids: list[str],
        filter_string: str = "",
        order_by: list[str] | None = None,
        max_results: int = 1000,
        page_token: str | None = None,
    ) -> tuple[list[Any], str | None]:
        """One page of matching runs and the token of the next page (None on the last page);
        errors as :meth:`search_runs`."""
        page = self._client.search_runs(
            experiment_ids,
            filter_string=filter_string,
            order_by=order_by or None,
            max_results=max_results,
            page_token=page_token,
        )
        return list(page), _token(page)

    def metric_history(self, run_id: str, key: str) -> list[e.Metric]:
        """Every logged value of metric ``key`` of a run ([] when it logged none); NotFound when
        the run does not exist."""
        with _missing_is(lambda: self._no_run(run_id)):
            hist: list[e.Metric] = list(self._client.get_metric_history(run_id, key))
        if not hist:
            self.get_run(run_id)  # MLflow answers [] for an unknown run too: NotFound then
        return hist

    # --- artifacts --------------------------------------------------------------------------
    def list_artifacts(self, run_id: str, path: str | None = None) -> list[e.FileInfo]:
        """The artifacts directly under ``path`` of a run ([] for a path that holds none);
        NotFound when the run does not exist."""
        with _missing_is(lambda: self._no_run(run_id)):
            return list(self._client.list_artifacts(run_id, path))

    def download_artifacts(self, run_id: str, path: str, dst_dir: str) -> str:
        """Download artifact ``path`` of a run into ``dst_dir``; the local path. NotFound when
        the run does not exist or has no artifact at ``path``. MLflow's ``Downloading
        artifacts`` bar is not shown (``nbops.mlflow.quiet``)."""
        try:
            with quiet():
                return str(self._client.download_artifacts(run_id, path, dst_dir))
        except MlflowException as exc:
            if _code(exc) not in _MISSING:
                raise
            self.get_run(run_id)  # NotFound naming the run when that is what is missing
            raise NotFound(
                f"run {run_id} has no artifact {path!r}",
                "its artifacts are listed in the Runs panel (or `nbops show RUN`)",
            ) from exc
        except OSError as exc:  # a local artifact store without the file
            raise NotFound(
                f"run {run_id} has no artifact {path!r}",
                "its artifacts are listed in the Runs panel (or `nbops show RUN`)",
            ) from exc

    # --- model registry ---------------------------------------------------------------------
    def get_registered_model(self, name: str) -> e.RegisteredModel | None:
        """The registered model ``name``, or None when it is not registered
        (RESOURCE_DOES_NOT_EXIST). A name MLflow refuses (INVALID_PARAMETER_VALUE) raises
        MLflow's error."""
        try:
            return cast(e.RegisteredModel, self._client.get_registered_model(name))
        except MlflowException as exc:
            if _code(exc) == DOES_NOT_EXIST:
                return None
            raise

    def search_registered_models(self, max_results: int = 1000) -> list[e.RegisteredModel]:
        """Registered models, up to ``max_results`` (one page)."""
        return list(self._client.search_registered_models(max_results=max_results))

    def create_registered_model(
        self, name: str, tags: dict[str, str] | None = None, description: str | None = None
    ) -> e.RegisteredModel:
        """Register a new model. MLflow's errors pass through: RESOURCE_ALREADY_EXISTS when
        another process registered it first, INVALID_PARAMETER_VALUE for a name it refuses."""
        return cast(
            e.RegisteredModel,
            self._client.create_registered_model(name, tags=tags, description=description),
        )

    def get_model_version(self, name: str, version: str) -> e.ModelVersion | None:
        """Version ``version`` of model ``name``, or None when there is no such version (or
        model)."""
        try:
            return cast(e.ModelVersion, self._client.get_model_version(name, str(version)))
        except MlflowException as exc:
            if _code(exc) in _MISSING:
                return None
            raise

    def create_model_version(
        self, name: str, source: str, run_id: str | None = None, tags: dict[str, str] | None = None
    ) -> e.ModelVersion:
        """A new version of registered model ``name`` from ``source`` (``runs:/<id>/<path>``);
        NotFound when the model is not registered."""
        with _missing_is(lambda: self._no_model(name), (DOES_NOT_EXIST,)):
            mv = self._client.create_model_version(name, source, run_id=run_id, tags=tags)
        return cast(e.ModelVersion, mv)

    def search_model_versions(
        self, filter_string: str = "", max_results: int = 1000, page_token: str | None = None
    ) -> tuple[list[e.ModelVersion], str | None]:
        """One page of model versions matching ``filter_string`` and the next page's token
        (None on the last page)."""
        page = self._client.search_model_versions(
            filter_string or None, max_results=max_results, page_token=page_token
        )
        return list(page), _token(page)

    def set_registered_model_alias(self, name: str, alias: str, version: str) -> None:
        """Point ``alias`` of model ``name`` at ``version``; NotFound when the model or version
        does not exist."""
        with _missing_is(lambda: self._no_version(name, version), (DOES_NOT_EXIST,)):
            self._client.set_registered_model_alias(name, alias, str(version))

    def set_registered_model_tag(self, name: str, key: str, value: str) -> None:
        """Set a tag on registered model ``name``; NotFound when it is not registered."""
        with _missing_is(lambda: self._no_model(name), (DOES_NOT_EXIST,)):
            self._client.set_registered_model_tag(name, key, value)

    def set_model_version_tag(self, name: str, version: str, key: str, value: str) -> None:
        """Set a tag on a model version; NotFound when the model or version does not exist."""
        with _missing_is(lambda: self._no_version(name, version), (DOES_NOT_EXIST,)):
            self._client.set_model_version_tag(name, str(version), key, value)

    def _no_model(self, name: str) -> NotFound:
        return NotFound(
            f"model {name!r} is not registered in {self.shown}",
            "list registered models with `nbops models`",
        )

    def _no_version(self, name: str, version: str) -> NotFound:
        return NotFound(
            f"model {name!r} has no version {version!r} in {self.shown}",
            f"list its versions with `nbops models {name}`",
        )


_stores: dict[str, TrackingStore] = {}
_stores_lock = threading.Lock()


def open_store(uri: str | None = None) -> TrackingStore:
    """The store at ``uri`` (default: the project's tracking URI), one per URI per process;
    StoreUnavailable (not cached) when it cannot be opened."""
    uri = uri or project.tracking_uri()
    with _stores_lock:
        store = _stores.get(uri)
        if store is None:
            store = _stores[uri] = TrackingStore(uri)
        return store


def _token(page: Any) -> str | None:
    token = getattr(page, "token", None)
    if isinstance(token, bytes):
        token = token.decode()
    return str(token) if token else None


def _slug(name: str) -> str:
    out = "".join(c if c.isalnum() or c in "-_." else "_" for c in name).strip("._")
    return out or "experiment"


def why_unreachable(exc: BaseException, uri: str) -> str:
    """Why a store could not be opened, in a few words: a tracking server's connection
    failures as what they mean, not MLflow's "API request to ... failed with exception
    HTTPConnectionPool(...)" text."""
    text = str(exc)
    if credentials.is_http(uri) and "API request to" in text:
        if "ReadTimeout" in text or "timed out" in text:
            wait = os.environ.get(envvars.MLFLOW_HTTP_REQUEST_TIMEOUT, "15")
            return (
                f"the server did not answer within {wait} s "
                f"({envvars.MLFLOW_HTTP_REQUEST_TIMEOUT}; it may be overloaded)"
            )
        if "Connection refused" in text or "NewConnectionError" in text:
            return "connection refused (is the server running at that address?)"
        if "Name or service not known" in text or "nodename nor servname" in text:
            return "unknown host"
        if "SSLError" in text or "CERTIFICATE_VERIFY_FAILED" in text:
            return "its TLS certificate is not trusted"
        if "failed with error code" in text:
            code = text.split("failed with error code", 1)[1].split("!=", 1)[0].strip()
            return f"the server answered HTTP {code}"
    return _first_line(exc, uri)


def _first_line(exc: BaseException, uri: str | None = None) -> str:
    text = str(exc).strip().splitlines()
    line = text[0][:300] if text else type(exc).__name__
    return line.replace(uri, credentials.server(uri)) if uri else line


__all__ = [
    "MAX_ENTITIES",
    "MAX_METRICS",
    "MAX_PARAMS_TAGS",
    "SchemaRefused",
    "TrackingStore",
    "ensure_schema",
    "guarded_client",
    "is_permanent",
    "mlflow",
    "open_store",
    "why_unreachable",
]
