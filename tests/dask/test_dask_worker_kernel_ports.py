"""Kernels whose ports another process took (EADDRINUSE, seen once in CI under load, and as
likely on a busy dask worker): the LocalExecutor starts the kernel again with new ports, and
when that keeps failing the job fails with one line that says so.

The collision is real (a socket of this process holds the port and the kernel's bind fails);
only jupyter_client's choice of the port is steered onto it, since the race it stands for
(another process binding the port between the choice and the kernel's bind) cannot be made to
happen on demand."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from jupyter_client.provisioning import local_provisioner

from nbops.executors import local
from nbops.executors.base import StageJob
from tests.conftest import notebook


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


def _steer(monkeypatch: pytest.MonkeyPatch, port: int, times: int) -> list[int]:
    """The first ``times`` kernels get ``port`` as their shell port; returns the ports given."""
    real = local_provisioner.LocalPortCache.find_available_port
    given: list[int] = []

    def choose(self: object, ip: str) -> int:
        n = sum(1 for p in given if p == port)
        chosen = port if len(given) % 5 == 0 and n < times else int(real(self, ip))  # type: ignore[arg-type]
        given.append(chosen)
        return chosen

    monkeypatch.setattr(local_provisioner.LocalPortCache, "find_available_port", choose)
    return given


def _job(tmp_path: Path) -> StageJob:
    nb = notebook(tmp_path / "nb.ipynb", "open('done.txt', 'w').write('yes')")
    return StageJob("s", "s", nb, tmp_path / "out.ipynb", {}, tmp_path)


def test_a_kernel_whose_port_was_taken_is_started_again_with_new_ports(
    tmp_path: Path, busy_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    given = _steer(monkeypatch, busy_port, times=2)
    ex = local.LocalExecutor(tmp_path, warm=0)
    try:
        result = ex.execute(_job(tmp_path))
    finally:
        ex.stop()
    assert result.ok, result.error
    assert (tmp_path / "done.txt").read_text() == "yes"
    assert given.count(busy_port) == 2  # two kernels died on it, the third got other ports
    assert len(given) == 15


def test_a_kernel_that_never_gets_free_ports_fails_the_job_in_one_line(
    tmp_path: Path, busy_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    given = _steer(monkeypatch, busy_port, times=100)
    ex = local.LocalExecutor(tmp_path, warm=0)
    try:
        result = ex.execute(_job(tmp_path))
    finally:
        ex.stop()
    assert not result.ok and result.error is not None
    assert given.count(busy_port) == local.START_ATTEMPTS
    msg = result.error.message
    assert msg == (
        f"stage s: the python3 kernel could not start: {local.START_ATTEMPTS} attempts, "
        f"port {busy_port} was taken by another process"
    )
    assert "\n" not in msg and "Traceback" not in str(result.error)
    assert result.error.hint and "ss -ltnp" in result.error.hint
    assert not (tmp_path / "done.txt").exists()
