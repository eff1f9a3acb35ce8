"""A run's files, and the guard that keeps every read inside the run's artifact directory or the
project's ``.nbops/runs/<run_id>/``: paths are resolved (symlinks too) and checked to be inside."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath
from typing import Any

from nbops.errors import InvalidInput, NotFound
from nbops.server.reader import RunInfo, local_path


def inside(base: Path, rel: str) -> Path:
    """``base/rel`` resolved, or InvalidInput when rel is absolute or leaves base."""
    p = PurePosixPath(rel.replace("\\", "/"))
    if not rel or p.is_absolute() or ".." in p.parts or rel.startswith("~"):
        raise InvalidInput(
            f"artifact path {rel[:200]!r} must be relative and stay inside the run's artifacts",
            "use a path from the run's `artifacts` list, e.g. notebook/train.ipynb",
        )
    root = base.resolve()
    target = (root / p).resolve()
    if not target.is_relative_to(root):
        raise InvalidInput(
            f"artifact path {rel[:200]!r} leaves the run's artifact directory",
            "use a path from the run's `artifacts` list",
        )
    return target


def list_artifacts(info: RunInfo, client: Any = None) -> list[str]:
    """Relative paths of every artifact file of the run, recursively, sorted."""
    base = local_path(info.artifact_uri)
    if base is not None:
        if not base.is_dir():
            return []
        out = []
        root = base.resolve()
        for d, _dirs, files in os.walk(root):
            for f in files:
                out.append((Path(d) / f).relative_to(root).as_posix())
        return sorted(out)
    if client is None:
        return []
    out, todo = [], [None]
    while todo:
        for fi in client.list_artifacts(info.summary.run_id, todo.pop()):
            (todo.append(fi.path) if fi.is_dir else out.append(fi.path))
    return sorted(out)


def executed_notebook(info: RunInfo, state_dir: Path, artifacts: list[str]) -> Path | None:
    """The run's executed notebook: ``.nbops/runs/<run_id>/*.ipynb`` (pipeline stages keep it
    there), else an .ipynb artifact (``notebook/`` first)."""
    kept = state_dir / "runs" / info.summary.run_id
    if kept.is_dir():
        root = state_dir.resolve()
        found = sorted(p for p in kept.glob("*.ipynb") if p.resolve().is_relative_to(root))
        if found:
            return found[0]
    base = local_path(info.artifact_uri)
    if base is None:
        return None
    nbs = [a for a in artifacts if a.endswith(".ipynb")]
    nbs.sort(key=lambda a: (not a.startswith("notebook/"), a))
    for a in nbs:
        p = inside(base, a)
        if p.is_file():
            return p
    return None


def artifact_file(info: RunInfo, rel: str) -> Path:
    base = local_path(info.artifact_uri)
    if base is None:
        raise NotFound(
            f"run {info.summary.run_id} keeps its artifacts in {info.artifact_uri}, "
            "which this server does not read",
            "download it with `mlflow artifacts download`",
        )
    p = inside(base, rel)
    if not p.is_file():
        raise NotFound(
            f"run {info.summary.run_id} has no artifact {rel!r}",
            "see the run's `artifacts` list (GET /nbops/api/runs/<run_id>)",
        )
    return p
