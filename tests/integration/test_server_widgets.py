"""The ipywidgets twin of the Compare panel: nbops.compare(...) displays as a widget (plain HTML
without ipywidgets), and nbops.runs_widget() filters, ticks and compares runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, execute, notebook
from tests.integration.server_seed import small_experiment

WIDGET = "application/vnd.jupyter.widget-view+json"


@pytest.fixture
def seeded(project: Path) -> dict[str, Any]:
    return small_experiment(project)


def test_compare_displays_as_a_widget_with_tables_and_a_metric_chart(seeded: dict) -> None:
    from IPython.core.interactiveshell import InteractiveShell

    import nbops
    from nbops.ipython.widgets import comparison_widget, histories

    cmp = nbops.compare([seeded["run-0"], seeded["run-3"]])
    data, _ = InteractiveShell.instance().display_formatter.format(cmp)
    assert WIDGET in data and data[WIDGET]["model_id"]
    assert "<svg" in data["text/html"] and "Params that differ" in data["text/html"]
    assert "Params that differ" in data["text/plain"]

    charts = histories(cmp)
    assert set(charts) == {"acc", "loss"}
    assert [len(h) for h in charts["acc"].values()] == [5, 5]
    box = comparison_widget(cmp, charts)
    tables, pick, chart = box.children
    assert "kind" in tables.value and "svm" in tables.value  # a param that differs
    assert "font-weight:bold" in tables.value  # the best value is marked
    assert list(pick.options) == ["acc", "loss"] and ">acc<" in chart.value
    pick.value = "loss"
    assert ">loss<" in chart.value and chart.value.count("<polyline") == 2


def test_compare_falls_back_to_html_without_ipywidgets(seeded: dict, project: Path) -> None:
    code = (
        "import sys, json\n"
        "sys.modules['ipywidgets'] = None  # as if it were not installed\n"
        "import nbops\n"
        f"cmp = nbops.compare([{seeded['run-0']!r}, {seeded['run-1']!r}])\n"
        "print(json.dumps(sorted(cmp._repr_mimebundle_())))\n"
        "print(json.dumps(cmp._repr_mimebundle_()['text/html']))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=project, check=True
    )
    keys, page = (json.loads(line) for line in out.stdout.strip().splitlines()[-2:])
    assert keys == ["text/html", "text/plain"]
    assert "<svg" in page and "Metrics" in page


def test_runs_widget_filters_ticks_and_compares(seeded: dict) -> None:
    import nbops

    browser = nbops.runs_widget("iris")
    assert set(browser.run_ids) == {seeded[f"run-{i}"] for i in range(5)}
    assert len(browser.checks) == 5
    browser.filter.value = "params.kind = 'rf' and metrics.acc > 0.7"
    assert browser.run_ids == [seeded["run-4"], seeded["run-2"]]
    browser.filter.value = "params.kind >>> 'rf'"  # bad syntax: a message, not a traceback
    assert "not valid MLflow search syntax" in browser.message.value
    browser.filter.value = ""
    assert len(browser.run_ids) == 5 and browser.message.value == ""

    browser.checks[0].value = True
    assert browser.compare_selected() is None and "at least two" in browser.message.value
    browser.checks[1].value = True
    cmp = browser.compare_selected()
    assert cmp is not None and cmp.run_ids == browser.run_ids[:2]
    (shown,) = browser.output.outputs
    assert WIDGET in shown["data"] and "<svg" in shown["data"]["text/html"]
    assert WIDGET in browser._repr_mimebundle_()


def test_compare_renders_as_a_widget_in_a_real_kernel(seeded: dict, project: Path) -> None:
    nb = notebook(
        project / "look.ipynb",
        f"import sys; sys.path.insert(0, {str(REPO)!r})\nimport nbops\n"
        f"nbops.compare([{seeded['run-0']!r}, {seeded['run-1']!r}, {seeded['run-2']!r}])",
    )
    out = execute(nb)
    (result,) = [o for o in out.cells[0].outputs if o["output_type"] == "execute_result"]
    assert WIDGET in result["data"]
    assert "<svg" in result["data"]["text/html"]
    state = out.metadata.get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {})
    assert result["data"][WIDGET]["model_id"] in state.get("state", {})
