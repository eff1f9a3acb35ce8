"""What the server starts for a re-run or a pipeline run, and the pipeline's status: the same
``nbops run`` and the same parameters cell the CLI uses, validated before anything starts: every
parameter name and value within ``limits`` and readable by ``nbops.values.parse_value``, the
whole command line well below what the OS accepts."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from nbops import envvars, project, tags
from nbops.errors import Conflict, InvalidInput, NotFound, ParameterError
from nbops.mlflow.readers.base import RunInfo
from nbops.server import limits
from nbops.server import models as m
from nbops.server.jobs import Launch

_value = limits.param_text


def _recorded(text: str) -> str:
    """A value the store recorded, as ``-p`` text that reads back as the same value: as it was
    when ``parse_value`` accepts it, else quoted (a recorded ``*x`` stays that text)."""
    from nbops.values import parse_value

    try:
        parse_value(text, "recorded value")
    except ParameterError:
        return json.dumps(text)
    return text


def _check_params(params: dict[str, Any], declared: dict[str, Any], where: str) -> None:
    unknown = [k for k in params if k not in declared]
    if unknown:
        raise ParameterError(
            f"{where} does not declare the parameter {unknown[0]!r}",
            "its parameters cell declares: "
            + (", ".join(declared) or "nothing")
            + " (tag a cell `parameters` in Jupyter to declare more)",
        )


def _in_project(root: Path, path: str) -> Path:
    p = Path(path)
    p = (p if p.is_absolute() else root / p).resolve()
    if not p.is_relative_to(root.resolve()):
        raise Conflict(
            f"the run's notebook {path} is outside the project {root}",
            "re-run it from its own project",
        )
    if not p.is_file():
        raise NotFound(
            f"the run's notebook {path} no longer exists", "restore it, or re-run another run"
        )
    return p


def _env(root: Path, uri: str) -> dict[str, str]:
    env = {envvars.PROJECT_ROOT: str(root)}
    if not project.is_embedded(uri, root):
        env[envvars.MLFLOW_TRACKING_URI] = uri
    return env


def rerun(
    root: Path, uri: str, info: RunInfo, params: dict[str, Any], job_id: str, jobs_dir: Path
) -> Launch:
    from nbops.pipeline.notebook import declared_parameters
    from nbops.values import parse_recorded

    limits.params(params)
    run_id = info.summary.run_id
    stage = info.tags.get(tags.STAGE)
    if stage:
        from nbops.pipeline import spec as specmod

        cfg = root / project.CONFIG_FILE
        if not cfg.is_file():
            raise Conflict(
                f"run {run_id} is a run of stage {stage!r}, but {cfg} does not exist",
                "restore nbops.yaml to re-run a stage",
            )
        pipeline = specmod.load(cfg)
        if stage not in pipeline.stages:
            raise Conflict(
                f"stage {stage!r} of run {run_id} is no longer in {cfg}",
                "stages now: " + ", ".join(pipeline.stages),
            )
        nb = root / pipeline.stages[stage].notebook
        declared = declared_parameters(nb)
        _check_params(params, declared, f"stage {stage!r} ({nb.name})")
        # the run's own values (a sweep point's too), then the edits
        values: dict[str, str] = {
            k: _recorded(v) for k, v in info.summary.params.items() if k in declared
        }
        values.update({k: _value(v) for k, v in params.items()})
        summary = jobs_dir / f"{job_id}.summary.json"
        argv = [sys.executable, "-m", "nbops", "run", stage, "--force"]
        swept = pipeline.stages[stage].sweep
        for k, v in values.items():
            if k in swept:  # one point of the stage's sweep: a one-value sweep of that key
                argv += ["--sweep", f"{k}={v}"]
            else:
                argv += ["-p", f"{stage}.{k}={v}"]
        argv += ["--tag", f"{tags.RERUN_OF}={run_id}", "--summary", str(summary)]
        limits.argv(argv)
        return Launch("rerun", argv, root, _env(root, uri), run_id, stage, summary)
    if tags.PIPELINE in info.tags:
        raise Conflict(
            f"run {run_id} is the pipeline run of an `nbops run`: it executed no notebook itself",
            "re-run the pipeline with `nbops run`, or re-run one of its stage runs",
        )
    source = info.tags.get(tags.NOTEBOOK) or info.tags.get(tags.MLFLOW_SOURCE_NAME) or ""
    if not source.endswith(".ipynb"):
        raise Conflict(
            f"run {run_id} was not made by a notebook nbops knows (no nbops.stage or "
            "nbops.notebook tag)",
            "only pipeline stage runs and tracked notebook runs can be re-run",
        )
    nb = _in_project(root, source)
    declared = declared_parameters(nb)
    _check_params(params, declared, f"notebook {nb.name}")
    # the run's own parameter values, then the edits
    merged: dict[str, Any] = {
        k: parse_recorded(v) for k, v in info.summary.params.items() if k in declared
    }
    merged.update(params)
    out = jobs_dir / job_id / nb.name
    argv = [sys.executable, "-m", "papermill", str(nb), str(out), "--cwd", str(nb.parent)]
    argv += ["-y", json.dumps(merged, default=str), "--no-progress-bar"]
    limits.argv(argv)
    out.parent.mkdir(parents=True, exist_ok=True)
    env = {
        **_env(root, uri),
        envvars.TAGS: json.dumps({tags.RERUN_OF: run_id}),
        envvars.NOTEBOOK: str(nb),
        # the job then looks for the run this re-run made: its kernel waits (a little) for the
        # writer to create it rather than exiting at once (the default for notebooks)
        envvars.EXIT_GRACE: os.environ.get(envvars.EXIT_GRACE) or "2",
        # and its writer creates the run while the notebook runs, not when it is quiet
        envvars.WRITER_DEFER: os.environ.get(envvars.WRITER_DEFER) or "0",
    }
    return Launch("rerun", argv, nb.parent, env, run_id, None, None)


def pipeline_run(
    root: Path, uri: str, req: m.PipelineRunRequest, job_id: str, jobs_dir: Path
) -> Launch:
    from nbops.pipeline import spec as specmod

    limits.stages(req.stages)
    limits.params(req.params)
    cfg = root / project.CONFIG_FILE
    if not cfg.is_file():
        raise Conflict(f"no {project.CONFIG_FILE} in {root}", "create one (README: Pipelines)")
    pipeline = specmod.load(cfg)
    unknown = [s for s in req.stages if s not in pipeline.stages]
    if unknown:
        raise InvalidInput(
            f"{cfg}: no stage {unknown[0][:200]!r}", "stages: " + ", ".join(pipeline.stages)
        )
    summary = jobs_dir / f"{job_id}.summary.json"
    argv = [sys.executable, "-m", "nbops", "run", *req.stages]
    for k, v in req.params.items():
        argv += ["-p", f"{k}={_value(v)}"]
    if req.force:
        argv.append("--force")
    argv += ["--summary", str(summary)]
    limits.argv(argv)
    return Launch("pipeline", argv, root, _env(root, uri), None, None, summary)
