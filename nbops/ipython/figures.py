"""Figures a cell shows: PNGs published to the front end during the cell, plus matplotlib figures
the cell created and left open (the inline backend shows those after the cell).

A figure left open is rendered once: when the inline backend is about to show it after the cell
(its ``flush_figures`` on ``post_execute``), the PNG it renders for the front end is the one
logged (:meth:`FigureCatcher.stop` with ``defer``, then :meth:`FigureCatcher.finish`); otherwise
(another backend, no PNG formatter) the catcher renders it with ``savefig``. Rendering a figure
twice cost a plotting cell 0.1-0.3 s per figure on this machine."""

from __future__ import annotations

import base64
import io
import sys
from typing import Any


def _png_bytes(data: Any) -> bytes | None:
    """What a PNG formatter returned (bytes, base64 text, or (data, metadata)) as bytes."""
    if isinstance(data, tuple) and data:
        data = data[0]
    if isinstance(data, bytes):
        return data
    if isinstance(data, str):
        try:
            return base64.b64decode(data)
        except (ValueError, TypeError):
            return None
    return None


class FigureCatcher:
    """Collects PNG bytes while active. Never imports matplotlib itself."""

    def __init__(self, shell: Any) -> None:
        self.shell = shell
        self.pngs: list[bytes] = []
        self._before: set[int] = set()
        self._orig: Any = None
        self._waiting: list[Any] = []  # figures the inline backend shows after the cell
        self._caught: dict[int, bytes | None] = {}  # id(figure) -> its PNG as rendered
        self._formatter: Any = None
        self._printer: Any = None

    def __enter__(self) -> FigureCatcher:
        plt = sys.modules.get("matplotlib.pyplot")
        if plt is not None:
            self._before = set(plt.get_fignums())
        pub = getattr(self.shell, "display_pub", None)
        if pub is not None and hasattr(pub, "publish"):
            self._orig = pub.publish

            def publish(data: Any, *args: Any, **kwargs: Any) -> Any:
                png = data.get("image/png") if isinstance(data, dict) else None
                raw = _png_bytes(png) if png else None
                if raw:
                    self.pngs.append(raw)
                return self._orig(data, *args, **kwargs)

            pub.publish = publish
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop(defer=False)

    def stop(self, defer: bool = True) -> bool:
        """End the catch after the cell's code. The figures the cell left open are rendered now,
        unless ``defer`` and the inline backend shows them all after the cell: then their PNGs
        are taken as it renders them, and this returns True (call :meth:`finish` after
        IPython's ``post_execute``)."""
        if self._orig is not None:
            self.shell.display_pub.publish = self._orig
            self._orig = None
        plt = sys.modules.get("matplotlib.pyplot")
        if plt is None:
            return False
        figures = [plt.figure(n) for n in plt.get_fignums() if n not in self._before]
        if not figures:
            return False
        if defer and self._catch_inline(figures):
            return True
        for fig in figures:
            self.pngs.append(_savefig(fig))
        return False

    def finish(self) -> None:
        """After the inline backend showed the cell's figures: their PNGs, in the order the cell
        opened them; a figure it did not render (closed meanwhile, a failure) is rendered here."""
        if self._formatter is not None:
            self._formatter.for_type(_figure_class(self._waiting[0]), self._printer)
            self._formatter = self._printer = None
        for fig in self._waiting:
            if id(fig) in self._caught:
                png = self._caught[id(fig)]
                if png:  # None: an empty figure, which the front end does not show either
                    self.pngs.append(png)
            else:
                self.pngs.append(_savefig(fig))
        self._waiting = []
        self._caught = {}

    @property
    def waiting(self) -> bool:
        """Figures are still to come from the inline backend (:meth:`finish` not yet called)."""
        return bool(self._waiting)

    def _catch_inline(self, figures: list[Any]) -> bool:
        """Wrap the PNG formatter of figures, if the inline backend shows all of ``figures``
        after the cell through it."""
        if not _inline_shows(self.shell, figures):
            return False
        formatter = self.shell.display_formatter.formatters["image/png"]
        cls = _figure_class(figures[0])
        try:
            printer = formatter.lookup_by_type(cls)
        except KeyError:
            return False
        ids = {id(f) for f in figures}

        def render(fig: Any, *args: Any, **kwargs: Any) -> Any:
            data = printer(fig, *args, **kwargs)
            if id(fig) in ids and id(fig) not in self._caught:
                self._caught[id(fig)] = _png_bytes(data)
            return data

        formatter.for_type(cls, render)
        self._formatter, self._printer, self._waiting = formatter, printer, figures
        return True


def _figure_class(fig: Any) -> Any:
    """matplotlib's Figure class, as the display formatters are keyed (a subclass of the cell's
    falls back to it)."""
    from_module = sys.modules.get("matplotlib.figure")
    return getattr(from_module, "Figure", type(fig))


def _inline_shows(shell: Any, figures: list[Any]) -> bool:
    """The inline backend's ``flush_figures`` runs after this cell and shows every figure of
    ``figures`` as a PNG (matplotlib_inline's documented flags on its ``show``)."""
    inline = sys.modules.get("matplotlib_inline.backend_inline")
    events = getattr(shell, "events", None)
    if inline is None or events is None:
        return False
    flush = getattr(inline, "flush_figures", None)
    if flush is None or flush not in events.callbacks.get("post_execute", []):
        return False
    show = getattr(inline, "show", None)
    if not getattr(show, "_draw_called", False):
        return False
    try:
        close = bool(inline.InlineBackend.instance().close_figures)
    except Exception:  # noqa: BLE001 - an inline backend nbops does not know: render here
        return False
    to_draw = getattr(show, "_to_draw", None)
    if not close and (to_draw is None or any(f not in to_draw for f in figures)):
        return False
    formatters = getattr(getattr(shell, "display_formatter", None), "formatters", {})
    png = formatters.get("image/png")
    if png is None or not getattr(png, "enabled", False):
        return False
    active = getattr(shell.display_formatter, "active_types", None)
    return active is None or "image/png" in active


def _savefig(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    return buf.getvalue()
