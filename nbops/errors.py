"""The NbopsError tree: every error says what went wrong, naming the thing, and what to do."""

from __future__ import annotations


class NbopsError(Exception):
    """Base of every error nbops raises on purpose.

    ``message`` names the file, line, parameter or run; ``hint`` says the fix.
    ``exit_code`` is what the CLI exits with (DESIGN.md: 1 a run/check failed, 2 bad usage/config).
    """

    exit_code = 2

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


class StageFailed(NbopsError):
    """A pipeline stage failed; carries the stage, the failing cell and the executed notebook."""

    exit_code = 1

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


class StoreUnavailable(NbopsError):
    """The tracking store cannot be reached; logged data stays in the spool."""

    exit_code = 1


class NotFound(NbopsError):
    """A run, experiment, model or file that was named does not exist."""
