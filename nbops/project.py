"""Where a project lives: its root, its ``.nbops/`` state directory and its default tracking store.

Standard library (and the base module ``nbops.envvars``) only: this runs on every
``import``-time path (CLI start, ``%load_ext``).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from nbops import envvars

STATE_DIR = ".nbops"
CONFIG_FILE = "nbops.yaml"
ROOT_ENV = envvars.PROJECT_ROOT


def find_root(start: str | os.PathLike[str] | None = None) -> Path:
    """The nearest directory upwards with nbops.yaml or .nbops/; else the git work tree; else cwd.

    ``NBOPS_PROJECT_ROOT`` overrides the search (the pipeline runner and tests set it).
    """
    forced = os.environ.get(ROOT_ENV)
    if forced:
        return Path(forced).resolve()
    here = Path(start or os.getcwd()).resolve()
    candidates = [here, *here.parents]
    for d in candidates:
        if (d / CONFIG_FILE).is_file() or (d / STATE_DIR).is_dir():
            return d
    for d in candidates:
        if (d / ".git").exists():
            return d
    return here


def state_dir(root: Path | None = None, create: bool = True) -> Path:
    """``<root>/.nbops``, created on demand with a .gitignore so it never lands in git."""
    d = (root or find_root()) / STATE_DIR
    if create and not d.is_dir():
        d.mkdir(parents=True, exist_ok=True)
        (d / ".gitignore").write_text("*\n")
    return d


def scratch(root: Path | None = None, prefix: str = "nbops-") -> tempfile.TemporaryDirectory[str]:
    """A temporary directory under ``<root>/.nbops/tmp/`` (removed on exit): nbops writes
    nothing outside the project and its ``.nbops/``, scratch space included."""
    base = state_dir(root) / "tmp"
    base.mkdir(parents=True, exist_ok=True)
    return tempfile.TemporaryDirectory(prefix=prefix, dir=base)


def default_tracking_uri(root: Path | None = None) -> str:
    """The embedded store: SQLite in ``.nbops/mlflow.db``."""
    db = (root or find_root()) / STATE_DIR / "mlflow.db"
    return f"sqlite:///{db}"


def default_artifact_root(root: Path | None = None) -> Path:
    """``<root>/.nbops/artifacts``: where the embedded store keeps artifacts (the server's
    artifact reader counts it as one of the project's roots)."""
    return (root or find_root()) / STATE_DIR / "artifacts"


def tracking_uri(root: Path | None = None) -> str:
    """``MLFLOW_TRACKING_URI`` when set, else the embedded default store of the project."""
    uri = os.environ.get(envvars.MLFLOW_TRACKING_URI)
    if uri:
        return uri
    return default_tracking_uri(root)


def is_embedded(uri: str, root: Path | None = None) -> bool:
    return uri == default_tracking_uri(root)


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` tracking URI, else None."""
    if not uri.startswith("sqlite:///"):
        return None
    rest = uri[len("sqlite:///") :].split("?", 1)[0]
    return Path(rest if rest.startswith("/") else os.path.abspath(rest))


def artifact_root_for(uri: str) -> Path | None:
    """For a SQLite store, artifacts live beside the database in ``artifacts/`` (not ./mlruns)."""
    db = sqlite_path(uri)
    return db.parent / "artifacts" if db is not None else None
