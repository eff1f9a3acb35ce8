"""A notebook read as JSON (no nbformat: this runs in the user's kernel at ``start_run``) and the
parameters its ``parameters`` cell declares, inferred as papermill infers them
(``papermill --help-notebook``, ``PythonTranslator.inspect``): the first cell tagged
``parameters``, one ``name [: type] = value  # [type: T] help`` per assignment, values spread over
several lines joined, and every line it cannot read skipped, never refused. A notebook that cannot
be read at all (missing, not JSON, not a notebook) is a ``ConfigError`` naming it.

Tracking reads the parameter names of a tracked notebook with it; the pipeline (a higher layer)
reads stage notebooks through it too."""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nbops.errors import ConfigError

MAX_NOTEBOOK_BYTES = 512 * 1024 * 1024
MAX_DEFAULT_CHARS = 100_000  # a longer default stays text (no literal_eval of megabytes)

# papermill 2.x translators.PythonTranslator.PARAMETER_PATTERN, unchanged
PARAMETER_PATTERN = re.compile(
    r"^(?P<target>\w[\w_]*)\s*(:\s*[\"']?(?P<annotation>\w[\w_\[\],\s]*)[\"']?\s*)?=\s*"
    r"(?P<value>.*?)(\s*#\s*(type:\s*(?P<type_comment>[^\s]*)\s*)?(?P<help>.*))?$"
)


@dataclass(frozen=True)
class Parameter:
    """One parameter as papermill's inspection reports it, plus its default as a value."""

    name: str
    inferred_type_name: str  # "None" when unknown (papermill's convention)
    default: str  # the source text of the default
    help: str
    value: Any = None  # the default when it is a literal, else None


def read_notebook(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The notebook's metadata and its cells (dicts), or ConfigError naming what is wrong."""
    fix = "fix the stage's `notebook:` path (relative to nbops.yaml)"
    try:
        if not path.exists():
            raise ConfigError(f"notebook {path} does not exist", fix)
        if not path.is_file():  # a directory, a FIFO or a device: reading it could hang
            raise ConfigError(f"notebook {path} is not a file", fix)
        if path.stat().st_size > MAX_NOTEBOOK_BYTES:
            raise ConfigError(
                f"notebook {path} is larger than {MAX_NOTEBOOK_BYTES >> 20} MiB",
                "clear its outputs in Jupyter (Edit > Clear Outputs of All Cells)",
            )
        nb = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"notebook {path} cannot be read: {exc.strerror or exc}", fix) from None
    except (ValueError, RecursionError) as exc:  # also UnicodeDecodeError
        raise ConfigError(
            f"notebook {path} is not valid JSON: {str(exc)[:200]}",
            "open it in Jupyter and save it again",
        ) from None
    cells = nb.get("cells") if isinstance(nb, dict) else None
    if not isinstance(cells, list):
        raise ConfigError(
            f"notebook {path} is not a Jupyter notebook (no list of cells)",
            "point the stage at an .ipynb file saved by Jupyter",
        )
    meta = nb.get("metadata")
    return (meta if isinstance(meta, dict) else {}), [c for c in cells if isinstance(c, dict)]


def notebook_language(meta: dict[str, Any]) -> str | None:
    """The notebook's language as papermill finds its translator (None: not said)."""
    spec, info = meta.get("kernelspec"), meta.get("language_info")
    if isinstance(spec, dict) and spec.get("name") in ("python", "pysparkkernel"):
        return "python"
    for d, key in ((spec, "language"), (info, "name")):
        if isinstance(d, dict) and isinstance(d.get(key), str) and d[key]:
            return str(d[key]).lower()
    return None


def cell_source(cell: dict[str, Any]) -> str:
    src = cell.get("source", "")
    if isinstance(src, list):
        return "".join(s if isinstance(s, str) else str(s) for s in src)
    return src if isinstance(src, str) else str(src)


def cell_tags(cell: dict[str, Any]) -> list[str]:
    meta = cell.get("metadata", {})
    tags = meta.get("tags", []) if isinstance(meta, dict) else []
    return [t for t in tags if isinstance(t, str)] if isinstance(tags, list) else []


def read_cells(path: Path) -> list[tuple[list[str], str]]:
    """(tags, source) of each code cell; ConfigError when the notebook cannot be read."""
    return [
        (cell_tags(c), cell_source(c))
        for c in read_notebook(path)[1]
        if c.get("cell_type") == "code"
    ]


def inspect_parameters(path: Path) -> list[Parameter]:
    """The parameters of a notebook, as ``papermill.inspect_notebook`` infers them (none for a
    notebook in another language than Python: papermill inspects only Python)."""
    meta, cells = read_notebook(path)
    if notebook_language(meta) not in (None, "python"):
        return []
    src = next((cell_source(c) for c in cells if "parameters" in cell_tags(c)), None)
    return [] if src is None else inspect_source(src)


def declared_parameters(path: Path) -> dict[str, Any]:
    """Names the parameters cell declares, with their default values when those are literals
    (else None). ConfigError only when the notebook itself cannot be read."""
    return {p.name: p.value for p in inspect_parameters(path)}


def inspect_source(src: str) -> list[Parameter]:
    """papermill's ``PythonTranslator.inspect`` on a cell's source, never raising: lines that do
    not read as ``name [: type] = value`` (or that hold more than one ``=``) are skipped."""
    params = []
    for definition in _definitions(src):
        m = PARAMETER_PATTERN.match(definition)
        if m is None or m["target"] is None:
            continue
        default = str(m["value"]).strip()
        name = m["target"].strip()
        value = _literal(default)
        if value is None:  # e.g. 'a#b', which papermill's pattern cuts at the '#'
            value = _statement_value(definition)
        params.append(
            Parameter(
                name=name,
                inferred_type_name=str(m["annotation"] or m["type_comment"] or None).strip(),
                default=default,
                help=str(m["help"] or "").strip(),
                value=value,
            )
        )
    return params


def _definitions(src: str) -> list[str]:
    """The cell's lines grouped per assignment, as papermill groups them: a line with one ``=``
    starts a definition, following lines without one continue it (comments dropped except on
    its last line, which is the help); lines with several ``=`` are skipped."""

    def flatten(acc: list[str]) -> str:
        flat = ""
        for line in acc[:-1]:
            flat += (line[: line.index("#")] if "#" in line else line).strip()
        if acc:
            flat += acc[-1].strip()
        return flat

    groups: list[str] = []
    acc: list[str] = []
    for line in src.splitlines():
        if not line.strip() or line.strip().startswith("#"):
            continue
        n = line.count("=")
        if n > 0:
            groups.append(flatten(acc))
            acc = []
            if n > 1:
                continue
        acc.append(line)
    groups.append(flatten(acc))
    return [g for g in groups if g]


def _literal(text: str) -> Any:
    if not text or len(text) > MAX_DEFAULT_CHARS:
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None


def _statement_value(definition: str) -> Any:
    """The literal a one-statement definition assigns (``s = 'a#b'  # help``), else None."""
    if len(definition) > MAX_DEFAULT_CHARS:
        return None
    try:
        tree = ast.parse(definition)
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return None
    if len(tree.body) != 1:
        return None
    node = tree.body[0]
    value = node.value if isinstance(node, (ast.Assign, ast.AnnAssign)) else None
    if value is None:
        return None
    try:
        return ast.literal_eval(value)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None
