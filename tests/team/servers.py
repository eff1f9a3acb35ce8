"""Real team-mode servers for tests and benchmarks: a PostgreSQL cluster (Debian's `postgresql`,
``initdb`` + ``pg_ctl`` in a temp dir, as the ``postgres`` user when we are root: PostgreSQL refuses
to run as root) and ``mlflow server`` processes on it, with and without MLflow's basic-auth app.

Everything listens on 127.0.0.1 on free ports and lives under one directory; ``stop()`` leaves no
process behind. Starting PostgreSQL takes ~1 s here, an MLflow server on a fresh database ~7 s.
"""

from __future__ import annotations

import base64
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.conftest import free_port

PG_BIN_DIRS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)


def _pg_bin(name: str) -> str:
    for d in PG_BIN_DIRS:
        if (d / name).exists():
            return str(d / name)
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(
            f"PostgreSQL's {name} is not installed: apt-get install postgresql (.ci/run does)"
        )
    return found


def _as_pg_user(cmd: list[str]) -> list[str]:
    """``cmd`` as the postgres user when we are root (PostgreSQL will not run as root)."""
    if os.geteuid() != 0:
        return cmd
    import shlex

    return ["su", "postgres", "-s", "/bin/sh", "-c", shlex.join(cmd)]


@dataclass
class Postgres:
    """A private PostgreSQL cluster: superuser ``postgres``, trust auth on 127.0.0.1:``port``."""

    base: Path
    port: int = 0
    databases: list[str] = field(default_factory=list)

    @property
    def data(self) -> Path:
        return self.base / "data"

    def start(self) -> Postgres:
        self.base.mkdir(parents=True, exist_ok=True)
        os.chmod(self.base, 0o755)
        for p in self.base.parents:  # mkdtemp dirs are 0700: the postgres user must get through
            if str(p).startswith(("/tmp/", "/var/tmp/")) and p.stat().st_uid == os.geteuid():
                os.chmod(p, p.stat().st_mode | 0o711)
        if os.geteuid() == 0:
            import pwd

            pw = pwd.getpwnam("postgres")
            os.chown(self.base, pw.pw_uid, pw.pw_gid)
        self.port = free_port()
        subprocess.run(
            _as_pg_user(
                [
                    _pg_bin("initdb"),
                    "-D",
                    str(self.data),
                    "-A",
                    "trust",
                    "-U",
                    "postgres",
                    "-E",
                    "UTF8",
                    "--no-sync",
                ]
            ),
            check=True,
            capture_output=True,
            text=True,
        )
        opts = f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 -c fsync=off"
        subprocess.run(
            _as_pg_user(
                [
                    _pg_bin("pg_ctl"),
                    "-D",
                    str(self.data),
                    "-o",
                    opts,
                    "-l",
                    str(self.base / "postgres.log"),
                    "-w",
                    "-t",
                    "60",
                    "start",
                ]
            ),
            check=True,
            capture_output=True,
            text=True,
        )
        return self

    def uri(self, database: str) -> str:
        """SQLAlchemy's URI of ``database`` (psycopg 3 is SQLAlchemy 2's driver for it)."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def psql(self, sql: str, database: str = "postgres") -> str:
        out = subprocess.run(
            [
                _pg_bin("psql"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "-d",
                database,
                "-v",
                "ON_ERROR_STOP=1",
                "-qAtc",
                sql,
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        return out.stdout

    def create_database(self, name: str) -> str:
        """A new empty database; returns its URI."""
        self.psql(f'CREATE DATABASE "{name}"')
        self.databases.append(name)
        return self.uri(name)

    def stop(self) -> None:
        subprocess.run(
            _as_pg_user([_pg_bin("pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"]),
            capture_output=True,
            check=False,
        )


@dataclass
class MlflowServer:
    """``mlflow server`` on a PostgreSQL database, artifacts proxied (``--serve-artifacts``) from
    a directory only the server writes. With ``auth``: MLflow's basic-auth app, admin user
    ``admin`` / ``admin_password``; other users made with :meth:`add_user`."""

    base: Path
    backend_uri: str
    auth: bool = False
    port: int = 0
    admin_password: str = ""
    proc: subprocess.Popen[bytes] | None = None
    workers: int = 1
    env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def artifacts(self) -> Path:
        return self.base / "artifacts"

    @property
    def log(self) -> Path:
        return self.base / "server.log"

    def start(self, timeout: float = 120) -> MlflowServer:
        self.base.mkdir(parents=True, exist_ok=True)
        self.artifacts.mkdir(exist_ok=True)
        if not self.port:
            self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "NBOPS_"))}
        env["MLFLOW_ENABLE_TELEMETRY"] = "false"
        env.update(self.env)
        cmd = [
            sys.executable, "-m", "mlflow", "server",
            "--backend-store-uri", self.backend_uri,
            "--artifacts-destination", str(self.artifacts),
            "--serve-artifacts",
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--workers", str(self.workers),
        ]  # fmt: skip
        if self.auth:
            if not self.admin_password:
                self.admin_password = "A-" + secrets.token_hex(8)
            ini = self.base / "basic_auth.ini"
            ini.write_text(
                "[mlflow]\n"
                "default_permission = READ\n"
                f"database_uri = sqlite:///{self.base / 'auth.db'}\n"
                "admin_username = admin\n"
                f"admin_password = {self.admin_password}\n"
                "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
            )
            env["MLFLOW_AUTH_CONFIG_PATH"] = str(ini)
            env["MLFLOW_FLASK_SERVER_SECRET_KEY"] = secrets.token_hex(16)
            cmd += ["--app-name", "basic-auth"]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                cmd,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=self.base,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited: {self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as resp:
                    if resp.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)  # polling a process we started for readiness, not synchronisation
        self.stop()
        raise RuntimeError(f"mlflow server did not answer in {timeout} s: {self.log_tail()}")

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the server and every process of its group (uvicorn's workers)."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=20)
        self.proc = None

    def kill(self) -> None:
        """SIGKILL, as a crash: the same port is kept for :meth:`start` again."""
        self.stop(signal.SIGKILL)

    def restart(self) -> None:
        self.stop()
        self.start()

    # --- basic-auth administration (the auth app's REST API, as admin) ----------------------
    def admin_request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        return request(self.url, method, path, body, ("admin", self.admin_password))

    def add_user(self, username: str, password: str | None = None) -> str:
        """A user of the auth server (default permission READ); returns the password."""
        password = password or "P-" + secrets.token_hex(8)
        self.admin_request(
            "POST", "/api/2.0/mlflow/users/create", {"username": username, "password": password}
        )
        return password

    def grant(self, username: str, experiment_id: str, permission: str) -> None:
        """``permission`` (READ, EDIT, MANAGE, NO_PERMISSIONS) on one experiment (MLflow 3.17's
        permission API: ``/api/3.0/mlflow/users/permissions/grant``; the 2.0 route is gone)."""
        self.admin_request(
            "POST",
            "/api/3.0/mlflow/users/permissions/grant",
            {
                "username": username,
                "resource_type": "experiment",
                "resource_id": experiment_id,
                "permission": permission,
            },
        )

    def env_for(self, username: str | None = None, password: str | None = None) -> dict[str, str]:
        """The environment a teammate sets: the URI, and the credentials when there is auth."""
        env = {"MLFLOW_TRACKING_URI": self.url}
        if self.auth:
            env["MLFLOW_TRACKING_USERNAME"] = username or "admin"
            env["MLFLOW_TRACKING_PASSWORD"] = password or (
                self.admin_password if (username or "admin") == "admin" else ""
            )
        return env


def request(
    url: str,
    method: str,
    path: str,
    body: dict[str, Any] | None = None,
    auth: tuple[str, str] | None = None,
) -> Any:
    """A JSON request to an MLflow server (urllib, so no MLflow import); raises HTTPError."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url + path, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
    with urllib.request.urlopen(req, timeout=30) as resp:
        raw = resp.read()
    return json.loads(raw) if raw else None
