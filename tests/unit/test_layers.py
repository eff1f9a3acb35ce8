"""The import rules of docs/architecture.md ("Layers"), read from the code's syntax tree.

Every ``import`` and ``from ... import`` counts, at module level, inside functions and under
``if TYPE_CHECKING:``, and so does ``importlib.import_module("...")`` / ``__import__("...")``
with a literal name. Each rule prints its violations as ``file:line imports X (rule)``.

The layer map is :data:`LAYER_MAP`, one table; docs/architecture.md draws the same one.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the repository: nbops/ is in it

# --- the layer map -----------------------------------------------------------------------------
#: each layer's packages and modules. A module belongs to the longest entry its name starts with.
#: base: imports nothing of nbops but base. adapters: base only (each adapter itself, never
#: another adapter). core, lowest first: base, adapters and the core entries up to itself (a
#: lower one never imports a higher one). surfaces: anything; no layer below imports them.
LAYER_MAP: dict[str, tuple[str, ...]] = {
    "base": (
        "nbops.errors",
        "nbops.tags",
        "nbops.envvars",
        "nbops.values",
        "nbops.project",
        "nbops.comparisons",
        "nbops.table",
    ),
    "adapters": ("nbops.mlflow", "nbops.executors"),
    # ops below the scheduler: ops never imports the scheduler
    "core": ("nbops.tracking", "nbops.pipeline", "nbops.ops", "nbops.scheduler"),
    "surfaces": (
        "nbops.cli",
        "nbops.ipython",
        "nbops.server",
        "nbops.demo",
        "nbops.__main__",
        "nbops",  # nbops/__init__.py: the public API
    ),
}

#: the one package that imports mlflow
MLFLOW_BOUNDARY = "nbops.mlflow"
#: packages whose private names nbops may use in one module only
FENCED = ("jupyter_client", "papermill", "nbclient")
#: the two modules that import dask (the runner's side and the worker's side of the executor)
DASK_BOUNDARY = ("nbops.executors.dask_exec", "nbops.executors.dask_worker")
FENCE = "nbops.executors.compat"
#: names with a leading underscore that Jupyter's extension protocol makes public
JUPYTER_HOOKS = frozenset(
    {
        "_jupyter_server_extension_points",
        "_load_jupyter_server_extension",
        "_jupyter_labextension_paths",
    }
)


@dataclass(frozen=True)
class Violation:
    file: str  # relative to the tree's root
    line: int
    imports: str
    rule: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line} imports {self.imports} ({self.rule})"


@dataclass(frozen=True)
class Import:
    line: int
    module: str  # the module imported from (absolute)
    name: str | None  # the name imported from it (``from module import name``), else None


# --- reading a tree ---------------------------------------------------------------------------
def modules(root: Path) -> dict[str, Path]:
    """Every module of the nbops package under ``root``, by dotted name."""
    found: dict[str, Path] = {}
    for path in sorted((root / "nbops").rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _is_package(root: Path, module: str) -> bool:
    return (root / Path(*module.split(".")) / "__init__.py").exists()


def imports_of(path: Path, module: str, is_package: bool) -> Iterator[Import]:
    """Every import statement (and literal ``import_module``) in one file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(node.lineno, alias.name, None)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                yield Import(node.lineno, base, alias.name)
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            arg = node.args[0]
            if (
                called in ("import_module", "__import__")
                and isinstance(arg, ast.Constant)
                and isinstance(arg.value, str)
                and not arg.value.startswith(".")
            ):
                yield Import(node.lineno, arg.value, None)


def _target(root: Path, imp: Import) -> str:
    """The nbops module an import reaches: ``from nbops import tags`` reaches nbops.tags,
    ``from nbops import __version__`` reaches nbops (its __init__)."""
    if imp.name is not None and imp.name != "*":
        sub = f"{imp.module}.{imp.name}"
        if _is_package(root, sub) or (root / Path(*sub.split("."))).with_suffix(".py").exists():
            return sub
    return imp.module


def layer_entry(module: str) -> tuple[str, str] | None:
    """(layer, entry) of a module: the longest entry of LAYER_MAP its name is or starts with
    (``nbops`` itself only for nbops/__init__.py)."""
    best: tuple[str, str] | None = None
    for layer, entries in LAYER_MAP.items():
        for entry in entries:
            hit = module == entry or (entry != "nbops" and module.startswith(entry + "."))
            if hit and (best is None or len(entry) > len(best[1])):
                best = (layer, entry)
    return best


