"""Tracking benchmarks: nbops against plain MLflow, each figure and its peer from ONE run.

    python bench/tracking.py     # one line per figure, then rewrites bench/RESULTS.md

Figures (targets from the tracking-core issue):
  load_ext    `%load_ext nbops` in a fresh process        <= 0.05x `import mlflow` (fresh process)
  start       `%track start` in a cold kernel             <= 0.1 s (peer: import mlflow + start_run)
  log call    one nbops.log_metric                        <= 20 us and >= 250x mlflow.log_metric
  throughput  metric values/s reaching the store          >= 10,000/s (peer: MlflowClient.log_batch)
  %%track     time added per tracked cell                 <= 1 ms
  exit        last cell -> papermill returns              <= 0.3 s (peer: the notebook untracked)
  end_run     end_run of a run already delivered          <= 50 ms (peer: mlflow.end_run())

    python bench/tracking.py --only exit,end_run     # only those figures; RESULTS.md untouched

Every store lives in a temporary directory: nbops gets NBOPS_PROJECT_ROOT=<tmp>/<figure> (its
embedded SQLite store, MLFLOW_TRACKING_URI unset); the MLflow peers share sqlite:///<tmp>/peer.db,
whose schema is created before any timing. Each measurement runs in a fresh process or kernel.
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "RESULTS.md"
PIPELINE_MARKER = "\n## Pipelines"  # bench/pipeline.py appends its own section: keep it
HEAVY = ["mlflow", "pandas", "papermill", "nbformat", "jsonschema"]

N_LOAD = 3  # fresh processes per side for %load_ext / import mlflow (median)
N_CALLS = 20_000  # nbops.log_metric calls timed
N_PEER_CALLS = 200  # mlflow.log_metric calls timed
N_VALUES = 100_000  # metric values delivered, nbops and peer alike
BATCH = 1000  # MLflow's log_batch limit
N_CELLS = 200  # executions of the cell, plain and %%track each
N_BLOCKS = 10  # ... in this many interleaved block pairs
ROUNDS = 2  # throughput rounds per side, interleaved (best counts)

rows: list[dict[str, Any]] = []
notes: list[str] = []
load_avg: list[float] = []  # 1-min load average at the start


# --- plumbing -----------------------------------------------------------------------------------
def base_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env.update(extra)
    return env


def child(
    code: str, env: dict[str, str], cwd: Path | None = None, args: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Run ``code`` in a fresh interpreter; it prints one JSON object as its last stdout line."""
    proc = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=600,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark child failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def record(
    figure: str, nbops: str, target: str, met: bool, peer: str, ratio: str, extra: str = ""
) -> None:
    row = dict(figure=figure, nbops=nbops, target=target, met=met, peer=peer, ratio=ratio)
    rows.append(row | {"extra": extra})
    tail = f" | {extra}" if extra else ""
    print(
        f"{figure}: nbops {nbops} | target {target} | peer {peer} | ratio {ratio} | "
        f"{'MET' if met else 'MISSED'}{tail}",
        flush=True,
    )


def fmt_rate(r: float) -> str:
    return f"{r:,.0f}/s"


# --- 1. %load_ext nbops vs import mlflow ----------------------------------------------------------
LOAD_EXT = f"""
import json, sys, time
from IPython.core.interactiveshell import InteractiveShell
shell = InteractiveShell.instance()
t = time.perf_counter()
shell.run_line_magic('load_ext', 'nbops')
dt = time.perf_counter() - t
ok = 'track' in shell.magics_manager.magics['line']
print(json.dumps({{'s': dt, 'ok': ok, 'heavy': [m for m in {HEAVY!r} if m in sys.modules]}}))
"""
IMPORT_MLFLOW = """
import json, time
t = time.perf_counter()
import mlflow
print(json.dumps({'s': time.perf_counter() - t}))
"""


