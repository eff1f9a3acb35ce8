"""What the last successful execution of each stage saw, kept under ``.nbops/pipeline/`` so that
``nbops status`` and a no-op ``nbops run`` answer without touching MLflow."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Record:
    """The fingerprint of one successful execution of a stage (one sweep point)."""

    code: str
    params: dict[str, Any]
    deps: dict[str, str | None]
    env: str
    outs: dict[str, str | None] = field(default_factory=dict)
    run_id: str | None = None
    finished: float = 0.0


class State:
    def __init__(self, state_dir: Path) -> None:
        self.file = state_dir / "pipeline" / "state.json"
        try:
            raw = json.loads(self.file.read_text())
        except (FileNotFoundError, ValueError):
            raw = {}
        self.stages: dict[str, dict[str, Record]] = {
            stage: {key: Record(**rec) for key, rec in points.items()}
            for stage, points in raw.get("stages", {}).items()
        }
        self.failed: dict[str, str] = raw.get("failed", {})

    def get(self, stage: str, point: str) -> Record | None:
        return self.stages.get(stage, {}).get(point)

    def put(self, stage: str, point: str, rec: Record) -> None:
        self.stages.setdefault(stage, {})[point] = rec

    def save(self) -> None:
        self.file.parent.mkdir(parents=True, exist_ok=True)
        data = {
            "stages": {s: {k: asdict(r) for k, r in pts.items()} for s, pts in self.stages.items()},
            "failed": self.failed,
        }
        tmp = self.file.with_name(f".state.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        os.replace(tmp, self.file)
