"""The pipeline's status for the server: ``Runner.status`` run in a fresh ``python -m`` process in
the project root, exactly as ``nbops status`` sees it (the environment fingerprint depends on the
interpreter's sys.path, which differs inside a Jupyter server). Nothing is executed.

    python -m nbops.server.status ROOT   ->  a Pipeline as JSON, or {"error", "message"} (exit 2)
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from concurrent.futures import Future
from pathlib import Path

from nbops import project
from nbops.errors import ConfigError, NbopsError
from nbops.server import models as m


def compute(root: Path) -> m.PipelineStatus:
    cfg = root / project.CONFIG_FILE
    if not cfg.is_file():
        return m.PipelineStatus(path=None, stages=[])
    from nbops.pipeline.runner import Runner

    runner = Runner(root)
    per: dict[str, list[list[str]]] = {}
    for label, why in runner.status():
        per.setdefault(label.split("[", 1)[0], []).append(why)
    stages = []
    for name, st in runner.pipeline.stages.items():
        whys = per.get(name, [])
        reasons = sorted({r for w in whys for r in w})
        if not reasons:
            status = "up to date"
        elif all(w == ["never run"] for w in whys):
            status = "never run"
        else:
            status = "stale"
        recs = [r for r in runner.state.stages.get(name, {}).values() if r.run_id]
        last = max(recs, key=lambda r: r.finished).run_id if recs else None
        stages.append(
            m.PipelineStage(
                name=name,
                notebook=str(st.notebook),
                status=status,  # type: ignore[arg-type]
                reasons=reasons,
                last_run_id=last,
            )
        )
    return m.PipelineStatus(path=str(cfg), stages=stages)


_flight_lock = threading.Lock()
_in_flight: dict[Path, Future[m.PipelineStatus]] = {}
joined: dict[Path, int] = {}  # requests that shared a running status process (for the tests)


def in_subprocess(root: Path, timeout: float = 120) -> m.PipelineStatus:
    """:func:`compute` as ``nbops status`` would run it (its own interpreter, in the project
    root). Single-flight per project: requests that come while one status process runs share
    its answer, so repeated GETs cannot pile up processes on the server's worker threads."""
    with _flight_lock:
        running = _in_flight.get(root)
        if running is not None:
            joined[root] = joined.get(root, 0) + 1
        else:
            mine: Future[m.PipelineStatus] = Future()
            _in_flight[root] = mine
    if running is not None:
        return running.result(timeout=timeout + 5)
    try:
        pipe = _status_process(root, timeout)
    except BaseException as exc:
        mine.set_exception(exc)
        raise
    else:
        mine.set_result(pipe)
        return pipe
    finally:
        with _flight_lock:
            _in_flight.pop(root, None)


def _status_process(root: Path, timeout: float) -> m.PipelineStatus:
    import os

    env = {**os.environ, project.ROOT_ENV: str(root)}
    res = subprocess.run(
        [sys.executable, "-m", "nbops.server.status", str(root)],
        cwd=str(root),
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    try:
        data = json.loads(res.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError, RecursionError):
        raise NbopsError(
            f"the pipeline status of {root} could not be read: {res.stderr.strip()[-500:]}",
            "run `nbops status` in a terminal to see the error",
        ) from None
    if res.returncode != 0:
        raise ConfigError(str(data.get("message")), "fix nbops.yaml; `nbops status` shows it too")
    return m.PipelineStatus.model_validate(data)


def main(argv: list[str]) -> int:
    try:
        print(compute(Path(argv[0]).resolve()).model_dump_json())
    except NbopsError as exc:
        print(json.dumps({"error": "bad_request", "message": str(exc)}))
        return exc.exit_code
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
