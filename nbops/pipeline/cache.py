"""Versioned outputs: every out a stage writes is copied into ``.nbops/cache/`` under its content
hash, and the run records ``outs.json`` (path → digest, and file digests for directories), so
``nbops checkout RUN`` can put the exact bytes back. The cache holds copies, never links, so an
edit of a user's file in place can never change what the cache holds (nor the other way round).

An ``outs.json`` comes from the store, so it is checked whole before anything is written: every
name must be a path nbops may write (:func:`nbops.pipeline.paths.refusal`: inside the project
root, not through a symlink out of it, not in ``.nbops/``, not ``nbops.yaml`` or ``.git/``), every
digest must look like one (it becomes a file name in the cache), and every content must be in the
cache (or, on a tracking server, fetched from its shared outs first: ``fetch``, see
:mod:`nbops.pipeline.sharing`). One bad entry and nothing is restored."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Iterator
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
Fetch = Callable[[dict[str, str]], None]
"""Fills the cache with the blobs of {digest: the out it is (for messages)}, or raises."""
RECORD_HINT = (
    "this outs.json was not written by nbops (or was altered): pick another stage run, or re-run "
    "the stage to record its outs again"
)


def record_digests(record: dict[str, Any]) -> dict[str, str]:
    """{digest: the out (or out/file) it is} of every file an ``outs.json`` record holds (as
    :meth:`OutCache.store` returns it: no hashing again)."""
    found: dict[str, str] = {}
    for rel, entry in record.items():
        if not isinstance(entry, dict):
            continue
        files = entry.get("files")
        if isinstance(files, dict):
            found.update({d: f"{rel}/{n}" for n, d in files.items() if isinstance(d, str)})
        elif isinstance(entry.get("digest"), str):
            found[entry["digest"]] = rel
    return {d: n for d, n in found.items() if DIGEST_RE.match(d)}


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

    def blob(self, digest: str) -> Path:
        """Where the cache keeps the content of ``digest`` (an InvalidInput for a name that is
        not a digest: it becomes a file name)."""
        if not DIGEST_RE.match(digest):  # a name in the cache: never a path of any other shape
            raise InvalidInput(f"{digest!r} is not a content digest", RECORD_HINT)
        return self.dir / digest[:2] / digest

    def _store_file(self, path: Path) -> str | None:
        digest = self.hashes.file_digest(path)
        if digest is None:
            return None
        blob = self.blob(digest)
        if not blob.exists():
            blob.parent.mkdir(parents=True, exist_ok=True)
            tmp = blob.with_name(f".{digest}.{os.getpid()}.tmp")
            shutil.copyfile(path, tmp)
            os.replace(tmp, blob)
        return digest

    def blobs(self) -> Iterator[tuple[str, Path]]:
        """Every (digest, file) the cache holds (half-copied temporary files left out)."""
        if not self.dir.is_dir():
            return
        for sub in sorted(self.dir.iterdir()):
            if not (sub.is_dir() and len(sub.name) == 2):
                continue
            for f in sorted(sub.iterdir()):
                if DIGEST_RE.match(f.name) and f.name[:2] == sub.name and f.is_file():
                    yield f.name, f

    def adopt(self, src: Path, digest: str, what: str) -> None:
        """Move the downloaded file ``src`` into the cache as the content of ``digest``, after
        hashing every byte: an InvalidInput naming ``what`` (the out) when it is not that
        content (a blob cut short or altered on the server); ``src`` is removed either way."""
        from nbops.pipeline.hashing import content_digest

        try:
            if src.is_symlink() or not src.is_file():
                raise InvalidInput(
                    f"{what}: the server's copy of its content {digest} is not a file; nothing "
                    "was restored",
                    "run `nbops push --verify` on a machine whose .nbops/cache/ holds it",
                )
            got = content_digest(src)
            if got != digest:
                raise InvalidInput(
                    f"{what}: the server's copy of its content {digest} is damaged (its "
                    f"{src.stat().st_size} bytes hash to {got}); nothing was restored",
                    "run `nbops push --verify` on a machine whose .nbops/cache/ holds it (it "
                    "replaces damaged copies), or re-run the stage",
                )
            blob = self.blob(digest)
            blob.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, blob)
        finally:
            if src.is_symlink() or src.is_file():
                src.unlink(missing_ok=True)

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

    def plan(
        self, record: Any, *, run: str | None = None, fetch: Fetch | None = None
    ) -> list[tuple[str, list[Pair]]]:
        """Each out of an ``outs.json`` record with the (file, digest) pairs to put back, after
        checking all of it: an InvalidInput (or NotFound) naming the run, the entry and why.
        Contents missing from the cache are handed to ``fetch`` (all at once) when given."""
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
        missing = {d: rel for rel, pairs in todo for _, d in pairs if not self.blob(d).is_file()}
        if missing and fetch is not None:
            fetch(missing)
        for rel, pairs in todo:
            for _, digest in pairs:
                if not self.blob(digest).is_file():
                    raise NotFound(
                        f"{who}{rel}: content {digest[:12]}… is not in {self.dir}; nothing was "
                        "restored",
                        "the cache was cleared or the run was made on another "
                        "machine; re-run the stage to make it again",
                    )
        return todo

    def restore(
        self, record: Any, *, run: str | None = None, fetch: Fetch | None = None
    ) -> list[str]:
        """Put back the outs of an ``outs.json`` record (all checked, and missing contents
        fetched, first: see :meth:`plan`); returns the paths restored."""
        done = []
        for rel, pairs in self.plan(record, run=run, fetch=fetch):
            for dst, digest in pairs:
                found = paths.refusal(self.root, str(dst.relative_to(self.root)), "out")
                if found is not None:  # changed since the check (another out made a symlink?)
                    raise InvalidInput(f"{dst}: {found[0]}; stopped restoring", found[1])
                try:
                    if self.hashes.file_digest(dst) == digest:
                        continue
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    tmp = dst.with_name(f".{dst.name}.nbops-tmp")
                    shutil.copyfile(self.blob(digest), tmp)
                    os.replace(tmp, dst)
                except OSError as exc:
                    raise NbopsError(
                        f"cannot restore {dst.relative_to(self.root)}: {exc.strerror or exc}",
                        "check that the folders on its path are folders you can write to",
                    ) from None
            done.append(rel)
        return done
