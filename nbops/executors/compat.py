"""Every use nbops makes of a private or undocumented part of jupyter_client, papermill or
nbclient, in one module, with the versions it is tested with.

An upgrade of those packages may move what is private to them without notice. So nbops reaches
them only here, :data:`RELIANCES` lists each one (where, what signature, why), and
:func:`ensure_compatible` checks them all before the first kernel starts: when one moved, every
stage fails with a message naming the package, its installed version, what is gone and the fix,
instead of a kernel hanging or an ``AttributeError`` deep in a job. ``tests/unit/test_compat.py``
checks the same list against the installed packages, so an upgrade breaks that test first.

What nbops relies on today (papermill and nbclient: their public API only):

- ``jupyter_client.client.KernelClient._handle_kernel_info_reply(self, msg)``: adapts the
  session to the kernel's protocol version. ``FastReadyClient.wait_for_ready`` replaces the base
  class's wait, which ends by calling it; so must ours.
- ``jupyter_client.provisioning.LocalProvisioner``'s process bookkeeping: the attributes
  ``process``, ``pid``, ``pgid`` and ``cwd`` its ``launch_kernel`` sets and its ``poll``, ``wait``,
  ``send_signal``, ``kill``, ``terminate`` and ``cleanup`` use. ``ZygoteProvisioner`` sets them for
  a forked kernel (:func:`adopt_process`), whose process object answers every call
  LocalProvisioner makes on a ``Popen`` (:data:`PROCESS_CALLS`).

Reading a version costs no import of the package (``importlib.metadata``).
"""

from __future__ import annotations

import functools
import importlib
import importlib.abc
import inspect
import re
from dataclasses import dataclass
from typing import Any

from nbops.errors import IncompatibleDependency

# the versions nbops is tested with: [low, high) per package
TESTED: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "jupyter_client": ((8, 0), (9,)),
    "papermill": ((2, 5), (3,)),
    "nbclient": ((0, 10), (0, 12)),
}


@dataclass(frozen=True)
class Reliance:
    """One private or undocumented name of an outside package that nbops uses."""

    package: str  # the distribution, as in TESTED
    module: str  # where it is defined: "jupyter_client.client"
    owner: str  # the class that holds it
    name: str  # the attribute or method
    params: tuple[str, ...] | None  # a method's parameter names; None: a plain attribute
    why: str  # what of nbops needs it

    @property
    def qualname(self) -> str:
        return f"{self.owner}.{self.name}"


RELIANCES: tuple[Reliance, ...] = (
    Reliance(
        "jupyter_client",
        "jupyter_client.client",
        "KernelClient",
        "_handle_kernel_info_reply",
        ("self", "msg"),
        "nbops' kernel client (FastReadyClient) adapts to the kernel's protocol with it",
    ),
    *(
        Reliance(
            "jupyter_client",
            "jupyter_client.provisioning",
            "LocalProvisioner",
            attr,
            None,
            "nbops' kernel zygote (ZygoteProvisioner) records a forked kernel's process in it",
        )
        for attr in ("process", "pid", "pgid", "cwd")
    ),
)

#: what LocalProvisioner calls or reads on its ``process`` (a ``Popen`` when it launched the
#: kernel); a forked kernel's process object provides each (``win32_interrupt_event``: Windows
#: only, where there is no zygote)
PROCESS_CALLS = frozenset(
    {"pid", "poll", "wait", "send_signal", "kill", "terminate", "stdin", "stdout", "stderr"}
)


def installed_version(package: str) -> str | None:
    """The installed distribution's version, read from its metadata (None: not installed)."""
    import importlib.metadata

    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _release(version: str) -> tuple[int, ...]:
    """The release numbers a version starts with ("8.10.0rc1" -> (8, 10, 0))."""
    head = re.match(r"\d+(?:\.\d+)*", version)
    return tuple(int(p) for p in head.group(0).split(".")) if head else ()


def _dotted(numbers: tuple[int, ...]) -> str:
    return ".".join(str(n) for n in numbers)


def tested_range(package: str) -> str:
    """The tested versions as a pip requirement specifier: ">=8.0,<9"."""
    low, high = TESTED[package]
    return f">={_dotted(low)},<{_dotted(high)}"


def is_tested(package: str, version: str) -> bool:
    low, high = TESTED[package]
    return low <= _release(version) < high


def _missing(rel: Reliance) -> str | None:
    """What is wrong with one reliance in the installed package (None: it is as expected)."""
    try:
        owner = getattr(importlib.import_module(rel.module), rel.owner)
    except (ImportError, AttributeError):
        return f"{rel.module}.{rel.owner} is gone"
    if not hasattr(owner, rel.name):
        return f"{rel.qualname} is gone"
    if rel.params is None:
        return None
    member = inspect.getattr_static(owner, rel.name)
    if not callable(member):
        return f"{rel.qualname} is no longer a method"
    try:
        params = tuple(inspect.signature(member).parameters)
    except (TypeError, ValueError):
        return None  # a signature Python cannot read: trust it
    if params != rel.params:
        return f"{rel.qualname} now takes ({', '.join(params)}), not ({', '.join(rel.params)})"
    return None


