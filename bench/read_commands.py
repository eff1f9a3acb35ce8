"""Benchmark of the read commands on the example project: `nbops runs`, `show`, `diff`,
`lineage`, each in a fresh process, against the same read done with plain MLflow in a fresh
process (MlflowClient on the same store), and against nbops' MLflow path (today's:
NBOPS_READ_PATH=mlflow).

    python bench/read_commands.py [--dir /tmp/nbops-bench-read] [--repeat 5]

Makes the example project with `nbops demo --dir DIR` when DIR has none. Each figure is the
median wall time of --repeat fresh processes, the three ways run alternately so that load from
other work on the machine falls on all of them; prints one line per command with the peer and the
ratio, and the machine and the load (os.getloadavg()) before and after, and the floor: a
fresh `python -c pass` and `nbops --help`. The children run without PYTHONDONTWRITEBYTECODE (as
an installed nbops runs: from .pyc files).
"""

from __future__ import annotations

import argparse
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path

PEER = {
    # the same read with plain MLflow, as someone without nbops would write it
    "runs": (
        "from mlflow.tracking import MlflowClient\n"
        "c = MlflowClient(URI)\n"
        "ids = [e.experiment_id for e in c.search_experiments()]\n"
        "rows = c.search_runs(ids, order_by=['attributes.start_time DESC'], max_results=50)\n"
        "print(len(rows))"
    ),
    "show": (
        "from mlflow.tracking import MlflowClient\n"
        "c = MlflowClient(URI)\n"
        "r = c.get_run(A)\n"
        "print(c.get_experiment(r.info.experiment_id).name, r.data.params, r.data.metrics)"
    ),
    "diff": (
        "from mlflow.tracking import MlflowClient\n"
        "c = MlflowClient(URI)\n"
        "a, b = c.get_run(A), c.get_run(B)\n"
        "print(set(a.data.params.items()) ^ set(b.data.params.items()))"
    ),
    "lineage": (
        "from mlflow.tracking import MlflowClient\n"
        "c = MlflowClient(URI)\n"
        "r = c.get_run(A)\n"
        "dep = [v for k, v in r.data.tags.items() if k.startswith('nbops.')]\n"
        "up = c.search_runs([r.info.experiment_id], \"tags.`nbops.stage` LIKE '%'\")\n"
        "print(len(dep), len(up), [a.path for a in c.list_artifacts(A, 'notebook')])"
    ),
}


def wall(cmd: list[str], cwd: Path, env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    took = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({out.returncode}): {out.stderr[-500:]}")
    return took


def runs_of(db: Path) -> dict[str, str]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    rows = con.execute(
        "SELECT r.run_uuid, r.name FROM runs r WHERE r.lifecycle_stage = 'active'"
        " ORDER BY r.start_time"
    ).fetchall()
    con.close()
    return {name: rid for rid, name in rows}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", default="/tmp/nbops-bench-read", type=Path)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    root: Path = args.dir.resolve()
    db = root / ".nbops" / "mlflow.db"
    if not db.is_file():
        print(f"making the example project in {root} (nbops demo) ...", flush=True)
        subprocess.run([sys.executable, "-m", "nbops", "demo", "--dir", str(root)], check=True)
    runs = runs_of(db)
    point = next(rid for name, rid in runs.items() if name.startswith("train["))
    other = [rid for name, rid in runs.items() if name.startswith("train[")][-1]
    evaluate = runs["evaluate"]
    uri = f"sqlite:///{db}"
    nbops_args = {
        "runs": ["runs"],
        "show": ["show", evaluate],
        "diff": ["diff", point, other],
        "lineage": ["lineage", evaluate],
    }
    peer_ids = {"runs": (), "show": (evaluate,), "diff": (point, other), "lineage": (evaluate,)}
    env = {**os.environ, "NBOPS_PROJECT_ROOT": str(root)}
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("NBOPS_READ_PATH", None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    slow_env = {**env, "NBOPS_READ_PATH": "mlflow"}
    machine = (
        f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}"
    )
    load0 = os.getloadavg()
    print(f"machine: {machine}; load before {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}")
    print(f"project: {root} ({len(runs)} runs); median of {args.repeat} fresh processes each")
    floor = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "nbops --help": [sys.executable, "-m", "nbops", "--help"],
    }
    for label, cmd in floor.items():
        wall(cmd, root, env)
        took = statistics.median(wall(cmd, root, env) for _ in range(args.repeat))
        print(f"floor: {label:<15} {took:6.3f} s | load {os.getloadavg()[0]:.2f}")
    lines = []
    for name, argv in nbops_args.items():
        cmd = [sys.executable, "-m", "nbops", *argv]
        ids = peer_ids[name]
        code = f"URI = {uri!r}\n" + "".join(
            f"{var} = {rid!r}\n" for var, rid in zip("AB", ids, strict=False)
        )
        peer = [sys.executable, "-c", code + PEER[name]]
        ours, theirs, today = [], [], []
        wall(cmd, root, env)  # warm the page cache once
        for _ in range(args.repeat):
            ours.append(wall(cmd, root, env))
            theirs.append(wall(peer, root, env))
            today.append(wall(cmd, root, slow_env))
        o, t, d = (statistics.median(x) for x in (ours, theirs, today))
        load = os.getloadavg()[0]
        line = (
            f"nbops {name:<8} {o:6.3f} s  | plain MLflow (MlflowClient, fresh process) {t:6.3f} s"
            f"  ratio {o / t:5.2f}x ({t / o:4.1f}x faster) | nbops' MLflow path {d:6.3f} s"
            f" ({d / o:4.1f}x slower) | load {load:.2f}"
        )
        print(line, flush=True)
        lines.append(line)
    load1 = os.getloadavg()
    print(f"load after {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
