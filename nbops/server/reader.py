"""Moved to :mod:`nbops.mlflow.readers.base` (issue 12); this re-export goes once callers moved."""

from nbops.mlflow.readers.base import (  # noqa: F401  # moved: issue 12
    SUMMARY_TAGS,
    Page,
    Reader,
    RunInfo,
    check_run_id,
    decode_token,
    downsample,
    encode_token,
    finite,
    query_digest,
    summarize,
)
