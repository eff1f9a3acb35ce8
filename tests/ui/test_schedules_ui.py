"""The Schedules tab and the run panel's Lineage in a real JupyterLab, in Debian's Chromium, over
a real project (tests/ui/conftest.py: a pipeline stage `train` run as a sweep). Run now starts a
real detached `nbops schedule run` (no daemon is running), whose run ids open the run panel."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.ui.conftest import Lab, open_lab, open_sidebar, shot

ITEM = ".nbops-ScheduleList-item"


@pytest.fixture
def ny_page(browser: Any) -> Iterator[Any]:
    """A page whose browser lives in New York: next runs must show in its local time."""
    context = browser.new_context(
        viewport={"width": 1440, "height": 900}, timezone_id="America/New_York", locale="en-US"
    )
    context.set_default_timeout(30_000)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.nbops_errors = errors
    yield pg
    context.close()


def open_schedules(page: Any) -> Any:
    sidebar = open_sidebar(page)
    sidebar.get_by_role("tab", name="Schedules").click()
    expect(sidebar.locator(".nbops-SchedulesView")).to_be_visible()
    return sidebar


def add_schedule(sidebar: Any, name: str, cron: str, zone: str = "") -> None:
    sidebar.get_by_role("button", name="New schedule").click()
    form = sidebar.get_by_role("form", name="New schedule")
    form.locator('input[name="name"]').fill(name)
    form.locator('input[name="cron"]').fill(cron)
    form.get_by_label("train").check()
    form.locator('select[name="catchup"]').select_option("none")
    if zone:
        form.locator('input[name="timezone"]').fill(zone)
    form.get_by_role("button", name="Add schedule").click()


def test_create_list_and_remove_a_schedule_with_its_next_run_in_local_time(
    ny_page: Any, lab: Lab
) -> None:
    page = ny_page
    open_lab(page, lab, "schedules")
    sidebar = open_schedules(page)
    # no daemon runs for this project: the tab says so and how to start it
    daemon = sidebar.locator('[data-daemon="down"]')
    expect(daemon).to_contain_text("not running")
    expect(daemon).to_contain_text("nbops scheduler")
    expect(daemon).to_contain_text("project folder")
    expect(sidebar.locator('[data-empty="no-schedules"]')).to_be_visible()

    # a bad cron is refused by the server, which names the field
    add_schedule(sidebar, "nightly-train", "61 2 * * *")
    form = sidebar.get_by_role("form", name="New schedule")
    expect(form.get_by_role("alert")).to_contain_text("cron")
    form.locator('input[name="cron"]').fill("30 2 * * *")
    form.locator('input[name="timezone"]').fill("Europe/Berlin")
    form.get_by_role("button", name="Add schedule").click()

    item = sidebar.locator(f'{ITEM}[data-schedule="nightly-train"]')
    expect(item).to_be_visible()
    expect(sidebar.get_by_role("form", name="New schedule")).to_have_count(0)
    expect(item.locator(".nbops-ScheduleList-when")).to_contain_text("30 2 * * *")
    expect(item.locator(".nbops-ScheduleList-when")).to_contain_text("Europe/Berlin")
    expect(item.locator(".nbops-ScheduleList-meta")).to_contain_text("train")
    expect(item.locator(".nbops-ScheduleList-meta")).to_contain_text("catch-up none")
    expect(item.locator(".nbops-exec")).to_have_text("never run")
    # 02:30 in Berlin is 20:30 (or 21:30 in summer) in New York, shown with the zone
    (listed,) = [s for s in lab.api("schedules")["schedules"] if s["name"] == "nightly-train"]
    assert listed["next_fire"] > time.time() * 1000
    nxt = item.locator(".nbops-ScheduleList-next strong")
    expect(nxt).to_have_text(_ny_pattern())
    expect(sidebar.locator(".nbops-SchedulesView .nbops-Toolbar-count")).to_contain_text(
        "America/New_York"
    )
    shot(page, "schedules-light", sidebar)

    # remove asks once more, then the schedule is gone (here and on the server)
    item.get_by_role("button", name="Remove").click()
    item.get_by_role("button", name="Remove nightly-train?").click()
    expect(sidebar.locator(ITEM)).to_have_count(0)
    assert lab.api("schedules")["schedules"] == []
    assert page.nbops_errors == []


def test_an_invalid_stored_schedule_says_why_it_is_skipped_beside_a_good_one(
    page: Any, lab: Lab
) -> None:
    import sqlite3

    from nbops.scheduler import api
    from nbops.scheduler.model import Schedule

    api.add_schedule(lab.root, Schedule(name="good", cron="0 3 * * *", stages=["train"]))
    db = sqlite3.connect(lab.root / ".nbops" / "scheduler" / "scheduler.db", isolation_level=None)
    db.execute(  # stored past the validation (an older nbops, a hand edit): it never fires
        "INSERT INTO schedules VALUES ('feb30', json_object('name', 'feb30', 'cron', "
        "'0 0 30 2 *'), 0)"
    )
    db.close()
    try:
        open_lab(page, lab, "schedules-invalid")
        sidebar = open_schedules(page)
        bad = sidebar.locator(f'{ITEM}[data-schedule="feb30"]')
        expect(bad.locator(".nbops-ScheduleList-invalid")).to_contain_text("never fires")
        expect(bad.locator(".nbops-ScheduleList-next")).to_have_count(0)
        good = sidebar.locator(f'{ITEM}[data-schedule="good"]')
        expect(good.locator(".nbops-ScheduleList-next strong")).not_to_have_text("never")
        expect(good.locator(".nbops-ScheduleList-invalid")).to_have_count(0)
        shot(page, "schedules-invalid", sidebar)
        assert page.nbops_errors == []
    finally:
        api.remove_schedule(lab.root, "feb30")
        api.remove_schedule(lab.root, "good")


def _ny_pattern() -> Any:
    import re

    return re.compile(r"^\w{3}, \w{3} \d{1,2}, (08|09):30 PM E[SD]T$")


def test_run_now_history_links_open_the_run_with_its_lineage(page: Any, lab: Lab, seeded) -> None:
    open_lab(page, lab, "run-now")
    sidebar = open_schedules(page)
    add_schedule(sidebar, "hourly", "@hourly")
    item = sidebar.locator(f'{ITEM}[data-schedule="hourly"]')
    expect(item).to_be_visible()
    try:
        item.get_by_role("button", name="Run now").click()
        expect(item.locator(".nbops-ScheduleList-note")).to_contain_text("Started")
        history = item.locator(".nbops-ScheduleHistory")
        # the detached `nbops schedule run` executes the stage in a real kernel
        done = history.locator('tr[data-status="ok"]')
        expect(done).to_have_count(1, timeout=240_000)
        # the list follows: last status ok, and a link to the last run
        expect(item.locator(".nbops-StageList-head .nbops-exec")).to_have_text("ok")
        expect(item.locator(".nbops-ScheduleList-meta button.nbops-link")).to_be_visible()
        links = done.locator("button.nbops-link")
        run_id = links.first.get_attribute("data-run-id")
        assert run_id
        run = seeded["client"].get_run(run_id)
        assert run.data.tags["nbops.stage"] == "train"
        assert run.data.tags["nbops.schedule"] == "hourly"
        # `nbops verify` would tag it; the badge reads the tag
        seeded["client"].set_tag(run_id, "nbops.verified", "true")
        shot(page, "schedule-history-light", sidebar)

        links.first.click()
        panel = page.locator(f"#nbops-run-{run_id}")
        expect(panel).to_be_visible()
        expect(panel.locator('.nbops-RunPanel-header [data-verified="true"]')).to_have_text(
            "✓ reproducible"
        )
        lineage = panel.get_by_role("region", name="Lineage")
        node = lineage.locator(f'[data-lineage-run="{run_id}"]')
        facts = node.locator(".nbops-Lineage-facts").first
        expect(facts).to_contain_text("train")
        expect(facts).to_contain_text("train.ipynb")
        expect(facts).to_contain_text("git commit")
        expect(facts).to_contain_text("lr=0.1")
        expect(facts).to_contain_text("epochs=12")
        shot(page, "run-lineage-light")
        assert page.nbops_errors == []
    finally:
        sidebar.locator(f'{ITEM}[data-schedule="hourly"]').get_by_role(
            "button", name="Remove"
        ).click()
        sidebar.get_by_role("button", name="Remove hourly?").click()
        expect(sidebar.locator(ITEM)).to_have_count(0)


def test_compare_panel_shows_the_lineage_and_verification_of_each_run(
    page: Any, lab: Lab, seeded
) -> None:
    a, b = seeded["sweep"]["0.05"], seeded["sweep"]["0.8"]
    seeded["client"].set_tag(b, "nbops.verified", "false")
    open_lab(page, lab, "compare-lineage")
    open_sidebar(page, "uitest")
    for rid in (a, b):
        page.locator(f'.nbops-RunTable-row[data-run-id="{rid}"] input[type=checkbox]').check()
    panel = page.locator(".nbops-Compare").first
    section = panel.locator(".nbops-CompareLineage")
    expect(section.locator('[data-verified="absent"]')).to_have_text("not verified")
    expect(section.locator(f'[data-lineage-run="{a}"]')).to_contain_text("lr=0.05")
    section.locator(".nbops-CompareLineage-picker button").nth(1).click()
    expect(section.locator('[data-verified="false"]')).to_have_text("✗ not reproducible")
    expect(section.locator(f'[data-lineage-run="{b}"]')).to_contain_text("lr=0.8")
    assert page.nbops_errors == []


def test_dark_theme_screenshots(page: Any, lab: Lab, seeded) -> None:
    lab.set_theme("JupyterLab Dark")
    try:
        open_lab(page, lab, "schedules-dark")
        expect(page.locator("body")).to_have_attribute("data-jp-theme-light", "false")
        sidebar = open_schedules(page)
        add_schedule(sidebar, "dark-nightly", "0 3 * * 1-5", "Europe/Paris")
        item = sidebar.locator(f'{ITEM}[data-schedule="dark-nightly"]')
        expect(item).to_be_visible()
        item.get_by_role("button", name="History").click()
        expect(item.locator(".nbops-ScheduleHistory-empty")).to_be_visible()
        sidebar.get_by_role("button", name="New schedule").click()
        expect(
            sidebar.get_by_role("form", name="New schedule").get_by_label("train")
        ).to_be_visible()
        shot(page, "schedules-dark", sidebar)
        bg = sidebar.locator('[data-daemon="down"]').evaluate(
            "e => getComputedStyle(e).backgroundColor"
        )
        assert bg not in ("rgb(255, 255, 255)", "rgba(0, 0, 0, 0)"), bg
        item.get_by_role("button", name="Remove").click()
        item.get_by_role("button", name="Remove dark-nightly?").click()
        expect(sidebar.locator(ITEM)).to_have_count(0)
        # a run panel in the dark theme, opened from a lineage link of the Compare panel
        sidebar.get_by_role("tab", name="Runs").click()
        sidebar.locator(".nbops-ExperimentList li", has_text="uitest").click()
        rid = seeded["sweep"]["0.3"]
        for r in (rid, seeded["sweep"]["0.05"]):
            page.locator(f'.nbops-RunTable-row[data-run-id="{r}"] input[type=checkbox]').check()
        compare = page.locator(".nbops-CompareLineage")
        compare.locator(".nbops-CompareLineage-picker button", has_text="0.3").click()
        node = compare.locator(f'[data-lineage-run="{rid}"]')
        node.locator(".nbops-Lineage-head button.nbops-link").click()
        panel = page.locator(f"#nbops-run-{rid}")
        expect(panel.get_by_role("region", name="Lineage")).to_contain_text("lr=0.3")
        shot(page, "run-lineage-dark")
        assert page.nbops_errors == []
    finally:
        lab.set_theme("JupyterLab Light")


LINEAGE_YAML = """\
experiment: linproj
stages:
  make:
    notebook: make.ipynb
    params: {n: 4}
    outs: [data.csv]
  train:
    notebook: train.ipynb
    deps: [data.csv]
    params: {C: 0.5}
