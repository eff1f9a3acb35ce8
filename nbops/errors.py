"""Every error nbops raises on purpose, and what each means at every surface.

Each class carries the exit code the CLI returns (``exit_code``) and the HTTP status the server
answers (``http_status``); the CLI (``nbops.cli.main``), the magics and the server's ``api``
wrapper map an error by looking these up, never by a chain of ``isinstance``. Every error says
what went wrong, naming the file:line, parameter, run or field (``message``), and the fix
(``hint``).

The tree (exit code, HTTP status)::

    NbopsError                      2  400  base; bad usage unless a subclass says otherwise
    ├── InvalidInput                2  400  a value handed to the API or CLI is not acceptable
    ├── ConfigError                 2  400  nbops.yaml (or another file) is wrong at file:line:col
    ├── ParameterError              2  400  a notebook parameter is unknown or malformed
    ├── NotFound                    2  404  a run, experiment, model, schedule or file named
    ├── OutsideArtifactRoot         2  403  a run's artifacts point outside the project's roots
    ├── Conflict                    2  409  well formed, but the project cannot do it now
    │   └── AlreadyRunning          2  409  another `nbops scheduler` holds the project's lock
    ├── SchedulerDatabaseError      2  503  the scheduler's database cannot be used as it is
    ├── StageFailed                 1  400  a pipeline stage failed (stage, cell, notebook)
    ├── GateFailed                  1  400  a promotion gate refused; the registry is unchanged
    ├── IncompatibleDependency      1  503  jupyter_client/papermill/nbclient lack what nbops uses
    └── StoreUnavailable            1  503  the tracking store cannot be reached; data stays spooled
        ├── SchemaRefused           1  503  the store's schema cannot be used or upgraded safely
        └── AccessDenied            2  403  a tracking server refused the login or a permission

Exit codes that are not errors are named in :class:`Exit`.
"""

from __future__ import annotations

from enum import IntEnum


class Exit(IntEnum):
    """What an ``nbops`` command exits with (README, "Exit codes")."""

    OK = 0
    FAILED = 1  # a run or check failed, or the store is unreachable
    USAGE = 2  # bad usage or config
    DRIFT = 3  # `nbops drift` found drift
    INTERRUPTED = 130  # 128 + SIGINT, as a shell reports it
    BROKEN_PIPE = 141  # 128 + SIGPIPE: the reader (``| head``) stopped reading


class NbopsError(Exception):
    """Base of every error nbops raises on purpose.

    ``message`` names the file, line, parameter or run; ``hint`` says the fix.
    """

    exit_code: int = Exit.USAGE
    http_status: int = 400

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\n  hint: {self.hint}"
        return self.message

    # IPython renders this instead of a traceback: a short red message in a notebook.
    def _render_traceback_(self) -> list[str]:
        lines = [f"\x1b[31m{type(self).__name__}: {self.message}\x1b[0m"]
        if self.hint:
            lines.append(f"  hint: {self.hint}")
        return lines


class InvalidInput(NbopsError):
    """A value handed to the API is not acceptable (bad key, non-finite metric, malformed tag)."""


class ConfigError(NbopsError):
    """nbops.yaml (or another config) is wrong at ``file:line:column``."""

    def __init__(
        self,
        message: str,
        hint: str | None = None,
        *,
        file: str | None = None,
        line: int | None = None,
        column: int | None = None,
    ) -> None:
        where = file or ""
        if file and line is not None:
            where += f":{line}"
            if column is not None:
                where += f":{column}"
        super().__init__(f"{where}: {message}" if where else message, hint)
        self.file, self.line, self.column = file, line, column


class ParameterError(NbopsError):
    """A notebook parameter is unknown or malformed."""


class NotFound(NbopsError):
    """A run, experiment, model or file that was named does not exist."""

    http_status = 404


class OutsideArtifactRoot(NbopsError):
    """A run's store row points its artifacts outside the project's artifact roots."""

    http_status = 403


class Conflict(NbopsError):
    """The request is well formed but the project cannot do it now."""

    http_status = 409


class AlreadyRunning(Conflict):
    """Another `nbops scheduler` holds this project's lock."""


class SchedulerDatabaseError(NbopsError):
    """The scheduler database cannot be used as it is (the message names the file, the hint
    the fix)."""

    http_status = 503


class StageFailed(NbopsError):
    """A pipeline stage failed; carries the stage, the failing cell and the executed notebook."""

    exit_code = Exit.FAILED

    def __init__(
        self,
        message: str,
        hint: str | None = None,
        *,
        stage: str | None = None,
        cell: int | None = None,
        notebook: str | None = None,
    ) -> None:
        super().__init__(message, hint)
        self.stage, self.cell, self.notebook = stage, cell, notebook


class GateFailed(NbopsError):
    """A promotion was refused by a gate; nothing in the registry changed."""

    exit_code = Exit.FAILED


class IncompatibleDependency(NbopsError):
    """An installed jupyter_client, papermill or nbclient no longer has what nbops relies on
    (``nbops/executors/compat.py`` names the package, its version and the fix)."""

    exit_code = Exit.FAILED
    http_status = 503  # the installation is at fault, not the request


class StoreUnavailable(NbopsError):
    """The tracking store cannot be reached; logged data stays in the spool."""

    exit_code = Exit.FAILED
    http_status = 503


class SchemaRefused(StoreUnavailable):
    """The store exists but cannot be opened as it is, and waiting will not change that (a
    schema revision this MLflow does not know, a migration that cannot be finished safely).
    Logged data stays in the spool; ``nbops sync`` delivers it once the store is fixed."""


class AccessDenied(StoreUnavailable):
    """A tracking server refused who we are (HTTP 401: no or wrong ``MLFLOW_TRACKING_USERNAME`` /
    ``MLFLOW_TRACKING_PASSWORD``) or what we asked (403: no permission on the experiment or
    model). The message names the server, the user and the experiment or model; the hint says
    what to set or whom to ask. Logged data stays in the spool; ``nbops sync`` delivers it once
    the credentials or permissions are fixed."""

    exit_code = Exit.USAGE
    http_status = 403


class ClusterUnavailable(NbopsError):
    """The dask scheduler named by ``--dask`` / ``NBOPS_DASK`` / nbops.yaml's ``dask:`` cannot be
    reached (or a ``local:N`` cluster cannot start): the message names the address and why, the
    hint how to start one (``dask scheduler``). Nothing ran."""

    exit_code = Exit.USAGE
    http_status = 503


def exit_code_of(exc: BaseException) -> int:
    """The exit code for anything a command can end with."""
    if isinstance(exc, NbopsError):
        return int(exc.exit_code)
    if isinstance(exc, KeyboardInterrupt):
        return Exit.INTERRUPTED
    if isinstance(exc, BrokenPipeError):
        return Exit.BROKEN_PIPE
    return Exit.FAILED


def http_status_of(exc: BaseException) -> int:
    """The HTTP status for an error a request ended with: a bug is a 500."""
    return exc.http_status if isinstance(exc, NbopsError) else 500


__all__ = [
    "AccessDenied",
    "AlreadyRunning",
    "ClusterUnavailable",
    "ConfigError",
    "Conflict",
    "Exit",
    "GateFailed",
    "IncompatibleDependency",
    "InvalidInput",
    "NbopsError",
    "NotFound",
    "OutsideArtifactRoot",
    "ParameterError",
    "SchedulerDatabaseError",
    "SchemaRefused",
    "StageFailed",
    "StoreUnavailable",
    "exit_code_of",
    "http_status_of",
]
