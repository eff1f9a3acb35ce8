"""What nbops uses of jupyter_client's internals (nbops/executors/compat.py) is still there, with
the signature nbops calls it with: an upgrade that moves one breaks these tests first, and a
stage then fails with the package, its version and the fix instead of hanging."""

from __future__ import annotations

import ast
import importlib
import inspect
import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest
from jupyter_client.client import KernelClient
from jupyter_client.provisioning.local_provisioner import LocalProvisioner

from nbops.executors import compat
from nbops.executors.base import StageJob
from nbops.executors.local import LocalExecutor
from nbops.executors.zygote import ForkedKernel
from tests.conftest import kernel_processes, notebook


@pytest.fixture
def fresh_check() -> Iterator[None]:
    """ensure_compatible checks once per process: again for this test, and again after it."""
    compat.ensure_compatible.cache_clear()
    yield
    compat.ensure_compatible.cache_clear()


@pytest.mark.parametrize("rel", compat.RELIANCES, ids=lambda r: r.qualname)
def test_each_private_name_nbops_uses_is_still_there_with_its_signature(rel):
    owner = getattr(importlib.import_module(rel.module), rel.owner)
    assert hasattr(owner, rel.name), f"{rel.package}: {rel.qualname} is gone ({rel.why})"
    if rel.params is not None:
        params = tuple(inspect.signature(inspect.getattr_static(owner, rel.name)).parameters)
        assert params == rel.params, f"{rel.qualname} now takes {params}"


def test_the_installed_versions_are_the_tested_ones():
    """After an upgrade: run the executor tests, then widen compat.TESTED."""
    for package in compat.TESTED:
        version = compat.installed_version(package)
        assert version is not None, f"{package} is not installed"
        assert compat.is_tested(package, version), (
            f"{package} {version} is outside {compat.tested_range(package)}"
        )


def _self_process_uses(cls: type) -> set[str]:
    """What the methods of ``cls`` read or call on ``self.process``: ``self.process.poll()``
    and ``getattr(self.process, attr)`` over a literal list of names."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))

    def is_self_process(node: ast.AST) -> bool:
        return (
            isinstance(node, ast.Attribute)
            and node.attr == "process"
            and isinstance(node.value, ast.Name)
            and node.value.id == "self"
        )

    used: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and is_self_process(node.value):
            used.add(node.attr)
        if isinstance(node, ast.For) and isinstance(node.iter, ast.List | ast.Tuple):
            calls_getattr = any(
                isinstance(n, ast.Call)
                and getattr(n.func, "id", None) == "getattr"
                and is_self_process(n.args[0])
                for n in ast.walk(node)
            )
            if calls_getattr:
                used |= {e.value for e in node.iter.elts if isinstance(e, ast.Constant)}
    return used


def test_a_forked_kernel_answers_every_call_local_provisioner_makes_on_its_process():
    used = _self_process_uses(LocalProvisioner) - {"win32_interrupt_event"}  # Windows only
    assert used, "LocalProvisioner no longer drives self.process: see compat.adopt_process"
    assert used <= compat.PROCESS_CALLS, (
        f"new calls on a kernel's process: {used - compat.PROCESS_CALLS}"
    )
    forked = ForkedKernel(pid=0)
    assert [name for name in sorted(compat.PROCESS_CALLS) if not hasattr(forked, name)] == []


def test_local_provisioners_launch_records_only_what_adopt_process_records():
    tree = ast.parse(textwrap.dedent(inspect.getsource(LocalProvisioner.launch_kernel)))
    recorded = {
        t.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign)
        for t in node.targets
        if isinstance(t, ast.Attribute) and getattr(t.value, "id", None) == "self"
    }
    assert recorded == {"process", "pid", "pgid", "cwd"}

    class Provisioner:  # what adopt_process sets, on a plain object
        pass

    prov = Provisioner()
    compat.adopt_process(prov, ForkedKernel(pid=4242), "/srv/project")
    assert vars(prov) == {
        "process": vars(prov)["process"],
        "pid": 4242,
        "pgid": 4242,
        "cwd": "/srv/project",
    }


def test_a_moved_private_name_fails_loudly_with_the_package_version_and_fix(
    monkeypatch, fresh_check
):
    # an upgrade that drops a private method cannot be installed here: take it off the class
    monkeypatch.delattr(KernelClient, "_handle_kernel_info_reply")
    found = compat.problems()
    assert len(found) == 1
    version = compat.installed_version("jupyter_client")
    assert found[0].message.startswith(
        f"jupyter_client {version} is not compatible with this nbops: "
        "KernelClient._handle_kernel_info_reply is gone"
    )
    assert found[0].hint == (
        "install a tested version: pip install 'jupyter_client>=8.0,<9' "
        f"(or an nbops release that supports jupyter_client {version})"
    )
    with pytest.raises(compat.IncompatibleDependency, match="_handle_kernel_info_reply is gone"):
        compat.ensure_compatible()


def test_a_changed_signature_is_named(monkeypatch, fresh_check):
    def moved(self, msg, session):  # what an upgrade might make of it
        pass

    monkeypatch.setattr(KernelClient, "_handle_kernel_info_reply", moved)
    (problem,) = compat.problems()
    assert "now takes (self, msg, session), not (self, msg)" in problem.message


def test_outside_the_tested_range_the_message_says_so(monkeypatch, fresh_check):
    monkeypatch.setitem(compat.TESTED, "jupyter_client", ((99,), (100,)))
    monkeypatch.delattr(LocalProvisioner, "pgid")
    (problem,) = compat.problems()
    version = compat.installed_version("jupyter_client")
    assert "LocalProvisioner.pgid is gone" in problem.message
    assert problem.message.endswith(f"jupyter_client>=99,<100, which {version} is not")


def test_the_compatible_packages_of_this_machine_pass(fresh_check):
    assert compat.problems() == []
    compat.ensure_compatible()


@pytest.mark.parametrize(
    ("version", "tested"),
    [("8.0", True), ("8.10.0", True), ("8.99.1rc1", True), ("9.0.0", False), ("7.4.9", False)],
)
def test_which_versions_are_tested(version, tested):
    assert compat.is_tested("jupyter_client", version) is tested


def test_reading_a_version_imports_no_package():
    probe = (
        "import sys, json\nfrom nbops.executors import compat\n"
        "v = [compat.installed_version(p) for p in compat.TESTED]\n"
        "print(json.dumps([v, [m for m in compat.TESTED if m in sys.modules]]))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    versions, imported = json.loads(out.stdout)
    assert None not in versions and imported == []


def test_a_stage_fails_with_the_fix_and_starts_no_kernel_when_jupyter_client_moved(
    tmp_path, monkeypatch, fresh_check
):
    monkeypatch.delattr(KernelClient, "_handle_kernel_info_reply")
    nb = notebook(tmp_path / "n.ipynb", "x = 1")
    ex = LocalExecutor(tmp_path, warm=0)
    try:
        res = ex.execute(StageJob("n", "n", nb, tmp_path / "out.ipynb", {}, tmp_path))
    finally:
        ex.stop()
    assert not res.ok and res.error is not None
    assert res.error.message.startswith("stage n cannot start a kernel: jupyter_client ")
    assert "pip install 'jupyter_client>=8.0,<9'" in (res.error.hint or "")
    assert kernel_processes(tmp_path) == []


def test_pyproject_pins_each_fenced_package_to_the_range_compat_was_tested_with() -> None:
    """pip must not install a version whose private parts nobody checked: the dependency ranges
    in pyproject.toml are compat.TESTED, written the same way."""
    import re
    from pathlib import Path

    from nbops.executors import compat

    text = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    block = text.split("dependencies = [", 1)[1].split("\n]", 1)[0]  # tomllib is 3.11+
    specs = re.findall(r'^\s*"([^"]+)"', block, re.M)
    deps = {re.split(r"[<>=!~\[ ]", d, maxsplit=1)[0].replace("-", "_").lower(): d for d in specs}
    for package, (lo, hi) in compat.TESTED.items():
        spec = deps.get(package.replace("-", "_").lower())
        assert spec is not None, f"pyproject.toml does not declare {package}"
        want = f">={'.'.join(map(str, lo))},<{'.'.join(map(str, hi))}"
        assert spec.replace(" ", "").endswith(want), (spec, want)


LIGHT_RUNNER = """
import json, sys
from pathlib import Path
from nbops.executors import compat
from nbops.executors.base import StageJob
from nbops.executors.local import LocalExecutor

