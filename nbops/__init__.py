"""nbops: Jupyter-native MLOps on MLflow.

``import nbops`` is cheap: the API below is loaded on first use, and neither mlflow, pandas nor
papermill is imported until something needs them. ``nbops.__version__`` is the installed
distribution's version (pyproject.toml holds the one literal), read on first use too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

_API = {
    "start_run": "nbops.tracking.fluent",
    "end_run": "nbops.tracking.fluent",
    "active_run": "nbops.tracking.fluent",
    "flush": "nbops.tracking.fluent",
    "log_param": "nbops.tracking.fluent",
    "log_params": "nbops.tracking.fluent",
    "log_metric": "nbops.tracking.fluent",
    "log_metrics": "nbops.tracking.fluent",
    "set_tag": "nbops.tracking.fluent",
    "set_tags": "nbops.tracking.fluent",
    "log_artifact": "nbops.tracking.fluent",
    "log_text": "nbops.tracking.fluent",
    "log_figure": "nbops.tracking.fluent",
    "track_data": "nbops.tracking.fluent",
    "log_model": "nbops.tracking.fluent",
    "runs": "nbops.tracking.query",
    "compare": "nbops.ipython.widgets",  # importing it registers the widget display
    "check_drift": "nbops.ops.drift",
    "runs_widget": "nbops.ipython.widgets",
    "Comparison": "nbops.ipython.widgets",
    "Run": "nbops.tracking.run",
    "NbopsError": "nbops.errors",
    "InvalidInput": "nbops.errors",
    "ConfigError": "nbops.errors",
    "ParameterError": "nbops.errors",
    "StageFailed": "nbops.errors",
    "StoreUnavailable": "nbops.errors",
    "NotFound": "nbops.errors",
}

__all__ = sorted(_API)

if TYPE_CHECKING:
    __version__: str

    from nbops.errors import (  # noqa: F401
        ConfigError,
        InvalidInput,
        NbopsError,
        NotFound,
        ParameterError,
        StageFailed,
        StoreUnavailable,
    )
    from nbops.ipython.widgets import runs_widget  # noqa: F401
    from nbops.tracking.fluent import (  # noqa: F401
        active_run,
        end_run,
        flush,
        log_artifact,
        log_figure,
        log_metric,
        log_metrics,
        log_model,
        log_param,
        log_params,
        log_text,
        set_tag,
        set_tags,
        start_run,
        track_data,
    )
    from nbops.tracking.query import Comparison, compare, runs  # noqa: F401
    from nbops.tracking.run import Run  # noqa: F401


def __getattr__(name: str) -> Any:
    if name == "__version__":
        version = _version()
        globals()["__version__"] = version
        return version
    mod = _API.get(name)
    if mod is None:
        raise AttributeError(f"module 'nbops' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(mod), name)
    globals()[name] = value  # next access is a plain attribute lookup
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__, "__version__"})


def _version() -> str:
    """The installed distribution's version; in a source tree that is not installed, the
    version its pyproject.toml declares."""
    import importlib.metadata

    try:
        return importlib.metadata.version("nbops")
    except importlib.metadata.PackageNotFoundError:
        pass
    import re
    from pathlib import Path

    try:
        text = (Path(__file__).resolve().parent.parent / "pyproject.toml").read_text("utf-8")
    except OSError:
        text = ""
    project = re.search(r"^\[project\]\s*$(.*?)(?=^\[|\Z)", text, re.M | re.S)
    found = re.search(r'^version\s*=\s*"([^"]+)"', project.group(1), re.M) if project else None
    return found.group(1) if found else "0+unknown"


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    """The Jupyter server extension (``/nbops/api/``); tornado loads only when the server asks."""
    from nbops.server import _jupyter_server_extension_points as points

    return points()


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext nbops``: registers %track / %%track."""
    from nbops.ipython import load_ipython_extension as _load

    _load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    from nbops.ipython import unload_ipython_extension as _unload

    _unload(ipython)
