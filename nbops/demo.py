"""``nbops demo``: run the example notebook(s) on the embedded store and say where to look."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

from nbops import project
from nbops.errors import NotFound, StageFailed

QUICKSTART = "tracking_quickstart.ipynb"


def examples_source() -> Path:
    """The example project: the checkout's example_notebooks/, or the copy inside the wheel."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "example_notebooks", here / "examples"):
        if (candidate / QUICKSTART).is_file():
            return candidate
    raise NotFound(
        "the example notebooks are not installed with this nbops",
        "reinstall nbops (pip install nbops) or run from a source checkout",
    )


def project_dir(requested: str | None) -> Path:
    src = examples_source()
    if requested:
        target = Path(requested).resolve()
    elif src.name == "example_notebooks" and Path.cwd().resolve() in (src.parent, src):
        return src  # a source checkout: run the example in place
    else:
        target = Path.cwd() / "nbops-demo"
    if target.resolve() != src.resolve():
        shutil.copytree(
            src,
            target,
            dirs_exist_ok=True,
            ignore=shutil.ignore_patterns(".nbops", ".ipynb_checkpoints", "*.pyc"),
        )
    return target


def run_demo(args: argparse.Namespace) -> int:
    import papermill as pm

    proj = project_dir(getattr(args, "dir", None))
    project.state_dir(proj)  # makes proj a project root: its store is proj/.nbops/mlflow.db
    out_dir = proj / ".nbops" / "demo"
    out_dir.mkdir(parents=True, exist_ok=True)
    nb = proj / QUICKSTART
    out = out_dir / QUICKSTART
    env_before = dict(os.environ)
    os.environ[project.ROOT_ENV] = str(proj)
    os.environ["NBOPS_NOTEBOOK"] = str(nb)
    os.environ.pop("MLFLOW_TRACKING_URI", None)  # the demo is about the embedded store
    print(f"nbops demo: running {nb} (store {project.default_tracking_uri(proj)})", flush=True)
    t0 = time.perf_counter()
    try:
        pm.execute_notebook(
            str(nb), str(out), cwd=str(proj), progress_bar=False, kernel_name="python3"
        )
    except pm.PapermillExecutionError as exc:
        raise StageFailed(
            f"{QUICKSTART} failed in cell {exc.exec_count}: {exc.ename}: {exc.evalue}",
            f"open {out} to see the error",
            stage="demo",
            cell=exc.exec_count,
            notebook=str(out),
        ) from exc
    finally:
        os.environ.clear()
        os.environ.update(env_before)
    took = time.perf_counter() - t0
    rel = os.path.relpath(proj)
    print(f"nbops demo: done in {took:.1f} s; executed notebook: {out}")
    print("where to look:")
    print(f"  cd {rel} && nbops runs          # the runs, in the terminal")
    print(f"  cd {rel} && nbops ui            # MLflow's UI on http://127.0.0.1:5000")
    print(f"  cd {rel} && jupyter lab         # open {QUICKSTART} and track your own runs")
    sys.stdout.flush()
    return 0
