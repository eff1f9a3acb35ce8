"""The pure parts of shared outs, without a server: the digest a fresh clone looks its stage
points up by, when missing outs are fetched instead of made, folders digested with the files
still to fetch, and the cache refusing a download that is not what its name says."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nbops.errors import InvalidInput
from nbops.pipeline.cache import OutCache, record_digests
from nbops.pipeline.hashing import HashCache
from nbops.pipeline.staleness import Fingerprint, fetchable, inputs_digest

NAMES = st.sampled_from(["a", "b", "c.csv", "d.pkl", "sub", "sub2", "z"])
TREES = st.dictionaries(
    st.lists(NAMES, min_size=1, max_size=3).map("/".join), st.binary(max_size=40), min_size=1
)


def _write(root: Path, tree: dict[str, bytes]) -> dict[str, bytes]:
    """Write the files of ``tree`` under ``root`` (a name that is a folder of another wins)."""
    kept: dict[str, bytes] = {}
    for name in sorted(tree, key=len, reverse=True):
        if any(k.startswith(name + "/") for k in kept) or any(
            name.startswith(k + "/") for k in kept
        ):
            continue
        kept[name] = tree[name]
    for name, data in kept.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return kept


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(tree=TREES, gone=st.sets(st.integers(0, 10)))
def test_a_folder_digests_the_same_with_its_missing_files_expected(
    tmp_path: Path, tree: dict[str, bytes], gone: set[int]
) -> None:
    root = tmp_path / "p"
    shutil.rmtree(root, ignore_errors=True)
    (root / ".nbops").mkdir(parents=True)
    files = _write(root / "models", tree)
    hashes = HashCache(root, root / ".nbops")
    whole = hashes.digest("models")
    names = sorted(files)
    removed = {f"models/{names[i % len(names)]}" for i in gone}
    expected = {r: hashes.digest(r) or "" for r in removed}
    for r in removed:
        os.unlink(root / r)
    fresh = HashCache(root, root / ".nbops")  # nothing remembered of the removed files
    fresh.expect(expected)
    assert fresh.digest("models") == whole
    for r in removed:
        assert fresh.digest(r) == expected[r]
    fresh.forget(list(removed))
    if removed:
        assert fresh.digest("models") != whole
    assert not fresh.expected


def _fp(**change: object) -> Fingerprint:
    base: dict[str, object] = {
        "code": "c1",
        "params": {"C": 0.1, "seed": 0},
        "deps": {"data/train.csv": "d" * 32},
        "env": "e1",
    }
    base.update(change)
    return Fingerprint(**base)  # type: ignore[arg-type]


def test_the_inputs_digest_is_code_params_and_deps_not_their_order_nor_the_environment() -> None:
    fp = _fp()
    assert inputs_digest(fp) == inputs_digest(_fp(params={"seed": 0, "C": 0.1}))
    assert inputs_digest(fp) == inputs_digest(_fp(env="another machine"))
    assert inputs_digest(fp) != inputs_digest(_fp(code="c2"))
    assert inputs_digest(fp) != inputs_digest(_fp(params={"C": 1.0, "seed": 0}))
    assert inputs_digest(fp) != inputs_digest(_fp(deps={"data/train.csv": "e" * 32}))
    assert len(inputs_digest(fp)) == 32


def test_missing_outs_are_fetched_only_when_nothing_else_changed(tmp_path: Path) -> None:
    (tmp_path / ".nbops").mkdir()
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.csv").write_text("x\n")
    hashes = HashCache(tmp_path, tmp_path / ".nbops")
    real = hashes.digest("data/train.csv")
    assert real is not None
    fp = _fp(deps={"data/train.csv": real})
    outs = ["models/m.pkl", "data/train.csv"]
    rec = fp.record({"models/m.pkl": "a" * 32, "data/train.csv": real}, "r1", 0.0)
    assert fetchable(fp, rec, outs, hashes) == ["models/m.pkl"]
    assert fetchable(fp, None, outs, hashes) == []
    assert fetchable(_fp(deps={"data/train.csv": real}, code="c2"), rec, outs, hashes) == []
    other_env = _fp(deps={"data/train.csv": real}, env="e2")
    assert fetchable(other_env, rec, outs, hashes) == []  # environment changed: it runs
    unrecorded = fp.record({"data/train.csv": real}, "r1", 0.0)
    assert fetchable(fp, unrecorded, outs, hashes) == []  # no digest to fetch by
    edited = fp.record({"models/m.pkl": "a" * 32, "data/train.csv": "b" * 32}, "r1", 0.0)
    assert fetchable(fp, edited, outs, hashes) == []  # an out here changed: it runs
    assert fetchable(fp, rec, ["data/train.csv"], hashes) == []  # nothing missing


def test_the_cache_keeps_a_download_only_if_it_is_the_content_its_name_says(
    tmp_path: Path,
) -> None:
    (tmp_path / ".nbops").mkdir()
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "m.pkl").write_bytes(b"model bytes")
    (tmp_path / "out.csv").write_bytes(b"a,b\n")
    hashes = HashCache(tmp_path, tmp_path / ".nbops")
    cache = OutCache(tmp_path, tmp_path / ".nbops", hashes)
    record = cache.store(["models", "out.csv"])
    found = record_digests(record)
    assert sorted(found.values()) == ["models/m.pkl", "out.csv"]
    digest = next(d for d, n in found.items() if n == "models/m.pkl")
    assert dict(cache.blobs())[digest] == cache.blob(digest)
    shutil.rmtree(cache.dir)
    damaged = tmp_path / "dl" / digest
    damaged.parent.mkdir()
    damaged.write_bytes(b"model byteZ")  # same size, other bytes
    with pytest.raises(InvalidInput) as err:
        cache.adopt(damaged, digest, "models/m.pkl")
    assert "models/m.pkl" in err.value.message and digest in err.value.message
    assert "damaged" in err.value.message and "push --verify" in (err.value.hint or "")
    assert not cache.blob(digest).exists() and not damaged.exists()
    folder = tmp_path / "dir" / digest  # a server that answers a folder for the name
    (folder / "x").mkdir(parents=True)
    with pytest.raises(InvalidInput, match="is not a file"):
        cache.adopt(folder, digest, "models/m.pkl")
    assert not cache.blob(digest).exists()
    good = tmp_path / "dl" / digest
    good.write_bytes(b"model bytes")
    cache.adopt(good, digest, "models/m.pkl")
    assert cache.blob(digest).read_bytes() == b"model bytes"
