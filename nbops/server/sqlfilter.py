"""Moved to :mod:`nbops.mlflow.readers.sqlfilter` (issue 12)."""

from nbops.mlflow.readers.sqlfilter import Untranslatable, translate  # noqa: F401  # moved: issue 12
