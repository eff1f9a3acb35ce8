"""Shared outs (team mode): the out cache shared through a tracking server's artifact store, and
what a fresh clone learns from the server about which stages are up to date.

- **Blobs.** Every file an out holds is kept once per content digest on the server
  (:mod:`nbops.mlflow.blobs`: experiment ``nbops-blobs``, ``blobs/<d[:2]>/<digest>``). ``nbops
  run`` uploads the new ones at its end (:func:`share`: a blob the server has, at the same size,
  is not sent again; a shorter one, cut off by a dropped connection, is); a server that cannot be
  reached leaves them in ``.nbops/cache/`` and ``nbops push`` sends them later. ``nbops pull``,
  ``nbops checkout`` and a ``nbops run`` that finds its outs missing download what the local
  cache lacks (:func:`fetch`), hashing every byte: a blob that is not what its name says is
  refused, naming the out and the digest.
- **Staleness.** A stage point's run records ``nbops.inputs`` (the digest of its notebook code,
  params and deps: :func:`~nbops.pipeline.staleness.inputs_digest`) and ``nbops.env``. When the
  local state has no record of a point, or one it is stale against, :class:`ServerRecords` looks
  for the latest FINISHED run of the stage with the same inputs and makes it the record: a
  teammate's clone re-runs nothing that is up to date on the server, and fetches the outs
  instead (its progress line says ``fetched``).
- ``nbops push`` / ``nbops pull`` (DVC's convention): one summary line, or ``--json``. On the
  embedded store both exit 2: there is nothing to share.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nbops import project
from nbops import tags as tag_names
from nbops.errors import InvalidInput, NbopsError, NotFound
from nbops.mlflow import credentials
from nbops.mlflow.blobs import BLOB_EXPERIMENT, is_server
from nbops.pipeline.cache import OutCache, load_record, record_digests
from nbops.pipeline.hashing import HashCache
from nbops.pipeline.staleness import Fingerprint, inputs_digest
from nbops.pipeline.state import Record

__all__ = ["BLOB_EXPERIMENT", "ServerRecords", "Transfer", "fetch", "is_server", "share"]

RUN_ID_LEN = 32


def size_text(n: int) -> str:
    """``1.2 MB``, ``340 B``: sizes as DVC and du -h say them (powers of 1000)."""
    size = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{int(size)} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"


@dataclass
class Transfer:
    """What one push or pull moved: files sent (or received) and their bytes, files already
    there."""

    files: int = 0
    bytes: int = 0
    already: int = 0
    replaced: list[str] = field(default_factory=list)  # damaged server copies sent again

    def line(self, verb: str) -> str:
        files = "file" if self.files == 1 else "files"
        n = len(self.replaced)
        tail = f", {n} damaged {'copy' if n == 1 else 'copies'} replaced" if n else ""
        return (
            f"{verb} {self.files} {files} ({size_text(self.bytes)}), {self.already} already "
            f"there{tail}"
        )


def share(
    uri: str, cache: OutCache, digests: dict[str, str] | None = None, *, verify: bool = False
) -> Transfer:
    """Upload the blobs of ``digests`` ({digest: out}, default: all the cache holds) that the
    server lacks or holds at another size; with ``verify`` also download and hash those it holds
    at the same size, and replace the damaged ones."""
    from nbops.mlflow.blobs import BlobStore

    local = dict(cache.blobs()) if digests is None else {d: cache.blob(d) for d in digests}
    local = {d: p for d, p in local.items() if p.is_file()}
    done = Transfer()
    if not local:
        return done
    blobs = BlobStore(uri, create=True)
    there = blobs.sizes(local)
    for digest, path in sorted(local.items()):
        size = path.stat().st_size
        if there.get(digest) == size:
            if not (verify and _damaged(blobs, cache, digest)):
                done.already += 1
                continue
            done.replaced.append(digest)
        blobs.upload(path, digest)
        done.files += 1
        done.bytes += size
    return done


def _damaged(blobs: Any, cache: OutCache, digest: str) -> bool:
    from nbops.pipeline.hashing import content_digest

    with project.scratch(cache.root) as tmp:
        got = blobs.download(digest, Path(tmp))
        return bool(content_digest(got) != digest)


def fetch(uri: str, cache: OutCache, wanted: dict[str, str]) -> Transfer:
    """Download into the cache the blobs of ``wanted`` ({digest: the out it is}) it lacks, each
    hashed before it is kept (a damaged one is downloaded once more, then refused: InvalidInput
    naming the out and digest). NotFound naming the first out the server has no content of."""
    from nbops.mlflow.blobs import BlobStore

    todo = {d: n for d, n in wanted.items() if not cache.blob(d).is_file()}
    done = Transfer(already=len(wanted) - len(todo))
    if not todo:
        return done
    blobs = BlobStore(uri, create=False)
    there = blobs.sizes(todo)
    absent = [d for d in todo if d not in there]
    if absent:
        more = f" (and {len(absent) - 1} more)" if len(absent) > 1 else ""
        raise NotFound(
            f"{todo[absent[0]]}: its content {absent[0]} is not on the tracking server "
            f"{credentials.server(uri)}{more}; nothing was restored",
            "the run that made it could not upload it (the server was down): `nbops push` on "
            "that machine sends it; or re-run the stage",
        )
    with project.scratch(cache.root) as tmp:
        for digest, name in sorted(todo.items()):
            for attempt in (1, 2):
                got = blobs.download(digest, Path(tmp))
                try:
                    cache.adopt(got, digest, name)
                    break
                except InvalidInput:
                    if attempt == 2:
                        raise
            done.files += 1
            done.bytes += there[digest]
    return done


def fetcher(uri: str, cache: OutCache, moved: Transfer | None = None) -> Any:
    """The ``fetch`` of :meth:`OutCache.restore` on a tracking server (None elsewhere)."""
    if not is_server(uri):
        return None

    def go(wanted: dict[str, str]) -> None:
        got = fetch(uri, cache, wanted)
        if moved is not None:
            moved.files += got.files
            moved.bytes += got.bytes
            moved.already += got.already

    return go


# --- staleness on a fresh clone -------------------------------------------------------------------
class ServerRecords:
    """The runs on the tracking server that can stand for a stage point's local record."""

    def __init__(self, uri: str, experiment: str) -> None:
        self.uri = uri
        self.experiment = experiment
        self._store: Any = None
        self._exp_id: str | None = None
        self._parents: dict[str, Any] = {}
        self.error: str | None = None  # why the server could not be asked (said once)

    @staticmethod
    def load() -> None:
        """Import MLflow now, in the calling (the runner's) thread, if a lookup has not yet: the
        lookups of later stages run while the sink's thread works, and two threads importing
        MLflow at once fail."""
        import nbops.mlflow.store  # noqa: F401

    def _open(self) -> str | None:
        if self._store is None:
            from nbops.mlflow.store import open_store

            self._store = open_store(self.uri)
            exp = self._store.experiment_by_name(self.experiment)
            self._exp_id = str(exp.experiment_id) if exp is not None else None
        return self._exp_id

    def find(self, stage: str, fp: Fingerprint, own: list[str], shared: list[str]) -> Record | None:
        """The latest FINISHED run of ``stage`` with ``fp``'s inputs (a sweep point's only when
        its sweep finished too), as a Record: its env, and the digests of the point's ``own``
        outs (its run's ``nbops.out.*``) and the ``shared`` ones (its sweep's). None when there
        is none, or the server cannot be asked (:attr:`error` says why)."""
        if self.error is not None:
            return None
        try:
            exp_id = self._open()
            if exp_id is None:
                return None
            found = self._store.search_runs(
                [exp_id],
                f"tags.`{tag_names.INPUTS}` = '{inputs_digest(fp)}' and "
                f"tags.`{tag_names.STAGE}` = '{stage}' and attributes.status = 'FINISHED'",
                order_by=["attributes.start_time DESC"],
                max_results=10,
            )
            for run in found:
                t = run.data.tags
                outs = _out_tags(t)
                if tag_names.SWEEP_POINT in t:
                    parent = self._parent(t.get(tag_names.MLFLOW_PARENT_RUN_ID))
                    if parent is None or parent.info.status != "FINISHED":
                        continue
                    outs.update(
                        {o: v for o, v in _out_tags(parent.data.tags).items() if o in shared}
                    )
                env = t.get(tag_names.ENV, "")
                mine = {o: outs.get(o) or None for o in [*own, *shared] if o in outs}
                return Record(
                    fp.code,
                    fp.params,
                    fp.deps,
                    env,
                    mine,
                    run.info.run_id,
                    (run.info.end_time or 0) / 1000,
                )
        except NbopsError as err:
            self.error = err.message
        except Exception as exc:  # noqa: BLE001 - the server is an optimisation here: run it
            self.error = (
                f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
            )
        return None

    def _parent(self, run_id: str | None) -> Any:
        if not run_id:
            return None
        if run_id not in self._parents:
            try:
                self._parents[run_id] = self._store.get_run(run_id)
            except NotFound:
                self._parents[run_id] = None
        return self._parents[run_id]


