"""The shared audit trail's MLflow calls (see :mod:`nbops.tracking.audit_shared` for the design).

The trail is the hidden experiment :data:`EXPERIMENT`; each record is one run whose content is in
its params (MLflow refuses to change a logged param, so the server keeps the content
append-only): ``record`` (the record's canonical JSON, continued in ``record.1``, ``record.2``,
... when longer than MLflow's 6000 characters a param), ``hash``, ``seq`` (zero-padded, so the
newest records are found by ordering on it) and ``id``. Tags, which can be rewritten, hold only
hints: the run's name, and on the experiment each writer's last append
(``nbops.audit.head.<writer key>``).

Only this module of the audit trail imports MLflow; it uses the store's guarded ``MlflowClient``
(:func:`nbops.mlflow.store.guarded_client`: quiet, a 401/403 raised as ``AccessDenied``) on the
URI of an opened :class:`~nbops.mlflow.store.TrackingStore` (so opening fails as every store
does), and wraps every call in :func:`nbops.mlflow.quiet`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from nbops import tags
from nbops.mlflow import quiet

EXPERIMENT = "nbops-audit"  # the hidden experiment of the shared trail (listings skip it)
HIDDEN_TAG_VALUE = "true"  # the experiment's tags.HIDDEN value
PARAM_CHUNK = 6000  # MLflow's longest param value
MAX_CHUNKS = 90  # one log_batch holds 100 params: record's chunks + hash, seq, id
SEQ_WIDTH = 12
PAGE = 1000

_lock = threading.Lock()
_stores: dict[str, AuditStore] = {}


@dataclass(frozen=True)
class StoredRecord:
    """One run of the trail as the server holds it."""

    run_id: str
    deleted: bool  # the run's lifecycle_stage is "deleted"
    text: str | None  # the record's JSON (chunks joined), None when the run holds no record
    hash: str | None  # the ``hash`` param
    seq: int | None  # the ``seq`` param


@dataclass(frozen=True)
class Trail:
    """Where the trail lives on a server."""

    experiment_id: str
    deleted: bool  # the experiment was deleted (MLflow refuses new runs in it)


def chunks(text: str) -> list[str]:
    """``text`` cut into param values (``record``, ``record.1``, ...)."""
    return [text[i : i + PARAM_CHUNK] for i in range(0, len(text), PARAM_CHUNK)] or [""]


class AuditStore:
    """The trail on one tracking server (:func:`audit_store` opens one per URI per process)."""

    def __init__(self, uri: str) -> None:
        from nbops.mlflow.store import guarded_client, open_store

        store = open_store(uri)  # fails like every store (StoreUnavailable, AccessDenied, ...)
        self.uri = store.uri
        with quiet():  # and every call says a 401/403 as the facade does (AccessDenied)
            self._client = guarded_client(store.uri)

    # --- the experiment ---------------------------------------------------------------------
    def trail(self, create: bool) -> Trail | None:
        """The trail's experiment (created, hidden, when ``create`` and there is none)."""
        with quiet():
            exp = self._client.get_experiment_by_name(EXPERIMENT)
            if exp is None and create:
                hidden = {tags.HIDDEN: HIDDEN_TAG_VALUE}
                try:
                    self._client.create_experiment(EXPERIMENT, tags=hidden)
                except Exception:
                    exp = self._client.get_experiment_by_name(EXPERIMENT)
                    if exp is None:  # not another writer first: refused, unreachable, ...
                        raise
                exp = exp or self._client.get_experiment_by_name(EXPERIMENT)
        if exp is None:
            return None
        return Trail(str(exp.experiment_id), exp.lifecycle_stage == "deleted")

    def writer_heads(self, trail: Trail) -> dict[str, str]:
        """The experiment's ``nbops.audit.head.<writer key>`` tags: key -> JSON value."""
        with quiet():
            exp = self._client.get_experiment(trail.experiment_id)
        return {
            k: str(v) for k, v in (exp.tags or {}).items() if k.startswith(tags.AUDIT_HEAD_PREFIX)
        }

    def set_writer_head(self, trail: Trail, key: str, value: str) -> None:
        with quiet():
            self._client.set_experiment_tag(trail.experiment_id, key, value)

    # --- records ----------------------------------------------------------------------------
    def append(
        self, trail: Trail, *, seq: int, digest: str, record_id: str, text: str, name: str, who: str
    ) -> str:
        """One record as a new run (content in params, then FINISHED); returns its run id."""
        from mlflow.entities import Param

        parts = chunks(text)
        params = [Param("record" if i == 0 else f"record.{i}", p) for i, p in enumerate(parts)]
        params += [
            Param("hash", digest),
            Param("seq", str(seq).zfill(SEQ_WIDTH)),
            Param("id", record_id),
        ]
        with quiet():
            run = self._client.create_run(
                trail.experiment_id, tags={tags.MLFLOW_USER: who}, run_name=name[:250]
            )
            run_id = str(run.info.run_id)
            self._client.log_batch(run_id, params=params)
            self._client.set_terminated(run_id, "FINISHED")
        return run_id

    def newest(self, trail: Trail, n: int) -> list[StoredRecord]:
        """The ``n`` records of highest ``seq``, deleted runs included."""
        from mlflow.entities import ViewType

        with quiet():
            runs = self._client.search_runs(
                [trail.experiment_id],
                run_view_type=ViewType.ALL,
                max_results=n,
                order_by=["params.seq DESC"],
            )
        return [_stored(r) for r in runs]

    def has(self, trail: Trail, record_id: str) -> bool:
        """Whether a record with this ``id`` is on the server (a delivery that timed out may
        have arrived)."""
        from mlflow.entities import ViewType

        safe = "".join(c for c in record_id if c.isalnum())
        with quiet():
            runs = self._client.search_runs(
                [trail.experiment_id],
                filter_string=f"params.id = '{safe}'",
                run_view_type=ViewType.ALL,
                max_results=1,
            )
        return bool(runs)

    def records(self, trail: Trail) -> Iterator[StoredRecord]:
        """Every run of the trail, deleted ones included, page by page."""
        from mlflow.entities import ViewType

        token: str | None = None
        while True:
            with quiet():
                page = self._client.search_runs(
                    [trail.experiment_id],
                    run_view_type=ViewType.ALL,
                    max_results=PAGE,
                    page_token=token,
                )
            yield from (_stored(r) for r in page)
            token = getattr(page, "token", None) or None
            if not token or not page:
                return


def _stored(run: Any) -> StoredRecord:
    params: dict[str, str] = dict(run.data.params or {})
    text: str | None = None
    if "record" in params:
        parts, i = [params["record"]], 1
        while f"record.{i}" in params:
            parts.append(params[f"record.{i}"])
            i += 1
        text = "".join(parts)
    try:
        seq: int | None = int(params.get("seq", ""))
    except ValueError:
        seq = None
    return StoredRecord(
        str(run.info.run_id),
        run.info.lifecycle_stage == "deleted",
        text,
        params.get("hash"),
        seq,
    )


def audit_store(uri: str) -> AuditStore:
    """The trail's store at ``uri``, one per URI per process (not cached when opening fails)."""
    with _lock:
        found = _stores.get(uri)
        if found is None:
            found = _stores[uri] = AuditStore(uri)
        return found


__all__ = ["EXPERIMENT", "AuditStore", "StoredRecord", "Trail", "audit_store", "chunks"]
