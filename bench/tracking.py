"""Tracking benchmarks: nbops against plain MLflow, each figure and its peer from ONE run.

    python bench/tracking.py            # prints one line per figure, rewrites bench/RESULTS.md

Figures (targets from the tracking-core issue):
  load_ext   `%load_ext nbops` in a fresh process          <= 0.05x `import mlflow`
  start      `%track start` in a cold kernel               <= 0.1 s   (peer: mlflow.start_run)
  log call   one nbops.log_metric                          <= 20 us, >= 250x mlflow.log_metric
  throughput metric values reaching the store        >= 10,000/s (peer: MlflowClient.log_batch)
  %%track    added time per tracked cell                   <= 1 ms
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
HEAVY = ["mlflow", "pandas", "papermill", "nbformat", "jsonschema"]
rows: list[dict[str, object]] = []


def child(code: str, env: dict[str, str] | None = None) -> dict[str, object]:
    """Run ``code`` in a fresh interpreter; it prints one JSON object as its last line."""
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        check=True,
        timeout=600,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def record(
    name: str,
    value: float,
    unit: str,
    target: str,
    met: bool,
    peer_name: str,
    peer: float,
    ratio: str,
) -> None:
    rows.append(
        dict(
            name=name,
            value=value,
            unit=unit,
            target=target,
            met=met,
            peer_name=peer_name,
            peer=peer,
            ratio=ratio,
        )
    )
    flag = "met" if met else "MISSED"
    print(
        f"{name:<34} {value:>10.4g} {unit:<9} target {target:<22} {flag:<6} | "
        f"{peer_name} {peer:.4g} {unit} | {ratio}",
        flush=True,
    )


def bench_load_ext() -> None:
    code = (
        "import time, sys, json\n"
        "from IPython.core.interactiveshell import InteractiveShell\n"
        "sh = InteractiveShell.instance()\n"
        "t = time.perf_counter()\n"
        "sh.run_line_magic('load_ext', 'nbops')\n"
        "dt = time.perf_counter() - t\n"
        f"print(json.dumps({{'s': dt, 'heavy': [m for m in {HEAVY!r} if m in sys.modules]}}))"
    )
    nb = min((child(code) for _ in range(3)), key=lambda r: r["s"])  # type: ignore[arg-type,return-value]
    peer_code = (
        "import time, json\nt = time.perf_counter()\nimport mlflow\n"
        "print(json.dumps({'s': time.perf_counter() - t}))"
    )
    peer = min(child(peer_code)["s"] for _ in range(3))  # type: ignore[type-var]
    s = float(nb["s"])  # type: ignore[arg-type]
    ratio = s / float(peer)  # type: ignore[arg-type]
    record(
        "%load_ext nbops",
        s * 1000,
        "ms",
        "<= 0.05x import mlflow",
        ratio <= 0.05 and not nb["heavy"],
        "import mlflow",
        float(peer) * 1000,  # type: ignore[arg-type]
        f"{ratio:.4f}x (heavy modules loaded: {nb['heavy'] or 'none'})",
    )


def _kernel_time(setup: str, stmt: str, cwd: str) -> float:
    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(kernel_name="python3", cwd=cwd)
    try:
        out: list[str] = []

        def hook(msg: dict) -> None:  # type: ignore[type-arg]
            if msg["msg_type"] == "stream":
                out.append(msg["content"]["text"])

        kc.execute_interactive(setup, timeout=120)
        code = (
            f"import time as _t\n_t0 = _t.perf_counter()\n{stmt}\n"
            "print('T', _t.perf_counter() - _t0)"
        )
        kc.execute_interactive(code, timeout=120, output_hook=hook)
        line = [ln for ln in "".join(out).splitlines() if ln.startswith("T ")][-1]
        kc.execute_interactive(
            "import nbops\nnbops.end_run()"
            if "nbops" in setup
            else "import mlflow\nmlflow.end_run()",
            timeout=120,
        )
        return float(line.split()[1])
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def bench_start(tmp: Path) -> None:
    proj = tmp / "start"
    (proj / ".nbops").mkdir(parents=True)
    os.environ["NBOPS_PROJECT_ROOT"] = str(proj)
    s = _kernel_time("%load_ext nbops", "get_ipython().run_line_magic('track', 'start')", str(proj))
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp}/peer-start.db"
    try:
        peer = _kernel_time("pass", "import mlflow\nmlflow.start_run()", str(tmp))
    finally:
        del os.environ["MLFLOW_TRACKING_URI"]
    record(
        "%track start (cold kernel)",
        s * 1000,
        "ms",
        "<= 100 ms",
        s <= 0.1,
        "import mlflow + mlflow.start_run",
        peer * 1000,
        f"{peer / s:.0f}x faster",
    )


def bench_log_call_and_throughput(tmp: Path) -> None:
    proj = tmp / "log"
    (proj / ".nbops").mkdir(parents=True)
    n_calls, n_values = 20_000, 100_000
    code = f"""
import json, os, time
os.environ['NBOPS_PROJECT_ROOT'] = {str(proj)!r}
import nbops
run = nbops.start_run('bench-calls')
t = time.perf_counter()
for i in range({n_calls}):
    nbops.log_metric('loss', 1.0 / (i + 1), step=i)
