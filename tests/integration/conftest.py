"""Helpers of the server handler tests: the nbops API through pytest-jupyter's jp_fetch."""

from __future__ import annotations

import json
from typing import Any

import pytest
from tornado.httpclient import HTTPClientError


@pytest.fixture
def api(jp_fetch: Any) -> Any:
    """``await api("runs", run_id)``: GET (or ``method=``/``body=``) /nbops/api/..., parsed."""

    async def call(*parts: str, **kw: Any) -> Any:
        resp = await jp_fetch("nbops", "api", *parts, **kw)
        return json.loads(resp.body) if resp.body else None

    return call


async def error_of(jp_fetch: Any, *parts: str, **kw: Any) -> tuple[int, dict[str, Any]]:
    """The status and JSON body of a request that must fail (a body that is not JSON fails)."""
    with pytest.raises(HTTPClientError) as info:
        await jp_fetch("nbops", "api", *parts, **kw)
    resp = info.value.response
    assert resp is not None
    try:
        body = json.loads(resp.body) if resp.body else {}
    except ValueError:
        raise AssertionError(f"{parts}: not JSON: {resp.body[:200]!r}") from None
    return info.value.code, body
