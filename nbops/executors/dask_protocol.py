"""What the dask executor's two sides exchange: the runner's side
(:mod:`nbops.executors.dask_exec`) sends a :class:`JobSpec` to a worker's task
(:func:`nbops.executors.dask_worker.run_job`), which answers with a :class:`JobReturn`. Both are
plain data (pickled by dask); paths in them are project-relative POSIX paths, never the runner's
absolute ones: a worker may see nothing of the project directory.

File contents travel apart from jobs, content-addressed by their xxh3 digest
(:func:`nbops.pipeline.hashing.content_digest`): before a job is submitted, every worker that may
run it is asked which digests it holds (``dask_worker.has_blobs``) and sent the others once
(``dask_worker.put_blob``, in chunks of :data:`CHUNK` bytes), into a cache that lives as long as
the worker process. A dep used by 50 sweep points crosses the network once per worker.

Standard library and nbops' base only: imported by the runner before dask is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nbops import envvars

TOPIC = "nbops-jobs"
"""The dask event topic a worker's task logs to (``Worker.log_event``) when its kernel is ready:
``{"event": "started", "key": ..., "worker": address, "name": worker name}``. The runner
subscribes to it (``Client.subscribe_topic``) to say *running* and start the run's clock."""

CHUNK = 32 * 1024 * 1024
"""Bytes per ``put_blob`` call."""

CACHE_ENV = envvars.WORKER_CACHE
"""On a worker: the folder of its blob cache (default: ``nbops-blobs`` in the worker's
``local_directory``) and, beside it, its jobs' scratch folders."""


@dataclass
class JobSpec:
    """One StageJob as a worker sees it."""

    key: str  # unique per job (the same across its retries): names its scratch folder, events
    stage: str
    label: str
    notebook: str  # project-relative
    output: str  # project-relative: where the executed notebook goes (.nbops/runs/<id>/x.ipynb)
    cwd: str  # project-relative folder the kernel runs in ("" or "." for the root)
    parameters: dict[str, Any]
    env: dict[str, str]  # set as they are
    env_paths: dict[str, str]  # set to the scratch folder joined with this project-relative path
    timeout: float | None
    files: dict[str, str]  # project-relative file -> digest: the notebook and every dep's files
    outs: list[str]  # project-relative outs (files or folders) to send back
    # project-relative folders made (empty) in the scratch folder before the notebook runs: every
    # out's parent folder and the outs that are folders in the project, as the notebook finds
    # them when it runs in the project
    dirs: list[str]
    spool: str  # project-relative spool folder of the run (.nbops/spool/<local id>)
    kernel_name: str = "python3"


@dataclass
class JobReturn:
    """What a worker's task answers. ``missing`` non-empty: nothing ran, the worker lacks those
    blobs (it joined after they were sent): send them and submit again."""

    key: str
    worker: str  # the worker's address
    name: str  # the worker's name (``dask worker --name``), else its address
    ok: bool
    seconds: float = 0.0  # the notebook's execution
    # why it failed: {"message", "hint", "cell", "kind"}; kind is "execution" (an exception in a
    # cell), "import" (an ImportError in a cell: a package the worker lacks), "kernel" (no kernel,
    # a dead kernel, a timeout), "stopped" (cancelled), "internal" (nbops' own failure)
    error: dict[str, Any] | None = None
    missing: list[str] = field(default_factory=list)
    notebook: bytes | None = None  # the executed notebook (also when a cell failed)
    outs: dict[str, bytes] = field(default_factory=dict)  # project-relative file -> content
    # the run's spool as the kernel left it on the worker: log.jsonl with every path under the
    # worker's scratch folder already written as the same path under "{ROOT}" (ROOT_MARK), and
    # the files the records point at, relative to the spool folder (files/...)
    spool_log: bytes = b""
    spool_files: dict[str, bytes] = field(default_factory=dict)


ROOT_MARK = "{nbops-root}"
"""Stands for the project root in a returned spool's paths: the runner replaces it with its
own root, in the parsed records, when it appends the records to the run's local spool."""
