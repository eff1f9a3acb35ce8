"""Moved to :mod:`nbops.mlflow.readers.client` (issue 12)."""

from nbops.mlflow.readers.client import MlflowReader  # noqa: F401  # moved: issue 12
