"""Jupyter server extension ``nbops``: REST handlers over the tracking store and the pipeline.

Importing this package is cheap; tornado and jupyter_server load with ``nbops.server.app``.
"""

from __future__ import annotations

from typing import Any


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    from nbops.server.app import NbopsApp

    return [{"module": "nbops.server.app", "app": NbopsApp}]
