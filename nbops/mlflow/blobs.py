"""Shared outs (team mode): content-addressed blobs in a tracking server's artifact store, the
only MLflow calls of ``nbops push`` / ``nbops pull`` and of the outs a pipeline shares.

The layout: one experiment, :data:`BLOB_EXPERIMENT` (``nbops-blobs``), holds one run tagged
``nbops.blob_store`` (the oldest such run, if two machines made one at once); its artifacts are
``blobs/<d[:2]>/<digest>``, one per content digest (xxh3-128 of the bytes), so an out that did
not change is uploaded once, whatever the number of runs that recorded it. Which blobs exist is
learnt by listing ``blobs/<d[:2]>`` (one request per prefix), with each file's size.

MLflow cannot upload to a temporary name and rename, so a blob cut short by a dropped
connection exists under its final name: :class:`BlobStore` only moves bytes, and its callers
(:mod:`nbops.pipeline.sharing`) check the size before trusting a blob is there (a short one is
uploaded again) and the digest of every byte downloaded against the name (a mismatch is
refused). Standard library at import: MLflow is imported when a store is opened.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from nbops import tags
from nbops.errors import NotFound, StoreUnavailable
from nbops.mlflow import credentials, quiet
from nbops.mlflow.failures import ALREADY_EXISTS, access_status, error_code, is_mlflow_error

BLOB_EXPERIMENT = "nbops-blobs"
"""The experiment of the shared outs: not a project's; tagged ``nbops.hidden``, so ``nbops
runs``, ``nbops.runs()`` and the sidebar leave it out."""
HIDDEN = {tags.HIDDEN: "true"}
"""The blob experiment's tag: listings of experiments skip it (``nbops.hidden``)."""
BLOB_DIR = "blobs"


def is_server(uri: str) -> bool:
    """True for a tracking server (``http://``, ``https://``): the stores whose outs are shared.
    The embedded store, a ``sqlite:///`` file or a local folder shares nothing."""
    return uri.split("://", 1)[0].lower() in ("http", "https")


def blob_path(digest: str) -> str:
    """The artifact path of the blob of ``digest`` inside the blob run."""
    return f"{BLOB_DIR}/{digest[:2]}/{digest}"


@contextlib.contextmanager
def _translated(uri: str, call: str, what: str) -> Iterator[None]:
    """MLflow's and the network's errors as nbops' in one line naming the server (never its
    password), ``what`` was being done and the fix: a 401/403 to the MlflowClient method ``call``
    is AccessDenied (:func:`nbops.mlflow.credentials.refused`), anything else StoreUnavailable."""
    try:
        with quiet():
            yield
    except (NotFound, StoreUnavailable):
        raise
    except Exception as exc:  # noqa: BLE001 - every failure of the server, said in one line
        status = access_status(exc)
        if status is not None:
            raise credentials.refused(
                uri, status, call, f"experiment {BLOB_EXPERIMENT!r} (the shared outs)"
            ) from None
        text = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise StoreUnavailable(
            f"tracking server {credentials.server(uri)}: {what} failed: {text}",
            "start the server or check MLFLOW_TRACKING_URI; the outs stay in .nbops/cache/ and "
            "`nbops push` sends them later",
        ) from None


