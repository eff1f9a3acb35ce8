"""The pieces behind a tracking server's refusals, without a server: how a URI is shown (never a
password), what a 401/403 means (not permanent: the spool keeps the data), the wording of
AccessDenied, and quiet()'s switch for MLflow's "View run ... at:" lines."""

from __future__ import annotations

import os
import urllib.parse

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nbops import envvars
from nbops.errors import AccessDenied, Exit, StoreUnavailable, exit_code_of, http_status_of
from nbops.mlflow import credentials, failures, quiet

_text = st.text(
    alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\x00"),
    min_size=1,
    max_size=30,
)


@given(user=_text, password=_text, port=st.integers(1, 65535), path=st.sampled_from(["", "/x"]))
def test_a_password_in_the_uri_is_never_shown(
    user: str, password: str, port: int, path: str
) -> None:
    q = urllib.parse.quote
    uri = f"https://{q(user, safe='')}:{q(password, safe='')}@mlflow.example:{port}{path}"
    # exactly the URI without its password: the user name stays, nothing of the password does
    assert credentials.server(uri) == f"https://{q(user, safe='')}@mlflow.example:{port}{path}"


def test_uris_without_secrets_are_shown_as_they_are_and_query_secrets_are_masked() -> None:
    for uri in ("sqlite:///x/.nbops/mlflow.db", "http://h:5000", "file:///tmp/mlruns", "x"):
        assert credentials.server(uri) == uri
    shown = credentials.server("postgresql://u:pw@db/m?password=hunter2&sslmode=require")
    assert "hunter2" not in shown and ":pw@" not in shown and "sslmode=require" in shown


def _mlflow_error(code: str) -> Exception:
    from mlflow.exceptions import MlflowException
    from mlflow.protos import databricks_pb2

    return MlflowException("API request ... failed", error_code=getattr(databricks_pb2, code))


def test_a_refused_login_or_permission_is_401_or_403_and_never_permanent() -> None:
    denied, login = _mlflow_error("PERMISSION_DENIED"), _mlflow_error("UNAUTHENTICATED")
    assert failures.access_status(denied) == 403 and failures.access_status(login) == 401
    # a person fixes it (a grant, a password) and the same request succeeds: keep the spool
    assert not failures.is_permanent(denied) and not failures.is_permanent(login)
    assert failures.is_permanent(_mlflow_error("INVALID_PARAMETER_VALUE"))
    assert failures.access_status(_mlflow_error("INVALID_PARAMETER_VALUE")) is None

    import requests

    response = requests.Response()
    response.status_code = 403
    upload = requests.exceptions.HTTPError("403 Client Error", response=response)
    assert failures.access_status(upload) == 403 and not failures.is_permanent(upload)
    response.status_code = 500
    assert failures.access_status(upload) is None
    assert failures.access_status(ValueError("403")) is None


def test_access_denied_names_server_user_and_target_and_exits_2_with_403(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = "http://mlflow.team:5000"
    monkeypatch.delenv(envvars.MLFLOW_TRACKING_USERNAME, raising=False)
    monkeypatch.delenv(envvars.MLFLOW_TRACKING_PASSWORD, raising=False)
    none = credentials.refused(url, 401, "search_experiments", None)
    assert isinstance(none, AccessDenied) and isinstance(none, StoreUnavailable)
    assert exit_code_of(none) == Exit.USAGE and http_status_of(none) == 403
    assert url in none.message and "requires a login" in none.message
    assert none.hint and "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD" in none.hint

    monkeypatch.setenv(envvars.MLFLOW_TRACKING_USERNAME, "bob")
    no_pw = credentials.refused(url, 401, "search_experiments", None)
    assert "'bob'" in no_pw.message and "MLFLOW_TRACKING_PASSWORD is not set" in no_pw.message
    monkeypatch.setenv(envvars.MLFLOW_TRACKING_PASSWORD, "hunter2")
    wrong = credentials.refused(url, 401, "search_experiments", None)
    assert "wrong password" in wrong.message and "hunter2" not in str(wrong)

    log = credentials.refused(url, 403, "log_batch", "run r1 of experiment 'wine' (id 3)")
    assert log.message == (
        f"{url} refused user 'bob' permission to log to run r1 of experiment 'wine' (id 3) "
        "(HTTP 403: it needs EDIT)"
    )
    assert log.hint and "grant 'bob' EDIT" in log.hint and "nbops sync" in log.hint
    promote = credentials.refused(url, 403, "create_model_version", "model 'clf'")
    assert "add a version to model 'clf'" in promote.message
    assert promote.hint and "nbops sync" not in promote.hint  # nothing of a promotion is spooled
    read = credentials.refused(url, 403, "get_run", "run r1")
    assert "permission to read run r1" in read.message and "needs READ" in read.message


def test_quiet_hides_mlflows_view_run_lines_and_keeps_a_setting_of_the_user(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    var = envvars.MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT
    monkeypatch.delenv(envvars.VERBOSE, raising=False)
    monkeypatch.delenv(var, raising=False)
    with quiet():
        assert os.environ[var] == "true"
    assert var not in os.environ
    monkeypatch.setenv(var, "false")  # the user wants them
    with quiet():
        assert os.environ[var] == "false"
    monkeypatch.delenv(var)
    monkeypatch.setenv(envvars.VERBOSE, "1")
    with quiet():
        assert var not in os.environ
