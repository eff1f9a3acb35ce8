"""The dask executor, the worker's side: the task that runs one job on a worker
(:func:`run_job`), and the functions the runner calls on workers with ``Client.run``: which blobs
a worker has (:func:`has_blobs`), one chunk of a blob (:func:`put_blob`), stop jobs
(:func:`cancel`). Imported on workers by reference (pickled as ``nbops.executors.dask_worker.X``):
every worker needs nbops installed.

On a worker, nbops keeps two folders side by side (``$NBOPS_WORKER_CACHE``, else the worker's
``local_directory``): ``nbops-blobs/`` (the files jobs were sent, named by their xxh3 digest,
kept as long as the worker) and ``nbops-jobs/<key>/`` (one job's scratch folder, laid out like
the project, removed when the job is over). Jobs run in kernels of one
:class:`~nbops.executors.local.LocalExecutor` per worker process (forked from its zygote, warm).
"""

from __future__ import annotations

import atexit
import json
import os
import re
import shutil
import stat
import threading
from pathlib import Path
from typing import Any

from nbops import envvars
from nbops.executors.base import StageJob, StageResult
from nbops.executors.dask_protocol import CACHE_ENV, ROOT_MARK, TOPIC, JobReturn, JobSpec

JOBS_RUN = 0
"""How many jobs this worker process has run (tests: a no-op re-run touches no worker)."""

BLOBS = "nbops-blobs"
JOBS = "nbops-jobs"
OWNER = ".owner"  # beside a job's scratch folder: the pid of the worker process running it
DIGEST = re.compile(r"[0-9a-f]{32}")  # xxh3-128, hex
LOG = "log.jsonl"  # the spool's log (nbops.tracking.spool.LOG)
FILES = "files"  # the spool's artifact copies (nbops.tracking.spool.FILES)
REMOTE = "files/remote"  # where artifacts kept outside the spool's files/ come back
_READ = 1 << 20
_IMPORT = ("ModuleNotFoundError", "ImportError")
_CELL = re.compile(r" failed at In \[[^\]]*\]: ([A-Za-z_][\w.]*): ")

_lock = threading.Lock()
_executors: dict[str, Any] = {}  # kernel name -> LocalExecutor
# job key -> (executor, StageJob) of each attempt running here (a retry may land beside a slow
# attempt the runner gave up on)
_running: dict[str, list[tuple[Any, StageJob]]] = {}
_cancelled: set[str] = set()


# --- the blob cache ----------------------------------------------------------------------------
def cache_dir(dask_worker: Any = None) -> Path:
    """This worker's blob cache (made if missing): ``$NBOPS_WORKER_CACHE``, else ``nbops-blobs``
    in the worker's local directory. ``dask_worker``: the worker (``Client.run`` passes it to a
    function that takes it; a task finds its own)."""
    configured = os.environ.get(CACHE_ENV)
    if configured:
        d = Path(configured)
    else:
        if dask_worker is None:
            from distributed import get_worker

            dask_worker = get_worker()
        d = Path(dask_worker.local_directory) / BLOBS
    d.mkdir(parents=True, exist_ok=True)
    return d


def _checked(digest: str) -> str:
    if not isinstance(digest, str) or not DIGEST.fullmatch(digest):
        raise ValueError(f"{digest!r} is not an xxh3-128 digest (32 hex digits)")
    return digest


def has_blobs(digests: list[str], dask_worker: Any = None) -> list[str]:
    """The ones of ``digests`` this worker holds (ValueError for one that is not a digest).
    Called with ``Client.run``, which gives ``dask_worker``."""
    cache = cache_dir(dask_worker)
    return [d for d in dict.fromkeys(digests) if (cache / _checked(d)).is_file()]


def put_blob(digest: str, offset: int, data: bytes, final: bool, dask_worker: Any = None) -> None:
    """Write ``data`` at ``offset`` of the blob ``digest``; ``final``: it is complete, check
    its content and keep it (ValueError, and nothing kept, when it is not what it says).
    Called with ``Client.run``, which gives ``dask_worker``."""
    _checked(digest)
    if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
        raise ValueError(f"offset {offset!r} of blob {digest} is not a byte offset")
    cache = cache_dir(dask_worker)
    part = cache / f"{digest}.{os.getpid()}.part"  # worker processes may share the cache
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
    try:
        if data:
            os.pwrite(fd, data, offset)
        if final:
            os.ftruncate(fd, offset + len(data))  # a longer part of an earlier try: cut
    finally:
        os.close(fd)
    if not final:
        return
    got = _digest_of(part)
    if got != digest:
        part.unlink(missing_ok=True)
        if (cache / digest).is_file():  # sent by another runner meanwhile: it is here
            return
        raise ValueError(f"blob {digest} arrived with the content of {got}: not kept")
    os.replace(part, cache / digest)