def bench_load_ext(tmp: Path) -> None:
    env = base_env(NBOPS_PROJECT_ROOT=str(tmp / "load"))
    spec = importlib.util.find_spec("nbops")
    origin = spec.origin if spec else None
    no_pyc = bool(origin) and not Path(importlib.util.cache_from_source(str(origin))).exists()
    child(LOAD_EXT, env)  # warm the file cache and bytecode for both sides, untimed
    child(IMPORT_MLFLOW, env)
    ours, theirs = [], []
    heavy: set[str] = set()
    registered = True
    for _ in range(N_LOAD):  # interleaved, so a slow spell of the machine hits both sides
        r = child(LOAD_EXT, env)
        ours.append(float(r["s"]))
        heavy.update(r["heavy"])
        registered = registered and bool(r["ok"])
        theirs.append(float(child(IMPORT_MLFLOW, env)["s"]))
    s, peer = statistics.median(ours), statistics.median(theirs)
    ratio = s / peer
    record(
        "%load_ext nbops (fresh process)",
        f"{s * 1e3:.1f} ms",
        "<= 0.05x import mlflow",
        ratio <= 0.05 and registered,
        f"import mlflow {peer * 1e3:.0f} ms",
        f"{ratio:.3f}x",
        f"median of {N_LOAD}"
        + ("; no bytecode cache for nbops here, so it is compiled from source" if no_pyc else ""),
    )
    light = not heavy
    print(
        f"%load_ext nbops heavy modules ({', '.join(HEAVY)}) in sys.modules after it: "
        f"{', '.join(sorted(heavy)) or 'none'} -> {'PASS' if light else 'FAIL'}",
        flush=True,
    )
    rows[-1]["extra"] += f"; heavy modules loaded: {', '.join(sorted(heavy)) or 'none'}"
    if not light:
        rows[-1]["met"] = False
        notes.append(f"`%load_ext nbops` imported {', '.join(sorted(heavy))}.")


# --- 2. %track start in a cold kernel -----------------------------------------------------------
def kernel_times(env: dict[str, str], cwd: Path, setup: str, cells: list[str]) -> list[str]:
    """Start a fresh kernel, run ``setup`` then each cell; return each cell's stdout."""
    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(kernel_name="python3", cwd=str(cwd), env=env)
    try:
        if setup:
            reply = kc.execute_interactive(setup, timeout=120)
            if reply["content"]["status"] != "ok":
                raise RuntimeError(f"kernel setup failed: {reply['content']}")
        outs = []
        for code in cells:
            out: list[str] = []

            def hook(msg: dict[str, Any], out: list[str] = out) -> None:
                if msg["msg_type"] == "stream":
                    out.append(msg["content"]["text"])
                elif msg["msg_type"] == "error":
                    out.append("ERROR " + msg["content"]["evalue"])

            kc.execute_interactive(code, timeout=180, output_hook=hook)
            outs.append("".join(out))
        return outs
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def marked(text: str, mark: str) -> float:
    for line in text.splitlines():
        if line.startswith(mark + " "):
            return float(line.split()[1])
    raise RuntimeError(f"no {mark!r} line in kernel output:\n{text}")


def bench_start(tmp: Path, peer_uri: str) -> None:
    proj = tmp / "start"
    proj.mkdir()
    outs = kernel_times(
        base_env(NBOPS_PROJECT_ROOT=str(proj)),
        proj,
        "%load_ext nbops",
        [
            "import time\n_t = time.perf_counter()\n"
            "get_ipython().run_line_magic('track', 'start')\n"
            "print('T', time.perf_counter() - _t)",
            # how long until MLflow has the run (the writer imports mlflow meanwhile)
            "import nbops\nnbops.active_run().id\nprint('ID', time.perf_counter() - _t)\n"
            "print('END', nbops.end_run())",
        ],
    )
    s, to_id = marked(outs[0], "T"), marked(outs[1], "ID")
    outs = kernel_times(
        base_env(MLFLOW_TRACKING_URI=peer_uri),
        tmp,
        "",
        [
            "import time\n_t = time.perf_counter()\nimport mlflow\nmlflow.start_run()\n"
            "print('T', time.perf_counter() - _t)\nmlflow.end_run()"
        ],
    )
    peer = marked(outs[0], "T")
    record(
        "%track start (cold kernel)",
        f"{s * 1e3:.1f} ms",
        "<= 100 ms",
        s <= 0.1,
        f"import mlflow + mlflow.start_run() {peer * 1e3:.0f} ms",
        f"{s / peer:.4f}x ({peer / s:.0f}x faster)",
        f"run id in the store {to_id:.2f} s after %track start",
    )