def _out_tags(t: dict[str, str]) -> dict[str, str]:
    prefix = tag_names.OUT_PREFIX
    return {k[len(prefix) :]: v for k, v in t.items() if k.startswith(prefix)}


def outs_record(store: Any, run_id: str, root: Path) -> dict[str, Any]:
    """The ``outs.json`` of a run ({} when it has none); an InvalidInput when it is not one."""
    with project.scratch(root) as tmp:
        try:
            path = store.download_artifacts(run_id, "outs.json", str(tmp))
        except NotFound:
            return {}
        value = load_record(path, run_id)
    if not isinstance(value, dict):
        raise InvalidInput(f"run {run_id}: its outs.json is not an object of out → digest")
    return value


def restore_outs(
    uri: str, root: Path, hashes: HashCache, rec: Record, outs: list[str]
) -> tuple[list[str], Transfer]:
    """Put back ``outs`` of the stage point whose record is ``rec`` from its run's ``outs.json``
    (a sweep point's shared outs from its sweep's), fetching what the local cache lacks; the
    entries must hold the digests ``rec`` has, or nothing is restored (InvalidInput)."""
    from nbops.mlflow.store import open_store

    assert rec.run_id is not None
    store = open_store(uri)
    record = outs_record(store, rec.run_id, root)
    if any(o not in record for o in outs):
        parent = store.get_run(rec.run_id).data.tags.get(tag_names.MLFLOW_PARENT_RUN_ID)
        if parent:
            record = {**outs_record(store, parent, root), **record}
    chosen = {o: record.get(o) for o in outs}
    for o, entry in chosen.items():
        digest = entry.get("digest") if isinstance(entry, dict) else None
        if digest != rec.outs.get(o):
            raise InvalidInput(
                f"run {rec.run_id}: outs.json has {o} as {digest!r}, its tags as "
                f"{rec.outs.get(o)!r}; nothing was restored",
                "the run's record was altered: the stage runs again",
            )
    cache = OutCache(root, project.state_dir(root), hashes)
    moved = Transfer()
    done = cache.restore(chosen, run=rec.run_id, fetch=fetcher(uri, cache, moved))
    return done, moved


