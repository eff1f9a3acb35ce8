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
artifacts; on a tracking server every call of the store facade) so that MLflow's INFO lines
(``Creating initial MLflow database tables...``), its ``Downloading artifacts`` bars and its
``🏃 View run ... at:`` lines stay out of nbops' output, in any process (the CLI, the pipeline's
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
QUIET_LOGGERS = (
    "mlflow.store.db.utils",
    "mlflow.store.db",
    "mlflow.store.model_registry.abstract_store",  # "Waiting up to 300 seconds for model version"
)
_WARNING = 30  # logging.WARNING, without importing logging for the constant
# MLflow's switches, read when it prints: no artifact progress bars, and no "🏃 View run ... at:"
# / "🧪 View experiment at:" lines when a run ends on a tracking server (a value set is kept)
_QUIET_ENV = (
    (envvars.MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR, "false"),
    (envvars.MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT, "true"),
)

_quiet_lock = threading.Lock()
_quiet_depth = 0
_quiet_saved: dict[str, Any] = {}


def verbose() -> bool:
    """True when ``NBOPS_VERBOSE`` asks for what MLflow and the servers nbops starts print
    (``nbops --verbose`` sets it for the command and its child processes)."""
    return os.environ.get(envvars.VERBOSE, "").strip().lower() not in ("", "0", "false", "no")


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Inside: MLflow's store loggers (:data:`QUIET_LOGGERS`) log WARNING and above only, its
    artifact progress bars are off (unless ``MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR`` is set) and
    so are its "View run ... at:" lines (unless ``MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT`` is).
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
    for var, value in _QUIET_ENV:
        if var not in os.environ:
            os.environ[var] = value
            _quiet_saved[var] = None


def _restore() -> None:
    import logging

    for name in QUIET_LOGGERS:
        if name in _quiet_saved:
            logging.getLogger(name).setLevel(_quiet_saved.pop(name))
    for var, _ in _QUIET_ENV:
        if _quiet_saved.pop(var, 0) is None:
            os.environ.pop(var, None)


def store_loaded() -> bool:
    """True when this process has already imported the store module (and so MLflow): reaching
    the store costs nothing more than opening it."""
    return getattr(sys.modules.get("nbops.mlflow.store"), "TrackingStore", None) is not None
