"""%%track's added time per cell, in-process, with IPython's on-disk input history (what a real
kernel has: the headline) and with the history in memory. Prints the figure, the peer (the same
cell untracked) and the ratio from one run, plus the machine and its load.

    python bench/track_cells.py [--cells N] [--profile]

Method (as bench/tracking.py's bench_track_cell): one fresh interpreter per history variant,
an in-process InteractiveShell, ``%track start`` and a wait until the writer has opened the
store, then N executions of a small cell plain and under ``%%track`` in interleaved block pairs;
the figure is the median over block pairs of (tracked - plain) per cell. ``--profile`` prints a
cProfile of the tracked cells instead.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

TARGET_S = 0.3e-3

CHILD = """
import cProfile, json, pstats, sys, time
from IPython.core.interactiveshell import InteractiveShell
from traitlets.config import Config
config = Config()
config.HistoryManager.hist_file = sys.argv[1]
n_cells, n_blocks, profile = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
shell = InteractiveShell.instance(config=config)
shell.run_line_magic('load_ext', 'nbops')
shell.run_line_magic('track', 'start')
import nbops
run = nbops.active_run()
run.id  # steady state: the writer has imported MLflow and opened the store
plain = 'x = 1\\ny = x + 1\\n'
tracked = '%%track -n bench --no-figures -q\\n' + plain
def block(src, n):
    t = time.perf_counter()
    for _ in range(n):
        r = shell.run_cell(src, store_history=True)
        assert r.success, r
    return time.perf_counter() - t
block(plain, 20); block(tracked, 20)  # warm-up (the first %%track logs the source)
n = n_cells // n_blocks
if profile:
    prof = cProfile.Profile()
    prof.enable(); block(tracked, n_cells); prof.disable()
    pstats.Stats(prof, stream=sys.stderr).sort_stats('cumulative').print_stats(40)
    pairs = [(1.0, 1.0)]
else:
    pairs = [(block(plain, n), block(tracked, n)) for _ in range(n_blocks)]
logged = run.counts['metrics']
nbops.end_run()
print(json.dumps(dict(pairs=pairs, n=n, logged=logged)))
"""


def child(history: str, cells: int, blocks: int, profile: bool, cwd: Path) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["NBOPS_PROJECT_ROOT"] = str(cwd)
    args = [history, str(cells), str(blocks), "1" if profile else "0"]
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=600,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark child failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    if profile:
        print(proc.stderr)
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def per_cell(r: dict[str, Any]) -> tuple[float, float, float]:
    """(plain, tracked, added) per cell: medians over the interleaved block pairs."""
    n = int(r["n"])
    pairs = [(float(p) / n, float(q) / n) for p, q in r["pairs"]]
    return (
        statistics.median(p for p, _ in pairs),
        statistics.median(q for _, q in pairs),
        statistics.median(q - p for p, q in pairs),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=400, help="executions per side")
    parser.add_argument("--blocks", type=int, default=20, help="interleaved block pairs")
    parser.add_argument("--profile", action="store_true", help="cProfile the tracked cells")
    args = parser.parse_args()
    load0 = os.getloadavg()[0]
    print(f"machine: {os.cpu_count()} cores, Python {platform.python_version()}, load {load0:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        if args.profile:
            child(str(root / "history.sqlite"), args.cells, args.blocks, True, root)
            return
        for label, hist in (
            ("on-disk history", str(root / "history.sqlite")),
            ("history in memory", ":memory:"),
        ):
            r = child(hist, args.cells, args.blocks, False, root)
            plain, tracked, added = per_cell(r)
            met = "met" if added <= TARGET_S else "MISSED"
            print(
                f"%%track added per cell ({label}): {added * 1e3:.3f} ms (goal <= "
                f"{TARGET_S * 1e3:.1f} ms: {met}) | peer: plain cell {plain * 1e3:.3f} ms | "
                f"ratio tracked/plain {tracked / plain:.2f}x | {r['logged']} values logged | "
                f"load {os.getloadavg()[0]:.2f}"
            )
    print(f"load (1 min) at start / end: {load0:.2f} / {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
