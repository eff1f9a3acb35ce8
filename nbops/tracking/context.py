"""Where a run is being logged from: the notebook's path and its papermill parameters.

Runs in the user's kernel at ``start_run``: standard library only (a notebook is JSON), fast.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from nbops import envvars

NOTEBOOK_ENV = envvars.NOTEBOOK


def notebook_path(user_ns: dict[str, Any] | None = None) -> Path | None:
    """The notebook this code runs in, when it can be known.

    In order: ``NBOPS_NOTEBOOK`` (set by nbops' pipeline runner), papermill's injected
    ``PAPERMILL_INPUT_PATH``, VS Code's ``__vsc_ipynb_file__``, and the Jupyter session
    (``__session__`` / ``JPY_SESSION_NAME``, relative to the server root; the kernel runs in the
    notebook's directory), and the input notebook of the papermill command that started this
    kernel.
    """
    ns = user_ns or {}
    candidates: list[str] = []
    for value in (
        os.environ.get(NOTEBOOK_ENV),
        ns.get(envvars.PAPERMILL_INPUT_PATH),
        ns.get("__vsc_ipynb_file__"),
        ns.get("__session__"),
        os.environ.get(envvars.JPY_SESSION_NAME),
        *_papermill_paths()[:1],
    ):
        if isinstance(value, str) and value.endswith(".ipynb"):
            candidates.append(value)
    for c in candidates:
        p = Path(c)
        if p.is_absolute() and p.is_file():
            return p
        for guess in (Path.cwd() / p, Path.cwd() / p.name):
            if guess.is_file():
                return guess.resolve()
    return None


def executed_notebook(user_ns: dict[str, Any] | None = None) -> Path | None:
    """The notebook papermill writes as it executes this kernel's cells (its output), when it is
    a local file: the run's notebook snapshot is taken from it (outputs included)."""
    if os.environ.get(NOTEBOOK_ENV):
        return None  # nbops' own runner snapshots the stage's notebook itself
    ns = user_ns or {}
    out = ns.get(envvars.PAPERMILL_OUTPUT_PATH)
    paths = _papermill_paths()
    value = out if isinstance(out, str) else (paths[1] if len(paths) > 1 else None)
    if not isinstance(value, str) or not value.endswith(".ipynb") or "://" in value:
        return None
    p = Path(value)
    return p if p.is_absolute() else None


def _papermill_paths() -> list[str]:
    """[input, output] of the ``papermill IN OUT`` command whose kernel this is (Linux: read
    from the parent's command line and working directory), else []."""
    ppid = os.getppid()
    try:
        raw = Path(f"/proc/{ppid}/cmdline").read_bytes()
        cwd = Path(os.readlink(f"/proc/{ppid}/cwd"))
    except OSError:
        return []
    args = [a.decode("utf-8", "replace") for a in raw.split(b"\0") if a]
    if not any(
        Path(a).name in ("papermill", "papermill.__main__") or a == "papermill" for a in args
    ):
        return []
    found = [a for a in args if a.endswith(".ipynb") and not a.startswith("-")]
    return [a if "://" in a or os.path.isabs(a) else str(cwd / a) for a in found[:2]]


def parameter_names(nb_path: Path) -> list[str]:
    """Names assigned in the cells tagged ``parameters`` / ``injected-parameters``, read as
    papermill reads them (lines it cannot read are skipped); [] for a notebook that cannot be
    read or is not a notebook. Never raises."""
    from nbops.errors import NbopsError
    from nbops.tracking.parameters import inspect_source, read_cells

    try:
        cells = read_cells(nb_path)
    except NbopsError:
        return []
    names: list[str] = []
    for tags, src in cells:
        if "parameters" in tags or "injected-parameters" in tags:
            for p in inspect_source(src):
                if p.name not in names:
                    names.append(p.name)
    return names


def parameters(nb_path: Path | None, user_ns: dict[str, Any] | None) -> dict[str, str]:
    """Current values of the notebook's declared parameters, as MLflow param strings."""
    if nb_path is None or not user_ns:
        return {}
    out: dict[str, str] = {}
    for name in parameter_names(nb_path):
        if name in user_ns and name != envvars.PAPERMILL_INPUT_PATH:
            out[name] = str(user_ns[name])[:6000]
    return out
