"""What an MLflow error means, so no module outside nbops/mlflow/ imports ``MlflowException``.

Standard library only: an exception can only be an MLflow error if ``mlflow.exceptions`` is
already imported, so these checks never import MLflow.
"""

from __future__ import annotations

import sys

# MLflow's error codes that name something missing (a run, model, version or experiment)
DOES_NOT_EXIST = "RESOURCE_DOES_NOT_EXIST"
ALREADY_EXISTS = "RESOURCE_ALREADY_EXISTS"
INVALID_PARAMETER_VALUE = "INVALID_PARAMETER_VALUE"
BAD_REQUEST = "BAD_REQUEST"
# what a tracking server answers a bad login (HTTP 401) or a missing permission (403) with
UNAUTHENTICATED = "UNAUTHENTICATED"
PERMISSION_DENIED = "PERMISSION_DENIED"
_ACCESS = {UNAUTHENTICATED: 401, PERMISSION_DENIED: 403}

# Not here: PERMISSION_DENIED and UNAUTHENTICATED. A refused login or permission is fixed by a
# person (a password, a grant) and the same request then succeeds: the data stays spooled.
_PERMANENT = {
    INVALID_PARAMETER_VALUE,
    ALREADY_EXISTS,
    DOES_NOT_EXIST,
    "INVALID_STATE",
    BAD_REQUEST,
}


def is_mlflow_error(exc: BaseException) -> bool:
    """True when ``exc`` is an ``MlflowException`` (MLflow's one error type, any error code)."""
    module = sys.modules.get("mlflow.exceptions")
    base = getattr(module, "MlflowException", None)
    return base is not None and isinstance(exc, base)


def error_code(exc: BaseException) -> str | None:
    """MLflow's error code of ``exc`` (``RESOURCE_DOES_NOT_EXIST``, ...), None for any other
    exception."""
    if not is_mlflow_error(exc):
        return None
    code = getattr(exc, "error_code", None)
    return str(code) if code is not None else None


def access_status(exc: BaseException) -> int | None:
    """401 when a tracking server refused the login, 403 when it refused a permission, else
    None. Reads MLflow's error code (its REST calls) and the HTTP status of a ``requests`` error
    (its proxied artifact uploads and downloads raise those)."""
    code = error_code(exc)
    if code in _ACCESS:
        return _ACCESS[code]
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    if status in (401, 403) and type(exc).__module__.startswith("requests"):
        return int(status)
    return None


def is_permanent(exc: BaseException) -> bool:
    """True when retrying the same request cannot succeed (a bad value, a deleted run). A
    refused login or permission is not permanent: it succeeds once a person fixed it, so what
    was logged stays spooled (``nbops sync``)."""
    if access_status(exc) is not None:
        return False
    if is_mlflow_error(exc):
        text = str(exc).lower()
        if "locked" in text or "timed out" in text or "connection" in text:
            return False
        return error_code(exc) in _PERMANENT
    return isinstance(exc, (FileNotFoundError, IsADirectoryError, NotADirectoryError))