per_call = (time.perf_counter() - t) / {n_calls}
run.id; nbops.end_run()
run = nbops.start_run('bench-throughput')
run.id  # the store is open: measure delivery, not MLflow's import
t = time.perf_counter()
for i in range({n_values}):
    nbops.log_metric('v', i * 0.5, step=i)
nbops.end_run()
dt = time.perf_counter() - t
from mlflow.tracking import MlflowClient
c = MlflowClient('sqlite:///{proj}/.nbops/mlflow.db')
n = len(c.get_metric_history(run.id, 'v'))
print(json.dumps({{'per_call': per_call, 'rate': {n_values} / dt, 'stored': n}}))
"""
    nb = child(code)
    peer_code = f"""
import json, time, mlflow
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient
mlflow.set_tracking_uri('sqlite:///{tmp}/peer-log.db')
with mlflow.start_run():
    t = time.perf_counter()
    for i in range(200):
        mlflow.log_metric('loss', 1.0 / (i + 1), step=i)
    per_call = (time.perf_counter() - t) / 200
c = MlflowClient('sqlite:///{tmp}/peer-batch.db')
run = c.create_run(c.create_experiment('b'))
now = int(time.time() * 1000)
t = time.perf_counter()
for b in range(20):
    batch = [Metric('v', i * 0.5, now, b * 1000 + i) for i in range(1000)]
    c.log_batch(run.info.run_id, metrics=batch)
rate = 20000 / (time.perf_counter() - t)
print(json.dumps({{'per_call': per_call, 'rate': rate}}))
"""
    peer = child(peer_code)
    pc, ppc = float(nb["per_call"]), float(peer["per_call"])  # type: ignore[arg-type]
    record(
        "log_metric call",
        pc * 1e6,
        "us",
        "<= 20 us, >= 250x",
        pc <= 20e-6 and ppc / pc >= 250,
        "mlflow.log_metric (SQLite)",
        ppc * 1e6,
        f"{ppc / pc:.0f}x faster",
    )
    rate, prate = float(nb["rate"]), float(peer["rate"])  # type: ignore[arg-type]
    record(
        "metrics/s reaching the store",
        rate,
        "values/s",
        ">= 10,000/s",
        rate >= 10_000 and nb["stored"] == n_values,
        "MlflowClient.log_batch x1000",
        prate,
        f"{rate / prate:.2f}x (stored {nb['stored']}/{n_values})",
    )


def bench_track_cell(tmp: Path) -> None:
    proj = tmp / "cell"
    (proj / ".nbops").mkdir(parents=True)
    code = f"""
import json, os, time
os.environ['NBOPS_PROJECT_ROOT'] = {str(proj)!r}
from IPython.core.interactiveshell import InteractiveShell
sh = InteractiveShell.instance()
sh.run_line_magic('load_ext', 'nbops')
sh.run_line_magic('track', 'start')
body = 'x = 1\\ny = x + 1\\n'
def timed(src, n=300):
    for _ in range(20):
        sh.run_cell(src, store_history=True)
    t = time.perf_counter()
    for _ in range(n):
        sh.run_cell(src, store_history=True)
    return (time.perf_counter() - t) / n
plain = timed(body)
tracked = timed('%%track -n bench --no-figures\\n' + body)
import nbops; nbops.end_run()
print(json.dumps({{'plain': plain, 'tracked': tracked}}))
"""
    r = child(code)
    plain, tracked = float(r["plain"]), float(r["tracked"])  # type: ignore[arg-type]
    added = tracked - plain
    record(
        "%%track added per cell",
        added * 1000,
        "ms",
        "<= 1 ms",
        added <= 1e-3,
        "plain cell",
        plain * 1000,
        f"tracked cell {tracked * 1000:.3f} ms",
    )


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    from importlib.metadata import version

    return (
        f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}, "
        f"mlflow {version('mlflow')}, {platform.platform()}"
    )


def write_results() -> None:
    lines = [
        "# Benchmark results",
        "",
        f"Latest run: {time.strftime('%Y-%m-%d %H:%M %Z')} on {machine()}.",
        "Each figure and its peer come from one run of `python bench/tracking.py`.",
        "",
        "## Tracking (`bench/tracking.py`)",
        "",
        "| figure | nbops | target | met | peer | peer figure | ratio |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['name']} | {r['value']:.4g} {r['unit']} | {r['target']} | "
            f"{'yes' if r['met'] else '**no**'} | {r['peer_name']} | "
            f"{r['peer']:.4g} {r['unit']} | {r['ratio']} |"
        )
    notes = HERE / "NOTES.md"
    if notes.exists():
        lines += ["", notes.read_text().strip()]
    (HERE / "RESULTS.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    with tempfile.TemporaryDirectory(prefix="nbops-bench-") as d:
        tmp = Path(d)
        bench_load_ext()
        bench_start(tmp)
        bench_log_call_and_throughput(tmp)
        bench_track_cell(tmp)
    write_results()
    print(f"wrote {HERE / 'RESULTS.md'}")


if __name__ == "__main__":
    main()
