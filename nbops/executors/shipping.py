"""What a job sends to a dask worker and what the runner does with what comes back: the
:class:`~nbops.executors.dask_protocol.JobSpec` of a StageJob (its notebook and deps as digests
of project-relative files), and a :class:`~nbops.executors.dask_protocol.JobReturn` applied to
the project (outs written where they belong, the executed notebook kept, the run's spool given
the records and files the kernel left on the worker). Standard library and xxhash only.

A worker's answer is untrusted input: every path in it is checked before anything is written
(only the job's outs and the run's spool ``files/`` can be written, nothing outside the project),
and the spool records it brings are parsed and written again, one record per line; the records
that only the runner writes (``start``, ``began``, ``end``) are dropped.

The kernel on the worker attaches to the run's spool (``NBOPS_ATTACH_SPOOL``), which needs the
spool's first line (its start record): :func:`spec_of` ships a snapshot of that line (kept as
``shipped-start.jsonl`` in the spool folder, so it goes when the spool goes) as the spool's
``log.jsonl``; the worker answers only the records appended after it.
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
import threading
from pathlib import Path, PurePosixPath
from typing import Any

from nbops import envvars
from nbops.errors import StageFailed
from nbops.executors.base import StageJob
from nbops.executors.dask_protocol import ROOT_MARK, JobReturn, JobSpec

LOG = "log.jsonl"  # the spool's log (nbops.tracking.spool.LOG: executors may not import it)
FILES = "files"  # the spool's folder of artifact copies (nbops.tracking.spool.FILES)
START_SNAPSHOT = "shipped-start.jsonl"
SPECIAL_ROOTS = ("/proc", "/sys", "/dev")  # nbops.pipeline.paths.SPECIAL_ROOTS
RUNNER_RECORDS = frozenset({"start", "began", "end"})  # written by the runner only
_READ = 1 << 20

_digests: dict[tuple[str, int, int, int], str] = {}
_digests_lock = threading.Lock()
_hashing: dict[tuple[str, int, int, int], threading.Lock] = {}  # files being read now
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


# --- digests -----------------------------------------------------------------------------------
def file_digest(path: Path) -> str:
    """xxh3-128 of a regular file's bytes, as ``nbops.pipeline.hashing.content_digest`` gives
    it, remembered in this process by (path, size, mtime_ns, inode): 50 sweep points sharing a
    2 GB dep read it once, also when they ask at the same time."""
    st = os.stat(path)
    key = (os.path.abspath(path), st.st_size, st.st_mtime_ns, st.st_ino)
    with _digests_lock:
        hit = _digests.get(key)
        if hit is not None:
            return hit
        # sweep points submitted at once ask for the same file together: one reads it
        lock = _hashing.setdefault(key, threading.Lock())
    with lock:
        with _digests_lock:
            hit = _digests.get(key)
        if hit is not None:
            return hit
        try:
            digest = _read_digest(path)
            with _digests_lock:
                _digests[key] = digest
        finally:
            with _digests_lock:
                _hashing.pop(key, None)
    return digest


def _read_digest(path: Path) -> str:
    import xxhash

    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{path} is not a regular file")
        os.set_blocking(fd, True)
        h = xxhash.xxh3_128()
        while chunk := f.read(_READ):
            h.update(chunk)
    return str(h.hexdigest())


def bytes_digest(data: bytes) -> str:
    import xxhash

    return str(xxhash.xxh3_128(data).hexdigest())


# --- project-relative paths --------------------------------------------------------------------
def _within(path: str, base: str) -> bool:
    return path == base or path.startswith(base.rstrip(os.sep) + os.sep)


def _relative(root: Path, path: Path | str, what: str, stage: str) -> str:
    """``path`` (absolute, or relative to the root) as a project-relative POSIX path; a
    StageFailed when it is outside the root."""
    top = os.path.abspath(root)
    p = os.path.abspath(os.path.join(top, os.fspath(path)))
    if not _within(p, top):
        raise StageFailed(
            f"stage {stage}: {what} {path} is outside the project {top}",
            "a stage that runs on a dask cluster can only use files of its project: move it "
            "into the project (or name a copy there)",
            stage=stage,
        )
    rel = os.path.relpath(p, top)
    return PurePosixPath(*Path(rel).parts).as_posix() if rel != "." else "."


def safe_relative(rel: str) -> str | None:
    """``rel`` normalised if it is a plain project-relative POSIX path (no ``..``, not absolute,
    no backslash, no NUL, not empty); None if it is not one."""
    if not isinstance(rel, str) or not rel or "\x00" in rel or "\\" in rel:
        return None
    if rel.startswith("/") or (len(rel) > 1 and rel[1] == ":"):
        return None
    parts = [p for p in rel.split("/") if p not in ("", ".")]
    if not parts or any(p == ".." for p in parts):
        return None
    return "/".join(parts)


def _under(rel: str, base: str) -> bool:
    return base == "." or rel == base or rel.startswith(base + "/")


def _walk_files(top: Path) -> list[Path]:
    """The regular files of ``top`` (a file, or a folder walked without following symlinked
    folders below it; a symlinked file counts by its content)."""
    if top.is_file():
        return [top]
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(top):  # never into symlinked folders
        dirnames.sort()
        for name in sorted(filenames):
            p = Path(dirpath) / name
            try:
                if stat.S_ISREG(os.stat(p).st_mode):
                    found.append(p)
            except OSError:  # a dangling symlink: nothing to ship
                continue
    return found


# --- the runner's side: what a job sends --------------------------------------------------------
def spec_of(job: StageJob, key: str) -> tuple[JobSpec, dict[str, Path]]:
    """The JobSpec of ``job`` and, for each digest it names, the local file that holds it."""
    if job.root is None:
        raise StageFailed(
            f"stage {job.label}: the job has no project root", "nbops' own bug", stage=job.stage
        )
    root = Path(os.path.abspath(job.root))
    label = job.label
    files: dict[str, str] = {}
    blobs: dict[str, Path] = {}

    def ship(path: Path, rel: str) -> None:
        try:
            digest = file_digest(path)
        except OSError as exc:
            raise StageFailed(
                f"stage {label}: {rel} cannot be read to send it to the cluster: "
                f"{exc.strerror or exc}",
                "fix its permissions",
                stage=job.stage,
            ) from None
        files[rel] = digest
        blobs.setdefault(digest, path)

    nb_rel = _relative(root, job.notebook, "notebook", label)
    ship(root / nb_rel, nb_rel)
    for dep in job.deps:
        rel = _relative(root, dep, "dep", label)
        top = root / rel if rel != "." else root
        if not top.exists():  # the planner has said so already
            continue
        real = os.path.realpath(top)
        special = [r for r in SPECIAL_ROOTS if _within(real, r)]
        if special:
            raise StageFailed(
                f"stage {label}: dep {dep} leads to {real}, on {special[0]}, a pseudo file "
                "system whose files block or never end",
                "copy the data into the project and name the copy",
                stage=job.stage,
            )
        for p in _walk_files(top):
            prel = _relative(root, os.path.join(top, os.path.relpath(p, top)), "dep", label)
            if prel.startswith(".nbops/") and not rel.startswith(".nbops"):
                continue  # nbops' own state is never a dep's content
            ship(p, prel)

    env: dict[str, str] = {}
    env_paths: dict[str, str] = {}
    for name, value in job.env.items():
        if os.path.isabs(value) and _within(os.path.abspath(value), str(root)):
            env_paths[name] = _relative(root, value, f"${name}", label)
        else:
            env[name] = value

    spool = ""
    spool_value = job.env.get(envvars.ATTACH_SPOOL)
    if spool_value:
        spool = _relative(root, spool_value, "spool", label)
        start = _start_snapshot(Path(spool_value))
        if start is not None:
            digest = file_digest(start)
            files[f"{spool}/{LOG}"] = digest
            blobs.setdefault(digest, start)

    outs: list[str] = []
    dirs: set[str] = set()
    for out in job.outs:
        rel = _relative(root, out, "out", label)
        if rel == ".":
            raise StageFailed(
                f"stage {label}: out {out} is the whole project",
                "name the files or folders the stage writes",
                stage=job.stage,
            )
        outs.append(rel)
        parent = PurePosixPath(rel).parent.as_posix()
        if parent != ".":
            dirs.add(parent)
        if (root / rel).is_dir():
            dirs.add(rel)
    output = _relative(root, job.output, "executed notebook", label)
    dirs.add(PurePosixPath(output).parent.as_posix())
    if spool:
        dirs.add(f"{spool}/{FILES}")
    dirs.discard(".")

    spec = JobSpec(
        key=key,
        stage=job.stage,
        label=job.label,
        notebook=nb_rel,
        output=output,
        cwd=_relative(root, job.cwd, "working folder", label),
        parameters=dict(job.parameters),
        env=env,
        env_paths=env_paths,
        timeout=job.timeout,
        files=files,
        outs=outs,
        dirs=sorted(dirs),
        spool=spool,
        kernel_name=job.kernel_name,
    )
    return spec, blobs


def _start_snapshot(spool_dir: Path) -> Path | None:
    """A file holding the spool's first line (its start record), beside the log; None if the
    spool has no complete first line."""
    try:
        with open(spool_dir / LOG, "rb") as f:
            first = f.readline()
    except OSError:
        return None
    if not first.endswith(b"\n"):
        return None
    snap = spool_dir / START_SNAPSHOT
    try:
        if snap.read_bytes() == first:
            return snap
    except OSError:
        pass
    _write_atomic(snap, first)
    return snap


# --- the runner's side: what comes back --------------------------------------------------------
def localise(value: Any, root: str) -> Any:
    """``value`` with every string's ROOT_MARK written as ``root`` (lists and dicts walked)."""
    if isinstance(value, str):
        return value.replace(ROOT_MARK, root) if ROOT_MARK in value else value
    if isinstance(value, list):
        return [localise(v, root) for v in value]
    if isinstance(value, dict):
        return {localise(k, root): localise(v, root) for k, v in value.items()}
    return value