def problems() -> list[IncompatibleDependency]:
    """Every reliance the installed packages break, each as the error that says so."""
    found: list[IncompatibleDependency] = []
    for rel in RELIANCES:
        what = _missing(rel)
        if what is None:
            continue
        version = installed_version(rel.package) or "(not installed)"
        spec = tested_range(rel.package)
        tested = "is" if is_tested(rel.package, version) else "is not"
        found.append(
            IncompatibleDependency(
                f"{rel.package} {version} is not compatible with this nbops: {what} "
                f"({rel.why}); nbops is tested with {rel.package}{spec}, which {version} {tested}",
                f"install a tested version: pip install '{rel.package}{spec}' "
                f"(or an nbops release that supports {rel.package} {version})",
            )
        )
    return found


@functools.cache
def ensure_compatible() -> None:
    """Raise :class:`IncompatibleDependency` for the first reliance the installed packages break
    (checked once per process; ``ensure_compatible.cache_clear()`` checks again)."""
    found = problems()
    if found:
        raise found[0]


# --- the private uses themselves --------------------------------------------------------------
def adapt_protocol(client: Any, kernel_info_reply: dict[str, Any]) -> None:
    """Adapt ``client``'s session to the protocol version the kernel's ``kernel_info_reply``
    names, as jupyter_client's own ``wait_for_ready`` does."""
    client._handle_kernel_info_reply(kernel_info_reply)


def adopt_process(provisioner: Any, process: Any, cwd: str) -> None:
    """Record a kernel process that ``provisioner`` (a LocalProvisioner) did not launch, as its
    ``launch_kernel`` records the ``Popen`` it starts; the process leads its own group."""
    provisioner.process = process
    provisioner.pid = provisioner.pgid = process.pid
    provisioner.cwd = cwd


# --- imports the runner does not need to pay for ----------------------------------------------
LAZY_MODULES = ("rfc3987_syntax",)


class _LazyModuleFinder:
    """Gives ``rfc3987_syntax`` as a stand-in whose functions load the real module on first use.

    nbformat imports jsonschema, whose format checkers import ``rfc3987_syntax`` when it is
    installed (``jsonschema[format-nongpl]``, which jupyter_events pulls in), and that module
    compiles a Lark grammar at import: ~1 s of CPU in every process that imports papermill,
    for IRI format checks nbformat never makes. The stand-in answers ``is_valid_syntax`` (what
    jsonschema takes from it) and any other attribute by importing the real module then, so a
    check that is made behaves exactly as before."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name not in LAZY_MODULES:
            return None
        import importlib.machinery

        real = importlib.machinery.PathFinder.find_spec(name, path)
        if real is None:
            return None  # not installed: the import fails as it would have
        return importlib.machinery.ModuleSpec(name, _LazyLoader(real), origin=real.origin)


class _LazyLoader(importlib.abc.Loader):
    def __init__(self, real_spec: Any) -> None:
        self.real_spec = real_spec

    def create_module(self, spec: Any) -> None:
        return None

    def exec_module(self, module: Any) -> None:
        real_spec = self.real_spec
        state: dict[str, Any] = {}

        def load() -> Any:
            if "module" not in state:
                import importlib.util
                import sys

                real = importlib.util.module_from_spec(real_spec)
                sys.modules[real_spec.name] = real  # its submodules find their package
                try:
                    real_spec.loader.exec_module(real)
                except BaseException:
                    sys.modules[real_spec.name] = module
                    raise
                state["module"] = real
            return state["module"]

        def is_valid_syntax(*args: Any, **kwargs: Any) -> Any:
            return load().is_valid_syntax(*args, **kwargs)

        def __getattr__(attr: str) -> Any:  # noqa: N807 - a module's own hook (PEP 562)
            if attr.startswith("__"):  # the import system probing (__path__, __file__ ...)
                raise AttributeError(attr)
            return getattr(load(), attr)

        module.is_valid_syntax = is_valid_syntax
        module.__getattr__ = __getattr__


_FINDER = _LazyModuleFinder()


def light_imports() -> None:
    """Before importing papermill/nbformat in nbops' own processes (the runner, a dask worker):
    defer what they import and never use (see :class:`_LazyModuleFinder`). A no-op when the
    module is imported already, and in a process that imported jsonschema before."""
    import sys

    if _FINDER in sys.meta_path or any(m in sys.modules for m in LAZY_MODULES):
        return
    if "jsonschema" in sys.modules:
        return
    sys.meta_path.insert(0, _FINDER)


def kernel_dirs() -> list[str]:
    """Where jupyter_client looks for kernel specs, as its ``KernelSpecManager`` default does,
    without importing IPython for ``IPython.paths.get_ipython_dir`` (~0.5 s of CPU in the
    runner, which never needs IPython): ``$IPYTHONDIR`` or ``~/.ipython``."""
    import os

    from jupyter_core.paths import jupyter_path

    dirs = jupyter_path("kernels")
    ipython_dir = os.environ.get("IPYTHONDIR") or os.path.join(os.path.expanduser("~"), ".ipython")
    dirs.append(os.path.join(ipython_dir, "kernels"))
    return dirs