# --- 3 and 4. one log call; values per second reaching the store --------------------------------
NBOPS_CALLS = f"""
import json, time
import nbops
run = nbops.start_run('bench-call')
for i in range(1000):  # warm-up
    nbops.log_metric('warm', 0.5, step=i)
t = time.perf_counter()
for i in range({N_CALLS}):
    nbops.log_metric('loss', 1.0 / (i + 1), step=i)
per_call = (time.perf_counter() - t) / {N_CALLS}
nbops.end_run()

# cold, for information: start_run, N values at once, end_run (the writer imports mlflow meanwhile)
t = time.perf_counter()
cold_run = nbops.start_run('bench-throughput-cold')
for i in range({N_VALUES}):
    nbops.log_metric('v', i * 0.5, step=i)
nbops.end_run()
cold = time.perf_counter() - t

# end_run of a run whose data is all delivered already: its fixed cost
nbops.start_run('bench-end').id
nbops.log_metric('x', 1.0)
nbops.flush()
t = time.perf_counter()
nbops.end_run()
end_idle = time.perf_counter() - t

from mlflow.tracking import MlflowClient
stored_cold = len(MlflowClient(cold_run.uri).get_metric_history(cold_run.id, 'v'))
print(json.dumps(dict(per_call=per_call, cold=cold, stored_cold=stored_cold, end_idle=end_idle)))
"""

NBOPS_THROUGHPUT = f"""
import json, sqlite3, time
import nbops
# sustained: the store is open (run.id waits for it), then N values, then end_run
run = nbops.start_run('bench-throughput')
run.id
t = time.perf_counter()
for i in range({N_VALUES}):
    nbops.log_metric('v', i * 0.5, step=i)
loop = time.perf_counter() - t
ended = nbops.end_run()
dt = time.perf_counter() - t

from mlflow.tracking import MlflowClient
c = MlflowClient(run.uri)
stored = len(c.get_metric_history(run.id, 'v'))
status = c.get_run(run.id).info.status
db = run.uri[len('sqlite:///'):]
journal = sqlite3.connect(db).execute('PRAGMA journal_mode').fetchone()[0]
print(json.dumps(dict(dt=dt, loop=loop, stored=stored, ended=ended, status=status,
                      journal=journal)))
"""

PEER_CALLS = f"""
import json, sys, time
import mlflow
mlflow.set_tracking_uri(sys.argv[1])
mlflow.set_experiment('peer-call')
with mlflow.start_run():
    for i in range(5):  # warm-up
        mlflow.log_metric('warm', 0.5, step=i)
    t = time.perf_counter()
    for i in range({N_PEER_CALLS}):
        mlflow.log_metric('loss', 1.0 / (i + 1), step=i)
    per_call = (time.perf_counter() - t) / {N_PEER_CALLS}
print(json.dumps(dict(per_call=per_call)))
"""

PEER_THROUGHPUT = f"""
import json, sqlite3, sys, time
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient
uri = sys.argv[1]
c = MlflowClient(uri)
run_id = c.create_run(c.get_experiment_by_name('peer-call').experiment_id).info.run_id
now = int(time.time() * 1000)
t = time.perf_counter()
for b in range(0, {N_VALUES}, {BATCH}):
    c.log_batch(run_id, metrics=[Metric('v', i * 0.5, now, i) for i in range(b, b + {BATCH})])
dt = time.perf_counter() - t
stored = len(c.get_metric_history(run_id, 'v'))
journal = sqlite3.connect(uri[len('sqlite:///'):]).execute('PRAGMA journal_mode').fetchone()[0]
print(json.dumps(dict(dt=dt, stored=stored, journal=journal)))
"""


def bench_log_call(tmp: Path, peer_uri: str) -> dict[str, Any]:
    proj = tmp / "log"
    proj.mkdir()
    ours = child(NBOPS_CALLS, base_env(NBOPS_PROJECT_ROOT=str(proj)), cwd=proj)
    peer = child(PEER_CALLS, base_env(), cwd=tmp, args=(peer_uri,))
    pc, ppc = float(ours["per_call"]), float(peer["per_call"])
    speedup = ppc / pc
    record(
        "log_metric, one call",
        f"{pc * 1e6:.2f} us",
        "<= 20 us and >= 250x faster",
        pc <= 20e-6 and speedup >= 250,
        f"mlflow.log_metric (SQLite) {ppc * 1e6:,.0f} us",
        f"{pc / ppc:.5f}x ({speedup:,.0f}x faster)",
        f"mean of {N_CALLS:,} calls right after start_run vs {N_PEER_CALLS}",
    )
    return ours


