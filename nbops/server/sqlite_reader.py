"""Moved to :mod:`nbops.mlflow.readers.sqlite` (issue 12)."""

from nbops.mlflow.readers.sqlite import SqliteReader  # noqa: F401  # moved: issue 12
