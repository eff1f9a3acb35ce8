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
"""

from __future__ import annotations

import sys


def store_loaded() -> bool:
    """True when this process has already imported the store module (and so MLflow): reaching
    the store costs nothing more than opening it."""
    return getattr(sys.modules.get("nbops.mlflow.store"), "TrackingStore", None) is not None
