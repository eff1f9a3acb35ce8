"""The nbops sidebar and Compare panel in a real JupyterLab, in Debian's Chromium, over a real
MLflow store seeded by a real `nbops run --sweep` (3 runs with notebooks and metric histories)."""

from __future__ import annotations

import re
from typing import Any

from playwright.sync_api import expect

from tests.ui.conftest import BULK, Lab, open_lab, open_sidebar, shot

ROW = ".nbops-RunTable-row"


def row(page: Any, run_id: str) -> Any:
    return page.locator(f'{ROW}[data-run-id="{run_id}"]')


def test_sidebar_lists_the_seeded_runs_with_metric_columns(page, lab: Lab, seeded):
    open_lab(page, lab, "sidebar")
    sidebar = open_sidebar(page)
    # the experiment with the newest run is chosen first
    expect(sidebar.locator(".nbops-ExperimentList li", has_text="baseline")).to_have_attribute(
        "aria-selected", "true"
    )
    expect(sidebar.locator(ROW)).to_have_count(2)
    expect(sidebar.locator(".nbops-status-failed")).to_have_count(1)
    sidebar.locator(".nbops-ExperimentList li", has_text="uitest").click()
    for run_id in seeded["sweep"].values():
        expect(row(page, run_id)).to_be_visible()
    header = sidebar.locator(".nbops-RunTable-header")
    expect(header.locator('[data-column="metrics.accuracy"]')).to_be_visible()
    lr_05 = row(page, seeded["sweep"]["0.05"])
    expect(lr_05.locator('[data-column="metrics.accuracy"]')).to_have_text("0.727")
    shot(page, "sidebar-light", sidebar)
    assert page.nbops_errors == []


def test_sort_and_filter_use_the_store(page, lab: Lab, seeded):
    open_lab(page, lab, "filter")
    sidebar = open_sidebar(page, "uitest")
    expect(row(page, seeded["sweep"]["0.8"])).to_be_visible()
    # sort by accuracy, highest first (MLflow order_by), then lowest first
    sidebar.locator('.nbops-RunTable-header [data-column="metrics.accuracy"]').click()
    first = sidebar.locator(ROW).first
    expect(first).to_have_attribute("data-run-id", seeded["sweep"]["0.8"])
    with page.expect_response(lambda r: "metrics.accuracy%20ASC" in r.url):
        sidebar.locator('.nbops-RunTable-header [data-column="metrics.accuracy"]').click()
    expect(sidebar.locator(".nbops-RunTable-loading")).to_have_count(0)
    expect(sidebar.locator(ROW)).to_have_count(5)
    ids = [
        sidebar.locator(ROW).nth(i).get_attribute("data-run-id")
        for i in range(sidebar.locator(ROW).count())
    ]
    assert ids.index(seeded["sweep"]["0.05"]) < ids.index(seeded["sweep"]["0.8"])
    box = sidebar.get_by_label("MLflow filter")
    box.fill("params.lr = '0.3'")
    box.press("Enter")
    expect(sidebar.locator(ROW)).to_have_count(1)
    expect(row(page, seeded["sweep"]["0.3"])).to_be_visible()
    box.fill("metrics.accuracy >")
    box.press("Enter")
    expect(sidebar.locator(".nbops-error")).to_be_visible()
    box.fill("metrics.accuracy > 2")
    box.press("Enter")
    expect(sidebar.locator('[data-empty="no-match"]')).to_be_visible()
    sidebar.get_by_role("button", name="Clear the filter").click()
    expect(row(page, seeded["sweep"]["0.05"])).to_be_visible()


def test_columns_picked_in_the_table_are_kept_in_the_settings(page, lab: Lab, seeded):
    open_lab(page, lab, "columns")
    sidebar = open_sidebar(page, "uitest")
    header = sidebar.locator(".nbops-RunTable-header")
    expect(header.locator('[data-column="params.lr"]')).to_be_visible()  # the param that varies
    expect(header.locator('[data-column="params.layers"]')).to_have_count(0)
    sidebar.get_by_role("button", name="Columns").click()
    picker = sidebar.get_by_role("group", name="columns")
    picker.locator("label", has_text="layers").locator("input").check()
    expect(header.locator('[data-column="params.layers"]')).to_have_count(1)
    saved = lab.settings_dir / "nbops" / "plugin.jupyterlab-settings"
    try:
        # the choice is a setting (settings registry), so it survives a reload
        page.reload()
        page.wait_for_selector("#jupyterlab-splash", state="detached", timeout=60_000)
        sidebar = open_sidebar(page, "uitest")
        layers = sidebar.locator('.nbops-RunTable-header [data-column="params.layers"]')
        expect(layers).to_be_visible()
        assert "params.layers" in saved.read_text()
    finally:
        saved.unlink(missing_ok=True)


