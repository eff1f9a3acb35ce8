"""Scale-out benchmark: `nbops run --dask` on a real 2-worker cluster against the local executor,
figures from ONE run (~2 min on 2 cores).

    python bench/dask_sweep.py      # replaces its section of bench/RESULTS.md

  16-point sweep of a 1-s notebook   --dask (2 workers) >= 1.8x `nbops run --jobs 1`
  per-job overhead, empty notebook   the dask path's against the local (zygote) path's
  one 50 MB dep shared by 8 points   shipped once per worker, not once per point

The cluster is what a user starts (`dask scheduler`, two `dask worker ADDRESS --nworkers 1
--nthreads 1`), all on 127.0.0.1, started and registered before anything is timed. Every project
is a fresh folder with its own embedded store; each is run once untimed first (one point: the
store's schema, the workers' imports), so both paths are timed warm.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TITLE = "## Scale out on dask (`bench/dask_sweep.py`)"
WORKERS = 2
rows: list[tuple[str, str, str, bool, str, str]] = []
facts: list[str] = []


def record(name: str, value: str, target: str, met: bool, peer: str, ratio: str) -> None:
    rows.append((name, value, target, met, peer, ratio))
    print(
        f"{name:<40} {value:>10}  target {target:<34} {'met' if met else 'MISSED':<6} | "
        f"{peer} | {ratio}",
        flush=True,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("NBOPS_", "MLFLOW_"))}


class Cluster:
    """`dask scheduler` and `dask worker` processes, as a user starts them."""

    def __init__(self, base: Path) -> None:
        self.base = base
        base.mkdir(parents=True, exist_ok=True)
        self.address = f"tcp://127.0.0.1:{free_port()}"
        self.procs: list[subprocess.Popen[bytes]] = []
        env = {**clean_env(), "DASK_LOGGING__DISTRIBUTED": "warning"}
        port = self.address.rsplit(":", 1)[1]
        self._spawn(["scheduler", "--host", "127.0.0.1", "--port", port, "--no-dashboard"], env)
        self.caches: list[Path] = []
        for i in range(WORKERS):
            local = base / f"worker-{i}"
            local.mkdir(parents=True)
            self.caches.append(local)
            self._spawn(
                [
                    "worker",
                    self.address,
                    "--nworkers",
                    "1",
                    "--nthreads",
                    "1",
                    "--name",
                    f"w{i}",
                    "--no-dashboard",
                    "--local-directory",
                    str(local),
                ],  # fmt: skip
                env,
            )
        from distributed import Client

        with Client(self.address, timeout=60) as c:  # type: ignore[no-untyped-call]
            c.wait_for_workers(WORKERS, timeout=120)

    def _spawn(self, args: list[str], env: dict[str, str]) -> None:
        log = (self.base / f"{args[0]}-{len(self.procs)}.log").open("ab")
        self.procs.append(
            subprocess.Popen(
                [shutil.which("dask") or "dask", *args],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )

    def cached_bytes(self) -> list[int]:
        """Bytes in each worker's folder (its blob cache and its jobs' scratch folders)."""
        return [
            sum(p.stat().st_size for p in local.rglob("*") if p.is_file()) for local in self.caches
        ]

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                os.killpg(p.pid, 15)
        for p in self.procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, 9)
                p.wait(10)


def notebook(path: Path, params: str, body: str) -> None:
    cells: list[dict[str, object]] = [
        {
            "cell_type": "code",
            "id": f"c{i}",
            "metadata": {"tags": tags},
            "execution_count": None,
            "outputs": [],
            "source": src,
        }
        for i, (src, tags) in enumerate([(params, ["parameters"]), (body, [])])
    ]
    nb = {
        "cells": cells,
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
        },
    }
    path.write_text(json.dumps(nb))


def project(tmp: Path, name: str, body: str, deps: str = "") -> Path:
    d = tmp / name
    (d / ".nbops").mkdir(parents=True)
    (d / "nbops.yaml").write_text(f"stages:\n  s:\n    notebook: s.ipynb\n{deps}")
    notebook(d / "s.ipynb", "i = 0", body)
    return d


def nbops(d: Path, *args: str) -> tuple[float, str]:
    """Wall seconds of `nbops ARGS` in project ``d``, and what it printed."""
    t = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "nbops", *args],
        cwd=d,
        env={**clean_env(), "NBOPS_PROJECT_ROOT": str(d), "CI": "true"},
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    took = time.perf_counter() - t
    if out.returncode != 0:
        raise RuntimeError(f"nbops {' '.join(args)} failed:\n{out.stdout[-3000:]}{out.stderr}")
    return took, out.stdout + out.stderr


def grid(n: int, start: int = 0) -> str:
    return "i=" + ",".join(str(k) for k in range(start, start + n))


def bench_sweep(tmp: Path, cluster: Cluster) -> None:
    body = "import time\nimport nbops\ntime.sleep(1.0)\nnbops.log_metric('i', i)"
    here, there = project(tmp, "sweep-here", body), project(tmp, "sweep-there", body)
    nbops(here, "run", "--sweep", "i=100", "--jobs", "1")
    nbops(there, "run", "--sweep", "i=100", "--dask", cluster.address)
    seq, _ = nbops(here, "run", "--sweep", grid(16), "--jobs", "1")
    par, said = nbops(there, "run", "--sweep", grid(16), "--dask", cluster.address)
    record(
        "16-point sweep of a 1-s notebook",
        f"{par:.1f} s",
        f"--dask ({WORKERS} workers) >= 1.8x --jobs 1",
        seq / par >= 1.8,
        f"local --jobs 1: {seq:.1f} s",
        f"{seq / par:.2f}x",
    )
    facts.append(f"the 16-point run's last lines on the cluster: `{report_line(said)}`")


def bench_overhead(tmp: Path, cluster: Cluster) -> None:
    """(run of 1 + n points - run of 1 point) / n, one job at a time on both paths: what each
    further job adds to the wall time, the runner's start-up aside."""
    n = 16
    here, there = project(tmp, "empty-here", "x = i"), project(tmp, "empty-there", "x = i")
    per = {}
    for d, how in ((here, ["--jobs", "1"]), (there, ["--jobs", "1", "--dask", cluster.address])):
        nbops(d, "run", "--sweep", "i=100", *how)  # the store's schema; warm workers
        one, _ = nbops(d, "run", "--sweep", "i=101", *how)
        many, _ = nbops(d, "run", "--sweep", grid(n + 1, 200), *how)
        per[d.name] = (many - one) / n
    local, remote = per[here.name], per[there.name]
    record(
        "per-job overhead, empty notebook",
        f"{remote:.3f} s",
        "dask path vs local zygote path",
        True,
        f"local (zygote) path {local:.3f} s",
        f"{remote / local:.1f}x the local path's ((run of {n + 1} - run of 1) / {n}, --jobs 1)",
    )


