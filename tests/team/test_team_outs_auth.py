"""Shared outs on a server with MLflow's basic-auth: the first push creates the blob store; a
teammate with only READ on it is refused in one line naming the server, the user and the
experiment, and a wrong password is named as such; no password is ever printed."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from nbops.pipeline.hashing import content_digest
from tests.conftest import nbops_cli
from tests.team.conftest import unique
from tests.team.servers import MlflowServer


def _blob(root: Path, data: bytes) -> str:
    """Put ``data`` into the project's out cache, as ``nbops run`` would; its digest."""
    tmp = root / "f"
    tmp.write_bytes(data)
    digest = content_digest(tmp)
    dst = root / ".nbops" / "cache" / digest[:2] / digest
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp.rename(dst)
    return digest


def _push(root: Path, server: MlflowServer, user: str, password: str, *args: str) -> Any:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "NBOPS_"))}
    env.update(server.env_for(user, password))
    env["NBOPS_PROJECT_ROOT"] = str(root)
    env["MLFLOW_HTTP_REQUEST_TIMEOUT"] = "120"  # the basic-auth app is slow on a busy machine
    return nbops_cli("push", *args, cwd=root, env=env)


def test_push_needs_edit_on_the_blob_store_and_says_so(
    auth_server: MlflowServer, tmp_path: Path
) -> None:
    root = tmp_path / "proj"
    (root / ".nbops").mkdir(parents=True)
    _blob(root, f"{unique('content')}\n".encode() * 100)
    first = _push(root, auth_server, "admin", auth_server.admin_password, "--json")
    assert first.returncode == 0, first.stdout + first.stderr
    report = json.loads(first.stdout)
    assert report["files"] >= 1 and report["bytes"] >= 100
    assert auth_server.admin_password not in first.stdout + first.stderr

    reader = unique("reader")
    password = auth_server.add_user(reader)  # the server's default permission: READ
    again = _push(root, auth_server, reader, password)
    assert again.returncode == 0, again.stdout + again.stderr  # nothing to send: READ suffices
    assert "0 files (0 B)" in again.stdout
    _blob(root, f"{unique('more')}\n".encode())
    denied = _push(root, auth_server, reader, password)
    assert denied.returncode == 2, denied.stdout + denied.stderr
    assert "Traceback" not in denied.stderr
    assert f"refused user {reader!r}" in denied.stderr and "nbops-blobs" in denied.stderr
    assert "HTTP 403" in denied.stderr and password not in denied.stderr

    wrong = _push(root, auth_server, reader, "not-the-password")
    assert wrong.returncode == 2, wrong.stdout + wrong.stderr
    assert "wrong password" in wrong.stderr and "not-the-password" not in wrong.stderr
