"""``nbops push`` / ``nbops pull``: the out cache shared through the tracking server's artifact
store (team mode). Filled in by issue 14, item 2."""

from __future__ import annotations

from typing import Any


def add_parsers(sub: Any) -> None:
    """Register ``push`` and ``pull`` on the CLI's subparsers (none yet)."""