def broken_layer_rule(importer: str, target: str) -> str | None:
    """The rule ``importer`` breaks by importing ``target`` (None: allowed)."""
    src, dst = layer_entry(importer), layer_entry(target)
    if src is None:
        return f"{importer} is not in the layer map"
    if dst is None:
        return f"{target} is not in the layer map"
    (src_layer, src_entry), (dst_layer, dst_entry) = src, dst
    if src_entry == dst_entry or src_layer == "surfaces":
        return None
    if src_layer == "base":
        return None if dst_layer == "base" else "base imports only base"
    if src_layer == "adapters":
        return None if dst_layer == "base" else "an adapter imports only base"
    # core
    if dst_layer in ("base", "adapters"):
        return None
    if dst_layer == "surfaces":
        return "core never imports surfaces"
    core = LAYER_MAP["core"]
    if core.index(dst_entry) < core.index(src_entry):
        return None
    return f"{src_entry} never imports {dst_entry} (a higher core layer)"


@cache
def outside_private_names(package: str) -> frozenset[str]:
    """Every underscore name (not dunder) the installed ``package`` defines: functions, classes,
    methods and attributes, read from its source without importing it."""
    spec = importlib.util.find_spec(package)
    assert spec is not None and spec.origin is not None, f"{package} is not installed"
    names: set[str] = set()
    for path in Path(spec.origin).parent.rglob("*.py"):
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                names.add(node.name)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
    return frozenset(n for n in names if _private(n))


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _fenced(module: str) -> bool:
    return module.split(".")[0] in FENCED


def _fence_violations(rel: str, path: Path, imps: list[Import]) -> Iterator[Violation]:
    """Private names of the fenced packages used outside the fence: imported, read, set on or
    overridden in a subclass of theirs. A name this file defines itself is its own."""
    rule = f"private names of {'/'.join(FENCED)} only in {FENCE}"
    for imp in imps:
        parts = [*imp.module.split("."), *([imp.name] if imp.name else [])]
        if _fenced(imp.module) and any(_private(p) for p in parts[1:]):
            yield Violation(rel, imp.line, ".".join(parts), rule)
    fenced_imps = [i for i in imps if _fenced(i.module)]
    if not fenced_imps:
        return
    theirs = frozenset().union(*(outside_private_names(p) for p in FENCED))
    tree = ast.parse(path.read_text(encoding="utf-8"))
    outside_classes = {i.name for i in fenced_imps if i.name}
    ours: set[str] = set()
    other_modules: set[str] = set()  # names bound to modules of other packages (os, sys)
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            ours.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            ours.add(node.id)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if not _fenced(alias.name):
                    other_modules.add(alias.asname or alias.name.split(".")[0])
    for cls in (n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)):
        bases = {b.id if isinstance(b, ast.Name) else getattr(b, "attr", "") for b in cls.bases}
        subclass = bool(bases & outside_classes)
        for item in cls.body:
            method = isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef)
            if subclass and method and item.name in theirs:
                ours.discard(item.name)
                yield Violation(rel, item.lineno, f"{cls.name}.{item.name} (an override)", rule)
        for node in ast.walk(cls):
            if not (isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store)):
                continue
            if not (isinstance(node.value, ast.Name) and node.value.id == "self"):
                continue
            if subclass and node.attr in theirs:
                yield Violation(rel, node.lineno, f"the private {node.attr} (set)", rule)
            elif not subclass:
                ours.add(node.attr)
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load)):
            continue
        if node.attr not in theirs or node.attr in ours:
            continue
        if isinstance(node.value, ast.Name) and node.value.id in other_modules:
            continue  # os._exit: not theirs
        yield Violation(rel, node.lineno, f"the private {node.attr}", rule)


def violations(root: Path) -> list[Violation]:
    """Every broken import rule in the nbops tree under ``root``."""
    found: list[Violation] = []
    for module, path in modules(root).items():
        rel = str(path.relative_to(root))
        imps = list(imports_of(path, module, path.name == "__init__.py"))
        inside_boundary = module == MLFLOW_BOUNDARY or module.startswith(MLFLOW_BOUNDARY + ".")
        for imp in imps:
            top = imp.module.split(".")[0]
            if top == "mlflow" and not inside_boundary:
                name = f"{imp.module}.{imp.name}" if imp.name else imp.module
                found.append(
                    Violation(rel, imp.line, name, f"only {MLFLOW_BOUNDARY} imports mlflow")
                )
            if top in ("dask", "distributed") and module not in DASK_BOUNDARY:
                name = f"{imp.module}.{imp.name}" if imp.name else imp.module
                found.append(Violation(rel, imp.line, name, "only the dask executor imports dask"))
            if top != "nbops":
                continue
            target = _target(root, imp)
            shown = f"{imp.module}.{imp.name}" if imp.name else imp.module
            rule = broken_layer_rule(module, target)
            if rule is not None:
                found.append(Violation(rel, imp.line, shown, rule))
            private_module_of_own_package = target != imp.module and (
                module == imp.module or module.startswith(imp.module + ".")
            )
            if (
                imp.name
                and _private(imp.name)
                and imp.name not in JUPYTER_HOOKS
                and imp.module != module
                and not private_module_of_own_package
            ):
                found.append(Violation(rel, imp.line, shown, "no private name across modules"))
        if module != FENCE:
            found.extend(_fence_violations(rel, path, imps))
    return sorted(found, key=lambda v: (v.file, v.line, v.imports))