def bench_throughput(tmp: Path, peer_uri: str, calls: dict[str, Any]) -> None:
    proj = tmp / "throughput"
    proj.mkdir()
    ours, theirs = [], []
    for _ in range(ROUNDS):  # interleaved; the best round of each side counts
        ours.append(child(NBOPS_THROUGHPUT, base_env(NBOPS_PROJECT_ROOT=str(proj)), cwd=proj))
        theirs.append(child(PEER_THROUGHPUT, base_env(), cwd=tmp, args=(peer_uri,)))
    best = min(ours, key=lambda r: float(r["dt"]))
    peer = min(theirs, key=lambda r: float(r["dt"]))
    rate, prate = N_VALUES / float(best["dt"]), N_VALUES / float(peer["dt"])
    cold_rate = N_VALUES / float(calls["cold"])
    complete = (
        all(r["stored"] == N_VALUES and r["ended"] and r["status"] == "FINISHED" for r in ours)
        and calls["stored_cold"] == N_VALUES
    )
    print(
        "store check: nbops get_metric_history -> "
        + ", ".join(f"{r['stored']:,}" for r in ours)
        + f" (cold run {calls['stored_cold']:,}) of {N_VALUES:,}, runs "
        + ", ".join(str(r["status"]) for r in ours)
        + "; peer -> "
        + ", ".join(f"{r['stored']:,}" for r in theirs)
        + f" -> {'PASS' if complete else 'FAIL'}",
        flush=True,
    )
    end_idle = float(calls["end_idle"])
    record(
        "metric values/s reaching the store",
        fmt_rate(rate),
        ">= 10,000/s",
        rate >= 10_000 and complete,
        f"MlflowClient.log_batch x{BATCH} {fmt_rate(prate)}",
        f"{rate / prate:.2f}x",
        f"{N_VALUES:,} values, best of {ROUNDS} rounds (nbops "
        + ", ".join(fmt_rate(N_VALUES / float(r["dt"])) for r in ours)
        + "; peer "
        + ", ".join(fmt_rate(N_VALUES / float(r["dt"])) for r in theirs)
        + f"); {float(best['loop']) / N_VALUES * 1e6:.2f} us per log call while the writer "
        f"delivers; cold (start_run to end_run) {fmt_rate(cold_rate)}; end_run of an already "
        f"delivered run {end_idle * 1e3:.0f} ms; SQLite journal nbops={best['journal']}, "
        f"peer={peer['journal']}",
    )
    if rate < 10_000:
        notes.append(
            f"**Throughput missed ({fmt_rate(rate)})**: the writer delivers with the same "
            f"`MlflowClient.log_batch` of {BATCH} metrics that the peer calls directly, and the "
            f"peer alone reaches {fmt_rate(prate)} here ({rate / prate:.2f}x). Profiles of the "
            "writer taken while writing this benchmark (py-spy on the live writer, cProfile of "
            "`Delivery.pump`) put ~85% of its busy time in MLflow's `log_batch`, mostly "
            "`SqlAlchemyStore._log_metrics_once` (an ORM object per value, and `latest_metrics` "
            "rewritten once per value as steps ascend), and 2-5% in reading and parsing the "
            "spool's JSON lines; alone, `Delivery.pump` ran at ~0.9x of raw `log_batch`. The "
            "rest is fixed costs inside the window: `end_run` of a run with nothing left to "
            f"deliver took {end_idle * 1e3:.0f} ms here (it returns on the writer's event, "
            "not at its exit), the writer captures the environment (~0.2 s), and on "
            f"{os.cpu_count()} cores the logging loop ({float(best['loop']):.1f} s of the "
            f"{float(best['dt']):.1f} s) and any other load share the CPUs with the writer. "
            "The target is above what MLflow's SQLite store takes on this machine; the log "
            "call never waits for it: values pile up in the spool."
        )
    if not complete:
        notes.append(
            "**Store check failed**: stored "
            + ", ".join(str(r["stored"]) for r in ours)
            + f" of {N_VALUES} values, end_run returned "
            + ", ".join(str(r["ended"]) for r in ours)
            + "."
        )


