"""What the pipeline needs to know of a notebook, read as JSON (no nbformat on the fast path):
the hash of its code, and the parameters its ``parameters`` cell declares (with defaults)."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import xxhash

from nbops.errors import ConfigError


def _cells(path: Path) -> list[dict[str, Any]]:
    try:
        nb = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(
            f"notebook {path} does not exist",
            "fix the stage's `notebook:` path (relative to nbops.yaml)",
            file=str(path),
        ) from exc
    except ValueError as exc:
        raise ConfigError(
            f"notebook {path} is not valid JSON: {exc}",
            "open it in Jupyter and save it again",
            file=str(path),
        ) from exc
    cells = nb.get("cells", []) if isinstance(nb, dict) else []
    return [c for c in cells if isinstance(c, dict)]


def _source(cell: dict[str, Any]) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else str(src)


def _tags(cell: dict[str, Any]) -> list[str]:
    meta = cell.get("metadata", {})
    return list(meta.get("tags", [])) if isinstance(meta, dict) else []


def code_digest(path: Path) -> str:
    """xxh3 of the code cells' sources, in order (outputs, markdown and injected params ignored)."""
    h = xxhash.xxh3_128()
    for cell in _cells(path):
        if cell.get("cell_type") == "code" and "injected-parameters" not in _tags(cell):
            h.update(_source(cell).encode() + b"\0")
    return h.hexdigest()


def declared_parameters(path: Path) -> dict[str, Any]:
    """Names assigned in the cell tagged ``parameters``, with their default values when those are
    literals (else None)."""
    out: dict[str, Any] = {}
    for cell in _cells(path):
        if cell.get("cell_type") != "code" or "parameters" not in _tags(cell):
            continue
        try:
            tree = ast.parse(_source(cell))
        except SyntaxError as exc:
            raise ConfigError(
                f"the parameters cell of {path} does not parse: {exc.msg}",
                "fix the cell in Jupyter",
                file=str(path),
                line=exc.lineno,
            ) from exc
        for node in tree.body:
            targets = (
                node.targets
                if isinstance(node, ast.Assign)
                else ([node.target] if isinstance(node, ast.AnnAssign) and node.value else [])
            )
            for t in targets:
                if isinstance(t, ast.Name):
                    try:
                        out[t.id] = ast.literal_eval(node.value)  # type: ignore[union-attr, arg-type]
                    except ValueError:
                        out[t.id] = None
    return out