def _report(found: list[Violation]) -> str:
    return "\n".join(str(v) for v in found)


# --- the rules, on this repository ------------------------------------------------------------
@cache
def _repository() -> tuple[Violation, ...]:
    return tuple(violations(ROOT))


def _of_rule(prefix: str) -> list[Violation]:
    return [v for v in _repository() if v.rule.startswith(prefix)]


def test_no_module_outside_the_mlflow_package_imports_mlflow():
    found = _of_rule(f"only {MLFLOW_BOUNDARY}")
    assert not found, "\n" + _report(found)


def test_only_the_dask_executor_imports_dask():
    found = _of_rule("only the dask executor")
    assert not found, "\n" + _report(found)


def test_the_checker_finds_dask_imported_outside_the_executor(tmp_path):
    tree = {
        "nbops/executors/dask_exec.py": "import distributed\n",  # allowed: the boundary
        "nbops/pipeline/leaky.py": "def f():\n    from dask.distributed import Client\n",
    }
    for rel, text in tree.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    found = [str(v) for v in violations(tmp_path) if v.rule.startswith("only the dask")]
    assert found == [
        "nbops/pipeline/leaky.py:2 imports dask.distributed.Client "
        "(only the dask executor imports dask)"
    ]


def test_private_names_of_jupyter_client_papermill_nbclient_only_in_the_compat_module():
    found = _of_rule("private names of")
    assert not found, "\n" + _report(found)


def test_every_module_imports_only_what_its_layer_may():
    found = [
        v
        for v in _repository()
        if not v.rule.startswith(("only ", "private names of", "no private name"))
    ]
    assert not found, "\n" + _report(found)


def test_no_private_name_is_imported_across_modules():
    found = _of_rule("no private name")
    assert not found, "\n" + _report(found)


def test_every_module_of_nbops_is_in_the_layer_map():
    unplaced = [m for m in modules(ROOT) if layer_entry(m) is None]
    assert not unplaced, f"place them in LAYER_MAP (and docs/architecture.md): {unplaced}"


# --- the checker itself, on a planted tree -----------------------------------------------------
def _plant(root: Path, files: dict[str, str]) -> None:
    for rel, text in {"nbops/__init__.py": "", **files}.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        for parent in path.relative_to(root).parents:
            init = root / parent / "__init__.py"
            if parent.parts and not init.exists():
                init.write_text("")
        path.write_text(text)


def test_the_checker_finds_mlflow_imported_outside_its_package_in_any_form(tmp_path):
    _plant(
        tmp_path,
        {
            "nbops/mlflow/store.py": "import mlflow\n",  # allowed: the boundary
            "nbops/tracking/leaky.py": (
                "from typing import TYPE_CHECKING\n"
                "import importlib\n"
                "if TYPE_CHECKING:\n"
                "    from mlflow.entities import Run\n"
                "def f():\n"
                "    import mlflow.sklearn\n"
                "    return importlib.import_module('mlflow.pyfunc')\n"
            ),
        },
    )
    found = [str(v) for v in violations(tmp_path) if v.rule.startswith("only")]
    assert found == [
        "nbops/tracking/leaky.py:4 imports mlflow.entities.Run (only nbops.mlflow imports mlflow)",
        "nbops/tracking/leaky.py:6 imports mlflow.sklearn (only nbops.mlflow imports mlflow)",
        "nbops/tracking/leaky.py:7 imports mlflow.pyfunc (only nbops.mlflow imports mlflow)",
    ]


