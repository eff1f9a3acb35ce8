"""One schedule model: the CLI builds it from its arguments, the server from its body, nbops.yaml's
entries are converted into it in one place, and the listed form and the server's reply are it
plus status (no field list written twice)."""

from __future__ import annotations

import argparse
import ast
from pathlib import Path
from typing import Any

import pytest

from nbops.errors import InvalidInput, NbopsError
from nbops.pipeline import config
from nbops.scheduler import sources
from nbops.scheduler.commands import add_parsers, schedule_of
from nbops.scheduler.model import Schedule, ScheduleOptions, ScheduleView
from nbops.server import schedule_models as sm


def cli_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_parsers(parser.add_subparsers(dest="command"))
    return parser.parse_args(["schedule", "add", *argv])


def test_nbops_yaml_schedules_have_the_options_of_the_one_model():
    # pipeline/config.py keeps its own model of `schedules:`; it cannot drift from this one
    assert set(config.Schedule.model_fields) == set(Schedule.model_fields) - {"name", "source"}


def test_an_nbops_yaml_entry_becomes_the_one_model_in_one_place():
    entry = config.Schedule(cron="0 2 * * *", stages=["a"], retries=2, timezone="UTC")
    fields = sources.yaml_fields("nightly", entry)
    assert set(fields) <= set(Schedule.model_fields)
    made = Schedule.model_validate({**fields, "source": "nbops.yaml"})
    assert made.name == "nightly" and made.retries == 2 and made.source == "nbops.yaml"


def test_the_cli_and_the_server_build_the_same_schedule():
    args = cli_args(
        "nightly", "--cron", "0 2 * * *", "--stages", "prepare,train", "-p", "C=0.5",
        "--catchup", "all", "--retries", "2", "--timeout", "600", "--timezone", "UTC",
    )  # fmt: skip
    from_cli = schedule_of(args)
    body = {
        "name": "nightly", "cron": "0 2 * * *", "stages": ["prepare", "train"],
        "params": {"C": 0.5}, "catchup": "all", "retries": 2, "timeout": 600, "timezone": "UTC",
    }  # fmt: skip
    from_http = Schedule.model_validate(sm.CreateSchedule.model_validate(body).model_dump())
    assert from_cli == from_http
    assert from_cli.timeout == 600.0 and from_cli.source == "cli"


@pytest.mark.parametrize(
    "argv, body, message",
    [
        (["--retries", "1.5"], {"retries": "1.5"}, "schedule 'x': retries: '1.5' is not a whole"),
        (["--timeout", "0"], {"timeout": 0}, "schedule 'x': timeout: 0 is out of range"),
        (["--timezone", "Mars/Base"], {"timezone": "Mars/Base"}, "unknown time zone 'Mars/Base'"),
    ],
)
def test_a_bad_option_is_the_same_error_from_the_cli_and_the_server(
    argv: list[str], body: dict[str, Any], message: str
) -> None:
    with pytest.raises(NbopsError) as cli_err:
        schedule_of(cli_args("x", "--cron", "@daily", *argv))
    with pytest.raises(NbopsError) as http_err:
        sm.CreateSchedule.model_validate({"name": "x", "cron": "@daily", **body})
    assert cli_err.value.message == http_err.value.message
    assert message in cli_err.value.message


def test_a_bad_cron_is_refused_as_the_schedule_is_built():
    with pytest.raises(InvalidInput) as err:
        Schedule(name="feb30", cron="0 0 30 2 *")
    assert (
        err.value.message == "schedule 'feb30': cron: '0 0 30 2 *' never fires (no date matches it)"
    )


def test_the_browser_cannot_set_a_shell_hook():
    assert set(sm.CreateSchedule.model_fields) == set(ScheduleOptions.model_fields)
    assert "on_failure" not in sm.CreateSchedule.model_fields
    with pytest.raises(InvalidInput) as err:
        sm.CreateSchedule.model_validate({"name": "x", "cron": "@daily", "on_failure": "rm -rf /"})
    assert err.value.message == "schedule 'x': unknown field 'on_failure'"


def test_the_listed_form_is_the_schedule_plus_its_status_and_the_server_replies_with_it():
    assert list(ScheduleView.model_fields)[: len(Schedule.model_fields)] == list(
        Schedule.model_fields
    )
    assert issubclass(sm.ScheduleInfo, ScheduleView)
    assert sm.ScheduleInfo.model_fields.keys() == ScheduleView.model_fields.keys()
    # an invalid schedule is listed as found, not refused
    shown = sm.ScheduleInfo.model_validate(
        {
            "name": "<row 3>", "cron": "?", "timezone": "UTC (local)", "stages": [],
            "params": {}, "catchup": "latest", "retries": -1, "timeout": None,
            "on_failure": None, "source": "cli", "next_fire": None, "last_status": None,
            "last_run_id": None, "invalid": "damaged row",
        }
    )  # fmt: skip
    assert shown.invalid == "damaged row" and shown.retries == -1


def test_the_table_module_is_a_base_module():
    import nbops.table

    tree = ast.parse(Path(nbops.table.__file__).read_text())
    imported = [
        n.module if isinstance(n, ast.ImportFrom) else a.name
        for n in ast.walk(tree)
        if isinstance(n, ast.Import | ast.ImportFrom)
        for a in n.names
    ]
    assert not [m for m in imported if m and m.split(".")[0] == "nbops"]
    assert nbops.table.table([["a", "bbb"], ["cc", "d"]], ["X", "Y"]) == "X   Y\na   bbb\ncc  d"
