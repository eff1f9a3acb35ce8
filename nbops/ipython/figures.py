"""Figures a cell shows: PNGs published to the front end during the cell, plus matplotlib figures
the cell created and left open (the inline backend shows those after the cell)."""

from __future__ import annotations

import base64
import io
import sys
from typing import Any


class FigureCatcher:
    """Collects PNG bytes while active. Never imports matplotlib itself."""

    def __init__(self, shell: Any) -> None:
        self.shell = shell
        self.pngs: list[bytes] = []
        self._before: set[int] = set()
        self._orig: Any = None

    def __enter__(self) -> FigureCatcher:
        plt = sys.modules.get("matplotlib.pyplot")
        if plt is not None:
            self._before = set(plt.get_fignums())
        pub = getattr(self.shell, "display_pub", None)
        if pub is not None and hasattr(pub, "publish"):
            self._orig = pub.publish

            def publish(data: Any, *args: Any, **kwargs: Any) -> Any:
                png = data.get("image/png") if isinstance(data, dict) else None
                if png:
                    try:
                        raw = png if isinstance(png, bytes) else base64.b64decode(png)
                        self.pngs.append(raw)
                    except (ValueError, TypeError):
                        pass
                return self._orig(data, *args, **kwargs)

            pub.publish = publish
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._orig is not None:
            self.shell.display_pub.publish = self._orig
            self._orig = None
        plt = sys.modules.get("matplotlib.pyplot")
        if plt is None:
            return
        for num in plt.get_fignums():
            if num in self._before:
                continue
            fig = plt.figure(num)
            buf = io.BytesIO()
            fig.savefig(buf, format="png", bbox_inches="tight")
            self.pngs.append(buf.getvalue())
