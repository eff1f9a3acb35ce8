"""Every tag name nbops writes on an MLflow run, model or experiment, in one place.

A name ending in ``.`` is a prefix: the rest of the tag's name is a stage, dep, out, model or
data file (``nbops.out.model.pkl``). MLflow's own tags that nbops sets or reads are at the end.
docs/architecture.md lists them with who writes and who reads each.
"""

from __future__ import annotations

# --- on every run nbops starts ------------------------------------------------------------
NOTEBOOK = "nbops.notebook"  # the notebook the run was logged from (project-relative)
SPOOL = "nbops.spool"  # the spool file that holds the run's data until it is delivered
PID = "nbops.pid"  # the process that logs the run (recovery ends runs of dead processes)
HOST = "nbops.host"  # the machine of that process
HEARTBEAT = "nbops.heartbeat"  # epoch seconds of the last sign of life
END_REASON = "nbops.end_reason"  # why a run ended other than FINISHED (killed, timeout, ...)
PYTHON = "nbops.python"  # the Python version of the kernel
GIT_COMMIT = "nbops.git.commit"
GIT_BRANCH = "nbops.git.branch"
GIT_DIRTY = "nbops.git.dirty"
MODEL_PREFIX = "nbops.model."  # nbops.model.<name>: the artifact path of a logged model
DATA_PREFIX = "nbops.data."  # nbops.data.<role>.<file>: xxh3 of a data file the run read

# --- pipeline stage runs (nbops run) -------------------------------------------------------
PIPELINE = "nbops.pipeline"  # on the pipeline run: the nbops.yaml it executed
STAGE = "nbops.stage"  # the stage of nbops.yaml the run executed
WORKER = "nbops.worker"  # the dask worker a stage point ran on (its address); absent: it ran here
PARENT_RUN = "nbops.parent_run"  # the pipeline run a stage run belongs to
SWEEP_POINT = "nbops.sweep_point"  # the label of the sweep point (``C=0.1,seed=1``)
DEP_PREFIX = "nbops.dep."  # nbops.dep.<path>: content hash of a dep when the stage ran
OUT_PREFIX = "nbops.out."  # nbops.out.<path>: digest of an out the stage wrote
RERUN_OF = "nbops.rerun_of"  # the run a re-run (Compare panel, `nbops rerun`) repeats
SHARED_OUTS = "nbops.shared_outs"  # on a sweep's stage run: JSON list of the outs all points share

# --- scheduled runs (nbops scheduler) ------------------------------------------------------
SCHEDULE = "nbops.schedule"  # on runs a schedule started: its name
SCHEDULE_EXECUTION = "nbops.schedule.execution"  # the schedule's history row id

# --- operations ---------------------------------------------------------------------------
KIND = "nbops.kind"  # what a run that is not a notebook run is: "drift"
DRIFT = "nbops.drift"  # "true" or "false": whether `nbops drift` found drift
DRIFT_COLUMNS = "nbops.drift.columns"  # the columns that drifted, comma separated
DRIFT_RUN = "nbops.drift_run"  # on retrain stage runs: the drift run that started them
RETRAIN_STATUS = "nbops.retrain.status"
RETRAIN_RUNS = "nbops.retrain.runs"
RETRAIN_PIPELINE_RUN = "nbops.retrain.pipeline_run"
VERIFIED = "nbops.verified"  # `nbops verify` reproduced this run: "true"/"false"
VERIFIED_BY = "nbops.verified_by"  # the run that reproduced it
VERIFIED_AT = "nbops.verified_at"
VERIFY_OF = "nbops.verify_of"  # on a verify run: the run it reproduced
VERIFY_RESULT = "nbops.verify.result"
# registry (model and model-version tags)
CREATED_BY = "nbops.created_by"  # on a registered model nbops created
GATES = "nbops.gates"  # on a model version: the gate checks it passed, as text
ALIAS_HISTORY_PREFIX = "nbops.alias_history."  # nbops.alias_history.<alias>: JSON list of versions
# experiment tags
AUDIT_HEAD_PREFIX = "nbops.audit.head."  # nbops.audit.head.<project key>: the audit log's head
MIGRATED_FROM = "nbops.migrated_from"  # on what `nbops migrate` copied: the source's id of it

# --- MLflow's own tags that nbops sets or reads --------------------------------------------
MLFLOW_PARENT_RUN_ID = "mlflow.parentRunId"
MLFLOW_RUN_NAME = "mlflow.runName"
MLFLOW_SOURCE_NAME = "mlflow.source.name"
MLFLOW_SOURCE_TYPE = "mlflow.source.type"
MLFLOW_GIT_COMMIT = "mlflow.source.git.commit"
MLFLOW_GIT_BRANCH = "mlflow.source.git.branch"
MLFLOW_GIT_REPO_URL = "mlflow.source.git.repoURL"
MLFLOW_USER = "mlflow.user"
MLFLOW_DATA_CONTEXT = "mlflow.data.context"  # on a dataset input: its role

# --- team mode: shared outs and staleness (pipeline/sharing.py, mlflow/blobs.py) -----------
INPUTS = "nbops.inputs"  # on a stage point's run: xxh3 of its notebook code, params and deps
ENV = "nbops.env"  # on a stage point's run: the environment digest it ran in
BLOB_STORE = "nbops.blob_store"  # on the run of experiment nbops-blobs holding shared outs
HIDDEN = "nbops.hidden"  # "true" on nbops' own experiments (nbops-audit): listings skip them

# tags of a run that are bookkeeping, not something a person compares
INTERNAL = frozenset({SPOOL, PID})