"""


@pytest.fixture(scope="module")
def pipeline_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A two-stage pipeline (make writes data.csv, train reads it) run once, in its own lab."""
    import os

    from mlflow.tracking import MlflowClient

    from tests.conftest import nbops_cli, notebook
    from tests.ui.conftest import start_lab, stop_lab

    work = tmp_path_factory.mktemp("lineage")
    root = work / "proj"
    (root / ".nbops").mkdir(parents=True)
    (root / "nbops.yaml").write_text(LINEAGE_YAML)
    notebook(
        root / "make.ipynb",
        ("n = 1", ["parameters"]),
        "open('data.csv', 'w').write('x\\n' + '\\n'.join(str(i) for i in range(n)) + '\\n')",
    )
    notebook(root / "train.ipynb", ("C = 1.0", ["parameters"]), "rows = open('data.csv').read()")
    env = {**os.environ, "NBOPS_PROJECT_ROOT": str(root)}
    env.pop("MLFLOW_TRACKING_URI", None)
    done = nbops_cli("run", cwd=root, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    client = MlflowClient(f"sqlite:///{root / '.nbops' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("linproj")
    runs = {
        r.data.tags["nbops.stage"]: r
        for r in client.search_runs([exp.experiment_id], "tags.`nbops.stage` != ''")
    }
    server = start_lab(root, work)
    yield {"lab": server, "runs": runs}
    stop_lab(server.proc)


def test_lineage_shows_data_fingerprints_and_the_upstream_run(
    page: Any, pipeline_lab: dict[str, Any]
) -> None:
    lab, runs = pipeline_lab["lab"], pipeline_lab["runs"]
    make, train = runs["make"], runs["train"]
    digest = make.data.tags["nbops.out.data.csv"]
    open_lab(page, lab, "lineage")
    open_sidebar(page, "linproj")
    for r in (make, train):
        page.locator(
            f'.nbops-RunTable-row[data-run-id="{r.info.run_id}"] input[type=checkbox]'
        ).check()
    section = page.locator(".nbops-CompareLineage")
    section.locator(".nbops-CompareLineage-picker button", has_text="train").click()
    node = section.locator(f'[data-lineage-run="{train.info.run_id}"]')
    data = node.locator(".nbops-Lineage-data").first
    expect(data).to_contain_text("reads")
    expect(data).to_contain_text("data.csv")
    expect(data.locator(".nbops-Lineage-digest")).to_have_text(digest[:12])
    edge = node.locator(".nbops-Lineage-edge")
    expect(edge).to_contain_text("data.csv")
    expect(edge).to_contain_text("made by")
    upstream = node.locator(f'[data-lineage-run="{make.info.run_id}"]')
    expect(upstream).to_contain_text("writes")
    expect(upstream).to_contain_text("n=4")
    # the upstream run opens in its own panel
    upstream.locator(".nbops-Lineage-head button.nbops-link").first.click()
    panel = page.locator(f"#nbops-run-{make.info.run_id}")
    expect(panel.locator(".nbops-RunPanel-header h2")).to_have_text("make")
    expect(panel.get_by_role("region", name="Lineage")).to_contain_text(digest[:12])
    shot(page, "lineage-upstream-light")
    assert page.nbops_errors == []
