"""Where schedules come from: ``schedules:`` in nbops.yaml and ``nbops schedule add`` (the store).
Both are checked by ``validation.validate`` every time they are loaded; one that fails is listed
as invalid with the reason and skipped, never stopping the others. Names are unique across both
(nbops.yaml's wins). ``yaml_fields`` is the one place an nbops.yaml entry
(``nbops.pipeline.config.Schedule``) becomes the fields of a ``model.Schedule``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nbops import project
from nbops.errors import ConfigError, InvalidInput, NbopsError, NotFound
from nbops.scheduler import validation
from nbops.scheduler.model import Schedule
from nbops.scheduler.store import ScheduleStore


def load_pipeline(root: Path) -> Any:
    """nbops.yaml of the project (a ConfigError if there is none: schedules run its stages)."""
    from nbops.pipeline import spec as specmod

    path = root / project.CONFIG_FILE
    if not path.is_file():
        raise ConfigError(
            f"no {project.CONFIG_FILE} in {root}",
            "schedules run pipeline stages: create nbops.yaml with `stages:` (see README: "
            "Pipelines), or run nbops in the project folder",
            file=str(path),
        )
    return specmod.load(path)


@dataclass
class Entry:
    """One schedule as found: the schedule when it is valid, else why not (``problem``), with
    whatever of its fields could be read (for listing it, marked invalid)."""

    name: str
    source: str  # nbops.yaml | cli
    schedule: Schedule | None
    problem: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)


def _problem(exc: NbopsError) -> str:
    return exc.message + (f" (fix: {exc.hint})" if exc.hint else "")


def yaml_fields(name: str, entry: Any) -> dict[str, Any]:
    """The fields of a ``model.Schedule`` that ``schedules: {name: entry}`` of nbops.yaml
    describes (``entry``: a ``nbops.pipeline.config.Schedule``; the same options, a unit test
    keeps them so)."""
    return {"name": name, **entry.model_dump()}


def yaml_entries(pipeline: Any, now: float | None = None) -> list[Entry]:
    """The schedules of nbops.yaml; one that fails ``validation.validate`` is an invalid entry
    whose problem names nbops.yaml:line (it does not stop the others)."""
    out = []
    for name, s in pipeline.schedules.items():
        fields = yaml_fields(name, s)
        try:
            schedule = validation.validate(fields, pipeline, source="nbops.yaml", now=now)
        except NbopsError as exc:
            rest = exc.message.split(": ", 1)[-1]
            key = rest.split(":", 1)[0] if ":" in rest else ""
            keys = [key] if key in validation.FIELDS else []
            where = pipeline.where("schedules", name, *keys, value=bool(keys))
            at = f"{pipeline.path}:{where[0]}: " if where and str(pipeline.path) not in rest else ""
            out.append(Entry(name, "nbops.yaml", None, at + _problem(exc), fields))
            continue
        out.append(Entry(name, "nbops.yaml", schedule, None, fields))
    return out


def stored_entries(store: ScheduleStore, pipeline: Any, now: float | None = None) -> list[Entry]:
    """The schedules `nbops schedule add` stored; a row that is damaged (not JSON, wrong
    types, NULLs) or no longer valid is an invalid entry naming the row (the rest load)."""
    out = []
    for row in store.schedule_rows():
        name = row.name if isinstance(row.name, str) and row.name else f"<row {row.rowid}>"
        try:
            data = json.loads(row.spec) if isinstance(row.spec, str | bytes) else None
        except (ValueError, RecursionError):
            data = None
        if not isinstance(data, dict):
            shown = str(row.spec)[:60] if row.spec is not None else "NULL"
            out.append(
                Entry(
                    name,
                    "cli",
                    None,
                    f"damaged row in {store.path}: its spec is not a JSON object ({shown!r})"
                    f" (fix: `nbops schedule remove {name}` and add it again)",
                )
            )
            continue
        if data.get("name") != row.name:
            out.append(
                Entry(
                    name,
                    "cli",
                    None,
                    f"damaged row in {store.path}: its spec names {data.get('name')!r}"
                    f" (fix: `nbops schedule remove {name}` and add it again)",
                    data,
                )
            )
            continue
        data.pop("source", None)
        try:
            schedule = validation.validate(data, pipeline, source="cli", now=now)
        except NbopsError as exc:
            out.append(Entry(name, "cli", None, _problem(exc), data))
            continue
        out.append(Entry(name, "cli", schedule, None, data))
    return out


def entries(root: Path, store: ScheduleStore | None = None, pipeline: Any = None) -> list[Entry]:
    """Every schedule of the project, valid or not, by name: nbops.yaml's and the CLI's. A
    CLI schedule whose name nbops.yaml also uses is invalid (nbops.yaml's runs)."""
    pipeline = pipeline if pipeline is not None else load_pipeline(root)
    store = store or ScheduleStore(root)
    now = time.time()
    from_yaml = yaml_entries(pipeline, now)
    names = {e.name for e in from_yaml}
    from_cli = stored_entries(store, pipeline, now)
    for e in from_cli:
        if e.name in names:
            where = pipeline.where("schedules", e.name)
            at = f" at {pipeline.path}:{where[0]}" if where else ""
            e.schedule = None
            e.problem = (
                f"schedule {e.name!r} is also defined in nbops.yaml{at}, which wins (fix: "
                f"`nbops schedule remove {e.name}`, or rename it in nbops.yaml)"
            )
    return sorted(from_yaml + from_cli, key=lambda e: (e.name, e.source != "nbops.yaml"))


def schedules(
    root: Path, store: ScheduleStore | None = None, pipeline: Any = None
) -> list[Schedule]:
    """Every valid schedule of the project, by name (invalid ones: ``entries``)."""
    return [e.schedule for e in entries(root, store, pipeline) if e.schedule is not None]


def find_entry(root: Path, name: str, store: ScheduleStore | None = None) -> Entry:
    found = [e for e in entries(root, store) if e.name == name]
    if not found:
        raise NotFound(
            f"no schedule named {name!r}",
            "see `nbops schedule list` for the schedules of this project",
        )
    return found[0]


def find(root: Path, name: str, store: ScheduleStore | None = None) -> Schedule:
    """The valid schedule ``name``: NotFound if there is none, InvalidInput if it is invalid."""
    entry = find_entry(root, name, store)
    if entry.schedule is None:
        raise InvalidInput(
            f"schedule {name!r} is invalid and does not run: {entry.problem}",
            "fix it as the message says (or remove it), then try again",
        )
    return entry.schedule
