"""What one ``nbops run`` did, as data: the exit code, each stage's status and run ids, the
pipeline run. ``nbops run --summary FILE`` writes it as JSON, which is how the scheduler and the
server's re-run jobs learn the runs an execution made without parsing its output."""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class PipelineOutcome:
    pipeline_run_id: str | None
    exit_code: int
    status: str  # ok | failed | killed | timeout
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)  # {status, run_ids}
    error: str | None = None
    seconds: float = 0.0
    undelivered: list[str] = field(default_factory=list)  # runs whose data is not all in the store

    def run_ids(self) -> list[str]:
        return [rid for s in self.stages.values() for rid in s.get("run_ids", [])]

    def write(self, path: str | os.PathLike[str]) -> None:
        """Atomically: a reader polling for the file never sees half of it."""
        from nbops.errors import InvalidInput

        target = Path(path)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        try:
            tmp.write_text(json.dumps(asdict(self), indent=1, sort_keys=True))
            os.replace(tmp, target)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise InvalidInput(
                f"--summary {path}: cannot write it ({exc.strerror or exc})",
                "name a file in a directory that exists and that you can write to",
            ) from None


def failed_before_start(error: str, exit_code: int) -> PipelineOutcome:
    """The outcome of an ``nbops run`` that stopped before running anything (bad nbops.yaml,
    unknown parameter): still written, so a caller waiting for the summary learns why."""
    return PipelineOutcome(None, exit_code, "failed", {}, error, 0.0)