def report_line(text: str) -> str:
    lines = [ln for ln in text.splitlines() if re.search(r"shipped|worker", ln)]
    return lines[-1].strip() if lines else "(no report line)"


def shipped_bytes(line: str) -> float | None:
    """The bytes the executor's report says it shipped (`... 52.4 MB shipped ...`)."""
    m = re.search(
        r"([\d.]+)\s*([kMG]i?B|B)\b[^;,]*shipped|shipped[^\d]*([\d.]+)\s*([kMG]i?B|B)", line
    )
    if not m:
        return None
    value, unit = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
    scale = {"B": 1, "kB": 1e3, "KiB": 1024, "MB": 1e6, "MiB": 2**20, "GB": 1e9, "GiB": 2**30}
    return float(value) * scale.get(unit, 1)


def bench_shipping(tmp: Path, cluster: Cluster) -> None:
    size, points = 50 * 10**6, 8
    body = "import os\nimport nbops\nnbops.log_metric('size', os.path.getsize('big.bin') + i)"
    d = project(tmp, "shared-dep", body, deps="    deps: [big.bin]\n")
    (d / "big.bin").write_bytes(os.urandom(size))
    cached_before = sum(cluster.cached_bytes())
    took, said = nbops(d, "run", "--sweep", grid(points), "--dask", cluster.address)
    line = report_line(said)
    reported = shipped_bytes(line)
    cached = sum(cluster.cached_bytes()) - cached_before
    naive = points * size
    shipped = reported if reported is not None else float(cached)
    record(
        f"one {size // 10**6} MB dep, {points}-point sweep",
        f"{shipped / 1e6:.1f} MB",
        f"<= 1 copy per worker ({WORKERS} x {size // 10**6} MB)",
        shipped <= WORKERS * size * 1.02,
        f"a copy per point: {naive / 1e6:.0f} MB",
        f"{naive / shipped:.1f}x less" if shipped else "-",
    )
    facts.append(
        f"shared-dep run: {took:.1f} s; report line `{line}`; the workers' folders grew by "
        f"{cached / 1e6:.1f} MB in all"
    )


def machine() -> list[str]:
    from importlib.metadata import version

    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return [
        f"- nproc: {os.cpu_count()}; CPU: {cpu}; Python {sys.version.split()[0]}, "
        f"distributed {version('distributed')}",
        f"- cluster: `dask scheduler` + {WORKERS} x `dask worker --nworkers 1 --nthreads 1`, "
        "all on 127.0.0.1 (the machine that runs `nbops run`)",
    ]


def write_results(seconds: float, load: tuple[str, str]) -> None:
    res = HERE / "RESULTS.md"
    text = res.read_text() if res.exists() else "# Benchmark results\n"
    before, _, after = text.partition("\n" + TITLE)
    rest = after.split("\n## ", 1)[1] if "\n## " in after else ""
    lines = [
        TITLE,
        "",
        f"One run of `python bench/dask_sweep.py` ({seconds:.0f} s), "
        f"{time.strftime('%Y-%m-%d %H:%M %Z')}.",
        "",
        *machine(),
        f"- load average (1 min) at start / end: {load[0]} / {load[1]} (the machine is shared)",
        "",
        "| figure | nbops --dask | target | met | peer | ratio |",
        "| --- | --- | --- | --- | --- | --- |",
        *(
            f"| {n} | {v} | {t} | {'yes' if m else '**no**'} | {p} | {r} |"
            for n, v, t, m, p, r in rows
        ),
        "",
        *(f"- {f}" for f in facts),
    ]
    tail = f"\n## {rest.rstrip()}\n" if rest else ""
    res.write_text(before.rstrip() + "\n\n" + "\n".join(lines) + "\n" + tail)


def main() -> None:
    t0 = time.perf_counter()
    load0 = Path("/proc/loadavg").read_text().split()[0]
    with tempfile.TemporaryDirectory(prefix="nbops-bench-dask-") as t:
        tmp = Path(t)
        cluster = Cluster(tmp / "cluster")
        try:
            bench_sweep(tmp, cluster)
            bench_overhead(tmp, cluster)
            bench_shipping(tmp, cluster)
        finally:
            cluster.stop()
    load1 = Path("/proc/loadavg").read_text().split()[0]
    write_results(time.perf_counter() - t0, (load0, load1))
    print(f"wrote {HERE / 'RESULTS.md'}")


if __name__ == "__main__":
    main()
