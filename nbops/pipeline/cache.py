"""Versioned outputs: every out a stage writes is copied into ``.nbops/cache/`` under its content
hash, and the run records ``outs.json`` (path → digest, and file digests for directories), so
``nbops checkout RUN`` can put the exact bytes back. The cache holds copies, never links, so an
edit of a user's file in place can never change what the cache holds (nor the other way round)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from nbops.errors import NotFound
from nbops.pipeline.hashing import HashCache


class OutCache:
    def __init__(self, root: Path, state: Path, hashes: HashCache) -> None:
        self.root = root
        self.dir = state / "cache"
        self.hashes = hashes

    def _blob(self, digest: str) -> Path:
        return self.dir / digest[:2] / digest

    def _store_file(self, path: Path) -> str | None:
        digest = self.hashes.file_digest(path)
        if digest is None:
            return None
        blob = self._blob(digest)
        if not blob.exists():
            blob.parent.mkdir(parents=True, exist_ok=True)
            tmp = blob.with_name(f".{digest}.{os.getpid()}.tmp")
            shutil.copyfile(path, tmp)
            os.replace(tmp, blob)
        return digest

    def store(self, outs: list[str]) -> dict[str, Any]:
        """Copy the outs into the cache; return the ``outs.json`` record."""
        record: dict[str, Any] = {}
        for rel in outs:
            path = self.root / rel
            if path.is_dir():
                files = {
                    p.relative_to(path).as_posix(): self._store_file(p)
                    for p in sorted(path.rglob("*"))
                    if p.is_file()
                }
                record[rel] = {"digest": self.hashes.digest(rel), "files": files}
            else:
                record[rel] = {"digest": self._store_file(path)}
        return record

    def restore(self, record: dict[str, Any]) -> list[str]:
        """Put back the outs of an ``outs.json`` record; returns the paths restored."""
        done = []
        for rel, entry in record.items():
            target = self.root / rel
            files = entry.get("files")
            pairs = (
                [(target / f, d) for f, d in files.items()]
                if files is not None
                else [(target, entry.get("digest"))]
            )
            for dst, digest in pairs:
                if digest is None:
                    continue
                blob = self._blob(digest)
                if not blob.exists():
                    raise NotFound(
                        f"{rel}: content {digest[:12]}… is not in {self.dir}",
                        "the cache was cleared or the run was made on another "
                        "machine; re-run the stage to make it again",
                    )
                if self.hashes.file_digest(dst) == digest:
                    continue
                dst.parent.mkdir(parents=True, exist_ok=True)
                tmp = dst.with_name(f".{dst.name}.nbops-tmp")
                shutil.copyfile(blob, tmp)
                os.replace(tmp, dst)
            done.append(rel)
        return done
