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
