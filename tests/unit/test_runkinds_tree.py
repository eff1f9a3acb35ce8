"""lineage.tree_digest gives a set of (name, digest) files the digest HashCache.digest gives the
directory holding them (what a stage's ``nbops.dep.<dir>`` records), for any tree: how lineage
proves which runs' outs make up the directory a stage read."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from nbops.ops.lineage import tree_digest
from nbops.pipeline.hashing import HashCache

NAME = st.text("abcAB-_.0123456789", min_size=1, max_size=6).filter(lambda s: s not in (".", ".."))
TREE = st.dictionaries(
    st.lists(NAME, min_size=1, max_size=3).map(tuple), st.binary(max_size=20), max_size=8
)


@settings(max_examples=60, deadline=None)
@given(TREE)
def test_tree_digest_is_the_digest_of_the_directory_holding_the_files(tree):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        top = root / "models"
        top.mkdir()
        written: dict[str, bytes] = {}
        for parts, content in tree.items():
            target = top.joinpath(*parts)
            # a name cannot be both a file and a folder: keep the first one written
            if any(top.joinpath(*parts[:i]).is_file() for i in range(1, len(parts))):
                continue
            if target.exists():
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
            written["/".join(parts)] = content
        hashes = HashCache(root, root / ".nbops")
        files = {n: hashes.file_digest(top / n) for n in written}
        assert tree_digest({n: d for n, d in files.items() if d}) == hashes.digest("models")
