"""Versioned outputs: every out a stage writes is copied into ``.nbops/cache/`` under its content
hash, and the run records ``outs.json`` (path → digest, and file digests for directories), so
``nbops checkout RUN`` can put the exact bytes back. The cache holds copies, never links, so an
edit of a user's file in place can never change what the cache holds (nor the other way round).

An ``outs.json`` comes from the store, so it is checked whole before anything is written: every
name must be a path nbops may write (:func:`nbops.pipeline.paths.refusal`: inside the project
root, not through a symlink out of it, not in ``.nbops/``, not ``nbops.yaml`` or ``.git/``), every
digest must look like one (it becomes a file name in the cache), and every content must be in the
cache. One bad entry and nothing is restored."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

from nbops.errors import InvalidInput, NbopsError, NotFound
from nbops.pipeline import paths, statefile
from nbops.pipeline.hashing import HashCache

DIGEST_RE = re.compile(r"^[0-9a-f]{32}$")
"""A file's content digest (xxh3-128, hex): the only names the cache holds."""
TREE_RE = re.compile(r"^tree:[0-9a-f]{32}$")
Pair = tuple[Path, str]
"""A file to restore and the digest of its content."""
RECORD_HINT = (
    "this outs.json was not written by nbops (or was altered): pick another stage run, or re-run "
    "the stage to record its outs again"
)


def load_record(path: Path | str, run: str | None = None) -> Any:
    """The JSON of a downloaded ``outs.json`` (its shape is checked by :meth:`OutCache.restore`);
    an InvalidInput naming the run when it is not a readable JSON file."""
    who = f"run {run}: " if run else ""
    raw = statefile.read_regular(Path(path))
    if raw is None:
        raise InvalidInput(f"{who}its outs.json does not exist", RECORD_HINT)
    if isinstance(raw, str):
        raise InvalidInput(f"{who}its outs.json {raw}", RECORD_HINT)
    value = statefile.parse_json(raw)
    if isinstance(value, statefile.Unusable):
        raise InvalidInput(f"{who}its outs.json {value.reason}", RECORD_HINT)
    return value


class OutCache:
    def __init__(self, root: Path, state: Path, hashes: HashCache) -> None:
        self.root = root
        self.dir = state / "cache"
        self.hashes = hashes

    def _blob(self, digest: str) -> Path:
        if not DIGEST_RE.match(digest):  # a name in the cache: never a path of any other shape
            raise InvalidInput(f"{digest!r} is not a content digest", RECORD_HINT)
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

    def plan(self, record: Any, *, run: str | None = None) -> list[tuple[str, list[Pair]]]:
        """Each out of an ``outs.json`` record with the (file, digest) pairs to put back, after
        checking all of it: an InvalidInput (or NotFound) naming the run, the entry and why."""
        who = f"run {run}: " if run else ""

        def refuse(entry: str, why: str, hint: str = RECORD_HINT) -> InvalidInput:
            return InvalidInput(f"{who}outs.json entry {entry!r} {why}; nothing was restored", hint)

        if not isinstance(record, dict):
            raise InvalidInput(
                f"{who}outs.json holds {type(record).__name__}, not an object of out → digest; "
                "nothing was restored",
                RECORD_HINT,
            )
        todo: list[tuple[str, list[Pair]]] = []
        for rel, entry in record.items():
            found = paths.refusal(self.root, rel, "out")
            if found is not None:
                raise refuse(rel, found[0], found[1])
            if not isinstance(entry, dict):
                raise refuse(rel, "is not an object with a digest")
            files, digest = entry.get("files"), entry.get("digest")
            base = paths.normalise(rel)
            if files is None:
                if digest is not None and not (isinstance(digest, str) and DIGEST_RE.match(digest)):
                    raise refuse(rel, f"has the digest {digest!r}, which is not a content digest")
                todo.append((rel, [] if digest is None else [(self.root / base, digest)]))
                continue
            if not isinstance(files, dict):
                raise refuse(rel, "has 'files' that is not an object of name → digest")
            if digest is not None and not (isinstance(digest, str) and TREE_RE.match(digest)):
                raise refuse(rel, f"has the folder digest {digest!r}, which is not one")
            pairs = []
            for name, d in files.items():
                inner = f"{base}/{name}" if isinstance(name, str) else ""
                found = paths.refusal(self.root, inner, "out")
                plain = (
                    isinstance(name, str)
                    and paths.normalise(name) == name  # no '.', '..' inside, '//', trailing '/'
                    and name not in (".", "..")
                    and not name.startswith(("/", "../"))
                )
                if found is None and not plain:
                    found = (f"is not a plain relative name inside the folder {base}", RECORD_HINT)
                if found is not None:
                    raise refuse(f"{rel}: {name}", found[0], found[1])
                if d is None:
                    continue
                if not (isinstance(d, str) and DIGEST_RE.match(d)):
                    raise refuse(f"{rel}: {name}", f"has the digest {d!r}, which is not one")
                pairs.append((self.root / paths.normalise(inner), d))
            todo.append((rel, pairs))
        for rel, pairs in todo:
            for _, digest in pairs:
                if not self._blob(digest).is_file():
                    raise NotFound(
                        f"{who}{rel}: content {digest[:12]}… is not in {self.dir}; nothing was "
                        "restored",
                        "the cache was cleared or the run was made on another "
                        "machine; re-run the stage to make it again",
                    )
        return todo

    def restore(self, record: Any, *, run: str | None = None) -> list[str]:
        """Put back the outs of an ``outs.json`` record (all checked first: see :meth:`plan`);
        returns the paths restored."""
        done = []
        for rel, pairs in self.plan(record, run=run):
            for dst, digest in pairs:
                found = paths.refusal(self.root, str(dst.relative_to(self.root)), "out")
                if found is not None:  # changed since the check (another out made a symlink?)
                    raise InvalidInput(f"{dst}: {found[0]}; stopped restoring", found[1])
                try:
                    if self.hashes.file_digest(dst) == digest:
                        continue
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    tmp = dst.with_name(f".{dst.name}.nbops-tmp")
                    shutil.copyfile(self._blob(digest), tmp)
                    os.replace(tmp, dst)
                except OSError as exc:
                    raise NbopsError(
                        f"cannot restore {dst.relative_to(self.root)}: {exc.strerror or exc}",
                        "check that the folders on its path are folders you can write to",
                    ) from None
            done.append(rel)
        return done
