"""The server under attack: one seeded store per module (MLflow's schema and the seed cost
seconds), a fresh in-process jupyter_server per test (pytest-jupyter), and runs planted with the
artifacts an attacker or an accident leaves: a store row pointing at /usr, notebook links to
/etc/passwd and to nothing, a FIFO, a directory link out, a directory of more files than a
listing reads."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import api, error_of  # noqa: F401 - fixtures and helper
from tests.integration.server_seed import notebook_json, small_experiment

API_PREFIX = "/nbops/api"


def _artifact_dir(root: Path, client: Any, run_id: str) -> Path:
    from urllib.parse import unquote, urlparse

    uri = client.get_run(run_id).info.artifact_uri
    d = Path(unquote(urlparse(uri).path))
    d.mkdir(parents=True, exist_ok=True)
    return d


def seed_attacks(root: Path) -> dict[str, Any]:
    """small_experiment, plus runs in experiment ``attack`` whose files misbehave."""
    from mlflow.tracking import MlflowClient

    from nbops.mlflow.store import open_store

    ids = small_experiment(root)
    db = root / ".nbops" / "mlflow.db"
    store = open_store(f"sqlite:///{db}")
    client = MlflowClient(f"sqlite:///{db}")
    exp = store.experiment_id("attack")
    nb_text = json.dumps(notebook_json([("x = 1", "code", "1\n")]))
    (root / "secret.txt").write_text("top secret")

    def run(name: str) -> tuple[str, Path]:
        r = client.create_run(exp, run_name=name)
        client.set_terminated(r.info.run_id, "FINISHED")
        ids[name] = r.info.run_id
        return r.info.run_id, _artifact_dir(root, client, r.info.run_id)

    # a tracked notebook run that can be re-run (its notebook declares p0..p9)
    from tests.conftest import notebook

    nb = notebook(
        root / "attack.ipynb", ("\n".join(f"p{i} = 0" for i in range(10)), ["parameters"])
    )
    r = client.create_run(exp, run_name="notebook-run", tags={"nbops.notebook": str(nb)})
    client.set_terminated(r.info.run_id, "FINISHED")
    ids["notebook-run"] = r.info.run_id
    # a notebook artifact that is a link to /etc/passwd, beside a real one and a plain file
    _, d = run("passwd-link")
    (d / "notebook").mkdir()
    (d / "notebook" / "a.ipynb").symlink_to("/etc/passwd")
    (d / "notebook" / "b.ipynb").symlink_to(root / "secret.txt")
    (d / "other").mkdir()
    (d / "other" / "real.ipynb").write_text(nb_text)
    (d / "ok.txt").write_text("fine")
    (d / "inner-link.txt").symlink_to(d / "ok.txt")  # stays inside: listed and served
    # a dangling notebook link, and nothing else
    _, d = run("dangling-link")
    (d / "notebook").mkdir()
    (d / "notebook" / "train.ipynb").symlink_to(root / "no-such-file.ipynb")
    # a FIFO where the notebook would be (reading it would block a worker thread forever)
    _, d = run("fifo")
    (d / "notebook").mkdir()
    os.mkfifo(d / "notebook" / "train.ipynb")
    # a directory link out of the run, and a link loop
    _, d = run("dir-link")
    (d / "escape").symlink_to("/usr")
    (d / "loop").symlink_to(d / "loop")
    (d / "kept.txt").write_text("kept")
    # a pipeline-kept notebook (.nbops/runs/<id>/) that is a link out
    rid, _ = run("kept-link")
    kept = root / ".nbops" / "runs" / rid
    kept.mkdir(parents=True)
    (kept / "stage.ipynb").symlink_to("/etc/passwd")
    # more files than one listing reads
    _, d = run("many")
    for i in range(2100):
        (d / f"f{i:05d}.txt").write_bytes(b"")
    # store rows whose artifact_uri points outside the project
    outside = {
        "uri-usr": "file:///usr",
        "uri-etc-plain": "/etc",
        "uri-traversal": (root / ".nbops" / "artifacts" / ".." / "..").as_uri() + "/..",
        "uri-remote-host": "file://evil.example/share",
    }
    for name, uri in outside.items():
        rid, _ = run(name)
        con = sqlite3.connect(db)
        with con:
            con.execute("UPDATE runs SET artifact_uri = ? WHERE run_uuid = ?", (uri, rid))
        con.close()
    # a run directory inside the artifact root that is itself a link to /usr
    rid, d = run("dir-is-link")
    d.rmdir()
    d.symlink_to("/usr")
    ids["artifact_dir"] = d.parent
    return ids


@pytest.fixture(scope="module")
def sec_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sec") / "proj"
    (root / ".nbops").mkdir(parents=True)
    return root


@pytest.fixture(scope="module")
def seeded(sec_project: Path) -> dict[str, Any]:
    return seed_attacks(sec_project)


@pytest.fixture
def fast_path() -> bool:
    return True


@pytest.fixture
def jp_server_config(sec_project: Path, seeded: dict[str, Any], fast_path: bool) -> dict[str, Any]:
    return {
        "ServerApp": {"jpserver_extensions": {"nbops": True}},
        "NbopsApp": {"project_root": str(sec_project), "fast_path": fast_path},
    }


def nbops_routes(jp_serverapp: Any) -> list[tuple[str, type]]:
    """Every (pattern, handler class) under /nbops/api/, from the running app's own rules."""
    found: list[tuple[str, type]] = []

    def walk(router: Any) -> None:
        for rule in getattr(router, "rules", []):
            target = rule.target
            if hasattr(target, "rules"):
                walk(target)
                continue
            pattern = getattr(rule.matcher, "regex", None)
            if pattern is not None and API_PREFIX in pattern.pattern:
                found.append((pattern.pattern, target))

    walk(jp_serverapp.web_app.default_router)
    return found


