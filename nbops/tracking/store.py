"""Moved to :mod:`nbops.mlflow.store` (issue 12); this re-export goes once no importer is left."""

from nbops.mlflow.store import *  # noqa: F403  # moved: issue 12
from nbops.mlflow.store import TrackingStore as Store  # noqa: F401  # moved: issue 12 (renamed)
