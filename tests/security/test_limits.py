"""Every input that becomes SQL, file or process work is bounded, on both read paths, with a 400
that names the parameter and the limit (31 order keys used to segfault SQLite in the server)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from nbops.server import limits
from tests.security.conftest import alive, error_of


@pytest.fixture(params=[True, False], ids=["sqlite", "mlflow"])
def fast_path(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


async def _bad(jp_fetch: Any, *parts: str, **kw: Any) -> str:
    code, body = await error_of(jp_fetch, *parts, **kw)
    assert code == 400 and body["error"] == "bad_request", (code, body)
    return str(body["message"])


async def test_order_keys_are_bounded(api: Any, jp_fetch: Any, seeded: dict) -> None:
    for n in (limits.MAX_ORDER_KEYS + 1, 31, 65, 200):
        keys = [f"params.p{i} DESC" for i in range(n)]
        msg = await _bad(jp_fetch, "runs", params={"order_by": ",".join(keys)})
        assert "order_by" in msg and f"at most {limits.MAX_ORDER_KEYS}" in msg, msg
    # as repeated arguments too
    repeated = [("order_by", f"metrics.m{i}") for i in range(31)]
    msg = await _bad(jp_fetch, "runs", params=repeated)
    assert "order_by" in msg
    ok = await api(
        "runs",
        params={"order_by": ",".join(f"params.p{i}" for i in range(limits.MAX_ORDER_KEYS))},
    )
    assert ok["total"] in (None, len(seeded)) or ok["runs"]
    # the most a request may ask for at once stays under SQLite's limits on either path
    both = await api(
        "runs",
        params={
            "order_by": ",".join(f"metrics.m{i}" for i in range(limits.MAX_ORDER_KEYS)),
            "filter": " and ".join(f"params.p{i} != 'x'" for i in range(limits.MAX_FILTER_TERMS)),
        },
    )
    assert both["runs"] == []
    msg = await _bad(jp_fetch, "runs", params={"order_by": "params." + "x" * 600})
    assert "order_by" in msg and str(limits.MAX_ORDER_CHARS) in msg
    await alive(jp_fetch)


async def test_page_size_is_bounded(jp_fetch: Any, seeded: dict) -> None:
    for bad in ("0", "-1", "1001", str(10**30), "1e3", "ten", "9" * 5000):
        msg = await _bad(jp_fetch, "runs", params={"max_results": bad})
        assert "max_results" in msg, (bad, msg)


async def test_filters_are_bounded(api: Any, jp_fetch: Any, seeded: dict) -> None:
    many = " and ".join(f"params.p{i} = 'x'" for i in range(limits.MAX_FILTER_TERMS + 1))
    msg = await _bad(jp_fetch, "runs", params={"filter": many})
    assert "filter" in msg and f"at most {limits.MAX_FILTER_TERMS}" in msg, msg
    enough = " and ".join(f"params.p{i} != 'x'" for i in range(limits.MAX_FILTER_TERMS))
    assert (await api("runs", params={"filter": enough}))["runs"] == []
    long = "params.kind = '" + "x" * limits.MAX_FILTER_CHARS + "'"
    msg = await _bad(jp_fetch, "runs", params={"filter": long})
    assert "filter" in msg and str(limits.MAX_FILTER_CHARS) in msg
    like = "params.kind LIKE '" + "%a" * 200 + "'"
    msg = await _bad(jp_fetch, "runs", params={"filter": like})
    assert "LIKE" in msg and str(limits.MAX_LIKE_CHARS) in msg, msg
    wild = "params.kind ILIKE '" + "%" * 40 + "'"
    msg = await _bad(jp_fetch, "runs", params={"filter": wild})
    assert "ILIKE" in msg and "wildcards" in msg
    ids = ",".join(f"'{i:032x}'" for i in range(limits.MAX_IN_VALUES + 1))
    msg = await _bad(jp_fetch, "runs", params={"filter": f"attributes.run_id IN ({ids})"})
    assert "IN" in msg and str(limits.MAX_IN_VALUES) in msg
    ok = await api("runs", params={"filter": "params.kind LIKE '%r%'", "experiment": "iris"})
    assert {r["params"]["kind"] for r in ok["runs"]} == {"rf"}
    for bad in ("(" * 3000 + "metrics.acc > 1" + ")" * 1000, "'" * 4000, "metrics.acc >"):
        code, _ = await error_of(jp_fetch, "runs", params={"filter": bad})
        assert code == 400
    await alive(jp_fetch)


def _token(data: Any) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


async def test_tampered_page_tokens_are_400(api: Any, jp_fetch: Any, seeded: dict) -> None:
    from nbops.mlflow.readers.base import query_digest

    q = query_digest([seeded["experiment"]], "", [])
    first = await api("runs", params={"experiment": "iris", "max_results": "1"})
    real = first["next_page_token"]
    assert real
    kind = "o" if first["source"] == "sqlite" else "m"
    inner_huge = _token({"offset": 10**30})
    tampered = [
        "garbage!",
        "====",
        "é" * 10,
        "A" * (limits.MAX_TOKEN_CHARS + 1),
        real[:-3],
        real + "x",
        _token([]),
        _token(None),
        _token("str"),
        _token({"q": q}),
        _token({"q": "0" * 12, kind: 1}),
        _token({"q": q, "o": -1}),
        _token({"q": q, "o": 10**30}),
        _token({"q": q, "o": "5"}),
        _token({"q": q, "o": 1.5}),
        _token({"q": q, "o": True}),
        _token({"q": q, "o": None}),
        _token({"q": q, "o": [1]}),
        _token({"q": q, "o": 1, "x": 2}),
        _token({"q": q, "m": 5}),
        _token({"q": q, "m": {"offset": 1}}),
        _token({"q": q, "m": inner_huge}),
        _token(b"\xff\xfe\x00"),
        _token(b"[" * 3000),
    ]
    for t in tampered:
        msg = await _bad(jp_fetch, "runs", params={"experiment": "iris", "page_token": t})
        assert "page_token" in msg, (t[:60], msg)
    page = await api("runs", params={"experiment": "iris", "max_results": "1", "page_token": real})
    assert page["runs"] and page["runs"][0]["run_id"] != first["runs"][0]["run_id"]
    await alive(jp_fetch)


async def test_names_in_queries_and_paths_are_bounded(jp_fetch: Any, seeded: dict) -> None:
    msg = await _bad(jp_fetch, "runs", params={"experiment": "e" * 600})
    assert "experiment" in msg and str(limits.MAX_NAME_CHARS) in msg
    msg = await _bad(jp_fetch, "runs", seeded["run-0"], "metrics", "m" * 600)
    assert "metric key" in msg
    ids = ",".join([seeded["run-0"]] * (limits.MAX_COMPARE_RUNS + 1))
    msg = await _bad(jp_fetch, "compare", params={"run_ids": ids})
    assert "run_ids" in msg
    ids = ",".join(f"{i:032x}" for i in range(limits.MAX_COMPARE_RUNS + 1))
    msg = await _bad(jp_fetch, "compare", params={"run_ids": ids})
    assert "compare 2 to 100" in msg
    msg = await _bad(jp_fetch, "jobs", "j" * 100)
    assert "job id" in msg


POSTS = [("pipeline", "run"), ("schedules",)]


async def test_nested_and_oversized_bodies_are_400(jp_fetch: Any, seeded: dict) -> None:
    targets = [("runs", seeded["run-0"], "rerun"), ("runs", seeded["notebook-run"], "rerun")]
    for parts in [*targets, *POSTS]:
        for body in (
            '{"params": ' + "[" * 10_000 + "]" * 10_000 + "}",
            "[" * 100_000,
            '{"params": {"a": ' + '{"b": ' * 40 + "1" + "}" * 40 + "}}",
            json.dumps({"params": {"x": "y" * limits.MAX_BODY_BYTES}}),
            '{"params": {"x": NaN}}',
            '{"params": {"x": ' + "9" * 5000 + "}}",
            "\xff\xfe",
        ):
            msg = await _bad(jp_fetch, *parts, method="POST", body=body)
            assert "request body" in msg, (parts, body[:40], msg)
            if body.startswith('{"params": [') or body.startswith("[["):
                assert f"{limits.MAX_JSON_DEPTH} levels" in msg
    await alive(jp_fetch)


async def test_rerun_and_pipeline_params_are_bounded(jp_fetch: Any, seeded: dict) -> None:
    nb_run = seeded["notebook-run"]
    for parts in (("runs", nb_run, "rerun"), ("pipeline", "run")):
        cases = {
            "entries": {f"p{i}": 1 for i in range(limits.MAX_PARAMS + 1)},
            "characters long": {"p0": "x" * 17_000},
            "aliases": {"p0": "[*a]"},
            "anchors": {"p0": "&a [1]"},
            "number": {"p0": "1" * 1000},
            "nested": {"p0": [[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]},
            "NUL": {"p0": "a\x00b"},
            "not a parameter name": {"--force": 1},
            "not a parameter name ": {"a=b": 1},
        }
        for needle, params in cases.items():
            msg = await _bad(jp_fetch, *parts, method="POST", body=json.dumps({"params": params}))
            assert needle.strip() in msg and "p" in msg, (parts, needle, msg)
    # each value within its limit, all of them over the OS's: refused before anything is spawned
    big = {f"p{i}": "v" * 15_000 for i in range(10)}
    msg = await _bad(
        jp_fetch, "runs", nb_run, "rerun", method="POST", body=json.dumps({"params": big})
    )
    assert "command line" in msg and str(limits.MAX_ARG_CHARS) in msg, msg
    code, body = await error_of(
        jp_fetch, "pipeline", "run", method="POST", body=json.dumps({"stages": ["s"] * 101})
    )
    assert code == 400 and "stages" in body["message"]
    await alive(jp_fetch)


def test_pipeline_launch_argv_is_refused_before_spawning(tmp_path: Path) -> None:
    from nbops.errors import InvalidInput
    from nbops.server import launches
    from nbops.server import models as m
    from tests.conftest import notebook

    (tmp_path / "nbops.yaml").write_text("stages:\n  train:\n    notebook: train.ipynb\n")
    notebook(tmp_path / "train.ipynb", ("C = 1", ["parameters"]))
    req = m.PipelineRunRequest(
        stages=["train"], params={f"train.p{i}": "v" * 15_000 for i in range(40)}
    )
    with pytest.raises(InvalidInput, match="command line: is .* bytes long"):
        launches.pipeline_run(tmp_path, "sqlite:///x.db", req, "job", tmp_path / "jobs")
    ok = launches.pipeline_run(
        tmp_path, "sqlite:///x.db", m.PipelineRunRequest(stages=["train"]), "job", tmp_path
    )
    assert ok.argv[-2] == "--summary"
