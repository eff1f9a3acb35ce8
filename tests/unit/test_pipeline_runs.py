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
