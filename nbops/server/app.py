"""The Jupyter server extension ``nbops``: REST endpoints under ``/nbops/api/`` over the project's
tracking store and pipeline (enabled on install by jupyter-config/server-config/nbops.json)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jupyter_server.extension.application import ExtensionApp
from traitlets import Bool, Int, Unicode

from nbops import envvars, project
from nbops.mlflow.readers.base import Reader
from nbops.server.jobs import Jobs

if TYPE_CHECKING:
    from nbops.mlflow.store import TrackingStore


def is_server(uri: str) -> bool:
    return uri.lower().startswith(("http://", "https://"))


def direct_reader(uri: str, client: Callable[[], Reader]) -> Reader | None:
    """The read-only SQL path for tracking store ``uri``, or None (MlflowClient only):

    - a SQLite store: its file;
    - a tracking server (``http(s)://``) and ``NBOPS_READ_DATABASE_URI`` set: that PostgreSQL
      login, answering only for the experiments the server lets this user read;
    - a ``postgresql://`` store: that database (or ``NBOPS_READ_DATABASE_URI``, a read-only
      login to it, when set).

    Each falls back to ``client`` by itself (unknown schema, refused login, no psycopg)."""
    db = project.sqlite_path(uri)
    if db is not None:
        from nbops.mlflow.readers.sqlite import SqliteReader

        return SqliteReader(db, client)
    from nbops.mlflow.readers.postgres import PostgresReader, is_postgres_uri

    read_uri = os.environ.get(envvars.READ_DATABASE_URI, "").strip()
    if is_server(uri) and read_uri:
        return PostgresReader(read_uri, client, restrict=True)
    if is_postgres_uri(uri):
        return PostgresReader(read_uri or uri, client, restrict=False)
    return None


class ServerContext:
    """What every handler shares: the project, the read path, the worker threads, the jobs."""

    def __init__(self, root: Path, uri: str, workers: int = 4, fast_path: bool = True) -> None:
        self.root = root
        self.uri = uri
        self.state_dir = project.state_dir(root)
        from nbops.server.artifacts import artifact_roots

        self.artifact_roots = artifact_roots(root, uri)
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="nbops-api")
        self.jobs = Jobs(self.state_dir)
        self._mlflow: Reader | None = None
        self._lock = threading.Lock()
        self._warm: Future[None] = self.pool.submit(lambda: None)
        self.direct = direct_reader(uri, self.mlflow) if fast_path else None
        """The direct SQL path (its answers' ``source``: "sqlite" or "postgres"), or None."""

    @property
    def sqlite(self) -> Reader | None:
        """The direct SQL path's former name (set None: every read through MlflowClient)."""
        return self.direct

    @sqlite.setter
    def sqlite(self, reader: Reader | None) -> None:
        self.direct = reader

    def mlflow(self) -> Reader:
        """The MlflowClient path (imports mlflow on first use: call it in a worker thread)."""
        self._warm.result()
        with self._lock:
            if self._mlflow is None:
                from nbops.mlflow.readers.client import MlflowReader

                self._mlflow = MlflowReader(self.uri)
            return self._mlflow

    def store(self) -> TrackingStore:
        """The tracking store facade (imports mlflow on first use: call it in a worker thread)."""
        self._warm.result()
        from nbops.mlflow.store import open_store

        return open_store(self.uri)

    def reader(self) -> Reader:
        """The read path; blocks until MLflow is imported (call it in a worker thread)."""
        self._warm.result()
        return self.direct if self.direct is not None else self.mlflow()

    def warm_up(self) -> None:
        """Import MLflow in the background so the first request does not wait for it. Every
        worker waits for this one import: MLflow's circular imports break when two threads
        import it at once."""

        from nbops.mlflow.readers import preload

        self._warm = self.pool.submit(preload)


class NbopsApp(ExtensionApp):
    name = "nbops"
    load_other_extensions = True

    project_root = Unicode(
        "", config=True, help="Project root (default: found from the server's root_dir)"
    )
    tracking_uri = Unicode(
        "",
        config=True,
        help="MLflow tracking URI (default: MLFLOW_TRACKING_URI, else the project's)",
    )
    workers = Int(4, config=True, help="Threads for store reads and other blocking work")
    fast_path = Bool(
        True,
        config=True,
        help="Read a SQLite store, or a server's PostgreSQL (NBOPS_READ_DATABASE_URI), with "
        "read-only SQL (False: always MlflowClient)",
    )

    def initialize_settings(self) -> None:
        root_dir = getattr(self.serverapp, "root_dir", None) if self.serverapp else None
        root = (
            Path(self.project_root).resolve()
            if self.project_root
            else project.find_root(root_dir or None)
        )
        uri = self.tracking_uri or project.tracking_uri(root)
        ctx = ServerContext(root, uri, self.workers, self.fast_path)
        ctx.warm_up()
        self.settings["nbops"] = ctx
        self.log.info("nbops: project %s, tracking store %s", root, uri)

    def initialize_handlers(self) -> None:
        from nbops.server.handlers import routes
        from nbops.server.schedules import routes as schedule_routes

        self.handlers.extend(routes())
        self.handlers.extend(schedule_routes())

    async def stop_extension(self) -> None:
        ctx: Any = self.settings.get("nbops")
        if ctx is not None:
            await ctx.jobs.stop_all()
            ctx.pool.shutdown(wait=False, cancel_futures=True)
            close = getattr(ctx.direct, "close", None)
            if close is not None:  # the PostgreSQL reader's connections
                close()