def test_running_runs_refresh_by_themselves(page, lab: Lab, seeded):
    client = seeded["client"]
    live = client.create_experiment("live")
    run = client.create_run(live, run_name="still-training")
    rid = run.info.run_id
    try:
        open_lab(page, lab, "live")
        open_sidebar(page, "live")
        expect(row(page, rid).locator(".nbops-status-running")).to_have_count(1)
        client.log_metric(rid, "accuracy", 0.93)
        client.set_terminated(rid, "FINISHED")
        # no click: the table polls while a run is RUNNING (refreshInterval, 5 s by default)
        expect(row(page, rid).locator(".nbops-status-finished")).to_have_count(1)
        expect(row(page, rid).locator('[data-column="metrics.accuracy"]')).to_have_text("0.93")
    finally:
        if client.get_run(rid).info.status == "RUNNING":
            client.set_terminated(rid, "KILLED")


def test_thousands_of_runs_page_in_as_you_scroll_and_only_visible_rows_exist(page, lab: Lab):
    pages: list[str] = []
    page.on("request", lambda r: "page_token=" in r.url and pages.append(r.url))
    open_lab(page, lab, "bulk")
    sidebar = open_sidebar(page, "bulk")
    expect(sidebar.locator(".nbops-Toolbar-count")).to_contain_text(f"{BULK} runs")
    expect(sidebar.locator(ROW).first).to_contain_text(f"bulk-{BULK - 1}")
    rendered = sidebar.locator(ROW).count()
    assert 10 < rendered < 80, rendered  # a window of rows, not the 100 loaded
    table = sidebar.locator(".nbops-RunTable")
    # scroll to the end of what is loaded, three times: each asks for the next page
    for loaded in (100, 200, 300):
        table.evaluate("e => { e.scrollTop = e.scrollHeight; }")
        expect(sidebar.locator(ROW, has_text=f"bulk-{BULK - loaded - 1}")).to_be_visible()
    assert len(pages) >= 3, pages
    assert sidebar.locator(ROW).count() < 80


def _compare_two(page: Any, seeded: dict[str, Any]) -> Any:
    a, b = seeded["sweep"]["0.05"], seeded["sweep"]["0.8"]
    row(page, a).locator("input[type=checkbox]").check()
    row(page, b).locator("input[type=checkbox]").check()
    panel = page.locator(".nbops-Compare")
    expect(panel.locator(".nbops-RunChip")).to_have_count(2)
    return panel


def test_selecting_two_runs_opens_compare_with_diffs_charts_and_notebook_diff(
    page, lab: Lab, seeded
):
    open_lab(page, lab, "compare")
    open_sidebar(page, "uitest")
    panel = _compare_two(page, seeded)
    # params: lr differs and is highlighted, the others are folded away as identical
    lr = panel.locator('.nbops-param-differ[data-param="lr"]')
    expect(lr).to_be_visible()
    expect(lr.locator("td.nbops-mod-changed")).to_have_text("0.8")
    expect(panel.locator(".nbops-Same summary")).to_contain_text("identical param")
    # metrics: the best accuracy (lr=0.8) and the lowest loss are marked
    acc = panel.locator('.nbops-Metrics tr[data-metric="accuracy"]')
    expect(acc.locator(".nbops-best")).to_have_count(1)
    expect(acc.locator("td").nth(1)).to_have_class("nbops-mod-numeric nbops-best")
    # overlaid histories: one uPlot canvas per stepped metric, a legend entry per run
    chart = panel.locator('.nbops-Chart[data-metric="loss"]')
    expect(chart.locator("canvas")).to_have_count(1)
    expect(chart.locator(".u-legend .u-series")).to_have_count(3)
    expect(panel.locator('.nbops-Chart[data-metric="val_acc"] canvas')).to_have_count(1)
    # the executed notebooks differ in the injected parameters and in the printed loss
    diff = panel.locator(".nbops-Diff")
    expect(diff.locator('.nbops-Diff-cell[data-status="modified"]').first).to_be_visible()
    expect(diff.locator("ins", has_text="0.8").first).to_be_visible()
    expect(diff.locator("del", has_text="0.05").first).to_be_visible()
    diff.get_by_role("button", name="unified").click()
    expect(diff.locator(".nbops-Diff-pair pre.nbops-Diff-source")).to_have_count(0)
    diff.get_by_role("button", name="side-by-side").click()
    shot(page, "compare-light")
    assert page.nbops_errors == []


def test_dark_theme_screenshots(page, lab: Lab, seeded):
    lab.set_theme("JupyterLab Dark")
    try:
        open_lab(page, lab, "dark")
        expect(page.locator("body")).to_have_attribute("data-jp-theme-light", "false")
        sidebar = open_sidebar(page, "uitest")
        panel = _compare_two(page, seeded)
        expect(panel.locator(".nbops-Chart canvas").first).to_be_visible()
        shot(page, "sidebar-dark", sidebar)
        shot(page, "compare-dark")
        # colours come from the theme: the panel background is the dark layout colour
        bg = panel.evaluate("e => getComputedStyle(e).backgroundColor")
        assert bg not in ("rgb(255, 255, 255)", "rgba(0, 0, 0, 0)"), bg
    finally:
        lab.set_theme("JupyterLab Light")


