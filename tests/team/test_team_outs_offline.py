"""Outs made while the tracking server is down: ``nbops run`` keeps them in ``.nbops/cache/`` and
says ``nbops push`` sends them; once the server is back, ``nbops sync`` delivers the runs and
``nbops push`` the outs, and a teammate's clone fetches them instead of running the stage."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from tests.conftest import nbops_cli, notebook, states
from tests.team.conftest import own_server, unique
from tests.team.servers import MlflowServer, Postgres


def _cli(root: Path, server: MlflowServer, *args: str) -> Any:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "NBOPS_"))}
    env.update(server.env_for())
    env["NBOPS_PROJECT_ROOT"] = str(root)
    return nbops_cli(*args, cwd=root, env=env)


def _project(root: Path, experiment: str) -> Path:
    (root / ".nbops").mkdir(parents=True)
    notebook(
        root / "make.ipynb",
        ("n = 1", ["parameters"]),
        "from pathlib import Path\nPath('out.txt').write_text(f'made with n={n}\\n' * 1000)",
    )
    (root / "nbops.yaml").write_text(
        f"experiment: {experiment}\nstages:\n  make:\n    notebook: make.ipynb\n"
        "    params: {n: 7}\n    outs: [out.txt]\n"
    )
    return root


def test_outs_made_while_the_server_is_down_are_pushed_later(
    postgres: Postgres, tmp_path: Path
) -> None:
    server = own_server(postgres, tmp_path / "srv")
    try:
        a = _project(tmp_path / "a" / "proj", unique("offline"))
        server.kill()
        down = _cli(a, server, "run")
        assert down.returncode == 1, down.stdout + down.stderr  # the runs stay spooled
        assert "1 out file not shared: the tracking server is unreachable" in down.stderr
        assert "`nbops push` sends them" in down.stderr
        assert "Traceback" not in down.stderr
        assert (a / "out.txt").read_text().startswith("made with n=7")
        server.start()
        push = _cli(a, server, "push")
        assert push.returncode == 0, push.stdout + push.stderr
        assert push.stdout.strip() == "pushed 1 file (14.0 kB), 0 already there"
        sync = _cli(a, server, "sync")
        assert sync.returncode == 0, sync.stdout + sync.stderr
        # a teammate's clone: the run sync delivered is its record, the out is fetched
        b = tmp_path / "b" / "proj"
        shutil.copytree(a, b, ignore=shutil.ignore_patterns(".nbops", "out.txt"))
        (b / ".nbops").mkdir()
        run = _cli(b, server, "run")
        assert run.returncode == 0, run.stdout + run.stderr
        assert states(run.stdout) == {"make": "fetched"}, run.stdout
        assert (b / "out.txt").read_bytes() == (a / "out.txt").read_bytes()
        again = _cli(a, server, "push", "--json")
        assert '"already": 1' in again.stdout and '"files": 0' in again.stdout
    finally:
        server.stop()
