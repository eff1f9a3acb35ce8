"""Path-taking endpoints under traversal: ``../``, encoded dots and slashes, absolute paths, NUL
bytes, backslashes, over-long names, symlinks out. Every answer is a 4xx JSON error that leaks
nothing, and the server answers afterwards."""

from __future__ import annotations

import json
from typing import Any

from tests.security.conftest import alive, concrete, methods_of, nbops_routes

SECRETS = (b"top secret", b"root:", b"ELF")

TRAVERSALS = [
    "../../../../../../secret.txt",
    "reports/../../../../../secret.txt",
    "%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/secret.txt",
    "%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2fsecret.txt",
    "..%2f..%2f..%2f..%2f..%2fsecret.txt",
    "%252e%252e/%252e%252e/secret.txt",
    "..%5c..%5c..%5c..%5csecret.txt",
    "..\\..\\..\\..\\secret.txt",
    "%2fetc%2fpasswd",
    "/etc/passwd",
    "//etc/passwd",
    "~/.bashrc",
    "~root/.bashrc",
    "reports/%00",
    "reports%00/note.txt",
    "reports/note.txt%00.png",
    "%00",
    "%c0%ae%c0%ae/secret.txt",
    "%ff%fe",
    "a" * 300,
    "a/" * 600 + "x",
    "x" * 5000,
    "reports/" + "%2e%2e/" * 50 + "etc/passwd",
    "file:///etc/passwd",
    "reports",
    "",
]


def _safe(code: int, body: bytes, where: str) -> None:
    assert 400 <= code < 500, (where, code, body[:200])
    assert not any(s in body for s in SECRETS), (where, body[:200])
    try:
        data = json.loads(body)
    except ValueError:
        raise AssertionError(f"{where}: {code} not JSON: {body[:300]!r}") from None
    assert set(data) == {"error", "message"}, (where, data)


async def test_artifact_paths_never_leave_the_run(
    raw_fetch: Any, jp_fetch: Any, seeded: dict
) -> None:
    rid = seeded["run-0"]
    code, body = await raw_fetch(f"runs/{rid}/artifacts/reports/note.txt")
    assert code == 200 and body == b"hello"
    for bad in TRAVERSALS:
        code, body = await raw_fetch(f"runs/{rid}/artifacts/{bad}")
        _safe(code, body, bad)
    await alive(jp_fetch)


async def test_links_in_a_run_directory_are_not_followed_out(
    raw_fetch: Any, jp_fetch: Any, seeded: dict
) -> None:
    cases = {
        "passwd-link": ["notebook/a.ipynb", "notebook/b.ipynb"],
        "dangling-link": ["notebook/train.ipynb"],
        "fifo": ["notebook/train.ipynb"],
        "dir-link": ["escape/bin/ls", "escape", "loop", "loop/x"],
        "dir-is-link": ["bin/ls"],
        "uri-usr": ["bin/ls", "../etc/passwd"],
        "uri-etc-plain": ["passwd"],
        "uri-traversal": ["secret.txt", "proj/secret.txt"],
        "uri-remote-host": ["x"],
    }
    for name, paths in cases.items():
        for p in paths:
            code, body = await raw_fetch(f"runs/{seeded[name]}/artifacts/{p}")
            _safe(code, body, f"{name}: {p}")
    code, body = await raw_fetch(f"runs/{seeded['passwd-link']}/artifacts/inner-link.txt")
    assert code == 200 and body == b"fine"  # a link that stays inside the run is a file of it
    await alive(jp_fetch)


async def test_every_path_taking_route_refuses_traversal(
    raw_fetch: Any, jp_fetch: Any, jp_serverapp: Any, seeded: dict
) -> None:
    """Each route with a path group gets each hostile value in each group (GET and DELETE; the
    writes are refused for other reasons first or hit names that do not exist)."""
    hostile = [
        "..",
        "%2e%2e",
        "..%2f..%2fetc",
        "%00",
        "a%00b",
        "x" * 3000,
        "%ff",
        "%27%20OR%201%3D1%20--",
        "%2fetc%2fpasswd",
    ]
    tried = 0
    for pattern, handler in nbops_routes(jp_serverapp):
        if "(" not in pattern:
            continue
        for method in methods_of(handler):
            if method not in ("get", "delete"):
                continue
            for value in hostile:
                parts = concrete(pattern, "\x01")
                n = sum(1 for p in parts if p in ("\x01", "x"))
                for i in range(n):  # hostile value in one group, real values in the others
                    filled, k = [], 0
                    for p in parts:
                        if p in ("\x01", "x"):
                            good = seeded["run-0"] if p == "\x01" else "acc"
                            filled.append(value if k == i else good)
                            k += 1
                        else:
                            filled.append(p)
                    code, body = await raw_fetch("/".join(filled), method=method.upper())
                    _safe(code, body, f"{method} {'/'.join(filled)[:120]}")
                    tried += 1
    assert tried > 50
    await alive(jp_fetch)
