"""``nbops migrate --to URI``: move a project's store onto a tracking server (team mode). Filled
in by issue 14, item 6."""

from __future__ import annotations

from typing import Any


def add_parsers(sub: Any) -> None:
    """Register ``migrate`` on the CLI's subparsers (none yet)."""
