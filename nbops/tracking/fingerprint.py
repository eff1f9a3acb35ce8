"""Data fingerprints: an exact content hash (xxh3-128 over every byte), size, and rows/columns for
delimited text. Directories hash as a tree of (relative path, file hash)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import xxhash

from nbops.errors import NotFound

CHUNK = 1 << 20
_DELIMITED = {".csv": ",", ".tsv": "\t"}


def file_digest(path: Path) -> tuple[str, int, int]:
    """(xxh3-128 hex, size, newline count) of a file, reading it once."""
    h = xxhash.xxh3_128()
    size = lines = 0
    last = b"\n"
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
            size += len(chunk)
            lines += chunk.count(b"\n")
            last = chunk[-1:]
    if last != b"\n":
        lines += 1  # a last line without its newline
    return h.hexdigest(), size, lines


def tree_digest(root: Path) -> tuple[str, int, int]:
    """(digest, total size, file count) of a directory: names and contents, order-independent."""
    h = xxhash.xxh3_128()
    size = count = 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            p = Path(dirpath) / name
            digest, n, _ = file_digest(p)
            h.update(p.relative_to(root).as_posix().encode() + b"\0" + digest.encode() + b"\n")
            size += n
            count += 1
    return h.hexdigest(), size, count


def fingerprint(path: Path, name: str | None = None, role: str = "input") -> dict[str, Any]:
    if not path.exists():
        raise NotFound(
            f"data file {str(path)!r} does not exist", f"check the path (relative to {os.getcwd()})"
        )
    fp: dict[str, Any] = {
        "name": name or path.name,
        "path": str(path.resolve()),
        "role": role,
        "rows": None,
        "cols": None,
    }
    if path.is_dir():
        digest, size, files = tree_digest(path)
        fp.update(xxh3=digest, size=size, files=files, format="directory")
        return fp
    digest, size, lines = file_digest(path)
    fp.update(xxh3=digest, size=size, format=path.suffix.lstrip(".") or "bin")
    sep = _DELIMITED.get(path.suffix.lower())
    if sep is not None and size:
        with open(path, encoding="utf-8", errors="replace") as f:
            header = f.readline()
        fp["cols"] = len(header.rstrip("\r\n").split(sep))
        fp["rows"] = max(lines - 1, 0)  # the header is not a row
    elif path.suffix.lower() == ".parquet":
        try:
            import pyarrow.parquet as pq

            meta = pq.ParquetFile(path).metadata
            fp["rows"], fp["cols"] = meta.num_rows, meta.num_columns
        except Exception:  # noqa: BLE001 - shape is a nicety; the hash is what matters
            pass
    return fp
