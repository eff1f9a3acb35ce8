import json
import os

from hypothesis import given, settings
from hypothesis import strategies as st

from nbops.tracking import spool as records
from nbops.tracking.spool import Spool, try_lock


def test_records_round_trip_and_a_partial_last_line_waits(tmp_path):
    sp = Spool.create(tmp_path / "s")
    sp.append(records.Start({"uri": "sqlite:///x"}))
    sp.append(records.Metric("loss", 0.5, 1, 123))
    with open(sp.log_path, "ab") as f:
        f.write(b'["m", "loss", 0.4')  # a write still in progress
    recs = list(Spool(sp.dir).records_from(0))
    assert [r.encode() for _, r in recs] == [
        ["start", {"uri": "sqlite:///x"}],
        ["m", "loss", 0.5, 1, 123],
    ]
    end_of_complete = recs[-1][0]
    assert list(Spool(sp.dir).records_from(end_of_complete)) == []


def test_lock_is_held_while_the_logging_side_has_the_spool_open(tmp_path):
    sp = Spool.create(tmp_path / "s")
    sp.append(records.Start({}))
    assert try_lock(sp.dir) is None  # someone is responsible: not an orphan
    sp.close()
    fd = try_lock(sp.dir)
    assert fd is not None  # orphaned: may be replayed
    os.close(fd)


def test_ack_and_run_info_survive_reopening(tmp_path):
    sp = Spool.create(tmp_path / "s")
    sp.append(records.Start({"pid": 1}))
    sp.set_ack(42)
    sp.set_run_info("abc", "7")
    again = Spool(sp.dir)
    assert again.acked() == 42
    assert again.run_info() == {"run_id": "abc", "experiment_id": "7"}
    assert again.start_record() == {"pid": 1}


def test_finish_keeps_only_what_the_logging_process_needs(tmp_path):
    sp = Spool.create(tmp_path / "s")
    sp.append(records.Start({}))
    sp.set_run_info("abc", "1")
    sp.finish("abc")
    assert sp.is_done()
    assert not sp.log_path.exists()
    assert sp.run_info()["run_id"] == "abc"


def test_a_damaged_line_is_skipped_and_the_records_around_it_are_read(tmp_path):
    sp = Spool.create(tmp_path / "s")
    sp.append(records.Metric("loss", 0.5, 1, 123))
    with open(sp.log_path, "ab") as f:
        f.write(b"not json\n" + b"[" * 100_000 + b"]" * 100_000 + b"\n5\n[]\n[1, 2]\n")
    sp.append(records.Metric("loss", 0.4, 2, 124))
    recs = [r.encode() for _, r in Spool(sp.dir).records_from(0)]
    assert recs == [["m", "loss", 0.5, 1, 123], ["m", "loss", 0.4, 2, 124]]


# --- typed records: what the spool writes, it reads back ----------------------------------------

_text = st.text(max_size=20)
_int = st.integers(min_value=-(2**53), max_value=2**53)
_json_value = st.recursive(
    st.none() | st.booleans() | _int | st.floats(allow_nan=False, allow_infinity=False) | _text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=8,
)
_record = st.one_of(
    st.builds(records.Start, st.dictionaries(_text, _json_value, max_size=4)),
    st.builds(
        records.Metric,
        _text,
        st.floats(allow_nan=False, allow_infinity=False),
        _int,
        st.integers(min_value=0, max_value=2**53),
    ),
    st.builds(records.Param, _text, _text),
    st.builds(records.Tag, _text, _text),
    st.builds(records.Artifact, _text, st.none() | _text, st.booleans()),
    st.builds(records.Dataset, st.dictionaries(_text, _json_value, max_size=4)),
    st.builds(records.End, st.sampled_from(["FINISHED", "FAILED", "KILLED"]), _int),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(_record, max_size=12))
def test_every_record_the_spool_writes_it_reads_back_typed_and_equal(tmp_path_factory, recs):
    sp = Spool.create(tmp_path_factory.mktemp("s") / "spool")
    ends = [sp.append(r) for r in recs]
    read = list(Spool(sp.dir).records_from(0))
    assert [r for _, r in read] == recs
    assert [type(r) for _, r in read] == [type(r) for r in recs]
    assert [pos for pos, _ in read] == [sum(ends[: i + 1]) for i in range(len(recs))]
    assert list(records.read_records(sp.log_path)) == recs
    sp.close()


def test_a_record_of_the_wrong_shape_is_skipped_like_a_damaged_line(tmp_path):
    sp = Spool.create(tmp_path / "s")
    sp.append(records.Start({"uri": "sqlite:///x"}))
    for raw in (
        ["m", "loss", "high", 1, 2],
        ["m", "loss", 0.5],
        ["t", "k"],
        ["end", 3, 4],
        ["a", 5, None, True],
        ["x", 1],
        ["start", []],
    ):
        with open(sp.log_path, "a") as f:  # written by hand: append takes typed records only
            f.write(json.dumps(raw) + "\n")
    sp.append(records.Metric("loss", 0.5, 1, 123))
    assert [r for _, r in sp.records_from(0)] == [
        records.Start({"uri": "sqlite:///x"}),
        records.Metric("loss", 0.5, 1, 123),
    ]
    assert not sp.has_ended()
    sp.append(records.End("FINISHED", 124))
    assert sp.has_ended()


def test_latest_metrics_keeps_the_highest_step_and_the_later_of_one_step(tmp_path):
    sp = Spool.create(tmp_path / "s")
    sp.append(records.Start({}))
    for key, value, step in (("acc", 0.5, 2), ("acc", 0.9, 1), ("acc", 0.6, 2), ("loss", 1.0, 0)):
        sp.append(records.Metric(key, value, step, 0))
    with open(sp.log_path, "ab") as f:
        f.write(b'["m", "acc", 0.99, 9')  # a write still in progress is not a value yet
    assert records.latest_metrics(sp.log_path) == {"acc": 0.6, "loss": 1.0}


def test_a_damaged_last_line_is_acknowledged_so_delivery_catches_up(tmp_path):
    """A line damaged by hand at the end of the log delivers nothing, but the delivery moves past
    it: before, the ack stopped in front of it and the spool was never caught up."""
    from nbops.mlflow.store import TrackingStore
    from nbops.tracking.delivery import Delivery

    store = TrackingStore(f"sqlite:///{tmp_path / 'mlflow.db'}")
    sp = Spool.create(tmp_path / "s")
    sp.append(records.Start({"experiment": "e", "start_ms": 1000, "tags": {}, "params": {}}))
    sp.append(records.Metric("loss", 0.5, 0, 1001))
    with open(sp.log_path, "ab") as f:
        f.write(b'["m", "loss", "not a number", 1, 2]\n{not json\n')
    d = Delivery(Spool(sp.dir), store)
    assert d.pump() == 2
    assert d.caught_up() and sp.acked() == sp.size()
    run = store.get_run(d.run_id)
    assert run.data.metrics == {"loss": 0.5}