# --- 5. %%track overhead per cell ---------------------------------------------------------------
TRACK_CELL = f"""
import json, sys, time
from IPython.core.interactiveshell import InteractiveShell
from traitlets.config import Config
config = Config()
config.HistoryManager.hist_file = sys.argv[1]
shell = InteractiveShell.instance(config=config)
shell.run_line_magic('load_ext', 'nbops')
shell.run_line_magic('track', 'start')
import nbops
run = nbops.active_run()
run.id  # steady state: the writer has imported MLflow and opened the store
plain = 'x = 1\\ny = x + 1\\n'
tracked = '%%track -n bench --no-figures\\n' + plain
def block(src, n):
    t = time.perf_counter()
    for _ in range(n):
        r = shell.run_cell(src, store_history=True)
        assert r.success, r
    return time.perf_counter() - t
block(plain, 20); block(tracked, 20)  # warm-up (the first %%track logs the source)
pairs = []
for _ in range({N_BLOCKS}):  # interleaved blocks, so a busy spell of the machine hits both sides
    pairs.append((block(plain, {N_CELLS // N_BLOCKS}), block(tracked, {N_CELLS // N_BLOCKS})))
logged = run.counts['metrics']
nbops.end_run()
print(json.dumps(dict(pairs=pairs, n={N_CELLS // N_BLOCKS}, logged=logged)))
"""


def cell_times(r: dict[str, Any]) -> tuple[float, float, float]:
    """Per cell: plain, tracked, and the added time, as medians over the interleaved block
    pairs (a block pair that a burst of other work on the machine hit does not count)."""
    n = int(r["n"])
    pairs = [(float(p) / n, float(q) / n) for p, q in r["pairs"]]
    plain = statistics.median(p for p, _ in pairs)
    tracked = statistics.median(q for _, q in pairs)
    return plain, tracked, statistics.median(q - p for p, q in pairs)


def bench_track_cell(tmp: Path) -> None:
    proj = tmp / "cell"
    proj.mkdir()
    env = base_env(NBOPS_PROJECT_ROOT=str(proj))
    # IPython's input history in memory: with its default SQLite file, each cell waits for the
    # previous cell's history commit (an fsync), which a tight loop of cells turns into noise
    r = child(TRACK_CELL, env, cwd=proj, args=(":memory:",))
    disk = child(TRACK_CELL, env, cwd=proj, args=(str(tmp / "history.sqlite"),))
    plain, tracked, added = cell_times(r)
    disk_plain, _, disk_added = cell_times(disk)
    record(
        "%%track added per cell",
        f"{added * 1e3:.3f} ms",
        "<= 1 ms",
        added <= 1e-3,
        f"plain cell {plain * 1e3:.3f} ms",
        f"{tracked / plain:.1f}x (tracked cell {tracked * 1e3:.3f} ms)",
        f"{N_CELLS} runs each in {N_BLOCKS} interleaved block pairs, medians of the block "
        "means, in-process InteractiveShell, history in memory, "
        f"{r['logged']} durations logged; with IPython's on-disk history: plain "
        f"{disk_plain * 1e3:.3f} ms, added {disk_added * 1e3:.3f} ms",
    )
    if added > 1e-3:
        notes.append(
            f"**%%track missed ({added * 1e3:.2f} ms/cell)**: the added time is IPython's "
            "cell-magic dispatch (argparse of the magic line, a second transform_cell) and "
            "nbops compiling the cell as IPython does, inferring params/metrics from its AST and "
            "spooling two records (a profile while writing this benchmark: ~0.2 ms in "
            "`_track_cell`, of which ~0.12 ms compiling). It is all CPU, so it grows with other "
            f"load: the plain cell took {plain * 1e3:.3f} ms in the same run."
        )
    if disk_added > 1e-3:
        notes.append(
            f"With IPython's default on-disk input history, back-to-back cells add "
            f"{disk_added * 1e3:.2f} ms per %%track cell: IPython's history thread commits "
            "(fsyncs) every cell and the next cell waits for it, and the spool appends and the "
            "writer's SQLite commits on the same disk make those fsyncs, and the appends "
            "queued behind them, slower. Cells typed by a person never queue like this; a "
            "papermill run of many tiny %%track cells does."
        )


# --- 6. a tracked notebook's exit; end_run of a delivered run -----------------------------------
N_EXIT = 3  # papermill executions per side, interleaved (median)
N_END = 5  # end_run calls timed per side (median)
EXIT_WORK_S = 3.0  # the cell before the last in the second exit figure

