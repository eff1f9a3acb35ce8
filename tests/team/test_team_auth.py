"""A tracking server with MLflow's basic-auth: a missing or wrong password (HTTP 401) or a missing
permission (403) is one line at every surface (the CLI, a process logging through nbops' API, the
magics in a real kernel, the sidebar's REST API), naming the server, the user and the experiment or
model, and saying what to set or whom to ask; never a traceback or MLflow's "API request ...
failed" text. Nothing logged is lost: it stays spooled, and `nbops sync` delivers it once the
permission is granted. A run carries the login as ``mlflow.user``. MLflow's "View run ... at:"
lines are hidden on a server unless ``--verbose``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import execute, nbops_cli, notebook, outputs_text
from tests.integration.conftest import error_of
from tests.team.conftest import unique
from tests.team.servers import MlflowServer

MLFLOW_NOISE = ("Traceback", "API request", "Response body", "!= 200")


def _grant(server: MlflowServer, user: str, experiment_id: str, permission: str) -> None:
    """``permission`` on one experiment (MLflow 3.17's permission API: the fixture's
    ``grant`` calls the 2.x path, which this server answers with 404)."""
    server.admin_request(
        "POST",
        "/api/3.0/mlflow/users/permissions/grant",
        {
            "username": user,
            "resource_type": "experiment",
            "resource_id": experiment_id,
            "permission": permission,
        },
    )


@pytest.fixture
def admin(auth_server: MlflowServer, monkeypatch: pytest.MonkeyPatch) -> Any:
    """An MlflowClient logged in as the server's admin: the test's own view of the store (this
    process' credentials; the processes under test get theirs from ``_env``)."""
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", auth_server.admin_password)
    return MlflowClient(tracking_uri=auth_server.url)


def _admins_trail(tmp_path: Path, server: MlflowServer, admin: Any) -> str:
    """The id of the shared audit trail's experiment, made by the admin if no test made it yet
    (as on a team's server): whichever test runs first, a user's audit records need a grant of
    their own on it."""
    seed = _project(tmp_path / "admin")
    made = subprocess.run(
        [sys.executable, "-c", "from nbops.tracking import audit; audit.record('test.seed')"],
        env=_env(seed, server, "admin", server.admin_password),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    trail = admin.get_experiment_by_name("nbops-audit")
    assert made.returncode == 0 and trail is not None, made.stderr
    return str(trail.experiment_id)


def _project(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    (root / ".nbops").mkdir(parents=True)
    return root


def _env(
    root: Path, server: MlflowServer, user: str | None, password: str | None
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_TRACKING_", "NBOPS_"))}
    env["MLFLOW_TRACKING_URI"] = server.url
    if user is not None:
        env["MLFLOW_TRACKING_USERNAME"] = user
    if password is not None:
        env["MLFLOW_TRACKING_PASSWORD"] = password
    env["NBOPS_PROJECT_ROOT"] = str(root)
    env["NBOPS_FLUSH_TIMEOUT"] = "60"
    # six test sessions share two cores: a slow answer is not what these tests are about
    env["MLFLOW_HTTP_REQUEST_TIMEOUT"] = "120"
    return env


def _one_refusal(res: Any, *named: str) -> str:
    """The command failed with exit 2 and said so in one line plus its hint, naming ``named``."""
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 2 and lines[1].startswith("  hint: "), res.stderr
    for noise in MLFLOW_NOISE:
        assert noise not in res.stderr + res.stdout, res.stderr
    for name in named:
        assert name in lines[0], (name, lines[0])
    return str(res.stderr)


def _spools(root: Path) -> list[Path]:
    spool = root / ".nbops" / "spool"
    return sorted(p for p in spool.iterdir() if p.is_dir()) if spool.is_dir() else []


# --- the CLI: a login it refuses ----------------------------------------------------------------
def test_a_missing_or_wrong_password_is_one_line_naming_the_server_and_what_to_set(
    tmp_path: Path, auth_server: MlflowServer
) -> None:
    root = _project(tmp_path)
    user = unique("carol")
    password = auth_server.add_user(user)

    none = nbops_cli("runs", cwd=root, env=_env(root, auth_server, None, None))
    text = _one_refusal(none, auth_server.url, "requires a login")
    assert "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD" in text

    no_pw = nbops_cli("runs", cwd=root, env=_env(root, auth_server, user, None))
    text = _one_refusal(no_pw, auth_server.url, repr(user), "MLFLOW_TRACKING_PASSWORD is not set")

    wrong = nbops_cli("runs", cwd=root, env=_env(root, auth_server, user, "not-" + password))
    text = _one_refusal(wrong, auth_server.url, repr(user), "wrong password")
    assert "set MLFLOW_TRACKING_PASSWORD" in text

    # a password written into the URI is never shown, in the message or the hint
    secret = "s3cret-" + password
    env = _env(root, auth_server, None, None)
    env["MLFLOW_TRACKING_URI"] = auth_server.url.replace("http://", f"http://{user}:{secret}@")
    embedded = nbops_cli("runs", cwd=root, env=env)
    text = _one_refusal(embedded, repr(user), "wrong password")
    assert secret not in text and f"http://{user}@127.0.0.1" in text

    # the right password works (the same commands, nothing else changed)
    ok = nbops_cli("runs", "--json", cwd=root, env=_env(root, auth_server, user, password))
    assert ok.returncode == 0, ok.stderr
    json.loads(ok.stdout)


# --- logging through nbops' API with READ only: kept, then delivered --------------------------
LOGGING = """
import nbops, sys
run = nbops.start_run(experiment=sys.argv[1], name="readonly")
for i in range(5):
    nbops.log_metric("loss", 1.0 / (i + 1), step=i)
nbops.log_param("lr", "0.1")
ok = nbops.end_run()
print("end_run ->", ok)
"""


def test_a_read_only_user_keeps_every_record_spooled_and_sync_delivers_after_the_grant(
    tmp_path: Path, auth_server: MlflowServer, admin: Any
) -> None:
    root = _project(tmp_path)
    user = unique("dave")
    password = auth_server.add_user(user)
    experiment = unique("shared")
    eid = admin.create_experiment(experiment)
    env = _env(root, auth_server, user, password)
    script = root / "log.py"
    script.write_text(LOGGING)

    import subprocess

    res = subprocess.run(
        [sys.executable, str(script), experiment],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr  # the program goes on: a warning, not a crash
    assert "end_run -> False" in res.stdout
    for noise in MLFLOW_NOISE:
        assert noise not in res.stderr, res.stderr
    said = res.stderr
    assert auth_server.url in said and repr(user) in said, said
    assert f"experiment {experiment!r} (id {eid})" in said and "EDIT" in said, said
    (kept,) = _spools(root)
    assert admin.search_runs([eid]) == []  # nothing reached the store

    # sync while still refused: one line, and the spool is kept (PERMISSION_DENIED used to be
    # "permanent": the records were dropped)
    refused = nbops_cli("sync", cwd=root, env=env)
    assert refused.returncode != 0 and repr(user) in refused.stderr, refused.stderr
    for noise in MLFLOW_NOISE:
        assert noise not in refused.stderr + refused.stdout, refused.stderr
    assert _spools(root) == [kept]

    _grant(auth_server, user, eid, "EDIT")
    _grant(auth_server, user, _admins_trail(tmp_path, auth_server, admin), "EDIT")
    done = nbops_cli("sync", cwd=root, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "View run" not in done.stdout + done.stderr  # MLflow's end-of-run lines: hidden
    assert _spools(root) == []
    (run,) = admin.search_runs([eid])
    assert run.info.status == "FINISHED" and run.info.run_name == "readonly"
    history = admin.get_metric_history(run.info.run_id, "loss")
    assert [(m.step, m.value) for m in history] == [(i, 1.0 / (i + 1)) for i in range(5)]
    assert run.data.params["lr"] == "0.1"
    # who logged it: the server login, not the OS user the process runs as
    assert run.data.tags["mlflow.user"] == user and run.info.user_id == user


# --- the CLI: nbops run and nbops promote without the permission -------------------------------
def _one_stage(root: Path, experiment: str) -> None:
    notebook(
        root / "train.ipynb",
        ("alpha = 0.5", ["parameters"]),
        "import nbops\nnbops.log_metric('score', alpha * 2)",
    )
    (root / "nbops.yaml").write_text(
        f"experiment: {experiment}\nstages:\n  train:\n    notebook: train.ipynb\n"
        "    params: {alpha: 0.5}\n"
    )


def test_nbops_run_without_edit_says_why_the_runs_stay_spooled_and_sync_delivers_them(
    tmp_path: Path, auth_server: MlflowServer, admin: Any
) -> None:
    root = _project(tmp_path)
    user = unique("erin")
    password = auth_server.add_user(user)
    experiment = unique("pipe")
    eid = admin.create_experiment(experiment)
    _one_stage(root, experiment)
    env = _env(root, auth_server, user, password)
    trail = _admins_trail(tmp_path, auth_server, admin)

    res = nbops_cli("run", cwd=root, env=env)
    out = res.stdout + res.stderr
    assert res.returncode != 0, out
    for noise in MLFLOW_NOISE:
        assert noise not in out, out
    assert "stays spooled" in out and "nbops sync" in out, out
    why = [line for line in out.splitlines() if "refused user" in line]
    assert why and repr(user) in why[0] and f"{experiment!r} (id {eid})" in why[0], out
    assert len(why) == 1 and "2 run(s) stay spooled in .nbops/spool/" in why[0], out  # one line
    assert len(_spools(root)) == 2  # the pipeline run and the stage's run, every record kept

    _grant(auth_server, user, eid, "EDIT")
    done = nbops_cli("sync", cwd=root, env=env)
    # the runs go; the audit records of their start and end wait for EDIT on the shared trail
    assert done.returncode == 1, done.stdout + done.stderr
    assert "audit record(s) still wait" in done.stderr and "'nbops-audit'" in done.stderr
    _grant(auth_server, user, trail, "EDIT")
    again = nbops_cli("sync", cwd=root, env=env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "pending audit record(s)" in again.stdout
    runs = {r.info.run_name: r for r in admin.search_runs([eid])}
    assert set(runs) == {"pipeline", "train"}, runs
    assert runs["train"].data.metrics["score"] == 1.0
    assert all(r.info.status == "FINISHED" for r in runs.values())
    assert runs["train"].data.tags["mlflow.user"] == user


def test_promote_without_edit_on_the_model_names_the_model_the_user_and_exits_2(
    tmp_path: Path, auth_server: MlflowServer, admin: Any
) -> None:
    root = _project(tmp_path)
    user = unique("frank")
    password = auth_server.add_user(user)
    eid = admin.create_experiment(unique("promo"))
    run = admin.create_run(eid, tags={"nbops.model.model": "sklearn"})
    admin.set_terminated(run.info.run_id)
    model = unique("model")
    admin.create_registered_model(model)

    env = _env(root, auth_server, user, password)
    res = nbops_cli("promote", run.info.run_id, "--model", model, cwd=root, env=env)
    text = _one_refusal(res, auth_server.url, repr(user), f"model {model!r}", "EDIT")
    assert "ask an admin" in text
    assert admin.search_model_versions(f"name = '{model}'") == []  # the registry is unchanged


# --- the magics in a real kernel ---------------------------------------------------------------
def test_track_magics_with_read_only_warn_in_one_line_and_sync_delivers_after_the_grant(
    tmp_path: Path, auth_server: MlflowServer, admin: Any
) -> None:
    root = _project(tmp_path)
    user = unique("grace")
    password = auth_server.add_user(user)
    experiment = unique("magic")
    eid = admin.create_experiment(experiment)
    env = _env(root, auth_server, user, password)
    login = {k: v for k, v in env.items() if k.startswith(("MLFLOW_TRACKING_", "NBOPS_"))}
    nb = notebook(
        root / "fit.ipynb",
        # the kernel (and the writer it starts) logs in as the teammate; this process stays admin
        f"import os\nos.environ.update({login!r})",
        "%load_ext nbops",
        f"%track start -e {experiment} -n first",
        "%%track -n fit\nlr = 0.1\nimport math\nacc = math.sqrt(0.81)\nacc",
        "%track stop",
        "print('still running')",
    )
    out = execute(nb)  # no cell raises
    text = "".join(outputs_text(c) for c in out.cells)
    for noise in MLFLOW_NOISE:
        assert noise not in text, text
    assert "still running" in outputs_text(out.cells[5])
    stop = outputs_text(out.cells[4]).strip().splitlines()
    assert len(stop) == 1, stop
    assert "is not in the store" in stop[0] and repr(user) in stop[0], stop
    assert f"experiment {experiment!r} (id {eid})" in stop[0] and "nbops sync" in stop[0], stop
    assert len(_spools(root)) == 1

    _grant(auth_server, user, eid, "EDIT")
    _grant(auth_server, user, _admins_trail(tmp_path, auth_server, admin), "EDIT")
    done = nbops_cli("sync", cwd=root, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    (run,) = admin.search_runs([eid])
    assert run.info.run_name == "first" and run.info.status == "FINISHED"
    assert run.data.params["lr"] == "0.1" and run.data.metrics["acc"] == 0.9
    assert run.data.tags["mlflow.user"] == user


# --- the sidebar's REST API with a wrong password ----------------------------------------------
@pytest.fixture
def jp_server_config(
    tmp_path: Path, auth_server: MlflowServer, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Any]:
    root = _project(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "not-the-admin-password")
    return {
        "ServerApp": {"jpserver_extensions": {"nbops": True}},
        "NbopsApp": {"project_root": str(root), "tracking_uri": auth_server.url},
    }


async def test_the_sidebar_answers_a_refused_login_with_403_naming_the_server_and_what_to_set(
    jp_fetch: Any, auth_server: MlflowServer
) -> None:
    for parts, params in ((("experiments",), {}), (("runs",), {"experiment": "Default"})):
        code, err = await error_of(jp_fetch, *parts, params=params)
        assert code == 403, (parts, code, err)
        assert err["error"] == "forbidden", err
        message = err["message"]
        assert auth_server.url in message and "'admin'" in message, message
        assert "MLFLOW_TRACKING_PASSWORD" in message, message
        for noise in MLFLOW_NOISE:
            assert noise not in message, message


# --- MLflow's "View run ... at:" lines on a server ---------------------------------------------
def test_nbops_run_on_a_server_prints_no_view_run_lines_unless_verbose(
    tmp_path: Path, team_server: MlflowServer
) -> None:
    root = _project(tmp_path)
    _one_stage(root, unique("quiet"))
    env = _env(root, team_server, None, None)

    res = nbops_cli("run", cwd=root, env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "View run" not in res.stdout + res.stderr and "View experiment" not in res.stdout
    loud = nbops_cli("--verbose", "run", "--force", cwd=root, env=env)
    assert loud.returncode == 0, loud.stdout + loud.stderr
    assert "🏃 View run train at: " + team_server.url in loud.stdout + loud.stderr
