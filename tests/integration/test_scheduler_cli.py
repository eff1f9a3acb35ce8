"""`nbops schedule` on bad input (exit 2, the field named, a hint) and the Python API the
Jupyter server calls. No kernels: nothing here executes a schedule."""

from __future__ import annotations

from pathlib import Path

import pytest

from nbops.errors import ConfigError, InvalidInput, NotFound
from nbops.scheduler import api
from nbops.scheduler.model import Schedule
from tests.conftest import nbops_cli, notebook

YAML = """\
stages:
  prepare:
    notebook: prepare.ipynb
  train:
    notebook: train.ipynb
schedules:
  nightly: {cron: "0 2 * * *", stages: [prepare, train], timezone: Europe/Berlin}
"""


@pytest.fixture
def proj(project: Path) -> Path:
    notebook(project / "prepare.ipynb", ("a = 0", ["parameters"]), "x = 1")
    notebook(project / "train.ipynb", ("C = 1.0", ["parameters"]), "y = 2")
    (project / "nbops.yaml").write_text(YAML)
    return project


@pytest.mark.parametrize(
    "args, words",
    [
        (["--cron", "61 * * * *"], "cron: '61 * * * *' is not a valid cron expression"),
        (["--cron", "0 2 * *"], "cron: '0 2 * *' has 4 fields"),
        (["--cron", "0 2 * * *", "--stages", "trian"], "stages: unknown stage 'trian'"),
        (["--cron", "0 2 * * *", "--timezone", "Mars/Base"], "timezone: unknown time zone"),
        (["--cron", "0 2 * * *", "--catchup", "some"], "argument --catchup: invalid choice"),
        (["--cron", "0 2 * * *", "--retries", "x"], "schedule 'job': retries: 'x' is not a whole"),
        (["--cron", "0 2 * * *", "--retries", "1.5"], "retries: '1.5' is not a whole number"),
        (["--cron", "0 2 * * *", "--retries", "1000000000000"], "retries: 1000000000000 is out"),
        (["--cron", "0 2 * * *", "--timeout", "0"], "timeout: 0 is out of range"),
        (["--cron", "0 2 * * *", "--timeout", "1.5"], "timeout: '1.5' is not a whole number"),
        (["--cron", "0 0 30 2 *"], "schedule 'job': cron: '0 0 30 2 *' never fires"),
        (["--cron", "0 0 * 2 1#5"], "more than 5 years away"),
        (["--cron", "0 2 * * *", "-p", "nope=1"], "no stage the schedule runs declares"),
        (["--cron", "0 2 * * *", "-p", "zzz.x=1"], "no stage the schedule runs declares"),
        (["--cron", "0 2 * * *", "-p", "train.nope=1"], "train.ipynb declares no parameter 'nope'"),
        (["--cron", "0 2 * * *", "-p", "x=*a"], "-p x: YAML aliases"),
        (["--cron", "0 2 * * *", "-p", "novalue"], "params: 'novalue' is not NAME=VALUE"),
    ],
)
def test_bad_input_to_schedule_add_exits_2_naming_the_field(proj, args, words):
    out = nbops_cli("schedule", "add", "job", *args, cwd=proj, timeout=60)
    assert out.returncode == 2
    assert words in out.stderr
    assert "Traceback" not in out.stderr
    if "unknown stage" in words:
        assert "did you mean 'train'?" in out.stderr


def test_names_are_unique_across_nbops_yaml_and_the_cli(proj):
    out = nbops_cli("schedule", "add", "nightly", "--cron", "0 5 * * *", cwd=proj, timeout=60)
    assert out.returncode == 2
    assert "name: a schedule named 'nightly' already exists (in nbops.yaml)" in out.stderr


def test_a_schedule_from_nbops_yaml_cannot_be_removed_from_the_cli(proj):
    out = nbops_cli("schedule", "remove", "nightly", cwd=proj, timeout=60)
    assert out.returncode == 2
    assert "nbops.yaml:7" in out.stderr and "delete it from the `schedules:` section" in out.stderr


