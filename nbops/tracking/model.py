"""Moved to :mod:`nbops.mlflow.models` (issue 12); this re-export goes once no importer is left."""

from nbops.mlflow.models import FLAVORS, infer_flavor, save  # noqa: F401  # moved: issue 12
