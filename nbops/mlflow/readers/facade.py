"""The read half of the store facade, for the read commands (``nbops runs``, ``show``, ``diff``,
``lineage``): the same methods, arguments, answers and errors as
:class:`~nbops.mlflow.store.TrackingStore`'s reads (``get_run``, ``search_runs``,
``experiments``, ``get_experiment``, ``experiment_by_name``, ``list_artifacts``), answered by a
:class:`~nbops.mlflow.readers.base.Reader` without importing MLflow.

:func:`open_read_store` gives a :class:`ReadStore` over the embedded store's read-only SQL
(:class:`~nbops.mlflow.readers.sqlite.SqliteReader`) when the store is SQLite at a schema
revision that SQL knows (``KNOWN_SCHEMA_REVISIONS``); for any other store (a tracking server,
another revision, a store not made yet), or with ``NBOPS_READ_PATH=mlflow``, it gives the
facade itself (MLflow), as before. A filter outside the SQL's subset is answered through
MlflowClient by the reader itself. Artifacts of the embedded store are files under its artifact
root: they are listed from the disk, only inside that root (else through MLflow).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from nbops import envvars, project
from nbops.mlflow.readers.base import ExperimentRecord, Reader, RunRecord
from nbops.mlflow.readers.sql import SqlReader

if TYPE_CHECKING:
    from nbops.mlflow.store import TrackingStore

READ_PATH = envvars.READ_PATH
"""``mlflow``: the read commands read through MLflow (the facade) even on the embedded store."""


@dataclass(frozen=True)
class ArtifactEntry:
    """One entry of an artifact listing, as MLflow's ``FileInfo``."""

    path: str
    is_dir: bool
    file_size: int | None


class ReadStore:
    """:class:`~nbops.mlflow.store.TrackingStore`'s reads over a Reader (see the module)."""

    def __init__(self, uri: str, reader: Reader) -> None:
        from nbops.mlflow import credentials

        self.uri = uri
        self.shown = credentials.server(uri)
        self.reader = reader
        if isinstance(reader, SqlReader):
            reader.shown = self.shown  # its NotFound names the store as the facade does
        self.artifact_root = project.artifact_root_for(uri)

    def __repr__(self) -> str:
        return f"ReadStore({self.shown!r}, {type(self.reader).__name__})"

    # --- experiments ------------------------------------------------------------------------
    def experiments(self) -> list[ExperimentRecord]:
        """Every active experiment of the store (with its tags), read anew each time (one
        query): a notebook's process sees the experiments created after it started."""
        return self.reader.all_experiments()

    def get_experiment(self, experiment_id: str) -> Any:
        """The experiment with this id; one that is not active (deleted, or none: NotFound)
        is asked of the facade, which answers as before."""
        for e in self.experiments():
            if e.experiment_id == str(experiment_id):
                return e
        from nbops.mlflow.store import open_store

        return open_store(self.uri).get_experiment(experiment_id)

    def experiment_by_name(self, name: str) -> ExperimentRecord | None:
        return next((e for e in self.experiments() if e.name == name), None)

    # --- runs -------------------------------------------------------------------------------
    def get_run(self, run_id: str) -> RunRecord:
        """The run; NotFound (the facade's message) when the store has none."""
        return self.reader.run(run_id)

    def search_runs(
        self,
        experiment_ids: list[str],
        filter_string: str = "",
        order_by: list[str] | None = None,
        max_results: int = 1000,
    ) -> list[RunRecord]:
        """The first ``max_results`` active runs matching, in MLflow's order; a filter MLflow
        refuses raises :class:`~nbops.mlflow.search_syntax.SearchSyntaxError`."""
        return self.reader.find_runs(
            [str(e) for e in experiment_ids], filter_string or "", list(order_by or []), max_results
        )

    # --- artifacts --------------------------------------------------------------------------
    def list_artifacts(self, run_id: str, path: str | None = None) -> list[Any]:
        """The artifacts directly under ``path`` of a run (sorted by path, as MLflow lists a
        local artifact directory; [] for a path that holds none); NotFound when the run does
        not exist. Read from the disk when the run's artifacts are a directory inside the
        store's artifact root, else through MLflow."""
        run = self.get_run(run_id)
        top = self._local_dir(run.info.artifact_uri)
        if top is None:
            from nbops.mlflow.store import open_store

            return list(open_store(self.uri).list_artifacts(run_id, path))
        where = (top / os.path.normpath(path)) if path else top
        resolved = where.resolve()
        if resolved != top and top not in resolved.parents:
            from nbops.errors import InvalidInput

            raise InvalidInput(
                f"artifact path {path!r} of run {run_id} is outside its artifact directory",
                "name a path inside the run's artifacts",
            )
        if not resolved.is_dir():
            return []
        out = []
        for entry in os.scandir(resolved):
            if entry.name.startswith(".mlflow-tmp"):  # MLflow's own temporary files
                continue
            rel = Path(entry.path).relative_to(top).as_posix()
            is_dir = entry.is_dir()
            out.append(ArtifactEntry(rel, is_dir, None if is_dir else entry.stat().st_size))
        return sorted(out, key=lambda a: a.path)

    def _local_dir(self, artifact_uri: str | None) -> Path | None:
        """The run's artifact directory when it is a ``file:`` URI inside the artifact root."""
        if not artifact_uri or self.artifact_root is None:
            return None
        parts = urlsplit(artifact_uri)
        if parts.scheme != "file" or parts.netloc not in ("", "localhost"):
            return None
        top = Path(unquote(parts.path)).resolve()
        root = self.artifact_root.resolve()
        if root not in top.parents:
            return None
        return top


_opened: dict[str, ReadStore] = {}
_lock = threading.Lock()


def open_read_store(uri: str | None = None) -> ReadStore | TrackingStore:
    """What the read commands read through: a :class:`ReadStore` over the embedded store's SQL
    when it is readable there (imports no MLflow), else the facade (MLflow), one per URI per
    process."""
    uri = uri or project.tracking_uri()
    if os.environ.get(READ_PATH, "").strip().lower() != "mlflow":
        db = project.sqlite_path(uri)
        if db is not None:
            from nbops.mlflow.readers.sqlite import SqliteReader, readable

            with _lock:
                if uri in _opened:
                    return _opened[uri]
                if readable(db):

                    def client() -> Reader:
                        from nbops.mlflow.readers.client import MlflowReader

                        return MlflowReader(uri)

                    store = _opened[uri] = ReadStore(uri, SqliteReader(db, client))
                    return store
    from nbops.mlflow.store import open_store

    return open_store(uri)


__all__ = ["READ_PATH", "ArtifactEntry", "ReadStore", "open_read_store"]
