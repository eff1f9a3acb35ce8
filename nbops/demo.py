"""``nbops demo``: run the example pipeline on the embedded store and say where to look."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

from nbops import envvars, project
from nbops.errors import Exit, InvalidInput, NotFound, StageFailed

QUICKSTART = "tracking_quickstart.ipynb"


def examples_source() -> Path:
    """The example project: the checkout's example_notebooks/, or the copy inside the wheel."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "example_notebooks", here / "examples"):
        if (candidate / "nbops.yaml").is_file():
            return candidate
    raise NotFound(
        "the example notebooks are not installed with this nbops",
        "reinstall nbops (pip install nbops) or run from a source checkout",
    )


def project_dir(requested: str | None) -> Path:
    src = examples_source()
    if requested:
        if "\x00" in requested:
            raise InvalidInput("--dir contains a NUL character", "name a directory")
        target = Path(requested).resolve()
    elif src.name == "example_notebooks" and Path.cwd().resolve() in (src.parent, src):
        return src  # a source checkout: run the example in place
    else:
        target = Path.cwd() / "nbops-demo"
    if target.resolve() != src.resolve():
        if target.exists() and not target.is_dir():
            raise InvalidInput(
                f"--dir {str(target)[:200]!r} is a file, not a directory",
                "name a new or existing directory for the example project",
            )
        try:
            shutil.copytree(
                src,
                target,
                dirs_exist_ok=True,
                ignore=shutil.ignore_patterns(
                    ".nbops", ".ipynb_checkpoints", "*.pyc", "data", "models", "reports"
                ),
            )
        except (OSError, shutil.Error) as exc:
            why = getattr(exc, "strerror", None) or str(exc).splitlines()[0][:200]
            raise InvalidInput(
                f"the example project cannot be copied into {str(target)[:200]!r}: {why}",
                "name a writable directory with --dir",
            ) from None
    return target


def run_demo(args: argparse.Namespace) -> int:
    """Run the example pipeline (prepare -> train sweep -> evaluate) on the embedded store."""
    from nbops.pipeline.runner import Runner

    proj = project_dir(getattr(args, "dir", None))
    project.state_dir(proj)  # makes proj a project root: its store is proj/.nbops/mlflow.db
    env_before = dict(os.environ)
    os.environ[envvars.PROJECT_ROOT] = str(proj)
    os.environ.pop(envvars.MLFLOW_TRACKING_URI, None)  # the demo is about the embedded store
    print(
        f"nbops demo: the example pipeline in {proj} (store {project.default_tracking_uri(proj)})",
        flush=True,
    )
    where = _cd_target(proj)  # from where the user is (the run may change directory)
    t0 = time.perf_counter()
    try:
        code = Runner(proj).run()
    finally:
        os.environ.clear()
        os.environ.update(env_before)
    if code != Exit.OK:
        raise StageFailed(
            "the example pipeline failed (see above)",
            f"the executed notebooks are under {proj / '.nbops' / 'runs'}",
        )
    print(f"nbops demo: done in {time.perf_counter() - t0:.1f} s. Where to look (paste it):")
    for line in where_to_look(where):
        print(f"  {line}")
    sys.stdout.flush()
    return Exit.OK


def _cd_target(proj: Path) -> str | None:
    """How to reach ``proj`` from the current directory: None when already there, else the
    relative path when it goes down, the absolute one when it would climb (``../..``)."""
    here = Path.cwd().resolve()
    if proj.resolve() == here:
        return None
    rel = os.path.relpath(proj, here)
    return rel if not rel.startswith("..") else str(proj)


def where_to_look(cd: str | None) -> list[str]:
    """The demo's closing lines: one ``cd`` (none when already there), then commands that run
    from there one after the other; the one that keeps running (the UI) comes last."""
    import shlex

    return ([f"cd {shlex.quote(cd)}"] if cd is not None else []) + [
        "nbops runs      # the runs: one per stage and sweep point",
        "nbops status    # every stage up to date",
        "nbops run       # again: nothing runs, every stage is up to date (under a second)",
        f"nbops ui        # MLflow's UI on http://127.0.0.1:5000 until Ctrl-C; or `jupyter lab`: "
        f"{QUICKSTART}, track your own runs",
    ]
