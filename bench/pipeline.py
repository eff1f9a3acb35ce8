"""Pipeline benchmarks: nbops against papermill's CLI and ploomber, figures from ONE run.

    python bench/pipeline.py        # appends its section to bench/RESULTS.md

  no-op re-run of the 3-stage example   <= 0.3 s, >= 15x faster than ploomber's no-op build
  per-stage overhead, trivial notebook  <= 0.2 s, >= 4x better than `papermill` CLI per notebook
  16-point sweep of a 1-s notebook      --jobs 2 >= 1.85x faster than --jobs 1 (issue 16)

ploomber is installed in a virtualenv the benchmark makes (never an nbops dependency).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
EXAMPLE = HERE.parent / "example_notebooks"
rows: list[tuple[str, str, str, bool, str, str]] = []


def record(name: str, value: str, target: str, met: bool, peer: str, ratio: str) -> None:
    rows.append((name, value, target, met, peer, ratio))
    print(
        f"{name:<40} {value:>10}  target {target:<28} {'met' if met else 'MISSED':<6} | "
        f"{peer} | {ratio}",
        flush=True,
    )


def timed(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> float:
    t = time.perf_counter()
    out = subprocess.run(
        cmd,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    return time.perf_counter() - t


def nbops(*args: str) -> list[str]:
    return [sys.executable, "-m", "nbops", *args]


def notebook(path: Path, params: str, body: str) -> None:
    cells = [
        {
            "cell_type": "code",
            "id": "p",
            "metadata": {"tags": ["parameters"]},
            "execution_count": None,
            "outputs": [],
            "source": params,
        },
        {
            "cell_type": "code",
            "id": "b",
            "metadata": {},
            "execution_count": None,
            "outputs": [],
            "source": body,
        },
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


def project(tmp: Path, name: str, yaml: str) -> Path:
    d = tmp / name
    (d / ".nbops").mkdir(parents=True)
    (d / "nbops.yaml").write_text(yaml)
    return d


def bench_noop(tmp: Path) -> None:
    d = tmp / "example"
    shutil.copytree(
        EXAMPLE,
        d,
        ignore=shutil.ignore_patterns(".nbops", "data", "models", "reports", "tracking_*"),
    )
    (d / ".nbops").mkdir()
    env = {"NBOPS_PROJECT_ROOT": str(d)}
    timed(nbops("run"), d, env)
    noop = min(timed(nbops("run"), d, env) for _ in range(3))
    peer = ploomber_noop(tmp, d)
    if peer is None:
        record(
            "no-op re-run, 3-stage example",
            f"{noop:.3f} s",
            "<= 0.3 s, >= 15x ploomber",
            False,
            "ploomber: could not be installed here",
            "-",
        )
        return
    ratio = peer / noop
    record(
        "no-op re-run, 3-stage example",
        f"{noop:.3f} s",
        "<= 0.3 s, >= 15x ploomber",
        noop <= 0.3 and ratio >= 15,
        f"ploomber build (no-op) {peer:.2f} s",
        f"{ratio:.0f}x faster",
    )


def ploomber_noop(tmp: Path, example: Path) -> float | None:
    """ploomber's no-op build of the same three notebooks, in its own virtualenv (which sees
    this environment's packages, so the notebooks run unchanged but for ploomber's
    `upstream`/`product` parameters)."""
    venv = tmp / "ploomber-venv"
    py = venv / "bin" / "python"
    try:
        subprocess.run(
            [sys.executable, "-m", "venv", "--system-site-packages", str(venv)],
            check=True,
            capture_output=True,
            timeout=300,
        )
        subprocess.run(
            [str(py), "-m", "pip", "install", "-q", "ploomber"],
            check=True,
            capture_output=True,
            timeout=900,
        )
    except (subprocess.SubprocessError, OSError) as exc:
        print(f"ploomber not available: {exc}", file=sys.stderr)
        return None
    d = tmp / "ploomber"
    d.mkdir()
    for src in ("01_prepare.ipynb", "02_train.ipynb", "03_evaluate.ipynb"):
        nb = json.loads((example / src).read_text())
        for cell in nb["cells"]:
            if "parameters" in cell.get("metadata", {}).get("tags", []):
                src_text = (
                    "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
                )
                cell["source"] = src_text + "\nupstream = None\nproduct = None\n"
        (d / src).write_text(json.dumps(nb))
    (d / "pipeline.yaml").write_text("""\
meta:
  extract_upstream: false
