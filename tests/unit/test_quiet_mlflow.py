"""nbops.mlflow.quiet(): MLflow's store loggers and artifact bars are quiet during nbops' own
calls, restored after them (nested, from several threads), a value the user set is kept, and
NBOPS_VERBOSE turns it off."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nbops import envvars
from nbops.mlflow import QUIET_LOGGERS, quiet

BAR = envvars.MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(envvars.VERBOSE, raising=False)
    monkeypatch.delenv(BAR, raising=False)
    logging.getLogger("mlflow").setLevel(logging.INFO)  # as MLflow configures itself


def _levels() -> dict[str, int]:
    return {name: logging.getLogger(name).level for name in QUIET_LOGGERS}


def _is_quiet() -> bool:
    return (
        all(logging.getLogger(n).getEffectiveLevel() >= logging.WARNING for n in QUIET_LOGGERS)
        and os.environ.get(BAR) == "false"
    )


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(1, 4), min_size=1, max_size=6))
def test_nested_and_concurrent_quiet_restores_everything_at_the_last_exit(depths: list[int]):
    """Each thread nests quiet() ``depth`` times; all are inside at once, then all leave."""
    before = _levels()
    inside = threading.Barrier(len(depths))
    seen: list[bool] = []

    def nest(n: int) -> None:
        with quiet():
            if n > 1:
                nest(n - 1)
            else:
                seen.append(_is_quiet())
                inside.wait(timeout=30)

    threads = [threading.Thread(target=nest, args=(d,)) for d in depths]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == [True] * len(depths)
    assert _levels() == before and BAR not in os.environ
    assert logging.getLogger(QUIET_LOGGERS[0]).getEffectiveLevel() == logging.INFO


def test_a_progress_bar_setting_the_user_made_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(BAR, "true")
    with quiet():
        assert os.environ[BAR] == "true"
    assert os.environ[BAR] == "true"


def test_verbose_leaves_mlflow_as_it_is(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(envvars.VERBOSE, "1")
    before = _levels()
    with quiet():
        assert BAR not in os.environ and _levels() == before
        assert logging.getLogger(QUIET_LOGGERS[0]).getEffectiveLevel() == logging.INFO


def test_creating_a_real_store_prints_no_mlflow_line_unless_verbose(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    from nbops.mlflow.schema import ensure_schema

    ensure_schema(f"sqlite:///{tmp_path / 'quiet.db'}")
    assert "database tables" not in "".join(capfd.readouterr())
    monkeypatch.setenv(envvars.VERBOSE, "1")
    ensure_schema(f"sqlite:///{tmp_path / 'loud.db'}")
    assert "Creating initial MLflow database tables" in "".join(capfd.readouterr())


def test_a_first_store_in_a_fresh_process_is_quiet_though_mlflow_is_imported_inside(
    tmp_path: Path,
) -> None:
    """`nbops ui` calls ensure_schema before anything imported MLflow: the import happens
    inside quiet() and sets MLflow's own logger to INFO."""
    import subprocess
    import sys

    code = (
        "import sys; from nbops.mlflow.schema import ensure_schema; "
        "assert 'mlflow' not in sys.modules; ensure_schema(sys.argv[1])"
    )
    env = {k: v for k, v in os.environ.items() if k != envvars.VERBOSE}
    out = subprocess.run(
        [sys.executable, "-c", code, f"sqlite:///{tmp_path / 'first.db'}"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0 and (tmp_path / "first.db").is_file(), out.stderr
    assert out.stderr == "" and out.stdout == ""
