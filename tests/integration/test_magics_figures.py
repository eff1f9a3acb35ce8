"""%%track's figures in a real kernel: a figure the cell leaves open is rendered once (the PNG
the inline backend shows is the one logged), and with another backend nbops renders it."""

from __future__ import annotations

import base64

from tests.conftest import execute, notebook, outputs_text

COUNT_RENDERS = (
    "import matplotlib\nmatplotlib.use('module://matplotlib_inline.backend_inline')\n"
    "import matplotlib.pyplot as plt\nfrom matplotlib.backend_bases import FigureCanvasBase\n"
    "import functools\nrenders = []\n_print_figure = FigureCanvasBase.print_figure\n"
    "@functools.wraps(_print_figure)\ndef _counted(self, *a, **k):\n    renders.append(1)\n"
    "    return _print_figure(self, *a, **k)\n"
    "FigureCanvasBase.print_figure = _counted"
)


def _shown_png(cell) -> bytes:
    (png,) = [o["data"]["image/png"] for o in cell.outputs if "image/png" in o.get("data", {})]
    return base64.b64decode(png)


def test_a_figure_left_open_is_rendered_once_and_logged_as_shown(project, client):
    nb = notebook(
        project / "figs.ipynb",
        "%load_ext nbops\n%track start -e figs",
        COUNT_RENDERS,
        "%%track -n open\nfig, ax = plt.subplots()\nax.plot([1, 3, 2])\nlw = 2",
        "%%track -n shown\nplt.plot([2, 1])\nplt.show()",
        "%%track -n failing\nplt.plot([0, 1])\nraise ValueError('the cell fails')",
        "print('renders', len(renders))",
        "plt.switch_backend('agg')",
        "%%track -n agg\nfig3 = plt.figure()\nfig3.add_subplot().plot([1, 2])",
        "print('renders', len(renders))\n%track stop",
    )
    out = execute(nb, allow_errors=True)
    opened = outputs_text(out.cells[2])
    assert "nbops: cell open logged params lw; 1 figure" in opened
    # one rendering per figure: the inline backend's (the old catcher rendered it a second time)
    assert "renders 3" in outputs_text(out.cells[5])
    assert "ValueError: the cell fails" in outputs_text(out.cells[4])
    assert "renders 4" in outputs_text(out.cells[8])  # agg: no inline display, nbops renders
    exp = client.get_experiment_by_name("figs")
    (run,) = client.search_runs([exp.experiment_id])
    rid = run.info.run_id
    assert run.data.params["lw"] == "2"
    for step, cell in (("open", 2), ("shown", 3), ("failing", 4)):
        logged = client.download_artifacts(rid, f"cells/{step}/figure-1.png")
        with open(logged, "rb") as f:
            assert f.read() == _shown_png(out.cells[cell]), step  # the very PNG shown
    names = {a.path for a in client.list_artifacts(rid, "cells/agg")}
    assert "cells/agg/figure-1.png" in names
    with open(client.download_artifacts(rid, "cells/agg/figure-1.png"), "rb") as f:
        assert f.read()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [o for o in out.cells[7].outputs if "image/png" in o.get("data", {})]
