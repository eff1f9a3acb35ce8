"""``nbops.yaml``: read it (:func:`load`) into the pipeline model, so each problem is a ConfigError
at file:line:column that says the fix; the parameters and sweep grid of a stage.

The concerns live in their own modules: the model in :mod:`nbops.pipeline.config`, the
position-keeping YAML reader in :mod:`nbops.pipeline.yaml_positions`, pydantic's errors in plain
words in :mod:`nbops.pipeline.config_errors`. The model's names are importable from here too.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from nbops.errors import ConfigError, ParameterError
from nbops.pipeline import paths
from nbops.pipeline.config import (
    ALLOWED,
    CHECK_HINT,
    CHECK_RE,
    NAME_HINT,
    NAME_RE,
    Drift,
    Gate,
    Key,
    Pipeline,
    Position,
    Schedule,
    Stage,
    parse_check,
)
from nbops.pipeline.config_errors import describe_value, first_error
from nbops.pipeline.yaml_positions import PositionReader, compose

__all__ = [
    "ALLOWED",
    "CHECK_HINT",
    "CHECK_RE",
    "NAME_HINT",
    "NAME_RE",
    "Drift",
    "Gate",
    "Key",
    "Pipeline",
    "Position",
    "Schedule",
    "Stage",
    "load",
    "parse_check",
    "resolve_params",
    "sweep_points",
]


def _read_text(path: Path) -> str:
    file = str(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            f"{path.name} does not exist",
            f"create {path.name} at the project root with a `stages:` section (see README: "
            "Pipelines), or run nbops in the folder that has it",
            file=file,
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read it: {exc.strerror or exc}", None, file=file) from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(
            f"byte {raw[exc.start]:#04x} is not UTF-8 text",
            "save the file as UTF-8",
            file=file,
            line=line,
        ) from None


def _refuse_stage_names(data: dict[str, Any], shell: Pipeline) -> None:
    """A stage's name is its key: a ``name:`` inside it would be ignored, so it is an error."""
    stages = data.get("stages")
    for name, stage in (stages or {}).items() if isinstance(stages, dict) else ():
        if isinstance(stage, dict) and "name" in stage:
            raise shell.error(
                f"unknown key 'name' in stage {name!r}",
                "a stage is named by its key under `stages:`: remove `name:`",
                "stages",
                name,
                "name",
            )


def _validate(path: Path, text: str) -> Pipeline:
    file = str(path)
    node = compose(text, file)
    reader = PositionReader(file)
    data = reader.read(node) if node is not None else None
    shell = Pipeline.model_construct()
    shell._path, shell._keys, shell._values = path, reader.keys, reader.values
    shell._keys[()] = reader.values.get((), (1, 1))
    if data is None:
        raise ConfigError(
            "the file is empty",
            "add a `stages:` section (see README: Pipelines)",
            file=file,
            line=1,
        )
    if not isinstance(data, dict):
        raise shell.error(
            "the top level must be a mapping (experiment:, stages:, ...), got "
            + describe_value(data),
            "start with `stages:`",
        )
    _refuse_stage_names(data, shell)
    try:
        pipeline = Pipeline.model_validate(data)
    except ValidationError as exc:
        raise first_error(shell, exc) from None
    pipeline._path, pipeline._keys, pipeline._values = path, shell._keys, shell._values
    _check_paths(pipeline)
    return pipeline


def _named_files(p: Pipeline) -> list[tuple[Key, str, paths.Kind, str]]:
    """Every file nbops.yaml names: (its key, the path, what nbops does with it, how to say it)."""
    found: list[tuple[Key, str, paths.Kind, str]] = []
    for name, stage in p.stages.items():
        found.append((("stages", name, "notebook"), stage.notebook, "notebook", "notebook"))
        found += [(("stages", name, "deps", i), d, "dep", "dep") for i, d in enumerate(stage.deps)]
        found += [(("stages", name, "outs", i), o, "out", "out") for i, o in enumerate(stage.outs)]
    if p.drift is not None:
        found.append((("drift", "reference"), p.drift.reference, "data", "table"))
        found.append((("drift", "current"), p.drift.current, "data", "table"))
    return found


def _check_paths(p: Pipeline) -> None:
    """No path nbops.yaml names leads nbops to write outside the project root, into its own
    state, or to read what never ends (see :mod:`nbops.pipeline.paths`); the first refused path
    in the file is the error, at its line and column."""
    refused: list[tuple[Position, Key, str, str]] = []
    for key, rel, kind, noun in _named_files(p):
        found = paths.refusal(p.root, rel, kind)
        if found is not None:
            owner = f"stage {key[1]!r}: " if key[0] == "stages" else "drift: "
            at = p.where(*key, value=True) or (0, 0)
            refused.append((at, key, f"{owner}{noun} {rel!r} {found[0]}", found[1]))
    if refused:
        _, key, message, hint = min(refused, key=lambda r: r[0])
        raise p.error(message, hint, *key, value=True)


def load(path: Path) -> Pipeline:
    """Read and validate nbops.yaml; every problem is a ConfigError at file:line:column."""
    path = Path(path)
    try:
        return _validate(path, _read_text(path))
    except ConfigError:
        raise
    except Exception as exc:  # a bug of ours must still name the file, never a traceback
        raise ConfigError(
            f"cannot load it ({type(exc).__name__}: {exc})",
            "this is a bug in nbops: please report it with the file",
            file=str(path),
        ) from None


# --- parameters ---------------------------------------------------------------------------------
def resolve_params(stage: Stage, overrides: dict[str, Any]) -> dict[str, Any]:
    """The stage's ``params:`` with command-line overrides on top."""
    return {**stage.params, **overrides}


def sweep_points(
    stage: Stage, extra_sweep: dict[str, list[Any]] | None = None
) -> list[dict[str, Any]]:
    """The grid of a stage's ``sweep:`` plus ``--sweep`` values (which replace the same key), one
    dict per point, in key order; ``[{}]`` when nothing is swept."""
    grid = {**stage.sweep, **(extra_sweep or {})}
    for key, values in grid.items():
        if not values:
            raise ParameterError(
                f"stage {stage.name!r}: sweep of {key!r} has no values",
                f"give at least one: --sweep {key}=a,b",
            )
    keys = list(grid)
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*grid.values())]
