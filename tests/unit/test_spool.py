import os

from nbops.tracking.spool import Spool, try_lock


def test_records_round_trip_and_a_partial_last_line_waits(tmp_path):
    sp = Spool.create(tmp_path / "s")
    sp.append(["start", {"uri": "sqlite:///x"}])
    sp.append(["m", "loss", 0.5, 1, 123])
    with open(sp.log_path, "ab") as f:
        f.write(b'["m", "loss", 0.4')  # a write still in progress
    recs = list(Spool(sp.dir).read_from(0))
    assert [r for _, r in recs] == [["start", {"uri": "sqlite:///x"}], ["m", "loss", 0.5, 1, 123]]
    end_of_complete = recs[-1][0]
    assert list(Spool(sp.dir).read_from(end_of_complete)) == []


def test_lock_is_held_while_the_logging_side_has_the_spool_open(tmp_path):
    sp = Spool.create(tmp_path / "s")
    sp.append(["start", {}])
    assert try_lock(sp.dir) is None  # someone is responsible: not an orphan
    sp.close()
    fd = try_lock(sp.dir)
    assert fd is not None  # orphaned: may be replayed
    os.close(fd)


def test_ack_and_run_info_survive_reopening(tmp_path):
    sp = Spool.create(tmp_path / "s")
    sp.append(["start", {"pid": 1}])
    sp.set_ack(42)
    sp.set_run_info("abc", "7")
    again = Spool(sp.dir)
    assert again.acked() == 42
    assert again.run_info() == {"run_id": "abc", "experiment_id": "7"}
    assert again.start_record() == {"pid": 1}


def test_finish_keeps_only_what_the_logging_process_needs(tmp_path):
    sp = Spool.create(tmp_path / "s")
    sp.append(["start", {}])
    sp.set_run_info("abc", "1")
    sp.finish("abc")
    assert sp.is_done()
    assert not sp.log_path.exists()
    assert sp.run_info()["run_id"] == "abc"


def test_a_damaged_line_is_skipped_and_the_records_around_it_are_read(tmp_path):
    sp = Spool.create(tmp_path / "s")
    sp.append(["m", "loss", 0.5, 1, 123])
    with open(sp.log_path, "ab") as f:
        f.write(b"not json\n" + b"[" * 100_000 + b"]" * 100_000 + b"\n5\n[]\n[1, 2]\n")
    sp.append(["m", "loss", 0.4, 2, 124])
    recs = [r for _, r in Spool(sp.dir).read_from(0)]
    assert recs == [["m", "loss", 0.5, 1, 123], ["m", "loss", 0.4, 2, 124]]
