"""Where schedules come from: ``schedules:`` in nbops.yaml and ``nbops schedule add`` (the store).
Both are validated the same way (cron, time zone, stages) and their names are unique across both.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from nbops import project
from nbops.errors import ConfigError, InvalidInput, NotFound
from nbops.scheduler import cron
from nbops.scheduler.model import ScheduleSpec
from nbops.scheduler.store import Store

NAME_HINT = "start with a letter or '_', then use letters, digits, '_', '.' or '-'"


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


def _unknown_stage(stage: str, known: list[str]) -> str:
    close = difflib.get_close_matches(stage, known, n=1)
    return f"did you mean {close[0]!r}?" if close else f"stages of nbops.yaml: {', '.join(known)}"


def check_stages(stages: list[str], known: list[str], field: str = "stages") -> list[str]:
    for s in stages:
        if s not in known:
            raise InvalidInput(f"{field}: unknown stage {s!r}", _unknown_stage(s, known))
    return list(stages)


def yaml_specs(pipeline: Any) -> list[ScheduleSpec]:
    """The schedules of nbops.yaml; a bad cron, zone or stage is a ConfigError at its line."""
    known = list(pipeline.stages)
    out = []
    for name, s in pipeline.schedules.items():
        checks: list[tuple[str | tuple[str, int], Any]] = [
            ("cron", lambda s=s: cron.check_cron(s.cron)),
            ("timezone", lambda s=s: cron.zone(s.timezone) if s.timezone else None),
        ]
        for i, stage in enumerate(s.stages):
            checks.append((("stages", i), lambda st=stage: check_stages([st], known)))
        for key, check in checks:
            try:
                check()
            except InvalidInput as exc:
                keys = key if isinstance(key, tuple) else (key,)
                raise pipeline.error(
                    f"schedule {name!r}: {exc.message}",
                    exc.hint,
                    "schedules",
                    name,
                    *keys,
                    value=True,
                ) from None
        out.append(
            ScheduleSpec(
                name=name,
                cron=cron.check_cron(s.cron),
                stages=list(s.stages),
                params=dict(s.params),
                catchup=s.catchup,
                retries=s.retries,
                timeout=s.timeout,
                timezone=s.timezone,
                on_failure=s.on_failure,
                source="nbops.yaml",
            )
        )
    return out


def all_specs(root: Path, store: Store | None = None, pipeline: Any = None) -> list[ScheduleSpec]:
    """Every schedule of the project: nbops.yaml's, then the CLI's, by name."""
    pipeline = pipeline if pipeline is not None else load_pipeline(root)
    store = store or Store(root)
    from_yaml = yaml_specs(pipeline)
    names = {s.name for s in from_yaml}
    from_cli = store.schedules()
    for s in from_cli:
        if s.name in names:
            raise pipeline.error(
                f"schedule {s.name!r} is also defined by `nbops schedule add`",
                f"keep one: `nbops schedule remove {s.name}`, or rename it here",
                "schedules",
                s.name,
            )
    return sorted(from_yaml + from_cli, key=lambda s: s.name)


def find(root: Path, name: str, store: Store | None = None) -> ScheduleSpec:
    for s in all_specs(root, store):
        if s.name == name:
            return s
    raise NotFound(
        f"no schedule named {name!r}", "see `nbops schedule list` for the schedules of this project"
    )


def parse_params(items: list[str] | dict[str, Any] | None) -> dict[str, Any]:
    """``-p k=v`` / ``-p stage.k=v`` strings (or a mapping) as {key: value}."""
    if not items:
        return {}
    if isinstance(items, dict):
        pairs = list(items.items())
    else:
        pairs = []
        for item in items:
            k, sep, v = str(item).partition("=")
            if not sep or not k.strip():
                raise InvalidInput(
                    f"params: {item!r} is not NAME=VALUE", "write it as -p C=0.1 or -p train.C=0.1"
                )
            pairs.append((k.strip(), v))
    for k, _ in pairs:
        if not str(k).strip() or any(c.isspace() for c in str(k)):
            raise InvalidInput(f"params: {k!r} is not a parameter name", "e.g. C or train.C")
    return {str(k): v for k, v in pairs}


def new_spec(
    root: Path,
    name: str,
    cron_expr: str,
    *,
    stages: list[str] | None = None,
    params: list[str] | dict[str, Any] | None = None,
    catchup: str = "latest",
    retries: int = 0,
    timeout: float | None = None,
    timezone: str | None = None,
    on_failure: str | None = None,
) -> ScheduleSpec:
    """A validated schedule for ``nbops schedule add``; InvalidInput names the bad field."""
    from nbops.pipeline.spec import NAME_RE

    if not isinstance(name, str) or not NAME_RE.match(name):
        raise InvalidInput(f"name: {name!r} is not a valid schedule name", NAME_HINT)
    expr = cron.check_cron(cron_expr)
    if timezone:
        cron.zone(timezone)
    if catchup not in ("none", "latest", "all"):
        raise InvalidInput(
            f"catchup: {catchup!r} is not one of none, latest, all",
            "none: skip missed times; latest: run once; all: run each in order",
        )
    if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
        raise InvalidInput(f"retries: {retries!r} must be a whole number >= 0", "e.g. --retries 2")
    if timeout is not None and (not isinstance(timeout, (int, float)) or not timeout > 0):
        raise InvalidInput(f"timeout: {timeout!r} must be seconds > 0", "e.g. --timeout 3600")
    pipeline = load_pipeline(root)
    check_stages(list(stages or []), list(pipeline.stages))
    return ScheduleSpec(
        name=name,
        cron=expr,
        stages=list(stages or []),
        params=parse_params(params),
        catchup=catchup,  # type: ignore[arg-type]
        retries=retries,
        timeout=timeout,
        timezone=timezone or None,
        on_failure=on_failure or None,
        source="cli",
    )
