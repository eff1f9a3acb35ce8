"""Real notebooks: scikit-learn-gallery-like notebooks (bench/notebooks/make.py) executed with
papermill, each with every cell under ``%%track`` against the same notebook untracked, in paired,
alternating order. Prints the median added seconds per notebook, the added percent in total, the
worst cell ratio, the machine and its load: figure and peer from one run.

    python bench/real_notebooks.py [--count N] [--rounds R] [--keep DIR]

Per notebook: papermill's wall time (kernel start to the end of the execution). Per cell:
papermill's ``metadata.papermill.duration`` of the same cell in both variants (the tracked
variant's extra first cell, ``%load_ext nbops`` + ``%track start``, counts in the notebook's
total, not in the cell comparison). A cell ratio is taken only for cells of at least 0.2 s plain
(shorter ones are noise on a loaded 2-core machine; their added seconds are listed instead).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent / "notebooks"))
import make  # noqa: E402 - the generator sits beside this file

MIN_CELL_S = 0.2  # cells shorter than this plain are compared by added seconds, not by ratio


def execute(src: Path, out: Path, cwd: Path) -> tuple[float, list[float]]:
    import papermill

    t = time.perf_counter()
    papermill.execute_notebook(
        str(src),
        str(out),
        cwd=str(cwd),
        progress_bar=False,
        log_output=False,
        kernel_name="python3",
    )
    wall = time.perf_counter() - t
    nb = json.loads(out.read_text())
    durations = [
        float(c.get("metadata", {}).get("papermill", {}).get("duration") or 0.0)
        for c in nb["cells"]
        if c["cell_type"] == "code"
    ]
    return wall, durations


def settled(proj: Path, limit: float = 120.0) -> float:
    """Seconds until every spool of the project is delivered (its writer removes it)."""
    spools = proj / ".nbops" / "spool"
    t = time.perf_counter()
    while time.perf_counter() - t < limit:
        if not spools.exists() or not any(spools.iterdir()):
            return time.perf_counter() - t
        time.sleep(0.02)
    raise RuntimeError(f"a run was not delivered within {limit:.0f} s: {list(spools.iterdir())}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=28, help="notebooks to run (of 28)")
    parser.add_argument("--rounds", type=int, default=1, help="paired runs per notebook")
    parser.add_argument("--keep", help="keep the executed notebooks in this folder")
    args = parser.parse_args()
    load0 = os.getloadavg()
    print(
        f"machine: {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{platform.platform()}; load (1/5 min) {load0[0]:.2f}/{load0[1]:.2f}"
    )
    tmp = Path(tempfile.mkdtemp(prefix="nbops-real-"))
    try:
        proj = tmp / "project"
        proj.mkdir()
        (proj / "nbops.yaml").write_text("stages: {}\n")
        os.environ.pop("MLFLOW_TRACKING_URI", None)
        os.environ["NBOPS_PROJECT_ROOT"] = str(proj)
        os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
        plains = make.write(tmp / "nb")[: args.count]
        outdir = Path(args.keep) if args.keep else tmp / "out"
        outdir.mkdir(parents=True, exist_ok=True)
        rows: list[dict[str, Any]] = []
        t0 = time.perf_counter()
        for i, plain in enumerate(plains):
            tracked = plain.with_name(plain.name.replace(".plain.", ".track."))
            for r in range(args.rounds):
                order = [("plain", plain), ("track", tracked)]
                if (i + r) % 2:
                    order.reverse()
                got: dict[str, tuple[float, list[float]]] = {}
                stored = 0.0
                for kind, src in order:
                    got[kind] = execute(src, outdir / f"{src.stem}.r{r}.ipynb", proj)
                    if kind == "track":
                        # the writer finishes the run after papermill returns: wait for it, so
                        # that its work is not done during the next notebook (of either kind)
                        stored = settled(proj)
                (pw, pc), (tw, tc) = got["plain"], got["track"]
                rows.append(
                    dict(
                        name=plain.stem,
                        plain=pw,
                        track=tw,
                        pc=pc,
                        tc=tc[1:],
                        start=tc[0],
                        stored=stored,
                    )
                )
                print(
                    f"{plain.stem:32s} plain {pw:6.2f} s  tracked {tw:6.2f} s  "
                    f"+{tw - pw:5.2f} s  (start cell {tc[0]:.2f} s; run complete in the store "
                    f"{stored:.2f} s after papermill returned)  load {os.getloadavg()[0]:.2f}",
                    flush=True,
                )
        elapsed = time.perf_counter() - t0
        report(rows, elapsed, load0[0])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def report(rows: list[dict[str, Any]], elapsed: float, load0: float) -> None:
    added = [r["track"] - r["plain"] for r in rows]
    total_plain = sum(r["plain"] for r in rows)
    total_track = sum(r["track"] for r in rows)
    cell_ratios: list[tuple[float, str, int, float, float]] = []
    small_added: list[float] = []
    cells_plain = cells_track = 0.0
    for r in rows:
        for j, (p, t) in enumerate(zip(r["pc"], r["tc"], strict=True)):
            cells_plain += p
            cells_track += t
            if p >= MIN_CELL_S:
                cell_ratios.append((t / p, r["name"], j, p, t))
            else:
                small_added.append(t - p)
    worst = max(cell_ratios) if cell_ratios else None
    print()
    print(
        f"real notebooks: median added per notebook {statistics.median(added):+.2f} s "
        f"(goal <= +0.2 s) | peer: untracked, median "
        f"{statistics.median(r['plain'] for r in rows):.2f} s per notebook | "
        f"total {total_track:.1f} s vs {total_plain:.1f} s: "
        f"{(total_track / total_plain - 1) * 100:+.1f} % (goal <= +5 %) | {len(rows)} pairs"
    )
    print(
        f"cells only (papermill durations, start cell excluded): {cells_track:.1f} s vs "
        f"{cells_plain:.1f} s: {(cells_track / cells_plain - 1) * 100:+.1f} %; start cell median "
        f"{statistics.median(r['start'] for r in rows):.2f} s"
    )
    print(
        "run complete in the store after papermill returned: median "
        f"{statistics.median(r['stored'] for r in rows):.2f} s, max "
        f"{max(r['stored'] for r in rows):.2f} s (the writer imports MLflow once the kernel is "
        "quiet or gone: NBOPS_WRITER_DEFER)"
    )
    if worst is not None:
        ratio, name, j, p, t = worst
        print(
            f"worst cell (>= {MIN_CELL_S} s plain): {name} cell {j}: {p:.2f} s -> {t:.2f} s "
            f"({ratio:.2f}x, goal <= 1.10x); median cell ratio "
            f"{statistics.median(c[0] for c in cell_ratios):.3f}x over {len(cell_ratios)} cells"
        )
        for ratio, name, j, p, t in sorted(cell_ratios, reverse=True)[:5]:
            print(f"  {name} cell {j}: {p:.2f} s -> {t:.2f} s ({ratio:.2f}x)")
    if small_added:
        print(
            f"short cells (< {MIN_CELL_S} s plain): {len(small_added)}, median added "
            f"{statistics.median(small_added) * 1e3:+.1f} ms, max {max(small_added) * 1e3:+.1f} ms"
        )
    print(
        f"{elapsed:.0f} s; machine {os.cpu_count()} cores; load (1 min) at start / end: "
        f"{load0:.2f} / {os.getloadavg()[0]:.2f}"
    )


if __name__ == "__main__":
    main()