def _digest_of(path: Path) -> str:
    import xxhash

    h = xxhash.xxh3_128()
    with open(path, "rb") as f:
        while chunk := f.read(_READ):
            h.update(chunk)
    return str(h.hexdigest())


# --- stopping jobs -----------------------------------------------------------------------------
def cancel(keys: list[str], dask_worker: Any = None) -> int:
    """Stop these jobs now (their kernels are killed; their run_job answers kind "stopped");
    a job that has not started here yet answers "stopped" as soon as it does. How many were
    running here."""
    stopped = 0
    with _lock:
        _cancelled.update(keys)
        targets = [t for k in keys for t in _running.get(k, [])]
    for executor, job in targets:
        executor.stop_job(job)
        stopped += 1
    return stopped


def _executor(kernel_name: str, cwd: Path) -> Any:
    """This worker's LocalExecutor for ``kernel_name`` (made once, warm; stopped when the
    worker process exits)."""
    with _lock:
        ex = _executors.get(kernel_name)
        if ex is None:
            from nbops.executors.local import LocalExecutor

            if not _executors:
                atexit.register(_stop_executors)
                _sweep(cwd / JOBS)
            ex = LocalExecutor(cwd, kernel_name=kernel_name, warm=1)
            _executors[kernel_name] = ex
    return ex


def warm(kernel_name: str = "python3", dask_worker: Any = None) -> None:
    """Get a kernel ready on this worker without waiting (called by the runner with
    ``Client.run`` when it connects): its first job then finds one instead of waiting seconds
    for a cold start."""
    if not isinstance(kernel_name, str) or not kernel_name or len(kernel_name) > 200:
        return
    _executor(kernel_name, cache_dir(dask_worker).parent).warm_up()


def _stop_executors() -> None:
    with _lock:
        executors = list(_executors.values())
        _executors.clear()
    for ex in executors:
        ex.stop()


def _sweep(jobs: Path) -> None:
    """Remove the scratch folders of jobs whose worker process is gone (killed mid-job)."""
    try:
        entries = list(jobs.iterdir())
    except OSError:
        return
    for d in entries:
        if not d.is_dir():
            continue
        owner = d.with_name(d.name + OWNER)
        try:
            pid = int(owner.read_text())
        except (OSError, ValueError):
            pid = 0
        if pid and _alive(pid):
            continue
        shutil.rmtree(d, ignore_errors=True)
        owner.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


# --- one job -----------------------------------------------------------------------------------
def _scratch_name(key: str) -> str:
    """The key as a file name, made unique per attempt (two attempts of one job may meet)."""
    import uuid

    safe = re.sub(r"[^A-Za-z0-9._-]", "_", key)[:80].lstrip(".") or "job"
    return f"{safe}-{uuid.uuid4().hex[:10]}"


