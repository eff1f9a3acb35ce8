"""Artifact serving is confined to the project's artifact root: a store row pointing elsewhere is
refused naming the run; links out, dangling links and FIFOs are skipped, so a run's detail and
notebook endpoints still answer; a directory of more files than one listing reads is capped and
the answer says so."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from nbops.server import limits
from tests.security.conftest import alive, error_of


async def test_links_out_of_a_run_are_skipped_and_the_real_notebook_served(
    api: Any, seeded: dict
) -> None:
    rid = seeded["passwd-link"]
    detail = await api("runs", rid)
    assert detail["artifacts"] == ["inner-link.txt", "ok.txt", "other/real.ipynb"]
    assert detail["has_notebook"] is True and detail["artifacts_note"] is None
    nb = await api("runs", rid, "notebook")
    assert nb["cells"][0]["source"] == "x = 1"  # not /etc/passwd, not secret.txt
    diff = await api("diff", params={"a": rid, "b": seeded["run-0"]})
    assert diff["cells"]


@pytest.mark.parametrize("name", ["dangling-link", "fifo", "kept-link"])
async def test_a_broken_notebook_link_leaves_detail_200_and_notebook_404(
    api: Any, jp_fetch: Any, seeded: dict, name: str
) -> None:
    rid = seeded[name]
    t0 = time.monotonic()
    detail = await asyncio.wait_for(api("runs", rid), 30)
    assert detail["artifacts"] == [] and detail["has_notebook"] is False
    code, body = await asyncio.wait_for(error_of(jp_fetch, "runs", rid, "notebook"), 30)
    assert code == 404 and rid in body["message"]
    code, _ = await error_of(jp_fetch, "diff", params={"a": rid, "b": seeded["run-0"]})
    assert code == 404
    assert time.monotonic() - t0 < 30  # a FIFO is never opened for reading
    await alive(jp_fetch)


async def test_directory_links_and_loops_are_not_walked(api: Any, seeded: dict) -> None:
    detail = await api("runs", seeded["dir-link"])
    assert detail["artifacts"] == ["kept.txt"]


@pytest.mark.parametrize("name", ["uri-usr", "uri-etc-plain", "uri-traversal", "dir-is-link"])
async def test_artifacts_outside_the_project_are_refused_naming_the_run(
    api: Any, jp_fetch: Any, seeded: dict, name: str
) -> None:
    rid = seeded[name]
    detail = await api("runs", rid)  # params, metrics and tags still shown
    assert detail["run_id"] == rid and detail["artifacts"] == []
    assert "outside this project's artifact root" in detail["artifacts_note"]
    assert detail["has_notebook"] is False
    code, body = await error_of(jp_fetch, "runs", rid, "artifacts", "bin/ls")
    assert code == 403 and body["error"] == "forbidden" and rid in body["message"]
    assert ".nbops/artifacts" in body["message"]


async def test_remote_file_hosts_are_not_read(api: Any, jp_fetch: Any, seeded: dict) -> None:
    rid = seeded["uri-remote-host"]
    assert (await api("runs", rid))["artifacts"] == []
    code, body = await error_of(jp_fetch, "runs", rid, "artifacts", "x")
    assert code == 404 and "does not read" in body["message"]


async def test_a_huge_artifact_directory_is_listed_in_bounded_time(api: Any, seeded: dict) -> None:
    t0 = time.monotonic()
    detail = await api("runs", seeded["many"])
    assert len(detail["artifacts"]) == limits.MAX_ARTIFACTS
    assert f"stopped after {limits.MAX_ARTIFACTS} files" in detail["artifacts_note"]
    assert time.monotonic() - t0 < 10


async def test_the_mlflow_path_confines_artifacts_the_same_way(
    jp_fetch: Any, jp_serverapp: Any, seeded: dict
) -> None:
    ctx = jp_serverapp.web_app.settings["nbops"]
    ctx.sqlite = None  # every read through MlflowClient from here on
    resp = await jp_fetch("nbops", "api", "runs", seeded["uri-usr"])
    detail = json.loads(resp.body)
    assert detail["artifacts"] == [] and "outside" in detail["artifacts_note"]
    code, _ = await error_of(jp_fetch, "runs", seeded["uri-usr"], "artifacts", "bin/ls")
    assert code == 403
    resp = await jp_fetch("nbops", "api", "runs", seeded["passwd-link"], "notebook")
    assert json.loads(resp.body)["cells"][0]["source"] == "x = 1"
