"""A systemd user unit for `nbops scheduler` (the daemon logs to stderr: the journal keeps it)."""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

from nbops import envvars


def unit_name(root: Path) -> str:
    """nbops-scheduler-<folder>.service: one unit per project."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", root.name).strip("-") or "project"
    return f"nbops-scheduler-{slug}.service"


def unit_text(root: Path, python: str | None = None) -> str:
    exe = shlex.quote(str(Path(python or sys.executable).absolute()))
    return (
        "[Unit]\n"
        f"Description=nbops scheduler for {root}\n"
        "After=network-online.target\n"
        "\n"
        "[Service]\n"
        "Type=simple\n"
        f"WorkingDirectory={root}\n"
        f'Environment="{envvars.PROJECT_ROOT}={root}"\n'
        f"ExecStart={exe} -m nbops scheduler\n"
        "Restart=on-failure\n"
        "RestartSec=10\n"
        "KillSignal=SIGTERM\n"
        "KillMode=mixed\n"
        "TimeoutStopSec=120\n"
        "\n"
        "[Install]\n"
        "WantedBy=default.target\n"
    )


def install(root: Path, home: Path | None = None) -> Path:
    """Write the unit to ~/.config/systemd/user/ and return its path (systemctl is not run)."""
    d = (home or Path.home()) / ".config" / "systemd" / "user"
    d.mkdir(parents=True, exist_ok=True)
    path = d / unit_name(root)
    path.write_text(unit_text(root))
    return path
