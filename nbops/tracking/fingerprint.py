"""Data fingerprints: an exact content hash (xxh3-128 over every byte), size, and rows/columns for
delimited text. Directories hash as a tree of (relative path, file hash)."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import xxhash

from nbops.errors import InvalidInput, NotFound

CHUNK = 1 << 20
_DELIMITED = {".csv": ",", ".tsv": "\t"}


def file_kind(mode: int) -> str | None:
    """What a non-regular, non-directory file is, in words (None for a file or a directory)."""
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    return "not a regular file"


def check_plain(path: Path, what: str, *, follow_dir_links: bool = True) -> list[Path]:
    """``path`` (a file, or a directory and every file under it; symlinks to files followed,
    to directories as ``follow_dir_links`` says: shutil.copytree follows them, os.walk does not)
    holds only regular files; returns those files. InvalidInput naming the first FIFO, socket
    or device: reading one would hang (a FIFO) or never end (``/dev/zero``)."""
    files: list[Path] = []
    seen: set[tuple[int, int]] = set()  # directories entered (a symlink loop ends here)
    todo = [path]
    while todo:
        p = todo.pop()
        try:
            st = p.stat()
            mode = st.st_mode
        except OSError as exc:
            raise InvalidInput(
                f"{what} {str(p)!r} cannot be read: {exc.strerror}", "check the path"
            ) from None
        kind = file_kind(mode)
        if kind is not None:
            raise InvalidInput(
                f"{what} {str(p)!r} is {kind}, not a file: its content has no end or no hash",
                "pass a regular file or a directory of them",
            )
        if stat.S_ISDIR(mode):
            if (st.st_dev, st.st_ino) in seen or (
                p is not path and not follow_dir_links and p.is_symlink()
            ):
                continue
            seen.add((st.st_dev, st.st_ino))
            try:
                todo.extend(sorted(p.iterdir(), reverse=True))
            except OSError as exc:
                raise InvalidInput(
                    f"{what} {str(p)!r} cannot be listed: {exc.strerror}", "check the path"
                ) from None
        else:
            files.append(p)
    return files


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
    check_plain(path, "data", follow_dir_links=False)  # as tree_digest's os.walk
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
