"""Moved to :mod:`nbops.mlflow.schema` (issue 12); this re-export goes once no importer is left."""

from nbops.mlflow.schema import *  # noqa: F403  # moved: issue 12