class BlobStore:
    """The shared outs of one tracking server. ``create``: make the experiment and its run when
    they do not exist yet (pushing); without it a server that has none holds no blob."""

    def __init__(self, uri: str, *, create: bool) -> None:
        self.uri = uri
        self._create = create
        self._run_id: str | None = None
        self._listed: dict[str, dict[str, int]] = {}  # prefix -> {digest: size}
        with _translated(uri, "search_experiments", "opening its artifact store"):
            from mlflow.tracking import MlflowClient

            from nbops.mlflow.store import open_store

            open_store(uri)  # the HTTP defaults (fail fast) and a clear error if it is down
            self._client: Any = MlflowClient(tracking_uri=uri)

    # --- the blob run -------------------------------------------------------------------------
    def run_id(self) -> str | None:
        """The run that holds the blobs (made when ``create`` and missing), None if none."""
        if self._run_id is not None:
            return self._run_id
        with _translated(self.uri, "create_run", f"finding the experiment {BLOB_EXPERIMENT}"):
            exp = self._client.get_experiment_by_name(BLOB_EXPERIMENT)
            if exp is None:
                if not self._create:
                    return None
                try:
                    exp_id = self._client.create_experiment(BLOB_EXPERIMENT, tags=HIDDEN)
                except Exception as exc:
                    if error_code(exc) != ALREADY_EXISTS:
                        raise
                    exp_id = self._client.get_experiment_by_name(BLOB_EXPERIMENT).experiment_id
            else:
                exp_id = exp.experiment_id
                if self._create and exp.tags.get(tags.HIDDEN) != HIDDEN[tags.HIDDEN]:
                    self._client.set_experiment_tag(exp_id, tags.HIDDEN, HIDDEN[tags.HIDDEN])
            found = self._oldest(exp_id)
            if found is None and self._create:
                run = self._client.create_run(
                    exp_id,
                    tags={tags.BLOB_STORE: "1", tags.MLFLOW_RUN_NAME: "shared outs"},
                )
                self._client.set_terminated(run.info.run_id, "FINISHED")
                found = self._oldest(exp_id)  # another machine made one at the same moment?
                if found != run.info.run_id:
                    self._client.delete_run(run.info.run_id)
            self._run_id = found
        return found

    def _oldest(self, exp_id: str) -> str | None:
        runs = self._client.search_runs(
            [exp_id],
            filter_string=f"tags.`{tags.BLOB_STORE}` = '1'",
            order_by=["attributes.start_time ASC", "attributes.run_id ASC"],
            max_results=1,
        )
        return str(runs[0].info.run_id) if runs else None

    # --- blobs --------------------------------------------------------------------------------
    def sizes(self, digests: Iterable[str]) -> dict[str, int]:
        """The blobs of ``digests`` the server holds, with the size of each (one listing per
        two-character prefix, remembered for this object's life)."""
        wanted = set(digests)
        run = self.run_id()
        if run is None:
            return {}
        found: dict[str, int] = {}
        for prefix in sorted({d[:2] for d in wanted}):
            if prefix not in self._listed:
                with _translated(self.uri, "list_artifacts", f"listing {BLOB_DIR}/{prefix}"):
                    infos = self._client.list_artifacts(run, f"{BLOB_DIR}/{prefix}")
                self._listed[prefix] = {
                    Path(i.path).name: int(i.file_size or 0) for i in infos if not i.is_dir
                }
            found.update({d: s for d, s in self._listed[prefix].items() if d in wanted})
        return found

    def upload(self, src: Path, digest: str) -> None:
        """Upload the file ``src`` (named ``digest``, as the local cache names it) as the blob
        of ``digest``."""
        run = self.run_id()
        assert run is not None  # create=True made it
        if src.name != digest:
            raise ValueError(f"{src} is not named after its digest {digest}")
        with _translated(self.uri, "log_artifact", f"uploading {blob_path(digest)}"):
            self._client.log_artifact(run, str(src), f"{BLOB_DIR}/{digest[:2]}")
        self._listed.setdefault(digest[:2], {})[digest] = src.stat().st_size

    def download(self, digest: str, dst_dir: Path) -> Path:
        """Download the blob of ``digest`` into ``dst_dir`` (unchecked: the caller hashes it);
        NotFound when the server has no such blob."""
        run = self.run_id()
        if run is None:
            raise NotFound(
                f"tracking server {credentials.server(self.uri)} holds no shared outs (no "
                f"experiment {BLOB_EXPERIMENT})",
                "`nbops push` on the machine that made the outs sends them",
            )
        with _translated(self.uri, "download_artifacts", f"downloading {blob_path(digest)}"):
            try:
                got = self._client.download_artifacts(run, blob_path(digest), str(dst_dir))
            except Exception as exc:
                if is_mlflow_error(exc) and error_code(exc) != "RESOURCE_DOES_NOT_EXIST":
                    raise
                if isinstance(exc, OSError) or error_code(exc) == "RESOURCE_DOES_NOT_EXIST":
                    raise NotFound(
                        f"tracking server {credentials.server(self.uri)} has no blob {digest}",
                        "`nbops push` on the machine that made the out sends it",
                    ) from None
                raise
        return Path(got)