# --- nbops push / nbops pull --------------------------------------------------------------------
def _server(root: Path) -> str:
    uri = project.tracking_uri(root)
    if not is_server(uri):
        where = project.sqlite_path(uri)
        shown = where.relative_to(root) if where and where.is_relative_to(root) else uri
        raise InvalidInput(
            f"nothing to share: the store is {shown}; set MLFLOW_TRACKING_URI to a server"
        )
    return uri


def cmd_push(args: argparse.Namespace) -> int:
    """Upload every blob the local cache holds that the server lacks."""
    root = project.find_root()
    uri = _server(root)
    hashes = HashCache(root, project.state_dir(root))
    done = share(uri, OutCache(root, project.state_dir(root), hashes), verify=args.verify)
    if args.json:
        print(json.dumps({"server": credentials.server(uri), **asdict(done)}, indent=1))
    else:
        print(done.line("pushed"))
    return 0


def _latest_stage_run(store: Any, exp_id: str, stage: str) -> Any:
    """The latest FINISHED run of ``stage`` that holds all its outs (a stage run, a sweep's run:
    not a sweep point's), or None."""
    found = store.search_runs(
        [exp_id],
        f"tags.`{tag_names.STAGE}` = '{stage}' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=50,
    )
    return next((r for r in found if tag_names.SWEEP_POINT not in r.data.tags), None)


