"""Content hashes of files and directories (xxh3-128 over every byte), remembered by
(path, size, mtime_ns, inode) in ``.nbops/hashes.json`` so unchanged files are never read again."""

from __future__ import annotations

import json
import os
from pathlib import Path

from nbops.tracking.fingerprint import file_digest

CACHE_FILE = "hashes.json"


class HashCache:
    """Digest of paths under a project root; call :meth:`save` to keep what was learnt."""

    def __init__(self, root: Path, state: Path) -> None:
        self.root = root
        self.file = state / CACHE_FILE
        self.dirty = False
        try:
            self.entries: dict[str, list[object]] = json.loads(self.file.read_text())
        except (FileNotFoundError, ValueError):
            self.entries = {}

    def file_digest(self, path: Path) -> str | None:
        """The xxh3 of a file's content, or None if it does not exist."""
        try:
            st = path.stat()
        except FileNotFoundError:
            return None
        key = str(path)
        stamp = [st.st_size, st.st_mtime_ns, st.st_ino]
        hit = self.entries.get(key)
        if hit is not None and hit[:3] == stamp:
            return str(hit[3])
        digest = file_digest(path)[0]
        self.entries[key] = [*stamp, digest]
        self.dirty = True
        return digest

    def digest(self, rel: str) -> str | None:
        """Digest of a project-relative file or directory (a tree of names and contents)."""
        path = self.root / rel
        if path.is_dir():
            import xxhash

            h = xxhash.xxh3_128()
            for dirpath, dirnames, filenames in os.walk(path):
                dirnames.sort()
                for name in sorted(filenames):
                    p = Path(dirpath) / name
                    d = self.file_digest(p)
                    h.update(f"{p.relative_to(path).as_posix()}\0{d}\n".encode())
            return "tree:" + h.hexdigest()
        return self.file_digest(path)

    def save(self) -> None:
        if not self.dirty:
            return
        live = {k: v for k, v in self.entries.items() if os.path.exists(k)}
        tmp = self.file.with_name(f".{self.file.name}.{os.getpid()}.tmp")
        tmp.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(live, separators=(",", ":")))
        os.replace(tmp, self.file)
        self.dirty = False
