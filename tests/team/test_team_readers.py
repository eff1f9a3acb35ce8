"""The sidebar's direct PostgreSQL reader on a real team server: for the same store it gives the
answers MlflowClient gives through the server (filters on params, tags, metrics and attributes,
LIKE/ILIKE, orders, pages, compare, histories, experiments), behind the same guards as the SQLite
reader (schema revision, login, psycopg, a database that is not MLflow's, a lost connection),
read-only, and only for experiments the server lets the user read."""

from __future__ import annotations

import json
import logging
import math
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nbops import envvars, tags
from nbops.mlflow.readers.base import Reader
from nbops.mlflow.readers.client import MlflowReader
from nbops.mlflow.readers.postgres import PostgresReader
from tests.team.conftest import unique
from tests.team.servers import MlflowServer, Postgres

N_RUNS = 200
T0 = 1_750_000_000_000
KINDS = ["rf", "svm", "RF", "mlp"]


def seed(uri: str, experiment: str, n: int = N_RUNS) -> dict[str, Any]:
    """Experiment ``experiment`` with ``n`` runs (params, tags, metric histories, NaN, missing
    keys, start-time ties, every status, some deleted) and a small second experiment, written
    with MlflowClient's log_batch into ``uri``: the server's own database (what the server
    serves; through its REST API seeding takes minutes on a busy machine)."""
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.create_experiment(experiment)
    other = client.create_experiment(experiment + "-other")

    def make(i: int) -> str:
        name = f"run-{i:03d}" if i % 10 else f"Run-{i:03d}"
        start = T0 + (i // 2) * 1000  # pairs start at the same millisecond
        run = client.create_run(exp, start_time=start, run_name=name)
        rid = run.info.run_id
        params = [Param("C", str([0.1, 1.0, 10.0][i % 3])), Param("kind", KINDS[i % 4])]
        if i % 7:
            params.append(Param("seed", str(i % 5)))
        metrics = []
        if i % 13:
            metrics += [Metric("acc", 0.5 + (i % 50) / 100 + s / 1000, T0 + s, s) for s in range(4)]
        metrics += [Metric("loss", 1.0 / (i + 1) + s, T0 + s, s) for s in range(3)]
        if i % 11 == 0:
            metrics.append(Metric("weird", math.nan, T0, 0))
        elif i % 2:
            metrics.append(Metric("weird", float(i % 3), T0, 0))
        run_tags = [RunTag("team", "nlp" if i % 3 else "vision")]
        if i % 6 == 0:
            run_tags.append(RunTag(tags.STAGE, "train"))
        client.log_batch(rid, metrics=metrics, params=params, tags=run_tags, synchronous=True)
        if i % 17 != 3:  # those stay RUNNING
            status = "FAILED" if i % 5 == 1 else "KILLED" if i % 9 == 2 else "FINISHED"
            client.set_terminated(rid, status, end_time=start + 500 + i)
        if i % 31 == 4:
            client.delete_run(rid)
        return rid

    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(make, range(n)))
    lonely = client.create_run(other, start_time=T0, run_name="lonely").info.run_id
    # nbops' own experiments (the shared audit trail's) are not listed by either path
    hidden = client.create_experiment(experiment + "-hidden", tags={tags.HIDDEN: "true"})
    deleted = {ids[i] for i in range(n) if i % 31 == 4}
    return {
        "exp": exp,
        "other": other,
        "hidden": hidden,
        "ids": ids,
        "deleted": deleted,
        "lonely": lonely,
    }


def read_only_role(postgres: Postgres, database: str) -> str:
    """What the README tells a DBA to run: a login that may only SELECT MLflow's tables."""
    role = unique("reader").replace("-", "_")
    postgres.psql(f"CREATE ROLE {role} LOGIN PASSWORD 'secret-pw'")
    postgres.psql(
        f"GRANT CONNECT ON DATABASE {database} TO {role};"
        f" GRANT USAGE ON SCHEMA public TO {role};"
        f" GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}",
        database=database,
    )
    return f"postgresql://{role}:secret-pw@127.0.0.1:{postgres.port}/{database}"


def other_mlflow_db(postgres: Postgres) -> str:
    """A second MLflow tracking database (its schema made by MLflow), served by no server."""
    from mlflow.tracking import MlflowClient

    uri = postgres.create_database(unique("other").replace("-", "_"))
    MlflowClient(uri).search_experiments()  # MLflow creates its tables
    return uri


