"""verify compares a run's own outs by content digest after the re-execution: the same bytes
pass, changed bytes, a file not written and a changed directory are each named."""

from __future__ import annotations

from pathlib import Path

from nbops.ops.verify import compare_outs
from nbops.pipeline.hashing import HashCache


def test_outs_are_compared_by_digest_and_each_difference_is_named(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "m.pkl").write_bytes(b"model")
    (tmp_path / "report.json").write_text('{"a": 1}')
    hashes = HashCache(tmp_path, tmp_path / ".nbops")
    recorded = {p: hashes.digest(p) or "" for p in ("models/m.pkl", "report.json", "models")}
    table, diffs = compare_outs({**recorded, "gone.csv": "ab" * 16}, tmp_path)
    assert diffs == ["gone.csv: abababababab -> not written"]
    assert table["models/m.pkl"] == (recorded["models/m.pkl"], recorded["models/m.pkl"])
    assert table["gone.csv"] == ("ab" * 16, None)

    (tmp_path / "models" / "m.pkl").write_bytes(b"another model")
    (tmp_path / "models" / "extra.txt").write_text("x")
    table, diffs = compare_outs(recorded, tmp_path)
    assert [d.split(":")[0] for d in diffs] == ["models", "models/m.pkl"]
    assert diffs[1] == (
        f"models/m.pkl: {recorded['models/m.pkl'][:12]} -> {table['models/m.pkl'][1][:12]}"
    )
    assert not compare_outs({"report.json": recorded["report.json"]}, tmp_path)[1]