def _refused(job: StageJob, what: str, path: object, allowed: str) -> StageFailed:
    return StageFailed(
        f"stage {job.label}: the worker sent back {what} {path!r}, which is not {allowed}; "
        "nothing it sent was written",
        "the worker runs another nbops, or is not to be trusted: check the cluster's workers",
        stage=job.stage,
    )


def apply(ret: JobReturn, job: StageJob) -> None:
    """Write what a finished job sent back into the project, as if it had run here.

    Everything is checked first (a StageFailed naming the path refuses the whole answer and
    writes nothing): an out must be one of ``job.outs`` or under one that is a folder, a spool
    file must be under the spool's ``files/``, an artifact record must point there. Then the
    outs and the executed notebook are written atomically, the spool files written and the
    records appended to the run's ``log.jsonl`` (ROOT_MARK replaced with the project root).
    ``ret.error`` (message, hint) gets the project root in place of ROOT_MARK too."""
    if job.root is None:
        raise StageFailed(
            f"stage {job.label}: the job has no project root", "nbops' own bug", stage=job.stage
        )
    root = Path(os.path.abspath(job.root))
    top = str(root)
    if ret.error:
        ret.error = localise(ret.error, top)
    outs = [_relative(root, o, "out", job.label) for o in job.outs]

    writes: list[tuple[Path, bytes]] = []
    for rel, data in ret.outs.items():
        clean = safe_relative(rel)
        if clean is None or not any(_under(clean, o) for o in outs if o != "."):
            raise _refused(job, "the out", rel, "one of the stage's outs")
        if not isinstance(data, bytes):
            raise _refused(job, "content that is not bytes for", rel, "a file")
        writes.append((root / clean, data))

    spool_dir: Path | None = None
    spool_value = job.env.get(envvars.ATTACH_SPOOL)
    if spool_value:
        spool_dir = Path(os.path.abspath(spool_value))
    if (ret.spool_files or ret.spool_log) and spool_dir is None:
        raise _refused(job, "a spool for", job.label, "a job that logs into a run")
    for rel, data in ret.spool_files.items():
        clean = safe_relative(rel)
        if clean is None or not clean.startswith(FILES + "/") or not isinstance(data, bytes):
            raise _refused(job, "the spool file", rel, f"a file under the spool's {FILES}/")
        assert spool_dir is not None
        writes.append((spool_dir / clean, data))

    lines: list[bytes] = []
    if ret.spool_log:
        assert spool_dir is not None
        lines = _records(ret.spool_log, top, spool_dir, job)

    if ret.notebook is not None:
        writes.append((Path(job.output), ret.notebook))
    for path, data in writes:
        try:
            _write_atomic(path, data)
        except OSError as exc:
            raise StageFailed(
                f"stage {job.label}: {path} cannot be written with what the worker sent back: "
                f"{exc.strerror or exc}",
                "fix the folder's permissions or free some disk space, then run again",
                stage=job.stage,
            ) from None
    if lines:
        assert spool_dir is not None
        fd = os.open(spool_dir / LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            for line in lines:  # one record, one write: as a stage kernel appends
                os.write(fd, line)
        finally:
            os.close(fd)


def _records(log: bytes, root: str, spool_dir: Path, job: StageJob) -> list[bytes]:
    """The returned spool's records, parsed, localised and encoded again; a line that is not a
    JSON array (a torn last line, damage) is dropped, as are the runner's own record kinds."""
    files = str(spool_dir / FILES)
    out: list[bytes] = []
    for raw in log.split(b"\n"):
        if not raw.strip():
            continue
        try:
            rec = json.loads(raw)
        except (ValueError, RecursionError):
            continue
        if not isinstance(rec, list) or not rec or not isinstance(rec[0], str):
            continue
        if rec[0] in RUNNER_RECORDS:
            continue
        try:
            rec = localise(rec, root)
        except RecursionError:
            continue
        if rec[0] == "a":
            src = rec[1] if len(rec) > 1 else None
            if not isinstance(src, str) or not _within(os.path.normpath(src), files):
                raise _refused(job, "an artifact at", src, f"a file under the spool's {FILES}/")
        try:
            out.append((_dumps(rec) + "\n").encode())
        except (ValueError, TypeError, RecursionError):
            continue
    return out


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name[:40]}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