def test_commands_are_in_the_palette(page, lab: Lab):
    open_lab(page, lab, "palette")
    page.locator("#jp-main-dock-panel").click()  # focus in the app, then its shortcut
    page.keyboard.press("Control+Shift+C")
    palette = page.locator("#command-palette")
    expect(palette.locator("input")).to_be_visible()
    palette.locator("input").fill("nbops")
    for label in ("Open Runs Sidebar", "Refresh Runs", "Compare Selected Runs", "Open Pipeline"):
        expect(palette.locator(".lm-CommandPalette-item", has_text=label)).to_have_count(1)
    palette.locator(".lm-CommandPalette-item", has_text="Open Pipeline").click()
    stage = page.locator('#nbops-sidebar [data-stage="train"]')
    expect(stage.locator(".nbops-StageList-notebook")).to_have_text("train.ipynb")
    # a sweep from the command line is not the stage as nbops.yaml declares it (lr = 0.1)
    expect(stage.locator(".nbops-stage-status")).to_have_text("never run")
    expect(stage.get_by_role("button", name="Run")).to_be_enabled()


def test_rerun_with_a_changed_param_adds_a_new_run(page, lab: Lab, seeded):
    open_lab(page, lab, "rerun")
    open_sidebar(page, "uitest")
    panel = _compare_two(page, seeded)
    form = panel.locator(".nbops-Rerun")
    source = seeded["sweep"]["0.05"]
    expect(form.get_by_label("run to re-run")).to_have_value(source)
    expect(form.locator('input[name="lr"]')).to_have_value("0.05")
    epochs = form.locator('input[name="epochs"]')
    expect(epochs).to_have_value("12")
    epochs.fill("6")
    expect(form.locator(".nbops-RerunButton")).to_have_text("Re-run with 1 change")
    form.locator(".nbops-RerunButton").click()
    status = form.locator(".nbops-job")
    expect(status).to_have_attribute("data-job-state", "done", timeout=240_000)
    new_id = status.get_attribute("data-new-run-id")
    assert new_id and new_id not in seeded["sweep"].values()
    # the table shows it (marked as a re-run) and the comparison takes it in
    expect(row(page, new_id)).to_be_visible(timeout=30_000)
    expect(row(page, new_id).locator(".nbops-rerun-mark")).to_have_count(1)
    expect(panel.locator(f'.nbops-RunChip[data-run-id="{new_id}"]')).to_be_visible()
    # three runs now: each differing numeric param against each metric, a dot per run
    scatter = panel.locator('.nbops-Scatter[data-param="epochs"][data-metric="accuracy"]')
    expect(scatter.locator("circle")).to_have_count(3)
    run = seeded["client"].get_run(new_id)
    # the edit, and the run's own value for what was not edited (not nbops.yaml's lr = 0.1)
    assert run.data.params["epochs"] == "6"
    assert run.data.params["lr"] == "0.05"
    history = seeded["client"].get_metric_history(new_id, "loss")
    assert [m.step for m in history] == list(range(6))
    assert run.data.tags["nbops.rerun_of"] == source
    assert run.info.status == "FINISHED"


def test_pipeline_view_runs_a_stage_and_shows_it_up_to_date(page, lab: Lab, seeded):
    open_lab(page, lab, "pipeline")
    sidebar = open_sidebar(page, "uitest")
    before = {r.info.run_id for r in seeded["client"].search_runs([seeded["experiment"]])}
    sidebar.get_by_role("tab", name="Pipeline").click()
    stage = sidebar.locator('[data-stage="train"]')
    # never run as declared (the sweep and a re-run used other params), or stale after them
    expect(stage.locator(".nbops-stage-status")).to_have_text(re.compile("never run|stale"))
    stage.get_by_role("button", name="Run").click()
    expect(sidebar.locator(".nbops-job-done")).to_be_visible(timeout=240_000)
    expect(stage.locator(".nbops-stage-status")).to_have_text("up to date")
    after = seeded["client"].search_runs([seeded["experiment"]], "tags.`nbops.stage` = 'train'")
    new = [r for r in after if r.info.run_id not in before]
    assert len(new) == 1 and new[0].data.params["lr"] == "0.1", new  # nbops.yaml's own lr
    sidebar.get_by_role("tab", name="Runs").click()
    expect(row(page, new[0].info.run_id)).to_be_visible()


def test_an_empty_store_tells_a_new_user_what_to_do(page, empty_lab: Lab):
    open_lab(page, empty_lab, "empty")
    sidebar = open_sidebar(page)
    empty = sidebar.locator('[data-empty="no-runs"]')
    expect(empty).to_contain_text("nbops demo")
    expect(empty).to_contain_text("%load_ext nbops")
    expect(empty).to_contain_text("%track start")
    sidebar.get_by_role("tab", name="Pipeline").click()
    expect(sidebar.locator('[data-empty="no-pipeline"]')).to_contain_text("nbops.yaml")
    shot(page, "sidebar-empty", sidebar)
