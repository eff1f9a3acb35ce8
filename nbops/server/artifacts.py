"""A run's files, and the guards that keep every read inside the project.

Local artifacts (a ``file:`` URI or a plain path in the run's store row) are read only from inside
the project's artifact roots (:func:`artifact_roots`: ``<root>/.nbops/artifacts``, and the
store's own artifact directory: ``artifacts/`` beside a SQLite database, a file store's
directory). A run whose row points anywhere else (``file:///usr``) is refused with 403 naming the
run: its detail answers without artifacts and says why (``artifacts_note``). Inside a run's
directory every path is resolved (symlinks too) and must stay inside it; listing skips symlinks
that leave it, dangling links and anything that is not a regular file, and stops after
``limits.MAX_ARTIFACTS`` files (the answer says so), so a 120k-file directory costs one bounded
scan.

Remote artifacts (``mlflow-artifacts:`` on a tracking server, ``s3://`` ...) are listed through
the tracking store facade (``TrackingStore.list_artifacts``), bounded the same way, except where
the URI names a host of its own (``http(s)://``, ``mlflow-artifacts://host``): an experiment's
artifact location is its creator's choice, and MLflow sends the tracking credentials to that
host. A tracking server's own proxied artifacts (``mlflow-artifacts:/...`` without a host,
:func:`proxied`) are also served, by downloading one file through the facade
(``download_artifacts``) into a temporary directory the handler removes (:func:`fetch_remote`):
the path is checked by the same rules as a local one (relative, no ``..``, bounded names), it
must be a file of the run's listing (a directory is never downloaded whole), and its size must
be known and at most
``limits.MAX_FETCHED_ARTIFACT_BYTES`` (the executed notebook of a diff at most
``limits.MAX_DIFF_NOTEBOOK_BYTES``), checked before the download from the listing and again on
the downloaded file.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Protocol
from urllib.parse import unquote, urlparse

from nbops import project, tags
from nbops.errors import InvalidInput, NotFound, OutsideArtifactRoot
from nbops.mlflow.readers.base import RunInfo
from nbops.server import limits


@dataclass
class Listing:
    files: list[str]
    note: str | None = None  # why the list is empty or incomplete


def location(uri: str | None) -> tuple[str, Path | None]:
    """("local", directory) for a ``file:`` URI or a plain path; ("remote", None) for any other
    scheme; ("none", None) without a URI."""
    if not uri:
        return "none", None
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            return "remote", None  # file://otherhost/...: not a path on this machine
        return "local", Path(unquote(parsed.path))
    if parsed.scheme and len(parsed.scheme) > 1:  # a one-letter scheme is a Windows drive
        return "remote", None
    return "local", Path(uri)


def proxied(uri: str | None) -> bool:
    """True for a tracking server's own proxied artifacts (``mlflow-artifacts:/<path>``, no
    host: resolved against the tracking server itself), the only remote artifacts whose
    contents this server fetches. Another scheme or a host in the URI (an experiment's
    ``artifact_location`` is the creator's choice) could point the download, and the tracking
    credentials MLflow sends with it, at any host."""
    if not uri:
        return False
    parsed = urlparse(uri)
    return parsed.scheme == "mlflow-artifacts" and parsed.netloc == ""


def own_host(uri: str | None) -> bool:
    """True for an artifact URI that names a host of its own (``http(s)://host``,
    ``mlflow-artifacts://host``): nbops does not read it (MLflow would send that host the
    tracking server's credentials)."""
    if not uri:
        return False
    parsed = urlparse(uri)
    scheme = parsed.scheme.lower()
    return scheme in ("http", "https") or (scheme == "mlflow-artifacts" and parsed.netloc != "")


def artifact_roots(root: Path, uri: str) -> list[Path]:
    """Where this project's runs keep local artifacts (not resolved: see :func:`run_dir`)."""
    roots = [project.default_artifact_root(root)]
    beside_db = project.artifact_root_for(uri)
    if beside_db is not None:
        roots.append(beside_db)
    elif project.sqlite_path(uri) is None:
        kind, store_dir = location(uri)  # a file store keeps artifacts in its own tree
        if kind == "local" and store_dir is not None:
            roots.append(store_dir)
    return list(dict.fromkeys(roots))


def _resolved(p: Path) -> Path | None:
    try:
        return p.resolve()
    except (OSError, ValueError, RuntimeError):  # a loop, a NUL byte
        return None


def run_dir(info: RunInfo, roots: list[Path]) -> Path | None:
    """The run's local artifact directory, resolved and inside one of ``roots``; None when its
    artifacts are remote or it has none; OutsideArtifactRoot when they are local elsewhere."""
    kind, path = location(info.artifact_uri)
    if kind != "local" or path is None:
        return None
    target = _resolved(path)
    for r in roots:
        base = _resolved(r)
        if target is not None and base is not None and target.is_relative_to(base):
            return target
    raise OutsideArtifactRoot(
        f"run {info.summary.run_id} keeps its artifacts in {str(info.artifact_uri)[:300]}, "
        f"outside this project's artifact root {roots[0]}",
        "this server reads only the project's own artifacts; download others with "
        f"`mlflow artifacts download -r {info.summary.run_id}`",
    )


def relative(rel: str) -> PurePosixPath:
    """``rel`` as a path inside a run's artifacts, or InvalidInput when it is empty, absolute,
    too long, has a too long name, or climbs (``..``, ``~``). The one check of an artifact path,
    for local and remote artifacts."""
    limits.text("artifact path", rel, limits.MAX_PATH_CHARS)
    p = PurePosixPath(rel.replace("\\", "/"))
    if not rel or p.is_absolute() or ".." in p.parts or rel.startswith("~"):
        raise InvalidInput(
            f"artifact path {rel[:200]!r} must be relative and stay inside the run's artifacts",
            "use a path from the run's `artifacts` list, e.g. notebook/train.ipynb",
        )
    if any(len(part) > limits.MAX_PATH_PART_CHARS for part in p.parts):
        raise InvalidInput(
            f"artifact path {rel[:200]!r} has a name longer than {limits.MAX_PATH_PART_CHARS}",
            "use a path from the run's `artifacts` list",
        )
    return p


def inside(base: Path, rel: str) -> Path:
    """``base/rel`` resolved, or InvalidInput when rel is absolute, too long or leaves base."""
    p = relative(rel)
    root = _resolved(base)
    target = _resolved(base / p)
    if root is None or target is None or not target.is_relative_to(root):
        raise InvalidInput(
            f"artifact path {rel[:200]!r} leaves the run's artifact directory",
            "use a path from the run's `artifacts` list",
        )
    return target


def regular_file(p: Path) -> bool:
    """A regular file (after following links): not a directory, FIFO, device or socket."""
    try:
        return stat.S_ISREG(os.stat(p).st_mode)
    except (OSError, ValueError):
        return False


def open_regular(p: Path, what: str) -> Any:
    """``p`` opened for reading in binary, only if it is a regular file when opened (a FIFO
    swapped in after the check must not block a worker thread forever)."""
    try:
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
    except (OSError, ValueError):
        raise NotFound(f"{what} cannot be read", "see the run's `artifacts` list") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise NotFound(f"{what} is not a regular file", "see the run's `artifacts` list")
    return os.fdopen(fd, "rb")


def _printable(name: str) -> bool:
    try:
        name.encode("utf-8")  # undecodable bytes come back as lone surrogates: not JSON text
    except UnicodeEncodeError:
        return False
    return True


def _walk_local(base: Path) -> Listing:
    out: list[str] = []
    scanned = 0
    todo: list[tuple[Path, str, int]] = [(base, "", 0)]
    while todo:
        d, prefix, level = todo.pop()
        try:
            entries = os.scandir(d)
        except OSError:
            continue
        with entries:
            for e in entries:
                scanned += 1
                if len(out) >= limits.MAX_ARTIFACTS or scanned > limits.MAX_SCANNED:
                    return Listing(
                        sorted(out),
                        f"listing stopped after {len(out)} files ({scanned - 1} entries looked "
                        f"at; at most {limits.MAX_ARTIFACTS}): fetch others by path",
                    )
                if not _printable(e.name):
                    continue
                rel = prefix + e.name
                try:
                    if e.is_symlink():
                        # followed only to a regular file inside the run's directory
                        t = _resolved(Path(e.path))
                        if t is not None and t.is_relative_to(base) and regular_file(t):
                            out.append(rel)
                    elif e.is_dir(follow_symlinks=False):
                        if level < limits.MAX_ARTIFACT_DEPTH:
                            todo.append((Path(e.path), rel + "/", level + 1))
                    elif e.is_file(follow_symlinks=False):
                        out.append(rel)
                except OSError:
                    continue
    return Listing(sorted(out))


class ArtifactLister(Protocol):
    """What a remote listing needs of the store facade (``TrackingStore.list_artifacts``)."""

    def list_artifacts(self, run_id: str, path: str | None = None) -> Sequence[Any]: ...


class ArtifactFetcher(ArtifactLister, Protocol):
    """What serving a remote artifact needs of the store facade (``TrackingStore``)."""

    def download_artifacts(self, run_id: str, path: str, dst_dir: str) -> str: ...


def _walk_remote(run_id: str, store: ArtifactLister) -> Listing:
    out: list[str] = []
    todo: list[str | None] = [None]
    listed = 0
    while todo:
        listed += 1
        for fi in store.list_artifacts(run_id, todo.pop()):
            if len(out) >= limits.MAX_ARTIFACTS or listed > limits.MAX_ARTIFACTS:
                return Listing(
                    sorted(out),
                    f"listing stopped after {len(out)} files (at most {limits.MAX_ARTIFACTS})",
                )
            (todo.append(fi.path) if fi.is_dir else out.append(fi.path))
    return Listing(sorted(out))


def list_artifacts(
    info: RunInfo, roots: list[Path], store: Callable[[], ArtifactLister] | None = None
) -> Listing:
    """Relative paths of the run's artifact files (bounded, sorted), and a note when the list is
    incomplete or the artifacts are not readable here. Remote artifacts are listed through
    ``store()`` (the tracking store facade; None: not listed)."""
    try:
        base = run_dir(info, roots)
    except OutsideArtifactRoot as exc:
        return Listing([], f"{exc.message}: not listed")
    if base is not None:
        return _walk_local(base) if base.is_dir() else Listing([])
    if location(info.artifact_uri)[0] != "remote" or store is None:
        return Listing([])
    if own_host(info.artifact_uri):
        return Listing(
            [],
            f"run {info.summary.run_id} keeps its artifacts on a host of their own "
            f"({str(info.artifact_uri)[:300]}): not listed here (the tracking credentials would "
            f"go there); download them with `mlflow artifacts download -r {info.summary.run_id}`",
        )
    try:
        return _walk_remote(info.summary.run_id, store())
    except Exception as exc:  # noqa: BLE001 - an unreachable artifact store is not a bad request
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        return Listing(
            [], f"artifacts in {str(info.artifact_uri)[:300]} could not be listed: {first}"
        )


def _notebooks(artifacts: list[str]) -> list[str]:
    """The .ipynb artifacts, the ``notebook/`` ones first (where nbops logs executed ones)."""
    nbs = [a for a in artifacts if a.endswith(".ipynb")]
    return sorted(nbs, key=lambda a: (not a.startswith("notebook/"), a))


def remote_notebook(info: RunInfo, artifacts: list[str]) -> str | None:
    """The artifact path of the run's executed notebook when its artifacts are remote (a
    tracking server's ``mlflow-artifacts:``): served by :func:`fetch_remote`; None otherwise."""
    if not proxied(info.artifact_uri):
        return None
    found = _notebooks(artifacts)
    return found[0] if found else None


def executed_notebook(
    info: RunInfo, state_dir: Path, artifacts: list[str], roots: list[Path]
) -> Path | None:
    """The run's executed notebook: ``.nbops/runs/<run_id>/*.ipynb`` (pipeline stages keep it
    there), else an .ipynb artifact (``notebook/`` first). A candidate that is a link leaving its
    directory, a dangling link or not a regular file is skipped."""
    kept = state_dir / "runs" / info.summary.run_id
    if kept.is_dir():
        root = _resolved(kept)
        for p in sorted(kept.glob("*.ipynb")):
            t = _resolved(p)
            if root is not None and t is not None and t.is_relative_to(root) and regular_file(t):
                return t
    try:
        base = run_dir(info, roots)
    except OutsideArtifactRoot:
        return None
    if base is None:
        return None
    for a in _notebooks(artifacts):
        try:
            p = inside(base, a)
        except InvalidInput:
            continue
        if regular_file(p):
            return p
    return None


def no_notebook(info: RunInfo, children: Sequence[Any], purpose: str = "show") -> NotFound:
    """Why run ``info`` has no executed notebook, exactly: a sweep's parent and a pipeline run
    executed none themselves and name the child runs that did (``children``: the run summaries
    whose parent it is, oldest first); any other run says what it is. ``purpose``: ``show`` or
    ``diff`` (the hint says what to do instead)."""
    from nbops.ops.runkinds import KINDS, kind_of

    rid = info.summary.run_id
    points = [c for c in children if c.stage is not None]
    kind = kind_of(info.tags, bool(points))  # a stage run's children are its sweep points
    what = "diff two of them" if purpose == "diff" else "open one of them"

    def named(runs: Sequence[Any]) -> str:
        shown = ", ".join(f"{c.run_id} ({c.run_name or c.stage or '-'})" for c in runs[:10])
        return shown + (f" and {len(runs) - 10} more" if len(runs) > 10 else "")

    if kind == "sweep":
        return NotFound(
            f"run {rid} is the sweep of stage {info.tags.get(tags.STAGE)}: it executed no "
            f"notebook itself; its {len(points)} point runs did: {named(points)}",
            f"{what}: each sweep point keeps its executed notebook",
        )
    if kind == "pipeline" and children:
        return NotFound(
            f"run {rid} is the pipeline run of an `nbops run`: it executed no notebook itself; "
            f"its {len(children)} stage runs did: {named(children)}",
            f"{what} (a sweep's stage run lists its points)",
        )
    return NotFound(
        f"run {rid} has no executed notebook: it is {KINDS[kind]}, and neither "
        f".nbops/runs/{rid}/ nor a notebook/ artifact holds one",
        "pipeline stage runs, sweep points and tracked notebook runs keep one",
    )


def fetch_remote(
    info: RunInfo, rel: str, store: ArtifactFetcher, into: Path, max_bytes: int
) -> Path:
    """The remote artifact ``rel`` of the run, downloaded through the store facade into the
    directory ``into`` (the caller removes it). Refused before any byte moves when ``rel`` is
    not a relative path inside the run's artifacts (InvalidInput), is not a file of the run's
    listing (NotFound: a directory is never downloaded whole) or its listed size is unknown or
    over ``max_bytes`` (InvalidInput naming the size and the command that downloads it); the
    downloaded file is checked again (a regular file inside ``into``, at most ``max_bytes``).
    Only a :func:`proxied` artifact URI is fetched (NotFound otherwise)."""
    rid = info.summary.run_id
    if not proxied(info.artifact_uri):
        raise NotFound(
            f"run {rid} keeps its artifacts in {str(info.artifact_uri)[:300]}, which this "
            "server does not read (it fetches a tracking server's mlflow-artifacts:/ only)",
            f"download it with `mlflow artifacts download -r {rid}`",
        )
    p = relative(rel)
    name = p.as_posix()
    parent = p.parent.as_posix()
    entry: Any = None
    for fi in store.list_artifacts(rid, None if parent == "." else parent):
        if fi.path == name:
            entry = fi
            break
    if entry is None or entry.is_dir:
        raise NotFound(
            f"run {rid} has no artifact file {rel[:200]!r}",
            "see the run's `artifacts` list (GET /nbops/api/runs/<run_id>)",
        )
    download = f"`mlflow artifacts download -r {rid} -a {name[:200]}`"
    size = entry.file_size
    if size is None or size > max_bytes:
        said = "of unknown size" if size is None else f"{size} bytes"
        raise InvalidInput(
            f"artifact {rel[:200]!r} of run {rid} is {said}: this server serves at most "
            f"{max_bytes} bytes of a remote artifact",
            f"download it with {download}",
        )
    local = _resolved(Path(store.download_artifacts(rid, name, str(into))))
    base = _resolved(into)
    if local is None or base is None or not local.is_relative_to(base) or not regular_file(local):
        raise NotFound(f"artifact {rel[:200]!r} of run {rid} is not a file", download)
    got = local.stat().st_size
    if got > max_bytes:  # changed on the server since it was listed
        raise InvalidInput(
            f"artifact {rel[:200]!r} of run {rid} is {got} bytes: this server serves at most "
            f"{max_bytes} bytes of a remote artifact",
            f"download it with {download}",
        )
    return local


def artifact_file(
    info: RunInfo,
    rel: str,
    roots: list[Path],
    store: Callable[[], ArtifactFetcher] | None = None,
    into: Path | None = None,
) -> Path:
    """The artifact ``rel`` of the run: a regular file inside its directory, or a 4xx error.
    Remote artifacts are fetched into ``into`` through ``store()`` (:func:`fetch_remote`) when
    both are given."""
    limits.text("artifact path", rel, limits.MAX_PATH_CHARS)
    base = run_dir(info, roots)
    if base is None and proxied(info.artifact_uri) and store and into:
        return fetch_remote(info, rel, store(), into, limits.MAX_FETCHED_ARTIFACT_BYTES)
    if base is None:
        raise NotFound(
            f"run {info.summary.run_id} keeps its artifacts in {str(info.artifact_uri)[:300]}, "
            "which this server does not read",
            f"download it with `mlflow artifacts download -r {info.summary.run_id}`",
        )
    p = inside(base, rel)
    if not regular_file(p):
        raise NotFound(
            f"run {info.summary.run_id} has no artifact {rel[:200]!r}",
            "see the run's `artifacts` list (GET /nbops/api/runs/<run_id>)",
        )
    return p
