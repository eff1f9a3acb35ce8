"""Metric values/s reaching the embedded store through nbops, against MlflowClient.log_batch.

nbops' side, in a fresh process: ``nbops.start_run()``, wait for the run id (the writer has the
store open), N ``nbops.log_metric`` calls, ``nbops.end_run()`` (it returns when every value is
delivered); the clock runs from the first log call to end_run's return. Then every value is
counted back with ``MlflowClient.get_metric_history``.

The peer, in a fresh process: ``MlflowClient.log_batch`` of 1,000 metrics (MLflow's request
limit) into a fresh run of a fresh SQLite store, timed the same way and counted back.

Sides alternate in fresh processes, best of ``ROUNDS`` each; one line with the figure, the
peer, the ratio, the machine and the load (``os.getloadavg()``).

    python3 bench/ingest.py [N_VALUES]
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

N_VALUES = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
BATCH = 1000  # MLflow's log_batch limit
ROUNDS = 2
GOAL = 50_000

NBOPS_SIDE = f"""
import json, time
import nbops
run = nbops.start_run('bench-ingest')
run.id  # waits until the writer has the store open and the run exists
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
print(json.dumps(dict(dt=dt, loop=loop, stored=stored, ended=bool(ended), status=status)))
"""

PEER_SIDE = f"""
import json, sys, time
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient
c = MlflowClient(sys.argv[1])
run_id = c.create_run('0').info.run_id
now = int(time.time() * 1000)
t = time.perf_counter()
for b in range(0, {N_VALUES}, {BATCH}):
    c.log_batch(run_id, metrics=[Metric('v', i * 0.5, now, i) for i in range(b, b + {BATCH})])
dt = time.perf_counter() - t
stored = len(c.get_metric_history(run_id, 'v'))
print(json.dumps(dict(dt=dt, stored=stored)))
"""


def child(code: str, cwd: Path, env: dict[str, str], *args: str) -> dict[str, Any]:
    """Run ``code`` in a fresh interpreter; it prints one JSON object as its last line."""
    proc = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=900,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark child failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    base = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    base.setdefault("CI", "1")  # no MLflow telemetry thread in either side
    load_before = os.getloadavg()
    ours: list[dict[str, Any]] = []
    theirs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="nbops-bench-ingest-") as tmp:
        for r in range(ROUNDS):  # alternating, each side in a fresh process and store
            proj = Path(tmp) / f"nbops-{r}"
            proj.mkdir()
            env = base | {"NBOPS_PROJECT_ROOT": str(proj)}
            ours.append(child(NBOPS_SIDE, proj, env))
            peer_dir = Path(tmp) / f"peer-{r}"
            peer_dir.mkdir()
            theirs.append(child(PEER_SIDE, peer_dir, base, f"sqlite:///{peer_dir}/mlflow.db"))
    load_after = os.getloadavg()
    best = min(ours, key=lambda x: float(x["dt"]))
    peer = min(theirs, key=lambda x: float(x["dt"]))
    rate, prate = N_VALUES / float(best["dt"]), N_VALUES / float(peer["dt"])
    complete = all(
        x["stored"] == N_VALUES and x["ended"] and x["status"] == "FINISHED" for x in ours
    ) and all(x["stored"] == N_VALUES for x in theirs)
    machine = f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}"
    print(
        f"metric values/s reaching the embedded store: nbops {rate:,.0f}/s | peer "
        f"MlflowClient.log_batch x{BATCH} {prate:,.0f}/s | ratio {rate / prate:.2f}x | goal "
        f">= {GOAL:,}/s {'MET' if rate >= GOAL and complete else 'MISSED'} | {N_VALUES:,} "
        f"values, best of {ROUNDS} (nbops "
        + ", ".join(f"{N_VALUES / float(x['dt']):,.0f}" for x in ours)
        + "; peer "
        + ", ".join(f"{N_VALUES / float(x['dt']):,.0f}" for x in theirs)
        + f"); log loop {float(best['loop']):.2f} s of {float(best['dt']):.2f} s; counted back "
        f"{'all' if complete else 'NOT ALL'} | {machine} | load "
        f"{load_before[0]:.2f} before, {load_after[0]:.2f} after",
        flush=True,
    )
    return 0 if complete else 1


if __name__ == "__main__":
    sys.exit(main())
