"""Every environment variable nbops reads or sets, in one place (README, "Environment").

MLflow's own variables keep MLflow's names: nbops honours them as MLflow does.
"""

from __future__ import annotations

# --- MLflow's ------------------------------------------------------------------------------
MLFLOW_TRACKING_URI = "MLFLOW_TRACKING_URI"  # the tracking store; default: .nbops/mlflow.db
MLFLOW_TRACKING_USERNAME = "MLFLOW_TRACKING_USERNAME"
MLFLOW_TRACKING_PASSWORD = "MLFLOW_TRACKING_PASSWORD"
MLFLOW_HTTP_REQUEST_MAX_RETRIES = "MLFLOW_HTTP_REQUEST_MAX_RETRIES"  # nbops sets 0: it retries
MLFLOW_HTTP_REQUEST_TIMEOUT = "MLFLOW_HTTP_REQUEST_TIMEOUT"  # nbops sets 15 s unless set

# --- papermill's (set in a stage's kernel) -------------------------------------------------
PAPERMILL_INPUT_PATH = "PAPERMILL_INPUT_PATH"
PAPERMILL_OUTPUT_PATH = "PAPERMILL_OUTPUT_PATH"

# --- Jupyter's ----------------------------------------------------------------------------
JPY_SESSION_NAME = "JPY_SESSION_NAME"  # the notebook a kernel serves, as JupyterLab names it
JPY_PARENT_PID = "JPY_PARENT_PID"  # the kernel's parent process, which ipykernel watches
# debugpy's: no note about frozen modules in a forked kernel
PYDEVD_DISABLE_FILE_VALIDATION = "PYDEVD_DISABLE_FILE_VALIDATION"

# --- nbops's: set by nbops for the processes it starts --------------------------------------
PROJECT_ROOT = "NBOPS_PROJECT_ROOT"  # the project a stage, writer or daemon belongs to
NOTEBOOK = "NBOPS_NOTEBOOK"  # the notebook a stage kernel executes
RUN_ID = "NBOPS_RUN_ID"  # the run a stage kernel logs into
TAGS = "NBOPS_TAGS"  # a JSON object of tags for every run the process starts
ATTACH_SPOOL = "NBOPS_ATTACH_SPOOL"  # the spool a stage kernel appends to
# --- nbops's: set for a schedule's on_failure hook (a shell command) -------------------------
# (and RUN_ID above: the failed stage's run, else the pipeline run)
SCHEDULE = "NBOPS_SCHEDULE"  # the schedule that failed
RUN_IDS = "NBOPS_RUN_IDS"  # every run of the execution, space separated
PIPELINE_RUN_ID = "NBOPS_PIPELINE_RUN_ID"  # the execution's pipeline run
ERROR = "NBOPS_ERROR"  # what went wrong
STATUS = "NBOPS_STATUS"  # failed, timeout, killed, ...
HISTORY_ID = "NBOPS_HISTORY_ID"  # the history row of the failed execution

ZYGOTE = "NBOPS_ZYGOTE"  # "0": launch each stage kernel the usual way, not forked warm

# --- nbops's: set by a person ---------------------------------------------------------------
DASK = "NBOPS_DASK"  # the dask scheduler `nbops run` sends stages to (tcp://HOST:8786, local:N)
WORKER_CACHE = "NBOPS_WORKER_CACHE"  # on a dask worker: the folder of its blob cache
DEBUG = "NBOPS_DEBUG"  # 1: an unexpected CLI error shows its traceback
READ_PATH = "NBOPS_READ_PATH"  # mlflow: read commands go through MLflow's client
EXIT_GRACE = "NBOPS_EXIT_GRACE"  # seconds a kernel's exit waits for its runs to end
EXIT_FLUSH_TIMEOUT = "NBOPS_EXIT_FLUSH_TIMEOUT"  # seconds the exit waits for delivery
FLUSH_TIMEOUT = "NBOPS_FLUSH_TIMEOUT"  # seconds end_run waits for delivery
HEARTBEAT = "NBOPS_HEARTBEAT"  # seconds between a run's heartbeats
WRITER_DEFER = "NBOPS_WRITER_DEFER"  # seconds a writer waits for a busy kernel before starting
WRITER_NICE = "NBOPS_WRITER_NICE"  # the niceness a run's writer process adds to its own
STALE_AFTER = "NBOPS_STALE_AFTER"  # seconds without a heartbeat before a run counts as dead
SCHEMA_LOCK_TIMEOUT = "NBOPS_SCHEMA_LOCK_TIMEOUT"  # seconds to wait for another schema upgrade
VERBOSE = "NBOPS_VERBOSE"  # 1: show what MLflow and the servers nbops starts print (`--verbose`)
MLFLOW_LOGGING_LEVEL = "MLFLOW_LOGGING_LEVEL"  # MLflow's log level (nbops ui: WARNING)
MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"  # tqdm bars
PYTHONWARNINGS = "PYTHONWARNINGS"  # Python's warning filters (nbops ui's child: ignore)
# a read-only login to the tracking server's PostgreSQL: the sidebar reads it directly
READ_DATABASE_URI = "NBOPS_READ_DATABASE_URI"
# MLflow's "View run ... at:" lines when a run ends on a server (quiet(): hidden)
MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT = "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"


def seconds(name: str, default: float) -> float:
    """The number of seconds an environment variable sets, else ``default``; a value that is not
    a finite number >= 0 is an InvalidInput naming the variable (never a ValueError traceback)."""
    import math
    import os

    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw[:40])
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0 or len(raw) > 40:
        from nbops.errors import InvalidInput

        raise InvalidInput(
            f"{name}={raw[:40]!r} is not a number of seconds",
            f"set it to a number such as {default:g}, or unset it for the default",
        )
    return value