def test_a_bad_schedule_in_nbops_yaml_is_listed_invalid_at_its_line(proj):
    """One bad schedule in nbops.yaml does not hide the others: it is listed as invalid with
    nbops.yaml:line and the reason (the daemon skips it: tests/integration/test_scheduler.py)."""
    bad = YAML + '  rare: {cron: "0 25 * * *"}\n  never: {cron: "0 0 31 4 *"}\n'
    (proj / "nbops.yaml").write_text(bad)
    out = nbops_cli("schedule", "list", cwd=proj, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "nbops.yaml:8:" in out.stdout and "schedule 'rare': cron:" in out.stdout
    assert "nbops.yaml:9:" in out.stdout and "'0 0 31 4 *' never fires" in out.stdout
    lines = {ln.split()[0]: ln for ln in out.stdout.splitlines() if ln.strip()}
    assert "INVALID" in lines["rare"] and "INVALID" not in lines["nightly"]
    (proj / "nbops.yaml").write_text(YAML.replace("[prepare, train]", "[prepare, tran]"))
    out = nbops_cli("schedule", "list", "--json", cwd=proj, timeout=60)
    (nightly,) = __import__("json").loads(out.stdout)["schedules"]
    assert "unknown stage 'tran'" in nightly["invalid"] and nightly["next_fire"] is None


def test_add_list_and_remove_through_the_cli(proj):
    out = nbops_cli(
        "schedule", "add", "hourly", "--cron", "0 * * * *", "--stages", "train", "-p", "C=2",
        "--timezone", "America/New_York", "--retries", "2", cwd=proj, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert (
        "added schedule hourly: next at" in out.stdout
        and "time zone America/New_York" in out.stdout
    )
    listing = nbops_cli("schedule", "list", cwd=proj, timeout=60)
    assert listing.returncode == 0
    lines = {ln.split()[0]: ln for ln in listing.stdout.splitlines() if ln.strip()}
    assert "Europe/Berlin" in lines["nightly"] and "nbops.yaml" in lines["nightly"]
    assert "America/New_York" in lines["hourly"] and " cli " in lines["hourly"]
    assert "scheduler: not running" in listing.stdout
    assert nbops_cli("schedule", "remove", "hourly", cwd=proj, timeout=60).returncode == 0
    gone = nbops_cli("schedule", "history", "hourly", cwd=proj, timeout=60)
    assert gone.returncode == 2 and "no schedule named 'hourly'" in gone.stderr


def test_the_python_api_for_the_server(proj):
    view = api.add_schedule(
        proj, Schedule(name="often", cron="*/5 * * * *", stages=["prepare"], params={"a": 1})
    )
    assert view["source"] == "cli" and view["params"] == {"a": 1}
    by_name = {s["name"]: s for s in api.list_schedules(proj)}
    assert set(by_name) == {"nightly", "often"}
    nightly = by_name["nightly"]
    assert nightly["timezone"] == "Europe/Berlin" and nightly["source"] == "nbops.yaml"
    assert nightly["next_fire"] > 0 and nightly["last_status"] is None
    assert by_name["often"]["timezone"].endswith("(local)")
    assert api.history(proj, "often") == []
    status = api.daemon_status(proj)
    assert status["alive"] is False and "nbops scheduler" in status["hint"]
    with pytest.raises(InvalidInput):
        api.add_schedule(proj, Schedule(name="often", cron="*/5 * * * *"))
    with pytest.raises(InvalidInput, match="cron"):
        api.add_schedule(proj, Schedule(name="x", cron="not cron"))
    with pytest.raises(ConfigError):
        api.remove_schedule(proj, "nightly")
    with pytest.raises(NotFound):
        api.remove_schedule(proj, "nope")
    with pytest.raises(NotFound):
        api.run_now(proj, "nope")
    api.remove_schedule(proj, "often")
    assert [s["name"] for s in api.list_schedules(proj)] == ["nightly"]
    from nbops.tracking import audit

    actions = [(rec["action"], rec["schedule"]) for _, rec, _ in audit.read(proj) if rec]
    assert actions == [("schedule.add", "often"), ("schedule.remove", "often")]
    assert audit.verify(proj)[1] is None


def test_print_systemd_unit_names_this_project_and_python(proj):
    out = nbops_cli("scheduler", "--print-systemd-unit", cwd=proj, timeout=60)
    assert out.returncode == 0
    assert f"WorkingDirectory={proj}" in out.stdout and "-m nbops scheduler" in out.stdout
    assert "Restart=on-failure" in out.stdout


def test_a_cli_schedule_whose_name_nbops_yaml_took_is_invalid_and_can_be_removed(proj):
    api.add_schedule(proj, Schedule(name="later", cron="@daily"))
    (proj / "nbops.yaml").write_text(YAML + '  later: {cron: "@hourly"}\n')
    views = [v for v in api.list_schedules(proj) if v["name"] == "later"]
    assert [(v["source"], v["invalid"] is None) for v in views] == [
        ("nbops.yaml", True),
        ("cli", False),
    ]
    assert "also defined in nbops.yaml" in views[1]["invalid"]
    api.remove_schedule(proj, "later")  # the CLI's goes; nbops.yaml's stays and runs
    views = [v for v in api.list_schedules(proj) if v["name"] == "later"]
    assert [v["source"] for v in views] == ["nbops.yaml"]
    with pytest.raises(ConfigError, match="defined in nbops.yaml"):
        api.remove_schedule(proj, "later")