def _rel(rel: str) -> str:
    """A project-relative path of the spec as a safe relative path (ValueError if not)."""
    if not isinstance(rel, str) or "\x00" in rel or "\\" in rel or rel.startswith("/"):
        raise ValueError(f"{rel!r} is not a project-relative path")
    parts = [p for p in rel.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise ValueError(f"{rel!r} is not a project-relative path")
    return "/".join(parts)


def _at(scratch: Path, rel: str) -> Path:
    clean = _rel(rel)
    return scratch / clean if clean else scratch


def run_job(spec: JobSpec) -> JobReturn:
    """Run one job here (the dask task). Never raises for a failure of the notebook: the
    answer says it (``error``); ``missing``: blobs this worker lacks, nothing ran."""
    global JOBS_RUN
    from distributed import get_worker

    worker = get_worker()
    address = str(worker.address)
    name = str(worker.name) if worker.name is not None else address
    ret = JobReturn(key=spec.key, worker=address, name=name, ok=False)
    try:
        cache = cache_dir(worker)
        missing = [
            d for d in dict.fromkeys(spec.files.values()) if not (cache / _checked(d)).is_file()
        ]
    except ValueError as exc:
        ret.error = _error(f"stage {spec.label}: {exc}", "nbops' own bug", None, "internal")
        return ret
    if missing:
        ret.missing = missing
        return ret
    with _lock:
        if spec.key in _cancelled:
            _cancelled.discard(spec.key)
            ret.error = _error(f"stage {spec.label} was stopped", None, None, "stopped")
            return ret
        JOBS_RUN += 1
    scratch = cache.parent / JOBS / _scratch_name(spec.key)
    entry: list[tuple[Any, StageJob]] = []
    try:
        return _run(spec, ret, cache, scratch, worker, entry)
    except Exception as exc:  # noqa: BLE001 - nbops' own failure: answered, not raised
        ret.ok = False
        text = _unscratch(f"{type(exc).__name__}: {exc}", scratch)
        ret.error = _error(
            f"stage {spec.label}: nbops failed on worker {name}: {text}",
            "look at the worker's log",
            None,
            "internal",
        )
        return ret
    finally:
        with _lock:
            attempts = [a for a in _running.get(spec.key, []) if all(a is not e for e in entry)]
            if attempts:
                _running[spec.key] = attempts
            else:
                _running.pop(spec.key, None)
                _cancelled.discard(spec.key)
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.with_name(scratch.name + OWNER).unlink(missing_ok=True)


def _run(
    spec: JobSpec,
    ret: JobReturn,
    cache: Path,
    scratch: Path,
    worker: Any,
    entry: list[tuple[Any, StageJob]],
) -> JobReturn:
    scratch.parent.mkdir(parents=True, exist_ok=True)
    scratch.with_name(scratch.name + OWNER).write_text(str(os.getpid()))
    scratch.mkdir()
    spool = _at(scratch, spec.spool) if spec.spool else None
    spool_log = f"{_rel(spec.spool)}/{LOG}" if spec.spool else None
    outs = [_rel(o) for o in spec.outs]
    linked: list[tuple[Path, os.stat_result]] = []
    gone = [d for d in dict.fromkeys(spec.files.values()) if not (cache / d).is_file()]
    if gone:  # dropped since run_job looked (a job changed it): to be sent again
        ret.missing = gone
        return ret
    for rel, digest in spec.files.items():
        clean = _rel(rel)
        dest = _at(scratch, clean)
        dest.parent.mkdir(parents=True, exist_ok=True)
        blob = cache / digest
        # a file the job writes (the spool's log, an out) is a copy, never the cached blob
        writable = clean == spool_log or any(clean == o or clean.startswith(o + "/") for o in outs)
        if not writable:
            try:
                os.link(blob, dest)
                linked.append((blob, os.stat(blob)))
                continue
            except OSError:
                pass
        shutil.copyfile(blob, dest)
    for d in [*spec.dirs, spec.cwd]:
        _at(scratch, d).mkdir(parents=True, exist_ok=True)
    output = _at(scratch, spec.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    shipped = 0
    if spool is not None:
        (spool / FILES).mkdir(parents=True, exist_ok=True)
        log = spool / LOG
        log.touch()
        shipped = log.stat().st_size

    env = dict(spec.env)
    for k, rel in spec.env_paths.items():
        env[k] = str(_at(scratch, rel))
    env[envvars.PROJECT_ROOT] = str(scratch)

    address, name = ret.worker, ret.name

    def started() -> None:
        try:
            worker.log_event(
                TOPIC, {"event": "started", "key": spec.key, "worker": address, "name": name}
            )
        except Exception:  # noqa: BLE001 - the worker is closing: the answer still says where
            pass

    job = StageJob(
        spec.stage,
        spec.label,
        _at(scratch, spec.notebook),
        output,
        dict(spec.parameters),
        _at(scratch, spec.cwd),
        env=env,
        timeout=spec.timeout,
        on_start=started,
        kernel_name=spec.kernel_name,
    )
    executor = _executor(spec.kernel_name, cache.parent)
    with _lock:
        if spec.key in _cancelled:  # stopped while its files were laid out
            ret.error = _error(f"stage {spec.label} was stopped", None, None, "stopped")
            return ret
        entry.append((executor, job))
        _running.setdefault(spec.key, []).append(entry[0])
    result: StageResult = executor.execute(job)
    with _lock:
        stopped = spec.key in _cancelled
    ret.seconds = result.seconds
    ret.ok = result.ok and not stopped
    if not ret.ok:
        ret.error = _failure(spec, result, scratch, stopped)
    _collect(spec, ret, scratch, outs, spool, shipped)
    for blob, before in linked:  # a notebook that wrote into a dep changed the blob
        try:
            now = os.stat(blob)
        except OSError:
            continue
        if (now.st_size, now.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
            blob.unlink(missing_ok=True)  # sent again next time
    return ret


def _error(message: str, hint: str | None, cell: int | None, kind: str) -> dict[str, Any]:
    return {"message": message, "hint": hint, "cell": cell, "kind": kind}


def _unscratch(text: str | None, scratch: Path) -> str | None:
    if text is None:
        return None
    for form in {str(scratch), os.path.realpath(scratch)}:
        text = text.replace(form, ROOT_MARK)
    return text


def _failure(spec: JobSpec, result: StageResult, scratch: Path, stopped: bool) -> dict[str, Any]:
    err = result.error
    message = err.message if err is not None else f"stage {spec.label} failed"
    hint = err.hint if err is not None else None
    cell = err.cell if err is not None else None
    if stopped:
        return _error(f"stage {spec.label} was stopped", None, None, "stopped")
    m = _CELL.search(message)
    if cell is not None and m is not None:
        kind = "import" if m.group(1).rsplit(".", 1)[-1] in _IMPORT else "execution"
    else:
        kind = "kernel"
    return _error(_unscratch(message, scratch) or "", _unscratch(hint, scratch), cell, kind)


# --- what goes back ----------------------------------------------------------------------------
def _files_under(top: Path, scratch: Path) -> list[Path]:
    """Regular files of ``top`` (file or folder; symlinked folders not followed, a symlinked
    file only when it leads inside the scratch folder)."""
    real_scratch = os.path.realpath(scratch)

    def ok(p: Path) -> bool:
        try:
            if not stat.S_ISREG(os.stat(p).st_mode):
                return False
        except OSError:
            return False
        if os.path.islink(p):
            real = os.path.realpath(p)
            return real.startswith(real_scratch + os.sep)
        return True

    if not top.is_dir():
        return [top] if ok(top) else []
    found = []
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames.sort()
        for n in sorted(filenames):
            p = Path(dirpath) / n
            if ok(p):
                found.append(p)
    return found


def _read(path: Path) -> bytes:
    """A regular file's bytes; opened without blocking, so a FIFO put in its place meanwhile
    cannot hang the worker (OSError)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{path} is not a regular file")
        os.set_blocking(fd, True)
        return f.read()


def _posix(path: Path, base: Path) -> str:
    return Path(os.path.relpath(path, base)).as_posix()


def _collect(
    spec: JobSpec, ret: JobReturn, scratch: Path, outs: list[str], spool: Path | None, shipped: int
) -> None:
    output = _at(scratch, spec.output)
    if output.is_file():
        ret.notebook = _read(output)
    for out in outs:
        for p in _files_under(_at(scratch, out), scratch):
            ret.outs[_posix(p, scratch)] = _read(p)
    if spool is None:
        return
    files = spool / FILES
    for p in _files_under(files, scratch) if files.is_dir() else []:
        ret.spool_files[_posix(p, spool)] = _read(p)
    try:
        with open(spool / LOG, "rb") as f:
            f.seek(shipped)
            data = f.read()
    except OSError:
        data = b""
    end = data.rfind(b"\n")
    lines = data[: end + 1].split(b"\n") if end >= 0 else []  # a torn last line: left out
    roots = sorted({str(scratch), os.path.realpath(scratch)}, key=len, reverse=True)
    mark_spool = f"{ROOT_MARK}/{_rel(spec.spool)}"
    kept: list[bytes] = []
    for raw in lines:
        if not raw.strip():
            continue
        try:
            rec = json.loads(raw)
        except (ValueError, RecursionError):
            continue
        if not isinstance(rec, list) or not rec:
            continue
        if rec[0] == "a" and len(rec) >= 4 and isinstance(rec[1], str) and not rec[3]:
            rec = _ship_original(rec, ret, scratch, spool, mark_spool)
        rec = _marked(rec, roots)
        try:
            kept.append(json.dumps(rec, ensure_ascii=False, separators=(",", ":")).encode())
        except (ValueError, TypeError):
            continue
    ret.spool_log = b"".join(line + b"\n" for line in kept)


def _ship_original(
    rec: list[Any], ret: JobReturn, scratch: Path, spool: Path, mark_spool: str
) -> list[Any]:
    """An artifact kept where it is (too big to copy into files/ when it was logged): its
    content goes back under files/remote/, and the record points there."""
    src = Path(rec[1])
    if not src.exists():
        return rec
    real, real_scratch = os.path.realpath(src), os.path.realpath(scratch)
    if real.startswith(real_scratch + os.sep):
        rel = Path(os.path.relpath(real, real_scratch)).as_posix()
    else:
        rel = "outside/" + Path(real).as_posix().lstrip("/")
    base = f"{REMOTE}/{rel}"
    real_src = Path(real)
    if real_src.is_dir():
        for p in _files_under(real_src, real_src):
            ret.spool_files[f"{base}/{_posix(p, real_src)}"] = _read(p)
    elif real_src.is_file():
        ret.spool_files[base] = _read(real_src)
    else:
        return rec
    return ["a", f"{mark_spool}/{base}", *rec[2:3], True, *rec[4:]]


def _marked(value: Any, roots: list[str]) -> Any:
    if isinstance(value, str):
        for r in roots:
            if r in value:
                value = value.replace(r, ROOT_MARK)
        return value
    if isinstance(value, list):
        return [_marked(v, roots) for v in value]
    if isinstance(value, dict):
        return {_marked(k, roots): _marked(v, roots) for k, v in value.items()}
    return value