EXIT_NOTEBOOKS = """
import json, os, sqlite3, sys, time
from pathlib import Path
import papermill

def notebook(path, cells):
    path.write_text(json.dumps({
        "cells": [{"cell_type": "code", "execution_count": None, "id": f"c{i}", "metadata": {},
                   "outputs": [], "source": src} for i, src in enumerate(cells)],
        "metadata": {"kernelspec": {"name": "python3", "language": "python",
                                    "display_name": "Python 3"}},
        "nbformat": 4, "nbformat_minor": 5}))

def finished_at(db, deadline):
    while time.time() < deadline:
        if db.is_file():
            con = sqlite3.connect(db, timeout=30)
            try:
                row = con.execute("SELECT status FROM runs").fetchone()
                n = con.execute("SELECT COUNT(*) FROM metrics").fetchone()[0]
                if row and row[0] == "FINISHED" and n >= 100:
                    return time.time()
            except sqlite3.OperationalError:
                pass  # the writer is still creating the store's schema
            finally:
                con.close()
        time.sleep(0.01)
    return None

base = Path(sys.argv[1])
out = {"tracked": [], "plain": [], "complete": []}
for i in range(int(sys.argv[2])):
    for kind in ("plain", "tracked"):  # interleaved: a busy spell of the machine hits both
        root = base / f"{kind}-{i}"
        (root / ".nbops").mkdir(parents=True)
        os.environ["NBOPS_PROJECT_ROOT"] = str(root)
        mark = root / "last"
        last = f"import time\\nopen({str(mark)!r}, 'w').write(repr(time.time()))"
        if kind == "tracked":
            cells = ["%load_ext nbops", "%track start -e exit", "import nbops\\n"
                     "for i in range(100):\\n    nbops.log_metric('m', i * 0.5, step=i)", last]
        else:  # the same notebook, untracked
            cells = ["pass", "pass", "for i in range(100):\\n    float(i * 0.5)", last]
        if float(sys.argv[3]):  # a cell of real work first: the writer has started meanwhile
            cells.insert(-1, f"import time\\ntime.sleep({sys.argv[3]})")
        notebook(root / "nb.ipynb", cells)
        papermill.execute_notebook(str(root / "nb.ipynb"), str(root / "out.ipynb"),
                                   cwd=str(root), progress_bar=False)
        returned = time.time()
        t_last = float(mark.read_text())
        out[kind].append(returned - t_last)
        if kind == "tracked":
            done = finished_at(root / ".nbops" / "mlflow.db", returned + 120)
            out["complete"].append(None if done is None else done - t_last)
print(json.dumps(out))
"""

NBOPS_END = f"""
import json, time
import nbops
times, rounds = [], []
for i in range({N_END}):
    run = nbops.start_run('bench-end')
    run.id  # the store is open and the run exists
    nbops.log_metric('x', 1.0)
    nbops.flush()
    t = time.perf_counter()
    ok = nbops.end_run()
    times.append(time.perf_counter() - t)
    rounds.append([run.last_wait.rounds, run.last_wait.timed_out, ok])
print(json.dumps(dict(times=times, rounds=rounds)))
"""

PEER_END = f"""
import json, sys, time
import mlflow
mlflow.set_tracking_uri(sys.argv[1])
mlflow.set_experiment('peer-end')
times = []
for i in range({N_END}):
    mlflow.start_run()
    mlflow.log_metric('x', 1.0)
    t = time.perf_counter()
    mlflow.end_run()
    times.append(time.perf_counter() - t)
print(json.dumps(dict(times=times)))
"""


def bench_exit(tmp: Path, work_s: float = 0.0) -> None:
    base = tmp / f"exit-{work_s:g}"
    base.mkdir()
    load = os.getloadavg()[0]
    r = child(EXIT_NOTEBOOKS, base_env(), cwd=tmp, args=(str(base), str(N_EXIT), str(work_s)))
    tracked, plain = statistics.median(r["tracked"]), statistics.median(r["plain"])
    complete = [c for c in r["complete"] if c is not None]
    record(
        "last cell -> papermill returns (tracked notebook"
        + (f", after a {work_s:g} s cell)" if work_s else ", all cells instant)"),
        f"{tracked:.2f} s",
        "<= 0.3 s, run complete in the store shortly after",
        tracked <= 0.3 and len(complete) == len(r["complete"]),
        f"the same notebook untracked {plain:.2f} s",
        f"{tracked / plain:.2f}x (+{tracked - plain:.2f} s)",
        f"median of {N_EXIT} interleaved papermill executions per side (tracked "
        + ", ".join(f"{t:.2f}" for t in r["tracked"])
        + " s; untracked "
        + ", ".join(f"{t:.2f}" for t in r["plain"])
        + " s); run FINISHED with its 100 values in the store "
        + ", ".join("never" if c is None else f"{c:.2f}" for c in r["complete"])
        + " s after the last cell (the writer finishes it after the kernel is gone"
        + (
            "; here it was still importing MLflow and creating the new store's schema"
            if not work_s
            else ""
        )
        + f"); load {load:.2f} -> {os.getloadavg()[0]:.2f}",
    )

    if tracked > 0.3 and not work_s:
        notes.append(
            f"**Exit of an instant tracked notebook ({tracked:.2f} s, untracked {plain:.2f} s)**: "
            "the kernel no longer waits for the store (it appends the end and lets go; it "
            "waited up to 1.5 s before); what is left is the kernel's own exit with nbops "
            "loaded, slowed by the writer, started a moment earlier by `%track start`, "
            "importing MLflow and creating the new store's schema on the same "
            f"{os.cpu_count()} cores. A notebook that works for a few seconds does not pay it "
            "(the second exit figure)."
        )


