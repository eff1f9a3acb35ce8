"""The MLflow boundary: the only package of nbops that imports ``mlflow`` (anywhere, including
inside functions).

- :mod:`nbops.mlflow.store`: :class:`~nbops.mlflow.store.TrackingStore`, the facade every caller
  goes through (runs, experiments, artifacts, the model registry), opened once per URI per
  process by :func:`~nbops.mlflow.store.open_store`. It hands out no ``MlflowClient``.
- :mod:`nbops.mlflow.entities`: ``typing.Protocol`` shapes of what the facade returns, so callers
  are typed without importing mlflow.
- :mod:`nbops.mlflow.failures`: what an MLflow error means (``error_code``, ``is_permanent``), so
  nobody else imports ``MlflowException``.
- :mod:`nbops.mlflow.schema`: an SQLite store's schema, created and upgraded by one process at a
  time; :mod:`nbops.mlflow.models`: saving a model in MLflow's format.
- ``readers/`` and ``search.py``: reading runs for the server (MlflowClient or direct SQL).

Importing this package imports nothing heavy: ``import nbops.mlflow`` does not import mlflow.

**Quiet by default.** What nbops does through MLflow prints nothing of MLflow's: :func:`quiet`
wraps nbops' own calls (creating or upgrading a store, opening it, logging and downloading
artifacts) so that MLflow's INFO lines (``Creating initial MLflow database tables...``) and its
``Downloading artifacts`` bars stay out of nbops' output, in any process (the CLI, the pipeline's
sink, the writers, the Jupyter server, a user's kernel), while the user's own MLflow calls are
left as MLflow makes them. ``NBOPS_VERBOSE=1`` (``nbops --verbose``) turns it off.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterator
from typing import Any

from nbops import envvars

# the loggers MLflow's store creation and upgrade write INFO lines to (alembic's MLflow keeps at
# WARNING itself)
QUIET_LOGGERS = ("mlflow.store.db.utils", "mlflow.store.db")
_WARNING = 30  # logging.WARNING, without importing logging for the constant

_quiet_lock = threading.Lock()
_quiet_depth = 0
_quiet_saved: dict[str, Any] = {}


def verbose() -> bool:
    """True when ``NBOPS_VERBOSE`` asks for what MLflow and the servers nbops starts print
    (``nbops --verbose`` sets it for the command and its child processes)."""
    return os.environ.get(envvars.VERBOSE, "").strip().lower() not in ("", "0", "false", "no")


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Inside: MLflow's store loggers (:data:`QUIET_LOGGERS`) log WARNING and above only, and
    its artifact progress bars are off (unless ``MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR`` is set).
    Reentrant and thread-safe: the first entry sets, the last exit restores. A no-op under
    :func:`verbose`."""
    global _quiet_depth
    if verbose():
        yield
        return
    with _quiet_lock:
        if _quiet_depth == 0:
            _silence()
        _quiet_depth += 1
    try:
        yield
    finally:
        with _quiet_lock:
            _quiet_depth -= 1
            if _quiet_depth == 0:
                _restore()


def _silence() -> None:
    import logging

    for name in QUIET_LOGGERS:
        logger = logging.getLogger(name)
        _quiet_saved[name] = logger.level
        # set even when it is quiet now: importing mlflow inside (a first store) sets its
        # parent "mlflow" to INFO
        logger.setLevel(max(logger.level, _WARNING))
    bar = envvars.MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR
    if bar not in os.environ:
        os.environ[bar] = "false"
        _quiet_saved[bar] = None


def _restore() -> None:
    import logging

    for name in QUIET_LOGGERS:
        if name in _quiet_saved:
            logging.getLogger(name).setLevel(_quiet_saved.pop(name))
    if _quiet_saved.pop(envvars.MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR, 0) is None:
        os.environ.pop(envvars.MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR, None)


def store_loaded() -> bool:
    """True when this process has already imported the store module (and so MLflow): reaching
    the store costs nothing more than opening it."""
    return getattr(sys.modules.get("nbops.mlflow.store"), "TrackingStore", None) is not None
