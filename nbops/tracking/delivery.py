"""Moves a spool's records into the MLflow store, in order, in ``log_batch`` requests.

Used by the writer process (live runs) and by recovery (orphaned spools). Delivery is
at-least-once and idempotent on MLflow's side: a metric already stored is skipped by the store,
re-logging a param with its value is a no-op, tags are overwritten with the same value.
"""

from __future__ import annotations

import os
import time
from typing import Any

from nbops import tags
from nbops.mlflow.failures import is_permanent
from nbops.mlflow.store import MAX_ENTITIES, MAX_PARAMS_TAGS, TrackingStore
from nbops.tracking import spool
from nbops.tracking.spool import Spool


class Delivery:
    def __init__(self, spool: Spool, store: TrackingStore) -> None:
        self.spool = spool
        self.store = store
        self.start = spool.start_record()
        self.offset = spool.acked()
        info = spool.run_info()
        self.run_id: str | None = info["run_id"] if info else None
        self.experiment_id: str | None = info["experiment_id"] if info else None
        self.ended = False
        self.delivered = 0
        self.dropped: list[str] = []
        self.last_ts = int(self.start.get("start_ms") or 0)

    # --- the run ----------------------------------------------------------------------------
    def ensure_run(self) -> str:
        if self.run_id is not None:
            return self.run_id
        st = self.start
        if st.get("run_id"):
            run_id = str(st["run_id"])
            eid = self.store.run_experiment(run_id)
        else:
            eid = self.store.experiment_id(st.get("experiment") or "Default")
            run_tags = dict(st.get("tags") or {})
            tried = self.spool.mark_creating()
            local_id = run_tags.get(tags.SPOOL) or self.spool.dir.name
            found = self._created_before(eid, local_id) if tried else None
            run_id = found or self.store.create_run(eid, self.start_ms(), st.get("name"), run_tags)
        self.spool.set_run_info(run_id, eid)
        self.run_id, self.experiment_id = run_id, eid
        if not st.get("run_id"):
            self._audit("run.start", experiment=st.get("experiment"), name=st.get("name"))
        return run_id

    def _created_before(self, experiment_id: str, local_id: str | None) -> str | None:
        """The run an earlier attempt created although its answer was lost (a server killed
        mid-request): found by the spool's ``nbops.spool`` tag, so it is not created twice."""
        if not local_id:
            return None
        found = self.store.search_runs(
            [experiment_id], f"tags.`{tags.SPOOL}` = '{local_id}'", None, 1
        )
        return str(found[0].info.run_id) if found else None

    def start_ms(self) -> int:
        """When the run began: its Began record (a pipeline point queued before its kernel was
        ready), else its Start record's time."""
        began = spool.began_ms(self.spool)
        return int(self.start["start_ms"]) if began is None else began

    def _audit(self, action: str, **fields: Any) -> None:
        """nbops ops audit log (.nbops/audit.jsonl); never breaks delivery."""
        try:
            from nbops.tracking.audit import safe_record

            state = self.spool.dir.parent.parent  # <root>/.nbops/spool/<run>
            if state.name != ".nbops":
                return
            start_tags = self.start.get("tags") or {}
            safe_record(
                action,
                root=state.parent,
                store=self.store,  # the head is kept in the store too (a server store as well)
                run_id=self.run_id,
                stage=start_tags.get(tags.STAGE),
                **fields,
            )
        except Exception:  # noqa: BLE001 - auditing never breaks logging
            pass

    # --- records ------------------------------------------------------------------------------
    def pump(self) -> int:
        """Deliver every complete record after the acknowledged offset; return how many."""
        run_id = self.ensure_run()
        metrics: list[tuple[str, float, int, int]] = []
        params: dict[str, str] = {}
        tags: dict[str, str] = {}
        pending_end = self.offset
        n = 0
        # MLflow's request limits, or one large transaction per batch on a store that takes
        # direct bulk writes (the embedded SQLite store)
        max_metrics = self.store.max_batch_metrics
        max_entities = max(MAX_ENTITIES, max_metrics)

        def send() -> None:
            nonlocal metrics, params, tags
            if metrics or params or tags:
                self._send(run_id, metrics, params, tags)
                metrics, params, tags = [], {}, {}
            if pending_end > self.offset:
                self.offset = pending_end
                self.spool.set_ack(self.offset)

        for end, rec in self.spool.entries_from(self.offset):
            if rec is None:  # a damaged line: nothing to deliver, but acknowledged past it
                pass
            elif isinstance(rec, spool.Metric):
                n += 1
                metrics.append((rec.key, rec.value, rec.step, rec.ts_ms))
                self.last_ts = rec.ts_ms
            elif isinstance(rec, spool.Param):
                n += 1
                params[rec.key] = rec.value
            elif isinstance(rec, spool.Tag):
                n += 1
                tags[rec.key] = rec.value
            elif isinstance(rec, spool.Began):
                pass  # read when the run was created (ensure_run); nothing to send
            elif isinstance(rec, spool.Start):
                n += 1
                params.update(rec.info.get("params") or {})
                tags.update(rec.info.get("tags") or {})
            else:
                n += 1
                send()
                self._one(run_id, rec)
            pending_end = end
            if (
                len(metrics) + len(params) + len(tags) >= max_entities
                or len(metrics) >= max_metrics
                or len(params) >= MAX_PARAMS_TAGS
                or len(tags) >= MAX_PARAMS_TAGS
            ):
                send()
        send()
        self.delivered += n
        return n

    def _one(self, run_id: str, rec: spool.Artifact | spool.Dataset | spool.End) -> None:
        try:
            if isinstance(rec, spool.Artifact):
                self.store.log_artifact(run_id, rec.src, rec.artifact_dir)
            elif isinstance(rec, spool.Dataset):
                self.store.log_dataset(run_id, rec.fingerprint)
            else:
                self.store.set_terminated(run_id, rec.status, rec.ts_ms)
                self.ended = True
                self._audit("run.end", status=rec.status)  # ops audit log
                self.last_ts = rec.ts_ms
        except Exception as exc:
            if not is_permanent(exc):
                raise
            self.dropped.append(f"{rec.KIND} {rec.encode()[1]!r}: {exc}")

    def _send(
        self,
        run_id: str,
        metrics: list[tuple[str, float, int, int]],
        params: dict[str, str],
        tags: dict[str, str],
    ) -> None:
        try:
            self.store.log_batch(run_id, metrics, params.items(), tags.items())
            return
        except Exception as exc:
            if not is_permanent(exc):
                raise
        # one bad value must not hold back the rest: retry item by item, note what is refused
        for k, v in params.items():
            self._try(lambda k=k, v=v: self.store.log_batch(run_id, params=[(k, v)]), f"param {k}")
        for k, v in tags.items():
            self._try(lambda k=k, v=v: self.store.log_batch(run_id, tags=[(k, v)]), f"tag {k}")
        if metrics:  # by key: a key the store refuses holds back none of the others
            by_key: dict[str, list[tuple[str, float, int, int]]] = {}
            for m in metrics:
                by_key.setdefault(m[0], []).append(m)
            for k, rows in by_key.items():
                self._try(
                    lambda rows=rows: self.store.log_batch(run_id, metrics=rows), f"metrics {k}"
                )

    def _try(self, fn: Any, what: str) -> None:
        try:
            fn()
        except Exception as exc:
            if not is_permanent(exc):
                raise
            self.dropped.append(f"{what}: {str(exc).splitlines()[0][:300]}")

    def heartbeat(self) -> None:
        """Tell other machines this run's process is alive (see recovery.reap_stale)."""
        if self.run_id is not None:
            self.store.log_batch(self.run_id, tags=[(tags.HEARTBEAT, str(_now_ms()))])

    def caught_up(self) -> bool:
        return self.offset >= self.spool.size()

    # --- orphans ------------------------------------------------------------------------------
    def finish_orphan(self) -> str:
        """Deliver everything; a run whose process died without ending it is marked KILLED."""
        self.pump()
        if not self.ended:
            assert self.run_id is not None
            pid, host = self.start.get("pid"), self.start.get("host")
            reason = f"process {pid} on {host} ended without ending the run"
            self.store.log_batch(self.run_id, tags=[(tags.END_REASON, reason)])
            end_ms = max(self.last_ts, _mtime_ms(self.spool.log_path))
            self.store.set_terminated(self.run_id, "KILLED", end_ms)
            self.ended = True
            self._audit("run.end", status="KILLED", reason=reason)  # ops audit log
            status = "KILLED"
        else:
            status = "ended"
        self.spool.remove()
        return status


def _mtime_ms(path: os.PathLike[str]) -> int:
    try:
        return int(os.stat(path).st_mtime * 1000)
    except OSError:
        return int(time.time() * 1000)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