@pytest.fixture(scope="module")
def seeded(team_server: MlflowServer) -> dict[str, Any]:
    return seed(team_server.backend_uri, unique("readers"))


@pytest.fixture(scope="module")
def readers(seeded: dict[str, Any], team_server: MlflowServer, postgres: Postgres) -> Any:
    client = MlflowReader(team_server.url)
    uri = read_only_role(postgres, "mlflow")
    direct = PostgresReader(uri, lambda: client)
    yield direct, client
    direct.close()


def pages(reader: Reader, exp: str, flt: str, order: list[str], size: int) -> list[Any]:
    out, token = [], None
    while True:
        page = reader.search([exp], flt, order, size, token)
        out += [r.model_dump() for r in page.runs]
        token = page.next_token
        if not token:
            return out


QUERIES: list[tuple[str, list[str]]] = [
    ("", []),
    ("params.kind = 'rf'", ["metrics.acc DESC"]),
    ("params.kind LIKE 'r%'", []),  # case-sensitive: 'RF' is not matched
    ("params.kind ILIKE 'r%'", ["params.C ASC", "attributes.run_name DESC"]),
    ("params.kind != 'svm' and metrics.acc > 0.7", ["metrics.loss"]),
    ("metrics.weird != 0", ["metrics.weird DESC"]),  # NaN matches != (as in MLflow)
    ("metrics.weird = 1", []),
    ("metrics.acc <= 0.6", ["attributes.start_time ASC"]),
    ("tags.team = 'vision'", ["tags.nbops.stage DESC"]),
    ("tags.`nbops.stage` = 'train'", ["attributes.end_time DESC"]),
    ("attributes.status = 'FAILED'", ["attributes.status"]),
    ("attributes.status != 'FINISHED'", ["attributes.status DESC", "params.kind"]),
    ("attributes.run_name LIKE 'run-1%'", ["attributes.run_name"]),
    ("attributes.run_name ILIKE 'RUN-0%'", []),
    (f"attributes.start_time >= {T0 + 50_000}", ["params.seed DESC"]),
    (f"attributes.start_time < {T0 + 20_000} and params.seed = '1'", []),
    ("params.seed IS NULL", ["metrics.acc"]),  # runs without the param
    ("tags.`nbops.stage` IS NOT NULL", ["metrics.weird"]),
    ("tags.team ILIKE '%L%'", ["metrics.weird"]),
    ("params.kind = 'nope'", []),
]


def test_the_postgres_reader_answers_like_mlflowclient_through_the_server(
    seeded: dict[str, Any], readers: Any, team_server: MlflowServer
) -> None:
    direct, client = readers
    exp, ids = seeded["exp"], seeded["ids"]
    live = [i for i in ids if i not in seeded["deleted"]]
    assert direct.direct() is True
    for flt, order in QUERIES:
        want = pages(client, exp, flt, order, 60)
        got = pages(direct, exp, flt, order, 60)
        assert got == want, (flt, order)
    # the same page sizes, source and counts; keys of the whole experiment
    first = direct.run_list(exp, "params.kind = 'rf'", ["metrics.acc DESC"], 50, None)
    assert first.source == "postgres" and first.total == len(
        [i for n, i in enumerate(ids) if n % 4 == 0 and i in live]
    )
    assert first.param_keys == ["C", "kind", "seed"]
    assert first.metric_keys == ["acc", "loss", "weird"]
    assert client.run_list(exp, "", [], 50, None).source == "mlflow"
    # LIKE is case-sensitive, ILIKE is not (as MLflow on PostgreSQL)
    like = {r["params"]["kind"] for r in pages(direct, exp, "params.kind LIKE 'r%'", [], 500)}
    ilike = {r["params"]["kind"] for r in pages(direct, exp, "params.kind ILIKE 'r%'", [], 500)}
    assert like == {"rf"} and ilike == {"rf", "RF"}

    mine = {seeded["exp"], seeded["other"], seeded["hidden"]}
    assert [e for e in direct.experiments() if e.experiment_id in mine] == [
        e for e in client.experiments() if e.experiment_id in mine
    ]
    counts = {e.experiment_id: e.run_count for e in direct.experiments()}
    assert counts[exp] == len(live) and counts[seeded["other"]] == 1
    assert seeded["hidden"] not in counts
    assert [x for x in direct.experiment_names() if x[0] in mine] == [
        x for x in client.experiment_names() if x[0] in mine
    ]
    hundred = live[:100]
    assert direct.compare(hundred) == client.compare(hundred)
    assert direct.summaries(hundred[::-1]) == client.summaries(hundred[::-1])
    assert direct.histories(hundred[:10]) == client.histories(hundred[:10])
    for rid in (live[0], live[11], seeded["lonely"]):
        assert direct.run_info(rid) == client.run_info(rid)
        for key in ("acc", "loss", "weird", "absent"):
            assert direct.metric_history(rid, key) == client.metric_history(rid, key)
    # a deleted or unknown run: the client's own answer (NotFound, same message)
    for rid in (next(iter(seeded["deleted"])), "0" * 32):
        for call in (
            lambda r, rid=rid: r.run_info(rid),
            lambda r, rid=rid: r.summaries([live[0], rid]),
            lambda r, rid=rid: r.metric_history(rid, "acc"),
            lambda r, rid=rid: r.compare([live[0], rid]),
        ):
            with pytest.raises(Exception) as a:
                call(direct)
            with pytest.raises(Exception) as b:
                call(client)
            assert (type(a.value), str(a.value)) == (type(b.value), str(b.value))


