"""Every nbops route refuses a request without credentials, and a cookie-only write without the
XSRF token; the routes are read from the running app, so a new one is covered on its own."""

from __future__ import annotations

from typing import Any

from tests.security.conftest import alive, concrete, error_of, methods_of, nbops_routes


async def test_the_route_list_is_the_apps_own(jp_serverapp: Any) -> None:
    routes = nbops_routes(jp_serverapp)
    patterns = " ".join(p for p, _ in routes)
    for needle in (
        "runs",
        "artifacts",
        "rerun",
        "compare",
        "diff",
        "jobs",
        "pipeline",
        "schedules",
    ):
        assert needle in patterns, needle
    assert len(routes) >= 12


async def test_every_route_and_method_needs_a_token(
    jp_fetch: Any, jp_serverapp: Any, seeded: dict
) -> None:
    tried = 0
    for pattern, handler in nbops_routes(jp_serverapp):
        for method in methods_of(handler):
            parts = concrete(pattern, seeded["run-0"])
            body = "{}" if method in ("post", "put", "patch") else None
            code, resp = await error_of(
                jp_fetch,
                *parts,
                method=method.upper(),
                body=body,
                headers={"Authorization": ""},
                allow_nonstandard_methods=True,
            )
            assert code in (401, 403), (method, parts, code)
            assert resp.get("error") == "forbidden" or code == 401, resp
            tried += 1
    assert tried >= 14
    await alive(jp_fetch)


async def test_a_wrong_token_is_refused(jp_fetch: Any, seeded: dict) -> None:
    for auth in ("token nope", "token ", "Bearer x", "token " + "a" * 5000):
        code, _ = await error_of(jp_fetch, "runs", headers={"Authorization": auth})
        assert code in (401, 403), auth


async def test_cookie_only_writes_need_the_xsrf_token(
    jp_fetch: Any, jp_serverapp: Any, seeded: dict
) -> None:
    token = jp_serverapp.identity_provider.token
    login = await jp_fetch("api", "status", params={"token": token}, headers={"Authorization": ""})
    cookie = "; ".join(c.split(";", 1)[0] for c in login.headers.get_list("Set-Cookie"))
    assert cookie
    ok = await jp_fetch("nbops", "api", "runs", headers={"Authorization": "", "Cookie": cookie})
    assert ok.code == 200  # the cookie authenticates reads
    writes = 0
    for pattern, handler in nbops_routes(jp_serverapp):
        for method in methods_of(handler):
            if method == "get":
                continue
            parts = concrete(pattern, seeded["run-0"])
            for xsrf in ({}, {"X-XSRFToken": "2|00|forged|1"}):
                code, resp = await error_of(
                    jp_fetch,
                    *parts,
                    method=method.upper(),
                    body="{}" if method != "delete" else None,
                    headers={"Authorization": "", "Cookie": cookie, **xsrf},
                    allow_nonstandard_methods=True,
                )
                assert code == 403 and "xsrf" in resp["message"].lower(), (method, parts, resp)
            writes += 1
    assert writes >= 4
    await alive(jp_fetch)