tasks:
  - source: 01_prepare.ipynb
    product: {nb: out/prepare.ipynb, train: data/train.csv, test: data/test.csv}
  - source: 02_train.ipynb
    upstream: [01_prepare]
    params: {C: 0.1}
    product: {nb: out/train.ipynb, models: models}
  - source: 03_evaluate.ipynb
    upstream: [02_train]
    product: {nb: out/evaluate.ipynb, metrics: reports/metrics.json}
""")
    ploomber = [str(venv / "bin" / "ploomber"), "build", "--force"]
    try:
        timed(ploomber, d)
        return min(timed(ploomber[:-1], d) for _ in range(2))
    except RuntimeError as exc:
        print(f"ploomber build failed: {exc}", file=sys.stderr)
        return None


def bench_overhead(tmp: Path) -> None:
    n = 8
    d = project(tmp, "trivial", "stages:\n  t:\n    notebook: t.ipynb\n")
    notebook(d / "t.ipynb", "i = 0", "x = i + 1")
    env = {"NBOPS_PROJECT_ROOT": str(d)}
    timed(nbops("run", "--sweep", "i=100", "--jobs", "1"), d, env)  # creates the store's schema
    one = timed(nbops("run", "--sweep", "i=100", "--jobs", "1", "--force"), d, env)
    total = timed(
        nbops("run", "--sweep", "i=" + ",".join(map(str, range(n + 1))), "--jobs", "1"), d, env
    )
    per = (total - one) / n  # what each further stage costs, start-up (MLflow import) aside
    pm = min(
        timed(
            [
                sys.executable,
                "-m",
                "papermill",
                "t.ipynb",
                "out.ipynb",
                "--no-progress-bar",
                "-p",
                "i",
                str(k),
            ],
            d,
        )
        for k in range(3)
    )
    record(
        "per-stage wall time, trivial notebook",
        f"{per:.3f} s",
        "<= 0.2 s, >= 4x papermill",
        per <= 0.2 and pm / per >= 4,
        f"papermill CLI per notebook {pm:.2f} s",
        f"{pm / per:.1f}x faster ((run of {n + 1} points - run of 1) / {n}, --jobs 1; "
        f"whole run of {n + 1}: {total:.1f} s)",
    )


def bench_sweep(tmp: Path) -> None:
    d = project(tmp, "sweep", "stages:\n  s:\n    notebook: s.ipynb\n")
    notebook(d / "s.ipynb", "i = 0", "import time\ntime.sleep(1.0)")
    env = {"NBOPS_PROJECT_ROOT": str(d)}
    grid = "i=" + ",".join(map(str, range(16)))
    seq = timed(nbops("run", "--sweep", grid, "--jobs", "1", "--force"), d, env)
    par = timed(nbops("run", "--sweep", grid, "--jobs", "2", "--force"), d, env)
    record(
        "16-point sweep of a 1-s notebook",
        f"{par:.1f} s",
        "--jobs 2 >= 1.85x --jobs 1",
        seq / par >= 1.85,
        f"--jobs 1: {seq:.1f} s",
        f"{seq / par:.2f}x",
    )


def write_results() -> None:
    res = HERE / "RESULTS.md"
    text = res.read_text() if res.exists() else "# Benchmark results\n"
    marker = "\n## Pipelines (`bench/pipeline.py`)"
    before, _, after = text.partition(marker)
    rest = after.split("\n## ", 1)[1] if "\n## " in after else ""  # other benches' sections
    text = before.rstrip() + "\n"
    lines = [
        marker.lstrip("\n"),
        "",
        f"Latest run: {time.strftime('%Y-%m-%d %H:%M %Z')}, same machine as above.",
        "",
        "| figure | nbops | target | met | peer | ratio |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, value, target, met, peer, ratio in rows:
        lines.append(
            f"| {name} | {value} | {target} | {'yes' if met else '**no**'} | {peer} | {ratio} |"
        )
    notes = HERE / "NOTES-pipeline.md"
    if notes.exists():
        lines += ["", notes.read_text().strip()]
    tail = f"\n## {rest.rstrip()}\n" if rest else ""
    res.write_text(text + "\n" + "\n".join(lines) + "\n" + tail)


def main() -> None:
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    with tempfile.TemporaryDirectory(prefix="nbops-bench-pipe-") as t:
        tmp = Path(t)
        bench_overhead(tmp)
        bench_sweep(tmp)
        bench_noop(tmp)
    write_results()
    print(f"wrote {HERE / 'RESULTS.md'}")


if __name__ == "__main__":
    main()