TERMS = st.sampled_from(
    [
        "params.kind = 'rf'",
        "params.kind != 'RF'",
        "params.kind LIKE '%f'",
        "params.kind ILIKE '%F'",
        "params.C = '1.0'",
        "params.seed IS NOT NULL",
        "metrics.acc > 0.8",
        "metrics.acc != 0.5",
        "metrics.loss < 0.01",
        "metrics.weird >= 1",
        "metrics.weird != 2",
        "tags.team = 'nlp'",
        "tags.team LIKE 'v%'",
        "tags.`nbops.stage` IS NULL",
        "attributes.status = 'RUNNING'",
        "attributes.status != 'FAILED'",
        "attributes.run_name ILIKE 'run-%5'",
        "attributes.run_name = 'Run-010'",
        f"attributes.start_time > {T0 + 60_000}",
        f"attributes.end_time <= {T0 + 80_000}",
    ]
)
ORDERS = st.lists(
    st.sampled_from(
        [
            "metrics.acc",
            "metrics.weird DESC",
            "params.seed",
            "params.kind DESC",
            "tags.team",
            "attributes.start_time",
            "attributes.end_time DESC",
            "attributes.run_name",
            "attributes.status DESC",
        ]
    ),
    max_size=3,
    unique_by=lambda s: s.split()[0],
)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(terms=st.lists(TERMS, max_size=3), order=ORDERS, size=st.integers(20, 120))
def test_generated_searches_answer_the_same_on_both_paths(
    seeded: dict[str, Any], readers: Any, terms: list[str], order: list[str], size: int
) -> None:
    direct, client = readers
    flt = " and ".join(terms)
    assert pages(direct, seeded["exp"], flt, order, size) == pages(
        client, seeded["exp"], flt, order, size
    ), (flt, order)


def _said(caplog: pytest.LogCaptureFixture, word: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if word in r.getMessage()]