def bench_end_run(tmp: Path, peer_uri: str) -> None:
    proj = tmp / "end"
    proj.mkdir()
    load = os.getloadavg()[0]
    ours = child(NBOPS_END, base_env(NBOPS_PROJECT_ROOT=str(proj)), cwd=proj)
    peer = child(PEER_END, base_env(), cwd=tmp, args=(peer_uri,))
    s, p = statistics.median(ours["times"]), statistics.median(peer["times"])
    timed_out = sum(int(x[1]) for x in ours["rounds"])
    ok = all(bool(x[2]) for x in ours["rounds"])
    record(
        "end_run of a delivered run",
        f"{s * 1e3:.1f} ms",
        "<= 50 ms",
        s <= 0.05 and ok,
        f"mlflow.end_run() of a plain MLflow run (SQLite) {p * 1e3:.1f} ms",
        f"{s / p:.2f}x",
        f"median of {N_END} per side, each in a run whose values are all in the store "
        "(flushed); it returns when the writer says the run is done (events pipe: "
        f"{timed_out} waits ended by a timeout), not at the writer's exit; load "
        f"{load:.2f} -> {os.getloadavg()[0]:.2f}",
    )


# --- report -------------------------------------------------------------------------------------
def machine() -> list[str]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return [
        f"- nproc: {os.cpu_count()}",
        f"- CPU: {cpu}",
        f"- Python {platform.python_version()}, mlflow {version('mlflow')}, "
        f"IPython {version('ipython')}, {platform.platform()}",
        f"- date: {time.strftime('%Y-%m-%d %H:%M %Z')}",
        f"- load average (1 min) at start / end: {load_avg[0]:.2f} / {os.getloadavg()[0]:.2f} "
        "(other work on the machine shifts these figures; rerun on a quiet machine to compare)",
    ]


