"""IPython integration: ``%load_ext nbops`` registers the %track / %%track magics."""

from __future__ import annotations

from typing import Any


def load_ipython_extension(ipython: Any) -> None:
    from nbops.ipython.magics import TrackMagics

    ipython.register_magics(TrackMagics(ipython))


def unload_ipython_extension(ipython: Any) -> None:
    pass