def test_guards_send_every_read_to_mlflowclient_and_say_why_once(
    seeded: dict[str, Any],
    readers: Any,
    postgres: Postgres,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    direct, client = readers
    exp, live = seeded["exp"], [i for i in seeded["ids"] if i not in seeded["deleted"]]
    query = (exp, "params.kind = 'rf' and metrics.acc > 0.6", ["metrics.acc DESC"], 25, None)
    want = client.run_list(*query)
    good = direct.uri
    port = postgres.port
    cases = {
        # a schema revision the SQL was not written for (what a newer MLflow makes)
        "schema revision": PostgresReader(good, lambda: client, known_revisions=frozenset()),
        "cannot log in": PostgresReader(
            f"postgresql://nobody:pw-not-logged@127.0.0.1:{port}/mlflow", lambda: client
        ),
        "not an MLflow tracking database": PostgresReader(
            f"postgresql://postgres@127.0.0.1:{port}/postgres", lambda: client
        ),
        # an MLflow database, but not the one this server serves (a wrong URI)
        "not the tracking server's database": PostgresReader(
            other_mlflow_db(postgres), lambda: client
        ),
    }
    for word, reader in cases.items():
        with caplog.at_level(logging.WARNING, logger="nbops.server"):
            caplog.clear()
            got = reader.run_list(*query)
            assert reader.direct() is False
            assert got.source == "mlflow"
            assert [r.model_dump() for r in got.runs] == [r.model_dump() for r in want.runs]
            assert reader.compare(live[:5]) == client.compare(live[:5])
            assert reader.metric_history(live[1], "acc") == client.metric_history(live[1], "acc")
            said = _said(caplog, "through MlflowClient")
            assert len(said) == 1 and word in said[0], said
            assert "pw-not-logged" not in said[0] and "secret-pw" not in said[0]
        reader.close()
    # psycopg not installed
    monkeypatch.setitem(sys.modules, "psycopg", None)
    with caplog.at_level(logging.WARNING, logger="nbops.server"):
        caplog.clear()
        reader = PostgresReader(good, lambda: client)
        assert reader.run_list(*query).source == "mlflow"
        assert "psycopg is not installed" in _said(caplog, "through MlflowClient")[0]


def test_connections_are_read_only_and_a_lost_one_is_answered_by_the_client(
    seeded: dict[str, Any],
    team_server: MlflowServer,
    postgres: Postgres,
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = MlflowReader(team_server.url)
    # even a superuser login cannot write through the reader
    reader = PostgresReader(team_server.backend_uri, lambda: client, restrict=False)
    try:
        import psycopg

        assert reader.direct() is True
        assert reader._rows("SHOW transaction_read_only") == [("on",)]
        assert reader._rows("SHOW statement_timeout") == [("5s",)]
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            reader._rows("CREATE TABLE nbops_should_not_exist (a int)")
        reader._lost()
        exp = seeded["exp"]
        want = [r.model_dump() for r in client.search([exp], "", [], 30, None).runs]
        assert [r.model_dump() for r in reader.search([exp], "", [], 30, None).runs] == want
        # the database drops the sidebar's connection (a restart, a failover, a DBA)
        postgres.psql(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = 'nbops-sidebar'"
        )
        with caplog.at_level(logging.WARNING, logger="nbops.server"):
            page = reader.search([exp], "", [], 30, None)
        assert page.source == "mlflow" and [r.model_dump() for r in page.runs] == want
        assert len(_said(caplog, "reading")) == 1
        again = reader.search([exp], "", [], 30, None)  # a new connection: direct again
        assert again.source == "postgres" and [r.model_dump() for r in again.runs] == want
    finally:
        reader.close()


@pytest.fixture(params=["direct", "client"])
def jp_server_config(
    request: pytest.FixtureRequest,
    tmp_path: Any,
    team_server: MlflowServer,
    readers: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> dict[str, Any]:
    """The Jupyter server extension on the team server, given the database login or not."""
    root = tmp_path / "proj"
    (root / ".nbops").mkdir(parents=True)
    monkeypatch.setenv(envvars.MLFLOW_TRACKING_URI, team_server.url)
    if request.param == "direct":
        monkeypatch.setenv(envvars.READ_DATABASE_URI, readers[0].uri)
    else:
        monkeypatch.delenv(envvars.READ_DATABASE_URI, raising=False)
    return {
        "ServerApp": {"jpserver_extensions": {"nbops": True}},
        "NbopsApp": {"project_root": str(root)},
    }


async def test_the_sidebar_reads_the_database_when_given_the_login(
    jp_fetch: Any, jp_server_config: dict[str, Any], seeded: dict[str, Any], readers: Any
) -> None:
    """With NBOPS_READ_DATABASE_URI the runs list says ``source: "postgres"`` (else "mlflow")
    and every answer is the one MlflowClient gives."""
    import os

    _, client = readers
    direct = envvars.READ_DATABASE_URI in os.environ

    async def get(*parts: str, **params: str) -> Any:
        resp = await jp_fetch("nbops", "api", *parts, params=params)
        return json.loads(resp.body)

    exp = seeded["exp"]
    flt, order = "params.kind ILIKE 'r%' and metrics.acc > 0.6", "metrics.acc DESC"
    body = await get("runs", experiment=exp, filter=flt, order_by=order, max_results="30")
    assert body["source"] == ("postgres" if direct else "mlflow")
    assert (body["total"] is not None) is direct
    want = client.search([exp], flt, [order], 30, None).runs
    assert body["runs"] == json.loads(json.dumps([r.model_dump() for r in want]))
    listed = {e["experiment_id"]: e for e in (await get("experiments"))["experiments"]}
    assert listed[exp]["run_count"] == len(seeded["ids"]) - len(seeded["deleted"])
    assert seeded["hidden"] not in listed
    live = [i for i in seeded["ids"] if i not in seeded["deleted"]][:100]
    cmp = await get("compare", run_ids=",".join(live))
    assert cmp == json.loads(client.compare(live).model_dump_json())
    hist = await get("runs", live[1], "metrics", "acc")
    assert [p["step"] for p in hist["history"]] == [0, 1, 2, 3]
