"""The runs of one execution, without a store: a run the store creates only after its stage
finished still gets its executed notebook folder and its id in the state."""

from __future__ import annotations

from pathlib import Path

from nbops.pipeline.runs import RunBook
from nbops.pipeline.spec import load
from nbops.pipeline.state import Record, State
from nbops.tracking.run import Run
from tests.conftest import notebook


def _book(root: Path) -> RunBook:
    root.mkdir()
    notebook(root / "train.ipynb", ("C = 1.0", ["parameters"]), "x = C")
    (root / "nbops.yaml").write_text("stages:\n  train:\n    notebook: train.ipynb\n")
    return RunBook(root, root / ".nbops", load(root / "nbops.yaml"), {})


def test_a_run_named_after_its_stage_finished_gets_its_folder_and_its_id_in_the_state(tmp_path):
    book = _book(tmp_path / "p")
    root = book.root
    run = Run("e", "train", root=root, uri=f"sqlite:///{root}/x.db", spawn_writer=False)
    kept = root / ".nbops" / "runs" / run.local_id
    kept.mkdir(parents=True)
    (kept / "train.ipynb").write_text("{}")
    state = State(root / ".nbops")
    record = Record("c", {}, {}, "env")
    state.put("train", "-", record)

    book.keep_notebook(run, run.id_if_ready(), kept, record)  # the store has not created it yet
    assert kept.is_dir() and record.run_id is None

    run.spool.set_run_info("abc123", "1")  # what the sink's delivery writes once it has the run
    book.name_late_runs(state)
    assert (root / ".nbops" / "runs" / "abc123" / "train.ipynb").is_file()
    assert not kept.exists()
    again = State(root / ".nbops").get("train", "-")
    assert again is not None and again.run_id == "abc123"


def test_a_run_the_store_named_in_time_moves_at_once(tmp_path):
    book = _book(tmp_path / "p")
    kept = book.root / ".nbops" / "runs" / "local"
    kept.mkdir(parents=True)
    run = Run("e", "t", root=book.root, uri="sqlite:///x.db", spawn_writer=False)
    book.keep_notebook(run, "rid", kept, Record("c", {}, {}, "env", run_id="rid"))
    assert (book.root / ".nbops" / "runs" / "rid").is_dir() and book.unnamed == []


SWEEP_YAML = "stages:\n  train:\n    notebook: train.ipynb\n    sweep: {C: [1, 2]}\n"


def test_queued_points_are_created_only_when_they_begin_with_their_real_start(
    tmp_path, monkeypatch
):
    """A sweep's two points are queued at T; the first begins at T+5 s, the second at T+9 s.
    The store creates each run only when it begins, with that start; the sweep's run begins
    with its first point; the pipeline run with the execution; the table learns every id (a
    pump by hand is a point after which everything ready has been delivered)."""
    import io

    from nbops.mlflow.store import TrackingStore
    from nbops.pipeline import runs as runs_mod
    from nbops.pipeline.progress import Progress
    from nbops.pipeline.runner import Runner
    from nbops.tracking import run as run_mod

    now = [1_800_000_000_000]  # ms: the runs' clock, moved by hand
    monkeypatch.setattr(run_mod, "_now_ms", lambda: now[0] * 1_000_000)
    monkeypatch.setattr(runs_mod.time, "time_ns", lambda: now[0] * 1_000_000)
    root = tmp_path / "p"
    (root / ".nbops").mkdir(parents=True)
    notebook(root / "train.ipynb", ("C = 1", ["parameters"]), "x = C")
    (root / "nbops.yaml").write_text(SWEEP_YAML)
    (plan,) = Runner(root).plan(None)
    out = io.StringIO()
    progress = Progress(out)
    book = RunBook(root, root / ".nbops", load(root / "nbops.yaml"), {}, progress)
    uri = f"sqlite:///{root}/.nbops/mlflow.db"
    book.start(uri, ["train"], [], None)  # the sink pumps in its thread; this test also by hand
    sink = book.sink
    assert sink is not None and book.pipeline_run is not None
    t_exec = now[0]
    now[0] += 1000
    parent = book.stage_run(plan)
    points = [book.new_run(plan, pt, parent) for pt in plan.points]
    for pt in plan.points:
        progress.line(pt.label, "queued", "never run")
    sink.pump()
    assert book.pipeline_run.id_if_ready() is not None
    assert parent.id_if_ready() is None and all(r.id_if_ready() is None for r in points)

    now[0] += 5000
    t_first = now[0]
    book.point_started(points[0])
    progress.line(plan.points[0].label, "running", "never run")
    sink.pump()
    assert parent.id_if_ready() is not None and points[0].id_if_ready() is not None
    assert points[1].id_if_ready() is None  # still queued: not in the store yet
    now[0] += 4000
    t_second = now[0]
    book.point_started(points[1])
    book.point_started(points[1])  # told twice (a retry): begins once
    progress.line(plan.points[1].label, "running", "never run")
    sink.pump()
    store = TrackingStore(uri)
    beat = "nbops.heartbeat"
    assert store.get_run(points[1].id).data.tags[beat] == str(t_second)  # not since queued
    # a long stage keeps saying it is alive (nbops sync elsewhere must not reap it)
    from nbops.pipeline import sink as sink_mod
    from nbops.tracking import delivery as delivery_mod

    monkeypatch.setattr(sink_mod, "HEARTBEAT_S", -1.0)
    monkeypatch.setattr(delivery_mod, "_now_ms", lambda: t_second + 600_000)
    sink.pump()
    assert store.get_run(points[0].id).data.tags[beat] == str(t_second + 600_000)
    monkeypatch.setattr(sink_mod, "HEARTBEAT_S", 3600.0)
    now[0] += 2000
    for r in points:
        r.end("FINISHED")
    parent.end("FINISHED")
    book.pipeline_run.end("FINISHED")
    assert sink.close(timeout=60)

    info = {r: store.get_run(r.id).info for r in (book.pipeline_run, parent, *points)}
    assert info[book.pipeline_run].start_time == t_exec
    assert info[parent].start_time == t_first  # the sweep begins with its first point
    assert info[points[0]].start_time == t_first
    assert info[points[1]].start_time == t_second  # not the T+1 s it was queued at
    assert {i.end_time for i in info.values()} == {now[0]}
    text = out.getvalue()
    for r in (parent, *points):
        assert text.count(r.id) == 1, text  # each id said exactly once
    assert book.pipeline_run.id not in text  # the summary line says that one
