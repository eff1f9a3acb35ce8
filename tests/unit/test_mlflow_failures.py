"""nbops.mlflow.failures reads MLflow's errors so no other module imports MlflowException."""

from __future__ import annotations

import sqlite3

from mlflow.exceptions import MlflowException
from mlflow.protos import databricks_pb2 as codes

from nbops.mlflow import failures


def test_error_code_reads_mlflows_code_and_is_none_for_other_errors() -> None:
    missing = MlflowException("Run 'x' not found", error_code=codes.RESOURCE_DOES_NOT_EXIST)
    assert failures.is_mlflow_error(missing)
    assert failures.error_code(missing) == failures.DOES_NOT_EXIST
    assert not failures.is_mlflow_error(ValueError("x"))
    assert failures.error_code(ValueError("x")) is None
    assert failures.error_code(KeyError("RESOURCE_DOES_NOT_EXIST")) is None


def test_a_refused_request_is_permanent_and_a_locked_database_is_not() -> None:
    bad = MlflowException("Invalid value", error_code=codes.INVALID_PARAMETER_VALUE)
    assert failures.is_permanent(bad)
    locked = MlflowException("database is locked", error_code=codes.INVALID_PARAMETER_VALUE)
    assert not failures.is_permanent(locked)  # retrying later succeeds
    assert not failures.is_permanent(MlflowException("boom", error_code=codes.INTERNAL_ERROR))
    assert failures.is_permanent(FileNotFoundError("gone"))
    assert not failures.is_permanent(sqlite3.OperationalError("disk I/O error"))
