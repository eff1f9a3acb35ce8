"""Benchmark of the nbops server's read path on 10,000 runs against MlflowClient.

    python bench/server.py [--runs 10000] [--repeat 7] [--no-write]

Seeds a fresh SQLite MLflow store (schema from MLflow, 10,000 runs in one bulk SQL transaction),
then times, each as the median of --repeat warm calls:
- the run list's first page (100 runs): nbops' handler work (SqliteReader.search) vs
  MlflowClient.search_runs for the same page, and the same page over HTTP from a real
  `jupyter server` with the extension;
- a filtered, metric-sorted page, both ways;
- compare of 100 runs with full metric histories vs MlflowClient (get_run + get_metric_history);
- the last page (offset 9,900).
Prints one line per figure and replaces the "## Server (bench/server.py)" section of RESULTS.md.
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
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from nbops import envvars  # noqa: E402
from tests.integration.server_seed import bulk_runs  # noqa: E402

RESULTS = REPO / "bench" / "RESULTS.md"
HEADER = "## Server (bench/server.py)"
FILTER = "metrics.acc > 0.5 and params.lr = '0.01'"
ORDER = ["metrics.loss ASC"]


def median_time(fn: Any, repeat: int) -> float:
    fn()  # warm: connection, MLflow's parser, caches
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def paired(ours: Any, peer: Any, repeat: int) -> tuple[float, float]:
    """Medians of ``ours`` and ``peer`` called alternately, so load from other work on the
    machine falls on both."""
    ours()
    peer()
    a, b = [], []
    for _ in range(repeat):
        t0 = time.perf_counter()
        ours()
        a.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        peer()
        b.append(time.perf_counter() - t0)
    return statistics.median(a), statistics.median(b)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_first_page(root: Path, repeat: int) -> tuple[float, float]:
    """Median time of GET /nbops/api/runs (first page) from a real jupyter server, and the time
    of the very first request after the server answered /api/status."""
    port, token = free_port(), "benchtoken"
    cmd = [
        sys.executable,
        "-m",
        "jupyter",
        "server",
        "--no-browser",
        f"--port={port}",
        f"--IdentityProvider.token={token}",
        "--ServerApp.jpserver_extensions={'nbops': True}",
        f"--NbopsApp.project_root={root}",
        f"--ServerApp.root_dir={root}",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    log = open(root / "server.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"

    def get(path: str) -> bytes:
        req = urllib.request.Request(base + path, headers={"Authorization": f"token {token}"})
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.read()  # type: ignore[no-any-return]

    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                get("/api/status")
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError((root / "server.log").read_text()[-2000:]) from None
                time.sleep(0.2)
        t0 = time.perf_counter()
        body = json.loads(get("/nbops/api/runs?experiment=big"))
        first = time.perf_counter() - t0
        assert body["total"] == 10_000 or body["total"] > 0, body
        return median_time(lambda: get("/nbops/api/runs?experiment=big"), repeat), first
    finally:
        import signal

        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        log.close()


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    load0 = os.getloadavg()[0]
    started = time.time()
    tmp = Path(tempfile.mkdtemp(prefix="nbops-bench-server-"))
    (tmp / ".nbops").mkdir()
    os.environ[envvars.PROJECT_ROOT] = str(tmp)
    db = tmp / ".nbops" / "mlflow.db"
    uri = f"sqlite:///{db}"

    from mlflow.tracking import MlflowClient  # the peer: MLflow's own client, used directly

    from nbops.mlflow.readers.client import MlflowReader
    from nbops.mlflow.readers.sqlite import SqliteReader
    from nbops.mlflow.store import open_store

    store = open_store(uri)
    exp = store.experiment_id("big")
    t0 = time.perf_counter()
    ids = bulk_runs(db, exp, args.runs)
    seed_s = time.perf_counter() - t0
    slow = MlflowReader(uri)
    fast = SqliteReader(db, lambda: slow)
    client = MlflowClient(uri)
    rows: list[tuple[str, str, str, str, str]] = []

    def row(name: str, ours: float, peer_name: str, peer: float, target: str) -> None:
        ratio = peer / ours if ours else float("inf")
        rows.append(
            (
                name,
                f"{ours * 1000:.1f} ms",
                target,
                f"{peer_name} {peer * 1000:.1f} ms",
                f"{ratio:.1f}x faster",
            )
        )
        print(
            f"{name}: nbops {ours * 1000:.1f} ms | {peer_name} {peer * 1000:.1f} ms | "
            f"{ratio:.1f}x faster"
        )

    def uncached(fn: Any) -> Any:
        def call() -> Any:
            fast.forget()  # as after any write to the store: sort, count and list keys anew
            return fn()

        return call

    # 1. first page, 100 runs, default order
    # the handler's whole work: resolve the experiment, search, build and serialise the answer
    page1 = uncached(lambda: fast.run_list("big", "", [], 100, None).model_dump_json())
    ours, peer = paired(page1, lambda: client.search_runs([exp], max_results=100), args.repeat)
    same = [r.run_id for r in fast.search([exp], "", [], 100, None).runs] == [
        r.info.run_id for r in client.search_runs([exp], max_results=100)
    ]
    assert same, "the two paths disagree on the first page"
    target = "<= 300 ms and >= 5x"
    row("run list, first page of 100 (of 10,000)", ours, "MlflowClient.search_runs", peer, target)
    first_ours, first_peer = ours, peer
    # 1b. the same again, the store unchanged since (page, count and keys cached)
    ours = median_time(
        lambda: fast.run_list("big", "", [], 100, None).model_dump_json(), args.repeat
    )
    row("same page again, store unchanged (cached order)", ours, "same", peer, "-")
    # 2. filtered and sorted by a metric
    ours, peer = paired(
        uncached(lambda: fast.search([exp], FILTER, ORDER, 100, None)),
        lambda: client.search_runs([exp], FILTER, order_by=ORDER, max_results=100),
        max(3, args.repeat // 2),
    )
    row("filtered + metric-sorted page of 100", ours, "MlflowClient.search_runs", peer, "-")
    # 3. the last page
    from nbops.mlflow.readers.base import encode_token, query_digest

    token = encode_token(query_digest([exp], "", []), o=args.runs - 100)
    ours = median_time(uncached(lambda: fast.search([exp], "", [], 100, token)), args.repeat)
    print(f"last page (offset {args.runs - 100}): nbops {ours * 1000:.1f} ms")
    rows.append((f"last page (offset {args.runs - 100:,})", f"{ours * 1000:.1f} ms", "-", "-", "-"))
    # 4. compare 100 runs with full metric histories
    cids = ids[:100]
    ours = median_time(lambda: fast.compare(cids), max(3, args.repeat // 2))

    def peer_compare() -> None:
        for rid in cids:
            run = client.get_run(rid)
            for key in run.data.metrics:
                client.get_metric_history(rid, key)

    peer = median_time(peer_compare, 3)
    row(
        "compare 100 runs with full metric histories",
        ours,
        "MlflowClient get_run + get_metric_history",
        peer,
        "<= 1 s",
    )
    compare_ours = ours
    # 5. over HTTP from a real jupyter server
    http, first_req = http_first_page(tmp, args.repeat)
    print(
        f"first page over HTTP (jupyter server): {http * 1000:.1f} ms median; "
        f"first request after start {first_req * 1000:.0f} ms"
    )
    rows.append(
        (
            "first page over HTTP (real jupyter server, client-side)",
            f"{http * 1000:.1f} ms",
            "-",
            "-",
            f"first request {first_req * 1000:.0f} ms",
        )
    )
    load1 = os.getloadavg()[0]
    met_page = first_ours <= 0.3 and first_peer / first_ours >= 5
    met_cmp = compare_ours <= 1.0
    print(
        f"targets: first page {'met' if met_page else 'MISSED'}; compare "
        f"{'met' if met_cmp else 'MISSED'}"
    )
    if not args.no_write:
        write(rows, seed_s, args, load0, load1, time.time() - started)
    return 0


def write(
    rows: list[tuple[str, ...]], seed_s: float, args: Any, l0: float, l1: float, total: float
) -> None:
    import mlflow

    lines = [
        HEADER,
        "",
        f"One run of `python bench/server.py` ({total:.0f} s), "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        "",
        f"- nproc: {os.cpu_count()}; CPU: {cpu_name()}",
        f"- Python {platform.python_version()}, mlflow {mlflow.__version__}, SQLite "
        f"{__import__('sqlite3').sqlite_version}",
        f"- store: {args.runs:,} runs in one experiment (4 params, 3 metrics, a 10-step `acc` "
        f"history, 2 tags each), seeded by bulk SQL in {seed_s:.1f} s",
        f"- load average (1 min) at start / end: {l0:.2f} / {l1:.2f} (the machine is shared)",
        "",
        "| figure | nbops | target | peer | ratio |",
        "| --- | --- | --- | --- | --- |",
        *("| " + " | ".join(r) + " |" for r in rows),
        "",
        f"Each figure is the median of {args.repeat} warm calls (filtered page and compare: of "
        f"{max(3, args.repeat // 2)}; compare's peer: of 3) in one process after one untimed "
        "call; the first page and the filtered page alternate nbops and peer calls. "
        "nbops keeps page ids, counts and key lists per SQLite `data_version` (until any "
        "process writes); every figure except the 'again' line drops that cache before each "
        "call, so it is what the first request after a write costs. The default order of an "
        "early page reads the newest rows by rowid and proves with one counting scan that no "
        "older row starts later (else it sorts in SQL, as for every other order). "
        "nbops' figures are the handler's work (first page: `SqliteReader.run_list(...)"
        ".model_dump_json()`, i.e. experiment lookup, read-only SQL on MLflow's schema opened "
        "`mode=ro`, the models and the JSON; other lines: `.search` / `.compare`), not HTTP; "
        "the HTTP line is the same first page "
        "fetched with urllib from a `jupyter server` subprocess with the extension (client-side "
        "wall time, so it includes HTTP, auth and JSON; repeated requests of an unchanged store, "
        "so served from the cache). The peer is `MlflowClient.search_runs` "
        "for the same page (identical run ids, checked) and, for compare, what a client without "
        "the SQL path does: `get_run` and `get_metric_history` per run and metric. The filtered "
        f"page uses `{FILTER}` ordered by `{ORDER[0]}`.",
        "",
        "Notes: the first-page ratio is the figure most moved by other work on this shared "
        "2-core machine: MlflowClient's own time for that page ranged 30-110 ms across runs while "
        "this benchmark was written, and the uncached nbops page 5-12 ms (4x-7x). Before the "
        "newest-rows shortcut, the SQL sort of 10,000 rows alone kept it at 4-5x. Compare and the "
        "filtered page are far from their targets either way.",
        "",
    ]
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    if HEADER in text:
        head, _, rest = text.partition(HEADER)
        nxt = rest.find("\n## ")
        text = head + ("\n".join(lines) + rest[nxt + 1 :] if nxt >= 0 else "\n".join(lines))
    else:
        text = text.rstrip("\n") + "\n\n" + "\n".join(lines)
    RESULTS.write_text(text)
    print(f"wrote {RESULTS.relative_to(REPO)}")


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
