"""What the last successful execution of each stage saw, kept under ``.nbops/pipeline/`` so that
``nbops status`` and a no-op ``nbops run`` answer without touching MLflow.

``state.json`` is read through :mod:`nbops.pipeline.statefile`: a file that cannot be used, or
records of the wrong shape, are set aside (the file moved to ``state.json.corrupt-<time>``) with
one line on stderr; what is sound is kept, and the stages without a record look stale."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nbops.pipeline import statefile

STALE = "the stages it recorded look stale and run again"


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


def _digests(value: Any) -> bool:
    return isinstance(value, dict) and all(
        isinstance(k, str) and (v is None or isinstance(v, str)) for k, v in value.items()
    )


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def record_from_json(raw: Any) -> Record | None:
    """A Record from its JSON form, or None when it is not one (wrong type anywhere)."""
    if not isinstance(raw, dict):
        return None
    ok = (
        isinstance(raw.get("code"), str)
        and isinstance(raw.get("params"), dict)
        and _digests(raw.get("deps"))
        and isinstance(raw.get("env"), str)
        and _digests(raw.get("outs", {}))
        and (raw.get("run_id") is None or isinstance(raw.get("run_id"), str))
        and _number(raw.get("finished", 0.0))
    )
    if not ok:
        return None
    return Record(
        code=raw["code"],
        params=raw["params"],
        deps=raw["deps"],
        env=raw["env"],
        outs=raw.get("outs", {}),
        run_id=raw.get("run_id"),
        finished=float(raw.get("finished", 0.0)),
    )


class State:
    def __init__(self, state_dir: Path) -> None:
        self.file = state_dir / "pipeline" / "state.json"
        self.stages: dict[str, dict[str, Record]] = {}
        self.failed: dict[str, str] = {}
        raw = statefile.read(self.file, means=STALE)
        if raw is not statefile.MISSING:
            self._load(raw)

    def _load(self, raw: Any) -> None:
        """Keep every sound record of ``raw``; set the file aside if anything was not."""
        bad: list[str] = []
        if not isinstance(raw, dict):
            statefile.set_aside(self.file, f"holds {type(raw).__name__}, not an object", STALE)
            return
        stages = raw.get("stages", {})
        if not isinstance(stages, dict):
            bad.append("'stages' is not an object")
            stages = {}
        for stage, points in stages.items():
            if not isinstance(points, dict):
                bad.append(f"stage {stage!r} is not an object")
                continue
            for key, rec in points.items():
                record = record_from_json(rec)
                if record is None:
                    bad.append(f"the record of {stage!r} point {key!r} is malformed")
                else:
                    self.stages.setdefault(stage, {})[key] = record
        failed = raw.get("failed", {})
        if isinstance(failed, dict):
            self.failed = {k: v for k, v in failed.items() if isinstance(v, str)}
            if len(self.failed) < len(failed):
                bad.append("'failed' holds values that are not text")
        else:
            bad.append("'failed' is not an object")
        if bad:
            more = f" (and {len(bad) - 1} more problems)" if len(bad) > 1 else ""
            statefile.set_aside(
                self.file,
                f"is malformed: {bad[0]}{more}",
                "the sound records are kept; " + STALE.replace("it recorded", "without one"),
            )

    def get(self, stage: str, point: str) -> Record | None:
        return self.stages.get(stage, {}).get(point)

    def put(self, stage: str, point: str, rec: Record) -> None:
        self.stages.setdefault(stage, {})[point] = rec

    def save(self) -> None:
        data = {
            "stages": {s: {k: asdict(r) for k, r in pts.items()} for s, pts in self.stages.items()},
            "failed": self.failed,
        }
        statefile.write(self.file, data, indent=1)


def record_failed(state_dir: Path, stages: list[str], why: str) -> None:
    """Record ``stages`` as failed (``why``) unless already so: what recovery calls for the stages
    a dead ``nbops run`` did not finish, so that ``--resume`` runs them again."""
    st = State(state_dir)
    for s in stages:
        st.failed.setdefault(s, why)
    st.save()
