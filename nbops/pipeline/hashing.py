"""Content hashes of files and directories (xxh3-128 over every byte), remembered by
(path, size, mtime_ns, inode) in ``.nbops/hashes.json`` so unchanged files are never read again.

Only regular files are read (and directories walked for theirs): a FIFO, socket or device, or a
file on ``/proc``, ``/sys`` or ``/dev``, is a ConfigError naming it, and is never opened, so that
``nbops status`` cannot hang on it. ``hashes.json`` is a cache read through
:mod:`nbops.pipeline.statefile`: an unusable one is set aside and files are hashed again."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

from nbops.errors import ConfigError, NbopsError
from nbops.pipeline import paths, statefile
from nbops.tracking.fingerprint import file_kind

CACHE_FILE = "hashes.json"
CHUNK = 1 << 20
REHASH = "files are hashed again (a cache: nothing is lost)"


def _entry(value: Any) -> bool:
    """A cache entry is [size, mtime_ns, inode, digest]."""
    return (
        isinstance(value, list)
        and len(value) == 4
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value[:3])
        and isinstance(value[3], str)
    )


def _refuse(path: Path, what: str, hint: str) -> ConfigError:
    return ConfigError(f"{path} {what}", hint)


def content_digest(path: Path, st: os.stat_result | None = None) -> str:
    """xxh3-128 of a regular file's bytes (the digest ``nbops.tracking.fingerprint`` gives).
    Anything else is refused before it is opened; the file is opened non-blocking and checked
    again, so one swapped for a FIFO meanwhile cannot block either."""
    import xxhash

    st = st or os.stat(path)
    if not stat.S_ISREG(st.st_mode):
        raise _refuse(
            path,
            f"is {file_kind(st.st_mode) or 'a directory'}, not a regular file",
            "nbops hashes regular files (and folders of them): remove it from deps/outs, or "
            "move it out of the folder",
        )
    if os.path.islink(path):
        real = os.path.realpath(path)
        special = [s for s in paths.SPECIAL_ROOTS if paths.within(real, s)]
        if special:
            raise _refuse(
                path,
                f"leads to {real}, on {special[0]}, a pseudo file system whose files never end",
                "copy the data into the project and name the copy",
            )
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise _refuse(
            path, f"cannot be read: {exc.strerror or exc}", "fix its permissions"
        ) from exc
    with os.fdopen(fd, "rb") as f:
        now = os.fstat(fd)
        if not stat.S_ISREG(now.st_mode):
            raise _refuse(path, "is not a regular file", "nbops hashes regular files only")
        os.set_blocking(fd, True)
        h = xxhash.xxh3_128()
        try:
            while chunk := f.read(CHUNK):
                h.update(chunk)
        except OSError as exc:
            raise _refuse(path, f"cannot be read: {exc.strerror}", "check the disk") from None
    return str(h.hexdigest())


class HashCache:
    """Digest of paths under a project root; call :meth:`save` to keep what was learnt."""

    def __init__(self, root: Path, state: Path) -> None:
        self.root = root
        self.file = state / CACHE_FILE
        self.dirty = False
        self.entries: dict[str, list[Any]] = {}
        # project-relative files that do not exist here yet but will be fetched with this
        # content (team mode: ``nbops status`` on a fresh clone, :meth:`expect`); never saved
        self.expected: dict[str, str] = {}
        raw = statefile.read(self.file, means=REHASH)
        if raw is statefile.MISSING:
            return
        if not isinstance(raw, dict):
            statefile.set_aside(self.file, f"holds {type(raw).__name__}, not an object", REHASH)
            return
        self.entries = {k: v for k, v in raw.items() if _entry(v)}
        if len(self.entries) < len(raw):
            statefile.set_aside(
                self.file,
                f"has {len(raw) - len(self.entries)} malformed entries",
                "the sound ones are kept; the other files are hashed again",
            )
            self.dirty = True

    def file_digest(self, path: Path) -> str | None:
        """The xxh3 of a file's content, or None if it does not exist."""
        try:
            st = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise _refuse(path, f"cannot be read: {exc.strerror or exc}", "fix the path") from None
        key = str(path)
        stamp = [st.st_size, st.st_mtime_ns, st.st_ino]
        hit = self.entries.get(key)
        if hit is not None and hit[:3] == stamp and stat.S_ISREG(st.st_mode):
            return str(hit[3])
        digest = content_digest(path, st)
        self.entries[key] = [*stamp, digest]
        self.dirty = True
        return digest

    def expect(self, files: dict[str, str]) -> None:
        """Answer for these project-relative files, while they do not exist, as if they held
        these contents (they are on the tracking server and will be fetched): a folder that
        holds them digests as it will once they are here. :meth:`forget` stops it."""
        self.expected.update({paths.normalise(k): v for k, v in files.items()})

    def forget(self, files: list[str]) -> None:
        for k in files:
            self.expected.pop(paths.normalise(k), None)

    def digest(self, rel: str) -> str | None:
        """Digest of a project-relative file or directory (a tree of names and contents)."""
        path = self.root / rel
        if self.expected:
            virtual = self._expected_digest(rel, path)
            if virtual is not None:
                return virtual
        if path.is_dir():
            import xxhash

            h = xxhash.xxh3_128()
            top, real_top = str(path), os.path.realpath(path)
            for dirpath, dirnames, filenames in os.walk(path):  # never into symlinked folders
                dirnames.sort()
                real = real_top + dirpath[len(top) :]
                special = [s for s in paths.SPECIAL_ROOTS if paths.within(real, s)]
                if special:
                    raise ConfigError(
                        f"{rel}: {dirpath} is on {special[0]}, a pseudo file system whose "
                        "files block or never end",
                        "name the folders it reads, not one that holds " + special[0],
                    )
                for name in sorted(filenames):
                    p = Path(dirpath) / name
                    try:
                        d = self.file_digest(p)
                    except ConfigError as err:
                        raise ConfigError(f"{rel}: {err.message}", err.hint) from None
                    h.update(f"{p.relative_to(path).as_posix()}\0{d}\n".encode())
            return "tree:" + h.hexdigest()
        return self.file_digest(path)

    def _expected_digest(self, rel: str, path: Path) -> str | None:
        """The digest of ``rel`` counting :attr:`expected` files that are missing (None when
        none of them is under it): a tree walked as :meth:`digest` walks one (each folder's
        files by name, then its folders by name)."""
        base = paths.normalise(rel)
        under = {
            k[len(base) + 1 :]: v
            for k, v in self.expected.items()
            if k.startswith(base + "/") and not (self.root / k).exists()
        }
        if base in self.expected and not path.exists():
            return self.expected[base]
        if not under or (path.exists() and not path.is_dir()):
            return None
        tree: dict[str, Any] = {}
        if path.is_dir():
            for dirpath, dirnames, filenames in os.walk(path):
                dirnames.sort()
                for name in filenames:
                    p = Path(dirpath) / name
                    under.setdefault(p.relative_to(path).as_posix(), self.file_digest(p) or "")
        for name, d in under.items():
            node = tree
            *dirs, leaf = name.split("/")
            for part in dirs:
                node = node.setdefault(part, {})
            node[leaf] = d
        import xxhash

        h = xxhash.xxh3_128()

        def walk(node: dict[str, Any], prefix: str) -> None:
            for name in sorted(k for k, v in node.items() if isinstance(v, str)):
                h.update(f"{prefix}{name}\0{node[name] or None}\n".encode())
            for name in sorted(k for k, v in node.items() if isinstance(v, dict)):
                walk(node[name], f"{prefix}{name}/")

        walk(tree, "")
        return "tree:" + h.hexdigest()

    def save(self) -> None:
        if not self.dirty:
            return
        live = {k: v for k, v in self.entries.items() if os.path.exists(k)}
        self.dirty = False
        try:
            statefile.write(self.file, live)
        except NbopsError as err:  # a cache: a read-only project still answers, hashing again
            statefile.say(f"nbops: {err.message}; the next command hashes the files again")
