"""The times of nbops run, seen in the store and in the live table (issue 13, items 1 and 9):
with ``--jobs 1`` the stages and sweep points run one after the other, so their MLflow runs
must not overlap, each run spans what its notebook measured itself and little more, a sweep's
run spans its points, the pipeline run spans everything; the table shows ``queued`` rows that
wait, at most one ``running`` row, each row's real elapsed time and its run id.

Real kernels, a real SQLite store; the notebooks' own clocks are the reference."""

from __future__ import annotations

import io
import re
from pathlib import Path

from tests.conftest import notebook

YAML = """\
experiment: times
stages:
  a:
    notebook: work.ipynb
    params: {name: a}
    outs: [a.txt]
  b:
    notebook: work.ipynb
    params: {name: b}
    outs: [b.txt]
  c:
    notebook: work.ipynb
    deps: [a.txt]
    params: {name: c}
    outs: [c.txt]
  s:
    notebook: work.ipynb
    params: {name: s}
    sweep: {k: [1, 2, 3]}
"""

WORK = (
    ("name = 'x'\nk = 0", ["parameters"]),
    "import time\nimport nbops\nt0 = time.time()",
    "time.sleep(0.8)  # the stage's work\nopen(f'{name}.txt', 'w').write(name)",
    "nbops.log_metric('nb_start_ms', t0 * 1000)\nnbops.log_metric('nb_end_ms', time.time() * 1000)",
)

SLACK_MS = 3000  # kernel set-up and papermill around the notebook's own cells, on a busy machine


def _frames(text: str) -> list[list[str]]:
    """Every redraw of the live table, colours removed: a list of rows each."""
    frames = []
    for chunk in re.split(r"\x1b\[\d+F", text):
        plain = re.sub(r"\x1b\[[0-9;]*[mK]", "", chunk)
        rows = [r for r in plain.split("\n") if r and not r.startswith("nbops run:")]
        if rows:
            frames.append(rows)
    return frames


def test_one_job_at_a_time_gives_runs_that_do_not_overlap_and_a_table_that_matches_them(
    project: Path, client
):
    from nbops.pipeline.execution import Execution
    from nbops.pipeline.progress import Progress
    from nbops.pipeline.runner import Runner

    notebook(project / "work.ipynb", *WORK)
    (project / "nbops.yaml").write_text(YAML)
    out = io.StringIO()
    runner = Runner(project, jobs=1, progress=Progress(out, live=True))
    execution = Execution(runner, runner.plan(None))
    execution.runs.progress = runner.progress  # what Execution passes to its RunBook
    assert execution.go() == 0, out.getvalue()

    exp = client.get_experiment_by_name("times")
    runs = client.search_runs([exp.experiment_id])
    by_name = {r.info.run_name: r for r in runs}
    labels = ["a", "b", "c", "s[k=1]", "s[k=2]", "s[k=3]"]
    assert set(by_name) == {*labels, "s", "pipeline"}
    points = sorted((by_name[x] for x in labels), key=lambda r: r.info.start_time)

    # the store: one after the other, each as long as its notebook took (plus set-up)
    for before, after in zip(points, points[1:], strict=False):
        assert after.info.start_time >= before.info.end_time, (
            f"{after.info.run_name} starts {before.info.end_time - after.info.start_time} ms "
            f"before {before.info.run_name} ends"
        )
    for r in points:
        m, i = r.data.metrics, r.info
        assert i.start_time <= m["nb_start_ms"] and m["nb_end_ms"] <= i.end_time, i.run_name
        overhead = (i.end_time - i.start_time) - (m["nb_end_ms"] - m["nb_start_ms"])
        assert overhead < SLACK_MS, f"{i.run_name}: {overhead:.0f} ms more than its notebook"
    sweep = [by_name[f"s[k={k}]"] for k in (1, 2, 3)]
    parent = by_name["s"]
    first = min(p.info.start_time for p in sweep)
    assert 0 <= first - parent.info.start_time < 1000  # it begins with its first point
    assert parent.info.end_time >= max(p.info.end_time for p in sweep)
    pipe = by_name["pipeline"].info
    assert pipe.start_time <= points[0].info.start_time
    assert pipe.end_time >= max(r.info.end_time for r in runs if r.info.run_name != "pipeline")

    # the table: queued rows wait, one row runs at a time (the one before is saving), ...
    frames = _frames(out.getvalue())
    assert any(sum(" queued " in row for row in f) >= 3 for f in frames)
    assert any(re.match(r"\S+\s+saving\s", row) for f in frames for row in f)
    for f in frames:
        running = [row for row in f if re.match(r"\S+\s+running\s", row)]
        assert len([row for row in running if not row.startswith("s ")]) <= 1, f
    # ... and its last frame has every row's id and the elapsed time of its run
    final = {row.split()[0]: row for row in frames[-1]}
    assert set(final) == {*labels, "s"}
    shown = {}
    for name, row in final.items():
        assert f" run {by_name[name].info.run_id}" in row, row
        m = re.match(r"\S+\s+done\s+([\d.]+)s", row)
        assert m, row
        shown[name] = float(m.group(1))
    for name in labels:  # exactly its MLflow duration (to the 0.1 s shown)
        i = by_name[name].info
        assert abs(shown[name] - (i.end_time - i.start_time) / 1000) <= 0.051, final[name]
    span = (max(p.info.end_time for p in sweep) - first) / 1000  # the sweep's row: its points'
    assert abs(shown["s"] - span) <= 0.051, final["s"]
