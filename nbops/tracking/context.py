"""Where a run is being logged from: the notebook's path and its papermill parameters.

Runs in the user's kernel at ``start_run``: standard library only (a notebook is JSON), fast.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nbops import envvars

NOTEBOOK_ENV = envvars.NOTEBOOK


@dataclass(frozen=True)
class Origin:
    """The notebook this code runs in and how it was found, or why there is none (``how``)."""

    notebook: Path | None
    how: str


def origin(user_ns: dict[str, Any] | None = None) -> Origin:
    """The notebook this code runs in, when it can be known, and where that came from.

    In order: ``NBOPS_NOTEBOOK`` (set by nbops' pipeline runner), papermill's injected
    ``PAPERMILL_INPUT_PATH``, VS Code's ``__vsc_ipynb_file__``, and the Jupyter session
    (``__session__`` / ``JPY_SESSION_NAME``, relative to the server root; the kernel runs in the
    notebook's directory), and the input notebook of the papermill command that started this
    kernel. Without one, ``how`` says what this process is (plain IPython, a kernel without a
    Jupyter session: nbconvert, nbclient, a console) or which named notebook is not a file here.
    """
    ns = user_ns or {}
    sources = (
        (os.environ.get(NOTEBOOK_ENV), f"{NOTEBOOK_ENV} (nbops' runner)"),
        (ns.get(envvars.PAPERMILL_INPUT_PATH), "papermill --inject-paths"),
        (ns.get("__vsc_ipynb_file__"), "VS Code"),
        (ns.get("__session__"), "the Jupyter session"),
        (os.environ.get(envvars.JPY_SESSION_NAME), "the Jupyter session"),
        (next(iter(_papermill_paths()), None), "the papermill command line"),
    )
    missing: list[str] = []
    for value, how in sources:
        if not isinstance(value, str) or not value.endswith(".ipynb"):
            continue
        found = _resolve(value)
        if found is not None:
            return Origin(found, how)
        missing.append(f"{value} (from {how}) is not a file in {Path.cwd()}")
    if missing:
        return Origin(None, "no notebook path: " + "; ".join(missing))
    return Origin(None, f"no notebook path: {_process_kind()}")


def _process_kind() -> str:
    """What runs this code, as a user would name it."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    if shell is None:
        return f"a Python process: {sys.argv[0] or 'python'}" if sys.argv else "a Python process"
    if not type(shell).__module__.startswith("ipykernel"):  # a kernel's shell is ipykernel's
        return "plain IPython"
    return "a kernel without a Jupyter session: nbconvert, nbclient or a console"


def notebook_path(user_ns: dict[str, Any] | None = None) -> Path | None:
    """The notebook this code runs in, when it can be known (see :func:`origin`)."""
    return origin(user_ns).notebook


def executed_notebook(user_ns: dict[str, Any] | None = None) -> Path | None:
    """The notebook papermill writes as it executes this kernel's cells (its output), when it is
    a local file: the run's notebook snapshot is taken from it (outputs included).

    papermill saves its output as each cell starts and completes, so at the end of the run it
    holds every cell that ran, with outputs. A relative output path (``papermill in.ipynb
    out.ipynb``, injected as given) is resolved against papermill's working directory, which
    is not the kernel's under ``--cwd``."""
    if os.environ.get(NOTEBOOK_ENV):
        return None  # nbops' own runner snapshots the stage's notebook itself
    ns = user_ns or {}
    out = ns.get(envvars.PAPERMILL_OUTPUT_PATH)
    paths = _papermill_paths()
    value = out if isinstance(out, str) else (paths[1] if len(paths) > 1 else None)
    if not isinstance(value, str) or not value.endswith(".ipynb") or "://" in value:
        return None
    p = Path(value)
    return p if p.is_absolute() else (_resolve(value) or Path.cwd() / p)


def snapshot_note(user_ns: dict[str, Any] | None = None) -> str | None:
    """Why the run's notebook snapshot is not papermill's executed output although this kernel
    runs under papermill (an output that is not a local file: s3://, '-'), else None."""
    if os.environ.get(NOTEBOOK_ENV):
        return None
    ns = user_ns or {}
    out = ns.get(envvars.PAPERMILL_OUTPUT_PATH)
    paths = _papermill_paths()
    value = out if isinstance(out, str) else (paths[1] if len(paths) > 1 else None)
    if value is None and not paths:
        return None
    if executed_notebook(user_ns) is None:
        return (
            f"papermill's output {value or '(none)'} is not a local notebook: the snapshot is "
            "the input notebook, without outputs"
        )
    return None


def notes(user_ns: dict[str, Any] | None = None) -> list[str]:
    """What the run records less of here, each said once at its start: papermill's output is
    not a local notebook (the snapshot is the input), the notebook cannot be read (no
    parameters), the directory is not in a git work tree (no commit or diff). Cheap: no
    subprocess, one small JSON read."""
    from nbops.errors import NbopsError
    from nbops.tracking.parameters import read_cells

    out: list[str] = []
    snap = snapshot_note(user_ns)
    if snap:
        out.append(snap)
    nb = origin(user_ns).notebook
    if nb is not None and not os.environ.get(NOTEBOOK_ENV):
        try:
            read_cells(nb)
        except NbopsError as exc:
            out.append(f"{nb.name} cannot be read ({exc.message}): its parameters are not logged")
    if not in_git_work_tree(Path.cwd()):
        out.append(f"{Path.cwd()} is not in a git work tree: no commit or diff is recorded")
    return out


def in_git_work_tree(path: Path) -> bool:
    """A ``.git`` (directory, or file of a linked work tree) here or above, as git finds it."""
    return any((d / ".git").exists() for d in (path, *path.parents))


def _resolve(value: str) -> Path | None:
    """An existing notebook that ``value`` names: absolute, or relative to this process'
    directory, to the directory its command was started from (``PWD``: papermill's ``--cwd``
    moves the kernel, not the paths given on its command line) or to papermill's directory;
    last, the bare file name here (a Jupyter session path is relative to the server's root)."""
    p = Path(value)
    if p.is_absolute():
        return p if p.is_file() else None
    bases = [Path.cwd()]
    pwd = os.environ.get("PWD")
    if pwd and os.path.isabs(pwd):
        bases.append(Path(pwd))
    try:
        bases.append(Path(os.readlink(f"/proc/{os.getppid()}/cwd")))
    except OSError:
        pass
    for guess in [b / p for b in bases] + [Path.cwd() / p.name]:
        if guess.is_file():
            return guess.resolve()
    return None


def _papermill_paths() -> list[str]:
    """[input, output] of the ``papermill IN OUT`` command whose kernel this is (Linux: read
    from the parent's command line and working directory; relative under ``--cwd``), else []."""
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
    # under --cwd papermill's directory is no longer the one its paths are relative to
    moved = any(a == "--cwd" or a.startswith("--cwd=") for a in args)
    return [a if "://" in a or os.path.isabs(a) or moved else str(cwd / a) for a in found[:2]]


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
