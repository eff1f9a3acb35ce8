"""UI test fixtures: a seeded project with a real SQLite MLflow store, a real `jupyter lab`
serving it (with the nbops server extension and labextension as installed), and Debian's
Chromium driven by Python playwright.

Never `playwright install`: the browser is /usr/bin/chromium (apt-get install chromium).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import free_port, nbops_cli, notebook

OUTPUT = Path(__file__).parent / "output"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SWEEP = ("0.05", "0.3", "0.8")
BULK = 3000

TRAIN = """\
import math

import nbops

loss = 2.0
for step in range(epochs):
    loss = loss * (1 - lr) + 0.02 * math.sin(step * layers)
    nbops.log_metric("loss", loss, step=step)
    nbops.log_metric("val_acc", 1 - loss / 3, step=step)
nbops.log_metric("accuracy", round(1 - loss / 4, 4))
print(f"final loss {loss:.4f}")
"""


@dataclass
class Lab:
    url: str
    token: str
    root: Path
    settings_dir: Path
    log: Path
    proc: subprocess.Popen[bytes]

    def lab_url(self, workspace: str) -> str:
        # a fresh workspace per page: no layout carried over from an earlier test
        return f"{self.url}/lab/workspaces/{workspace}?reset&token={self.token}"

    def api(self, path: str) -> Any:
        req = urllib.request.Request(
            f"{self.url}/nbops/api/{path}", headers={"Authorization": f"token {self.token}"}
        )
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read())

    def set_theme(self, theme: str) -> None:
        """Choose the theme the next page load uses (JupyterLab reads user settings files)."""
        d = self.settings_dir / "@jupyterlab" / "apputils-extension"
        d.mkdir(parents=True, exist_ok=True)
        (d / "themes.jupyterlab-settings").write_text(json.dumps({"theme": theme}))


def _seed(root: Path) -> dict[str, Any]:
    """A one-stage pipeline run as a sweep over lr (3 runs with notebooks and metric
    histories), plus a small second experiment written with MlflowClient."""
    (root / ".nbops").mkdir(parents=True)
    (root / "nbops.yaml").write_text(
        "experiment: uitest\nstages:\n  train:\n    notebook: train.ipynb\n"
    )
    notebook(root / "train.ipynb", ("lr = 0.1\nepochs = 12\nlayers = 2\n", ["parameters"]), TRAIN)
    env = {**os.environ, "NBOPS_PROJECT_ROOT": str(root)}
    env.pop("MLFLOW_TRACKING_URI", None)
    done = nbops_cli(
        "run", "train", "--sweep", "lr=" + ",".join(SWEEP), "--jobs", "2", cwd=root, env=env
    )
    assert done.returncode == 0, done.stdout + done.stderr

    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{root / '.nbops' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("uitest")
    sweep = {}
    for r in client.search_runs([exp.experiment_id]):
        if r.info.run_name.startswith("train["):  # sweep points (their parent has params too)
            sweep[r.data.params["lr"]] = r.info.run_id
    assert sorted(sweep) == sorted(SWEEP), sweep
    other = client.create_experiment("baseline")
    for name, status in (("logreg", "FINISHED"), ("broken-features", "FAILED")):
        run = client.create_run(other, run_name=name)
        client.log_param(run.info.run_id, "model", name)
        client.log_metric(run.info.run_id, "accuracy", 0.81 if status == "FINISHED" else 0.2)
        client.set_terminated(run.info.run_id, status)
    # many runs, written in bulk into MLflow's schema, for paging and virtualisation
    from tests.integration.server_seed import bulk_runs

    bulk = client.create_experiment("bulk")
    bulk_runs(root / ".nbops" / "mlflow.db", bulk, n=BULK)
    return {"client": client, "experiment": exp.experiment_id, "sweep": sweep}


def _wait_ready(url: str, token: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text()[-3000:]
            raise RuntimeError(f"jupyter lab exited ({proc.returncode}):\n{tail}")
        try:
            req = urllib.request.Request(
                f"{url}/api/status", headers={"Authorization": f"token {token}"}
            )
            with urllib.request.urlopen(req, timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)  # polling interval of a readiness poll with a deadline, not a sync sleep
    raise RuntimeError(f"jupyter lab did not answer in 90 s:\n{log.read_text()[-3000:]}")


def start_lab(root: Path, work: Path) -> Lab:
    token = secrets.token_hex(16)
    port = free_port()
    settings_dir = work / "lab-settings"
    notif = settings_dir / "@jupyterlab" / "apputils-extension"
    notif.mkdir(parents=True, exist_ok=True)
    # no news or update checks: the machine has no network, and toasts would cover the UI
    (notif / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False})
    )
    env = {
        **os.environ,
        "NBOPS_PROJECT_ROOT": str(root),
        "JUPYTERLAB_SETTINGS_DIR": str(settings_dir),
        "JUPYTERLAB_WORKSPACES_DIR": str(work / "lab-workspaces"),
        "JUPYTER_RUNTIME_DIR": str(work / "runtime"),
    }
    env.pop("MLFLOW_TRACKING_URI", None)
    cmd = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        f"--port={port}",
        "--ServerApp.ip=127.0.0.1",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
    ]
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    log = work / "jupyter-lab.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, token, proc, log)
    except BaseException:
        stop_lab(proc)
        raise
    return Lab(url, token, root, settings_dir, log, proc)


def stop_lab(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("ui") / "proj"
    root.mkdir()
    return {"root": root, **_seed(root)}


@pytest.fixture(scope="module")
def lab(seeded: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    work = tmp_path_factory.mktemp("lab")
    server = start_lab(seeded["root"], work)
    yield server
    stop_lab(server.proc)


@pytest.fixture(scope="module")
def empty_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """A project with an empty store: what a new user sees first."""
    work = tmp_path_factory.mktemp("empty")
    root = work / "proj"
    (root / ".nbops").mkdir(parents=True)
    server = start_lab(root, work)
    yield server
    stop_lab(server.proc)


@pytest.fixture(autouse=True)
def jp_asyncio_loop() -> Iterator[None]:
    """pytest-jupyter's autouse fixture of this name closes the thread's asyncio loop after every
    test; Playwright's sync API keeps a loop running in this thread for the whole module, so the
    UI tests replace it (and the autouse server clean-up that runs in it) with ones that leave
    loops alone: these tests start their own `jupyter lab` process."""
    yield None


@pytest.fixture(autouse=True)
def jp_server_cleanup() -> Iterator[None]:
    yield None


def _ensure_chromium() -> None:
    """Debian's Chromium, installed on first use when this is Debian as root (a fresh machine:
    the README's test command then needs nothing else); otherwise a clear failure."""
    if os.path.exists(CHROMIUM):
        return
    if os.geteuid() == 0 and shutil.which("apt-get"):
        for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
            subprocess.run(cmd, check=False, capture_output=True, timeout=900)
    if not os.path.exists(CHROMIUM):
        pytest.fail(
            f"the UI tests need Debian's Chromium at {CHROMIUM}: `apt-get install chromium` "
            "(never `playwright install`: it downloads a browser build)"
        )


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import expect, sync_playwright

    _ensure_chromium()

    # a busy 2-core machine: give every expectation room (they return as soon as they hold)
    expect.set_options(timeout=20_000)

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    context.set_default_timeout(30_000)
    pg = context.new_page()
    errors: list[str] = []
    console: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
    pg.nbops_errors = errors
    yield pg
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        shot(pg, f"FAILED-{request.node.name}")
        print("browser console:\n" + "\n".join(console[-40:]))
    context.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


def open_lab(page: Any, lab: Lab, workspace: str) -> None:
    page.goto(lab.lab_url(workspace))
    page.wait_for_selector("#jupyterlab-splash", state="detached", timeout=60_000)


def open_sidebar(page: Any, experiment: str | None = None) -> Any:
    """Open the nbops sidebar (and choose an experiment)."""
    from playwright.sync_api import expect

    page.click('.jp-SideBar.jp-mod-left li.lm-TabBar-tab[data-id="nbops-sidebar"]')
    sidebar = page.locator("#nbops-sidebar")
    sidebar.wait_for(state="visible")
    if experiment:
        item = sidebar.locator(".nbops-ExperimentList li", has_text=experiment)
        item.click()
        expect(item).to_have_attribute("aria-selected", "true")
    return sidebar


def shot(page: Any, name: str, locator: Any = None) -> Path:
    OUTPUT.mkdir(parents=True, exist_ok=True)
    path = OUTPUT / f"{name}.png"
    (locator or page).screenshot(path=str(path))
    return path