def write_results(elapsed: float) -> None:
    lines = [
        "# Benchmark results",
        "",
        "## Tracking (`bench/tracking.py`)",
        "",
        f"All figures and their peers come from one run of `python bench/tracking.py` "
        f"({elapsed:.0f} s).",
        "",
        *machine(),
        "",
        "| figure | nbops | target | peer | ratio | met? |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['figure']} | {r['nbops']} | {r['target']} | {r['peer']} | {r['ratio']} | "
            f"{'yes' if r['met'] else '**no**'} |"
        )
    lines += ["", "Details:", ""]
    lines += [f"- {r['figure']}: {r['extra']}" for r in rows if r["extra"]]
    lines += [
        "",
        "How each figure is taken:",
        "",
        "- `%load_ext nbops`: `InteractiveShell` created first, then `perf_counter` around "
        "`run_line_magic('load_ext', 'nbops')`; peer `import mlflow`, both timed inside fresh "
        f"`python -c` processes after one untimed warm-up each; median of {N_LOAD}.",
        "- `%track start`: a kernel started with jupyter_client, `%load_ext nbops`, then the "
        "magic timed inside the kernel. Peer: `import mlflow; mlflow.start_run()` timed the "
        "same way in a second fresh kernel, against a SQLite store whose schema exists already.",
        f"- log call: mean of {N_CALLS:,} `nbops.log_metric` calls right after `start_run` "
        f"(the writer process starts meanwhile); peer: mean of {N_PEER_CALLS} "
        "`mlflow.log_metric` calls in an active run.",
        f"- values/s: `start_run`, wait for the run id (the store is open), then "
        f"{N_VALUES:,} `log_metric` calls with distinct steps and `end_run()`, which returns "
        "when everything is in the store; counted with `MlflowClient.get_metric_history`. The "
        "cold figure also counts the writer's start (MLflow import, run creation). Peer: "
        f"{N_VALUES // BATCH} `MlflowClient.log_batch` calls of {BATCH} metrics into a new run. "
        f"{ROUNDS} rounds per side in fresh processes, alternating; the best of each counts.",
        f"- `%%track`: {N_CELLS} runs each of `x = 1; y = x + 1` plain and under "
        f"`%%track -n bench --no-figures`, in {N_BLOCKS} interleaved pairs of blocks (the "
        "figures are medians over the pairs), `run_cell(store_history=True)` "
        "of an in-process `InteractiveShell` with the extension loaded and a run whose store is "
        "open; IPython's input history in memory (`HistoryManager.hist_file=':memory:'`), then "
        "again with an on-disk history file for the details line.",
        f"- exit: {N_EXIT} interleaved pairs of `papermill.execute_notebook` runs (one process) "
        "of a 4-cell notebook, tracked (`%load_ext nbops`, `%track start`, 100 `log_metric`) "
        "and the same notebook untracked, then again with a "
        f"{EXIT_WORK_S:g} s cell before the last (the writer has started by the kernel's exit, "
        "as in any notebook that works for a few seconds); the last cell writes `time.time()`, "
        "taken from the "
        "moment `execute_notebook` returns; then the store is polled until the run is FINISHED "
        "with its 100 values.",
        f"- end_run: {N_END} runs per side in fresh processes: `start_run`, wait for the run "
        "id, one metric, `flush()`, then `end_run()` timed; peer: `mlflow.end_run()` after "
        "one `mlflow.log_metric`, same SQLite kind of store.",
    ]
    missed = [r["figure"] for r in rows if not r["met"]]
    lines += ["", "Notes:", ""]
    if not missed:
        lines.append("- Every target met in this run.")
    lines += [f"- {n}" for n in notes]
    text = "\n".join(lines) + "\n"
    if RESULTS.exists():  # keep the section bench/pipeline.py appends
        old = RESULTS.read_text()
        if PIPELINE_MARKER in old:
            text += PIPELINE_MARKER + old.split(PIPELINE_MARKER, 1)[1]
    RESULTS.write_text(text)


FIGURES = ("load_ext", "start", "calls", "throughput", "cell", "exit", "end_run")


def main(argv: list[str]) -> None:
    """``--only exit,end_run`` runs only those figures and prints them (RESULTS.md is rewritten
    by a full run only, so that it always holds every figure of one run)."""
    only = set(FIGURES)
    if argv[:1] == ["--only"] and len(argv) == 2:
        only = {f.strip() for f in argv[1].split(",") if f.strip()}
    elif argv:
        sys.exit(f"usage: python bench/tracking.py [--only {','.join(FIGURES)}]")
    unknown = only - set(FIGURES)
    if unknown:
        sys.exit(f"unknown figure {sorted(unknown)[0]!r}; figures: {', '.join(FIGURES)}")
    load_avg.append(os.getloadavg()[0])
    print(f"load average (1 min) at start: {load_avg[0]:.2f}, {os.cpu_count()} cores", flush=True)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="nbops-bench-") as d:
        tmp = Path(d)
        peer_uri = f"sqlite:///{tmp}/peer.db"
        # the peers' schema is created here, untimed (a first start_run would migrate it)
        child(
            f"import json; from mlflow.tracking import MlflowClient\n"
            f"MlflowClient({peer_uri!r}).search_experiments(); print(json.dumps({{}}))",
            base_env(),
            cwd=tmp,
        )
        if "load_ext" in only:
            bench_load_ext(tmp)
        if "start" in only:
            bench_start(tmp, peer_uri)
        if "calls" in only or "throughput" in only:
            calls = bench_log_call(tmp, peer_uri)
            if "throughput" in only:
                bench_throughput(tmp, peer_uri, calls)
        if "cell" in only:
            bench_track_cell(tmp)
        if "exit" in only:
            bench_exit(tmp)  # the writer is still importing MLflow as the kernel exits
            bench_exit(tmp, EXIT_WORK_S)  # it has started: the usual case
        if "end_run" in only:
            bench_end_run(tmp, peer_uri)
    elapsed = time.perf_counter() - t0
    missed = [r["figure"] for r in rows if not r["met"]]
    print(
        f"{len(rows) - len(missed)}/{len(rows)} targets met in {elapsed:.0f} s; load average "
        f"(1 min) at end {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    if only == set(FIGURES):
        write_results(elapsed)
        print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main(sys.argv[1:])
