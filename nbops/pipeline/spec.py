"""``nbops.yaml``: read it (:func:`load`) into the pipeline model, so each problem is a ConfigError
at file:line:column that says the fix; the parameters and sweep grid of a stage.

The concerns live in their own modules: the model in :mod:`nbops.pipeline.config`, the
position-keeping YAML reader in :mod:`nbops.pipeline.yaml_positions`, pydantic's errors in plain
words in :mod:`nbops.pipeline.config_errors`. The model's names are importable from here too.
"""

from __future__ import annotations

import itertools
import re
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
    RESOURCES_HINT,
    Drift,
    Gate,
    Key,
    Pipeline,
    Position,
    Schedule,
    Stage,
    is_memory,
    parse_check,
    resource_problem,
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
    "expand_out",
    "is_per_point",
    "load",
    "out_names",
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
    _check_templates(pipeline)
    _check_resources(pipeline)
    return pipeline


def _check_resources(p: Pipeline) -> None:
    """Each amount of a stage's ``resources:`` fits its key (``memory:`` a size, every other
    resource a positive number), and ``memory`` is given once: an error at the value's line."""
    for name, stage in p.stages.items():
        memory: list[str] = []
        for key, value in stage.resources.items():
            at = ("stages", name, "resources", key)
            problem = resource_problem(key, value)
            if problem is not None:
                raise p.error(
                    f"stage {name!r}: resources.{key} {problem}", RESOURCES_HINT, *at, value=True
                )
            if is_memory(key):
                memory.append(key)
            if len(memory) > 1:
                raise p.error(
                    f"stage {name!r}: resources gives memory twice ({memory[0]}, {memory[1]})",
                    "keep one memory: key",
                    *at,
                )


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


# --- per-point outs: ${NAME} in a sweep stage's outs ----------------------------------------------
TEMPLATE_RE = re.compile(r"\$\{([^{}]*)\}")
"""``${NAME}`` in an out of a sweep stage: the value of parameter NAME of each point."""
PLAIN_VALUE = (str, int, float, bool)
TEMPLATE_HINT = (
    "name each point's own files with a swept parameter, like "
    "outs: [models/model-C${C}.pkl] with sweep: {C: [0.1, 1.0]}"
)


def is_per_point(out: str) -> bool:
    """Whether an out names each sweep point's own files (it holds ``${...}``)."""
    return "${" in out


def out_names(out: str) -> list[str]:
    """The parameter names an out's ``${NAME}`` placeholders refer to, in order."""
    return [m.group(1) for m in TEMPLATE_RE.finditer(out)]


def template_problem(out: str) -> str | None:
    """Why an out's ``${...}`` placeholders are malformed (a sentence after the out), or None."""
    if "${" in TEMPLATE_RE.sub("", out):
        return "has a '${' without its closing '}' (or one inside another)"
    for name in out_names(out):
        if not name.isidentifier():
            return f"has ${{{name}}}, which is not a parameter name (write ${{C}}, ${{seed}})"
    return None


def value_text(value: Any) -> str | None:
    """A parameter value as it appears in a per-point out's path: as Python's ``str()`` writes
    it (``0.1``, ``1.0``, ``True``), which is what ``f"model-C{C}.pkl"`` in the notebook
    gives; None for a value that cannot be part of a file name (a list, a mapping, None, text
    with '/', empty, '.' or '..')."""
    if not isinstance(value, PLAIN_VALUE):
        return None
    text = str(value)
    if not text or "/" in text or "\\" in text or text in (".", ".."):
        return None
    if any(ord(ch) < 32 for ch in text):
        return None
    return text


def expand_out(out: str, params: dict[str, Any]) -> str:
    """An out with each ``${NAME}`` replaced by the point's value of NAME (see
    :func:`value_text`); a ParameterError naming the out and the value when one cannot be."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in params:
            raise ParameterError(
                f"out {out!r}: the point has no parameter {name!r}",
                "name a parameter of the stage's sweep: or params: in ${...}",
            )
        text = value_text(params[name])
        if text is None:
            raise ParameterError(
                f"out {out!r}: {name}={params[name]!r} cannot be part of a file name",
                "sweep plain values (numbers, words without '/') for a parameter its outs name",
            )
        return text

    return TEMPLATE_RE.sub(value, out)


def _check_templates(p: Pipeline) -> None:
    """Every ``${NAME}`` in an out is well formed, in a stage with ``sweep:``, names a parameter
    of its sweep or params, and the out's names cover every swept key (else two points write
    the same file). No ``${`` in a dep (deps are not expanded). A shared out that is a single
    file is refused when the stage runs (:func:`shared_file_error`): only then is it known."""
    for name, stage in p.stages.items():
        for i, dep in enumerate(stage.deps):
            if is_per_point(dep):
                raise p.error(
                    f"stage {name!r}: dep {dep!r} holds ${{...}}, which only a sweep stage's "
                    "outs may (deps are not expanded per point)",
                    "name the file itself, or the folder that holds every point's files "
                    "(like models)",
                    "stages",
                    name,
                    "deps",
                    i,
                    value=True,
                )
        for i, out in enumerate(stage.outs):
            at = ("stages", name, "outs", i)
            if not is_per_point(out):
                continue
            problem = template_problem(out)
            if problem is not None:
                raise p.error(
                    f"stage {name!r}: out {out!r} {problem}", TEMPLATE_HINT, *at, value=True
                )
            if not stage.sweep:
                raise p.error(
                    f"stage {name!r}: out {out!r} names ${{{out_names(out)[0]}}}, but the stage "
                    "has no sweep: (${...} names each sweep point's own files)",
                    "add a sweep: to the stage, or write the path without ${...}",
                    *at,
                    value=True,
                )
            known = [*stage.sweep, *(k for k in stage.params if k not in stage.sweep)]
            for ref in out_names(out):
                if ref not in known:
                    raise p.error(
                        f"stage {name!r}: out {out!r} names ${{{ref}}}, which is not a "
                        "parameter of its sweep: or params:",
                        "known here: " + ", ".join(known),
                        *at,
                        value=True,
                    )
            missing = [k for k in stage.sweep if k not in out_names(out)]
            if missing:
                raise p.error(
                    f"stage {name!r}: out {out!r} does not name the swept ${{{missing[0]}}}, so "
                    "several points would write the same file",
                    f"put ${{{missing[0]}}} in its path too",
                    *at,
                    value=True,
                )


def shared_file_error(p: Pipeline, stage: str, out: str, swept: list[str]) -> ConfigError:
    """The error for an out of a sweep stage without ``${...}`` (shared by every point) that is
    a single file, which every point would overwrite: at the out's line in nbops.yaml. ``swept``:
    the keys the points differ in (the hint puts them in the path)."""
    st = p.stages[stage]
    i = st.outs.index(out) if out in st.outs else 0
    keys = swept or list(st.sweep) or ["C"]
    return p.error(
        f"stage {stage!r}: out {out!r} is one file shared by every point of the sweep, so each "
        "point would overwrite it",
        f"name each point's own file with ${{...}} (like {_suggest(out, keys)}), or make the "
        "out a folder the points add their files to",
        "stages",
        stage,
        "outs",
        i,
        value=True,
    )


def _suggest(out: str, keys: list[str]) -> str:
    stem, dot, ext = out.rpartition(".")
    tail = "-".join(f"{k}${{{k}}}" for k in keys)
    return f"{stem}-{tail}.{ext}" if dot and "/" not in ext else f"{out}-{tail}"


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