tmp = Path(sys.argv[1])
ex = LocalExecutor(tmp, warm=0)
try:
    res = ex.execute(StageJob("n", "n", tmp / "n.ipynb", tmp / "out.ipynb", {}, tmp))
finally:
    ex.stop()
real = getattr(sys.modules.get("rfc3987_syntax"), "__file__", None) is not None
seen = {"ok": res.ok, "rfc3987_loaded": real, "ipython": "IPython" in sys.modules}
import jsonschema  # an IRI check still gets the real module, and its answers
checker = jsonschema.FormatChecker()
seen["iri_good"] = checker.conforms("http://example.com/a", "iri")
seen["iri_bad"] = checker.conforms("http://exa mple.com/", "iri")
after = sys.modules["rfc3987_syntax"].__dict__.get("__file__")
seen["rfc3987_loaded_after_check"] = after is not None
print(json.dumps(seen))
"""


def test_a_stage_in_the_runner_pays_for_no_grammar_and_no_ipython(tmp_path) -> None:
    """papermill -> nbformat -> jsonschema imports rfc3987_syntax, which compiles a Lark
    grammar (~1 s of CPU) for IRI checks nbformat never makes, and jupyter_client's kernel-spec
    lookup imports IPython (~0.5 s) for ~/.ipython: neither happens in the runner now, and an
    IRI check made after all still gets the real answers."""
    notebook(tmp_path / "n.ipynb", "x = 1")
    p = subprocess.run(
        [sys.executable, "-c", LIGHT_RUNNER, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr
    seen = json.loads(p.stdout.strip().splitlines()[-1])
    assert seen["ok"]
    assert not seen["rfc3987_loaded"] and not seen["ipython"], seen
    assert seen["iri_good"] is True and seen["iri_bad"] is False
    assert seen["rfc3987_loaded_after_check"] is True


def test_kernel_dirs_are_jupyter_clients_own(monkeypatch, tmp_path) -> None:
    from jupyter_client.kernelspec import KernelSpecManager

    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipy"))
    assert compat.kernel_dirs() == KernelSpecManager().kernel_dirs
