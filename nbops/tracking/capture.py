"""What a run records about where it ran: git state, Python and packages, host.

Runs in the writer process (never in the user's kernel), in the kernel's working directory.
Standard library only; every probe is best effort and bounded in time.
"""

from __future__ import annotations

import getpass
import platform
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import NamedTuple

from nbops import tags
from nbops.tracking.spool import Artifact, Spool, Tag


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout if out.returncode == 0 else None


def git_state(cwd: Path) -> tuple[dict[str, str], str | None]:
    """(tags, diff) for the work tree holding ``cwd``; ({}, None) outside git."""
    commit = _git(["rev-parse", "HEAD"], cwd)
    if commit is None:
        return {}, None
    commit = commit.strip()
    found = {tags.GIT_COMMIT: commit, tags.MLFLOW_GIT_COMMIT: commit}
    branch = (_git(["rev-parse", "--abbrev-ref", "HEAD"], cwd) or "").strip()
    if branch:
        found[tags.GIT_BRANCH] = branch
        found[tags.MLFLOW_GIT_BRANCH] = branch
    remote = (_git(["config", "--get", "remote.origin.url"], cwd) or "").strip()
    if remote:
        found[tags.MLFLOW_GIT_REPO_URL] = remote
    status = _git(["status", "--porcelain", "--untracked-files=no"], cwd) or ""
    dirty = bool(status.strip())
    found[tags.GIT_DIRTY] = str(dirty).lower()
    diff = _git(["diff", "HEAD", "--no-color"], cwd) if dirty else None
    return found, diff


def environment_text() -> str:
    """``environment.txt``: interpreter, platform and every installed distribution."""
    lines = [
        f"# python {sys.version.split()[0]} ({sys.executable})",
        f"# platform {platform.platform()}",
        f"# host {socket.gethostname()}",
    ]
    seen: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata.get("Name") if dist.metadata else None
        if name and name.lower() not in seen:
            seen[name.lower()] = f"{name}=={dist.version}"
    lines += sorted(seen.values(), key=str.lower)
    return "\n".join(lines) + "\n"


def host_tags() -> dict[str, str]:
    found = {
        tags.HOST: socket.gethostname(),
        tags.PYTHON: sys.version.split()[0],
    }
    try:
        found[tags.MLFLOW_USER] = getpass.getuser()
    except (KeyError, OSError):
        pass
    return found


class RunContext(NamedTuple):
    """Where a run ran: host and git tags, the environment's text, the uncommitted diff."""

    tags: dict[str, str]
    environment: str
    diff: str | None


def run_context(cwd: Path) -> RunContext:
    found = host_tags()
    git_tags, diff = git_state(cwd)
    found.update(git_tags)
    return RunContext(found, environment_text(), diff)


def append_to(spool: Spool, ctx: RunContext) -> None:
    """A run's context as ordinary records of its spool: the tags, ``environment.txt`` and (when
    the work tree has changes) ``git/diff.patch``."""
    for k, v in ctx.tags.items():
        spool.append(Tag(k, v))
    env = spool.new_file("environment.txt")
    env.write_text(ctx.environment)
    spool.append(Artifact(str(env), None, True))
    if ctx.diff:
        patch = spool.new_file("diff.patch")
        patch.write_text(ctx.diff)
        spool.append(Artifact(str(patch), "git", True))