def cmd_pull(args: argparse.Namespace) -> int:
    """Fill the local cache with the blobs the given runs (or stages' latest runs) recorded."""
    from nbops.mlflow.store import open_store
    from nbops.pipeline import spec as specmod

    root = project.find_root()
    uri = _server(root)
    store = open_store(uri)
    targets: list[str] = list(args.targets)
    stages = [t for t in targets if not _looks_like_run_id(t)]
    run_ids = [t for t in targets if _looks_like_run_id(t)]
    if stages or not targets:
        pipeline = specmod.load(root / project.CONFIG_FILE)
        unknown = [s for s in stages if s not in pipeline.stages]
        if unknown:
            raise InvalidInput(
                f"{unknown[0]!r}: no stage of that name in {project.CONFIG_FILE} (nor a "
                "run id: 32 hex digits)",
                "stages: " + ", ".join(pipeline.stages),
            )
        exp = store.experiment_by_name(pipeline.experiment or root.name)
        for stage in stages or list(pipeline.stages):
            run = _latest_stage_run(store, str(exp.experiment_id), stage) if exp else None
            if run is None:
                if stages:
                    raise NotFound(
                        f"the server {credentials.server(uri)} has no finished run of stage "
                        f"{stage!r}",
                        "run it (nbops run " + stage + ") on a machine, or name a run id",
                    )
                continue
            run_ids.append(run.info.run_id)
    wanted: dict[str, str] = {}
    for rid in run_ids:
        wanted.update(record_digests(_pulled_outs(store, rid, root)))
    hashes = HashCache(root, project.state_dir(root))
    done = fetch(uri, OutCache(root, project.state_dir(root), hashes), wanted)
    if args.json:
        print(
            json.dumps(
                {"server": credentials.server(uri), "runs": run_ids, **asdict(done)}, indent=1
            )
        )
    else:
        print(done.line("pulled"))
    return 0


def _pulled_outs(store: Any, run_id: str, root: Path) -> dict[str, Any]:
    """What ``nbops pull RUN`` fetches: a stage run's ``outs.json`` (a sweep point's with the
    outs its sweep shares); a run of no stage is refused, naming what to pull instead."""
    run = store.get_run(run_id)  # NotFound naming the run
    t = run.data.tags
    if tag_names.STAGE not in t:
        what = "a pipeline run" if tag_names.PIPELINE in t else "not a pipeline stage run"
        raise InvalidInput(
            f"run {run_id} is {what} (no {tag_names.STAGE} tag): it has no outs",
            "name a stage run, or a stage (nbops pull STAGE), or nothing for every stage",
        )
    record = outs_record(store, run_id, root)
    parent = t.get(tag_names.MLFLOW_PARENT_RUN_ID)
    if tag_names.SWEEP_POINT in t and parent:
        try:
            names = json.loads(store.get_run(parent).data.tags.get(tag_names.SHARED_OUTS, "[]"))
        except (NotFound, ValueError):
            names = []
        shared = outs_record(store, parent, root) if names else {}
        record.update({n: shared[n] for n in names if isinstance(n, str) and n in shared})
    return record


def _looks_like_run_id(text: str) -> bool:
    return len(text) == RUN_ID_LEN and all(c in "0123456789abcdef" for c in text)


def add_parsers(sub: Any) -> None:
    """Register ``push`` and ``pull`` on the CLI's subparsers."""
    sp = sub.add_parser(
        "push",
        help="upload the outs in .nbops/cache/ that the tracking server lacks",
        description="Upload every out content the local cache holds that the tracking server "
        "(MLFLOW_TRACKING_URI) lacks, once per content (DVC's `dvc push`).",
    )
    sp.add_argument("--json", action="store_true", help="what was sent, as JSON")
    sp.add_argument(
        "--verify",
        action="store_true",
        help="also download and hash what the server holds, and replace damaged copies",
    )
    sp.set_defaults(func=cmd_push)
    sp = sub.add_parser(
        "pull",
        help="download the outs runs recorded into .nbops/cache/",
        description="Fill the local out cache from the tracking server with what the named "
        "runs (or the latest run of the named stages; default: every stage of nbops.yaml, "
        "sweep points included) recorded; `nbops run` and `nbops checkout RUN` then put them "
        "in place without downloading.",
    )
    sp.add_argument("targets", nargs="*", metavar="RUN|STAGE")
    sp.add_argument("--json", action="store_true", help="what was received, as JSON")
    sp.set_defaults(func=cmd_pull)
