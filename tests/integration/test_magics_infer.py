"""%%track on a realistic scikit-learn cell in a real kernel: what is logged is what a person
would log by hand; --explain shows it without running; overrides are exact and say what is off."""

from __future__ import annotations

import re

from tests.conftest import execute, notebook, outputs_text

GALLERY = """\
import time
import matplotlib
matplotlib.use("module://matplotlib_inline.backend_inline")
import matplotlib.pyplot as plt
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, classification_report
from sklearn.model_selection import GridSearchCV, cross_val_score, train_test_split
n_samples = 200
seed = 0
lw = 2
colors = ["navy", "darkorange"]
ran = bool(1)
start_time = time.time()
X, y = make_classification(n_samples=n_samples, random_state=seed)
X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=seed)
y_true = []
i = 0
fig, ax = plt.subplots()
for C, color in zip([0.01, 1.0], colors):
    model = LogisticRegression(C=C).fit(X_train, y_train)
    y_true.extend(y_test)
    i += 1
    ax.plot([0, 1], [0, C], color=color, lw=lw)
    print(f"accuracy: {accuracy_score(y_test, model.predict(X_test)):.4f}")
scores = cross_val_score(LogisticRegression(), X, y, cv=3)
grid = GridSearchCV(LogisticRegression(), {"C": [0.1, 1.0]}, cv=3).fit(X_train, y_train)
print(grid.best_params_, f"{grid.best_score_:.4f}")
report = classification_report(y_test, grid.predict(X_test), output_dict=True)
display(grid)
n_test = len(X_test)
"""


def test_a_gallery_cell_logs_settings_scores_histories_and_reports(project, client):
    nb = notebook(
        project / "gallery.ipynb",
        "%load_ext nbops",
        "%track start -e gallery -n g",
        "%%track -n fit --explain\n" + GALLERY,
        "print('ran' in globals())",
        "%%track -n fit\n" + GALLERY,
        "%%track -n over --params seed,missing_p --metrics acc,nothing_here,text --skip lw\n"
        "acc = 0.5 + 0.25\ntext = 'not a number'\nother_score = accuracy_score([1], [1])",
        "%track stop",
    )
    out = execute(nb)
    explained = outputs_text(out.cells[2])
    assert "the cell did not run" in explained
    for line in (
        r"param\s+n_samples\s+line 9: literal that feeds",
        r"param\s+seed\s+line 10: literal that feeds",
        r"metric\s+accuracy\s+line 25: scoring call not assigned to a name",
        r"metric\s+scores\s+line 26: result of a scoring call",
        r"param\s+best_params\.\*\s+line 28",
        r"skip\s+lw\s+line 11: plot styling",
        r"skip\s+colors\s+line 12: plot styling",
        r"skip\s+i\s+line 18: augmented",
        r"skip\s+y_true\s+line 17: built up",
        r"skip\s+start_time\s+line 14: computed by time.time\(\)",
        r"skip\s+n_test\s+line 31: computed by len\(X_test\)",
        r"skip\s+grid\s+line 27: an object",
    ):
        assert re.search(line, explained), (line, explained)
    assert outputs_text(out.cells[3]).strip() == "False"  # --explain ran nothing

    ran = outputs_text(out.cells[4])
    printed = [float(v) for v in re.findall(r"accuracy: ([0-9.]+)", ran)]
    assert len(printed) == 2
    assert "nbops: cell fit logged params n_samples, seed, best_params.C; metrics accuracy " in ran
    over = outputs_text(out.cells[5])
    assert "--params missing_p: no variable 'missing_p' after the cell, not logged" in over
    assert "--metrics nothing_here: no variable 'nothing_here' after the cell" in over
    assert "--metrics text: str is not a number, not logged" in over
    assert "--skip lw: the cell logs no 'lw'" in over
    assert "nbops: cell over logged params seed; metrics acc" in over

    exp = client.get_experiment_by_name("gallery")
    (run,) = client.search_runs([exp.experiment_id])
    assert run.data.params == {"n_samples": "200", "seed": "0", "best_params.C": "0.1"} or (
        run.data.params == {"n_samples": "200", "seed": "0", "best_params.C": "1.0"}
    )
    rid = run.info.run_id
    history = [m.value for m in sorted(client.get_metric_history(rid, "accuracy"), key=_step)]
    assert [round(v, 4) for v in history] == printed  # one value per loop step, as printed
    assert [m.step for m in client.get_metric_history(rid, "accuracy")] != [0, 0]
    assert len(client.get_metric_history(rid, "scores")) == 3  # one per fold
    metrics = set(run.data.metrics)
    assert {"best_score", "report.accuracy", "report.macro_avg.f1-score", "acc"} <= metrics
    assert not metrics & {"start_time", "n_test", "i", "lw", "n_samples", "text", "other_score"}
    assert not any("support" in m for m in metrics)
    assert run.data.metrics["acc"] == 0.75
    figures = {a.path for a in client.list_artifacts(rid, "cells/fit")}
    assert "cells/fit/figure-1.png" in figures


def _step(m):
    return m.step