def concrete(pattern: str, run_id: str) -> list[str]:
    """The parts after /nbops/api/ of a request path for a route pattern: groups filled with a
    real run id (or a name)."""
    import re

    path = pattern.rstrip("$").split(API_PREFIX, 1)[1].replace("/?", "/").rstrip("/")
    path = re.sub(r"\(\[\^/\]\+\)", run_id, path)
    path = re.sub(r"\(\.[+*]\)", "x", path)
    path = path.replace("\\", "")
    assert "(" not in path and "[" not in path, f"cannot fill the route {pattern}"
    return [p for p in path.split("/") if p]


def methods_of(handler: type) -> list[str]:
    """The HTTP methods the handler answers (defined by an nbops class, not inherited)."""
    mine = [k for k in handler.__mro__ if k.__module__.startswith("nbops.")]
    return [
        m for m in ("get", "post", "put", "patch", "delete") if any(m in k.__dict__ for k in mine)
    ]


async def alive(jp_fetch: Any) -> None:
    """The server still answers: Jupyter's own status and an nbops read."""
    ok = await jp_fetch("api", "status")
    assert ok.code == 200
    ok = await jp_fetch("nbops", "api", "experiments")
    assert ok.code == 200 and json.loads(ok.body)["experiments"]


@pytest.fixture
def raw_fetch(http_server_client: Any, jp_base_url: str, jp_auth_header: dict[str, str]) -> Any:
    """``await raw_fetch("runs/<id>/artifacts/%2e%2e/x?a=b")``: the path after /nbops/api/ sent
    exactly as written (jp_fetch escapes it); returns (status, body bytes), never raises."""

    async def fetch(path: str, **kw: Any) -> tuple[int, bytes]:
        headers = {**jp_auth_header, **kw.pop("headers", {})}
        resp = await http_server_client.fetch(
            f"{jp_base_url}nbops/api/{path}",
            headers=headers,
            raise_error=False,
            allow_nonstandard_methods=True,
            follow_redirects=False,  # Jupyter's trailing-slash redirects are answers too
            **kw,
        )
        return resp.code, resp.body or b""

    return fetch
