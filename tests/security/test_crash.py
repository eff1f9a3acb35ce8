"""What is not bad input still never kills the server or answers HTML: a store that turns
unreadable under it is a 503 saying so, a bug in a handler a logged JSON 500, and the server
answers normally once the fault is gone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.integration.server_seed import small_experiment
from tests.security.conftest import alive, error_of


@pytest.fixture(scope="module")
def seeded(sec_project: Path) -> dict[str, Any]:
    return small_experiment(sec_project)  # this module damages its store: its own, plain one


@pytest.fixture
def unreadable_store(sec_project: Path, seeded: dict) -> Any:
    """The store's files replaced by garbage before the server starts; restore() puts them
    back (a half-copied or damaged mlflow.db, as a crashed copy or a full disk leaves it)."""
    db = sec_project / ".nbops" / "mlflow.db"
    files = [db, db.with_name("mlflow.db-wal"), db.with_name("mlflow.db-shm")]
    saved = {f: f.read_bytes() for f in files if f.exists()}
    for f in files[1:]:
        f.unlink(missing_ok=True)
    db.write_bytes(b"this is not a database" * 1000)

    def restore() -> None:
        for f, data in saved.items():
            f.write_bytes(data)

    yield restore
    restore()


async def test_an_unreadable_store_is_a_503_and_the_server_recovers(
    unreadable_store: Any, api: Any, jp_fetch: Any, seeded: dict
) -> None:
    for parts in (("runs",), ("experiments",), ("runs", seeded["run-0"]), ("compare",)):
        code, body = await error_of(
            jp_fetch, *parts, params={"run_ids": f"{seeded['run-0']},{seeded['run-1']}"}
        )
        assert code == 503 and body["error"] == "unavailable", (parts, body)
        assert "tracking store" in body["message"]
    unreadable_store()
    await alive(jp_fetch)
    assert (await api("runs", params={"experiment": "iris"}))["total"] == 5


async def test_an_unexpected_error_is_a_logged_json_500(
    jp_fetch: Any, jp_serverapp: Any, seeded: dict, caplog: pytest.LogCaptureFixture
) -> None:
    ctx = jp_serverapp.web_app.settings["nbops"]
    real = ctx.reader

    def broken() -> Any:  # a bug cannot be produced on purpose: this stands in for one
        raise ZeroDivisionError("a bug")

    ctx.reader = broken
    try:
        code, body = await error_of(jp_fetch, "runs")
    finally:
        ctx.reader = real
    assert code == 500 and body["error"] == "internal"
    assert "ZeroDivisionError" in body["message"] and "log" in body["message"]
    assert any("nbops: GET" in r.getMessage() and r.exc_info for r in caplog.records)
    await alive(jp_fetch)