def test_the_checker_finds_each_broken_layer_rule(tmp_path):
    _plant(
        tmp_path,
        {
            "nbops/errors.py": "from nbops.tracking import run\n",
            "nbops/tags.py": "from nbops import errors\n",  # base to base: fine
            "nbops/mlflow/store.py": "from nbops.executors import local\n",
            "nbops/executors/local.py": "from nbops import errors, tags\n",
            "nbops/tracking/run.py": "def f():\n    from nbops.pipeline import runner\n",
            "nbops/pipeline/runner.py": (
                "from ..scheduler import api\nfrom nbops.tracking import run\n"
            ),
            "nbops/scheduler/api.py": "from nbops.ops import audit\nfrom nbops.cli import main\n",
            "nbops/ops/audit.py": "from nbops import __version__\n",
            "nbops/cli.py": "from nbops.scheduler import api\nfrom nbops.tracking import run\n",
            "nbops/extra.py": "",
        },
    )
    found = [str(v) for v in violations(tmp_path)]
    assert found == [
        "nbops/errors.py:1 imports nbops.tracking.run (base imports only base)",
        "nbops/mlflow/store.py:1 imports nbops.executors.local (an adapter imports only base)",
        "nbops/ops/audit.py:1 imports nbops.__version__ (core never imports surfaces)",
        "nbops/pipeline/runner.py:1 imports nbops.scheduler.api"
        " (nbops.pipeline never imports nbops.scheduler (a higher core layer))",
        "nbops/scheduler/api.py:2 imports nbops.cli.main (core never imports surfaces)",
        "nbops/tracking/run.py:2 imports nbops.pipeline.runner"
        " (nbops.tracking never imports nbops.pipeline (a higher core layer))",
    ]
    assert [m for m in modules(tmp_path) if layer_entry(m) is None] == ["nbops.extra"]


def test_the_checker_finds_private_names_imported_across_modules(tmp_path):
    _plant(
        tmp_path,
        {
            "nbops/pipeline/graph.py": "def _check_references(): ...\n",
            "nbops/ops/registry.py": "from nbops.pipeline.graph import _check_references\n",
            "nbops/server/__init__.py": "def _jupyter_server_extension_points(): ...\n",
            "nbops/cli.py": "from nbops.server import _jupyter_server_extension_points\n",
            "nbops/mlflow/_sql.py": "",
            "nbops/mlflow/store.py": "from nbops.mlflow import _sql\n",  # its own package
            "nbops/mlflow/readers/sqlite.py": "from .. import _sql\n",
            "nbops/server/reader.py": "from nbops.mlflow import _sql\n",
        },
    )
    assert [str(v) for v in violations(tmp_path)] == [
        "nbops/ops/registry.py:1 imports nbops.pipeline.graph._check_references"
        " (no private name across modules)",
        "nbops/server/reader.py:1 imports nbops.mlflow._sql (no private name across modules)",
    ]


def test_the_checker_finds_private_names_of_jupyter_client_outside_the_fence(tmp_path):
    rule = "(private names of jupyter_client/papermill/nbclient only in nbops.executors.compat)"
    _plant(
        tmp_path,
        {
            "nbops/executors/compat.py": (
                "def adapt(kc, reply):\n    kc._handle_kernel_info_reply(reply)\n"
            ),
            "nbops/executors/client.py": (
                "import os\n"
                "from jupyter_client.asynchronous.client import AsyncKernelClient\n"
                "from jupyter_client.session import _msg_id\n"
                "class C(AsyncKernelClient):\n"
                "    async def _async_wait_for_ready(self, timeout=None):\n"
                "        self._mine = 1\n"  # its own attribute: fine
                "        os._exit(0)\n"  # not jupyter_client's
                "        return await self._async_is_alive()\n"
            ),
        },
    )
    assert [str(v) for v in violations(tmp_path)] == [
        f"nbops/executors/client.py:3 imports jupyter_client.session._msg_id {rule}",
        f"nbops/executors/client.py:5 imports C._async_wait_for_ready (an override) {rule}",
        f"nbops/executors/client.py:8 imports the private _async_is_alive {rule}",
    ]


# --- what importing costs ---------------------------------------------------------------------
HEAVY = ("mlflow", "pandas", "papermill", "nbformat", "jsonschema")


def _loaded_after(code: str) -> dict[str, list[str]]:
    probe = (
        f"import sys, json\n{code}\n"
        f"print(json.dumps({{'heavy': [m for m in {HEAVY!r} if m in sys.modules], "
        "'nbops': sorted(m for m in sys.modules if m.split('.')[0] == 'nbops')}))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_importing_the_base_modules_loads_only_base_and_nothing_heavy():
    base = [m for m in LAYER_MAP["base"] if m in modules(ROOT)]
    loaded = _loaded_after("import " + ", ".join(base))
    assert loaded["heavy"] == []
    assert set(loaded["nbops"]) <= {"nbops", *base}


def test_importing_the_mlflow_package_does_not_import_mlflow():
    assert _loaded_after("import nbops.mlflow")["heavy"] == []


def test_import_nbops_loads_no_other_nbops_module():
    assert _loaded_after("import nbops")["nbops"] == ["nbops"]
