"""Two executed notebooks, cell by cell: nbdime aligns the cells, this flattens its diff into the
contract's rows (status, both sources and outputs as text, a line diff of the source)."""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Any

from nbops.errors import InvalidInput
from nbops.server import models as m


def _text(v: Any) -> str:
    return "".join(v) if isinstance(v, list) else str(v or "")


def outputs_text(cell: dict[str, Any]) -> str | None:
    if cell.get("cell_type") != "code":
        return None
    parts = []
    for o in cell.get("outputs", []):
        kind = o.get("output_type")
        if kind == "stream":
            parts.append(_text(o.get("text")))
        elif kind == "error":
            parts.append(f"{o.get('ename')}: {o.get('evalue')}\n")
        else:
            data = o.get("data", {})
            if "text/plain" in data:
                parts.append(_text(data["text/plain"]).rstrip("\n") + "\n")
            elif data:
                parts.append(f"[{', '.join(sorted(data))}]\n")
    return "".join(parts)


def source_ops(a: str, b: str) -> list[m.SourceOp]:
    la, lb = a.splitlines(keepends=True), b.splitlines(keepends=True)
    ops: list[m.SourceOp] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, la, lb, autojunk=False).get_opcodes():
        if tag == "equal":
            ops.append(m.SourceOp(op="equal", text="".join(la[i1:i2])))
            continue
        if i2 > i1:
            ops.append(m.SourceOp(op="delete", text="".join(la[i1:i2])))
        if j2 > j1:
            ops.append(m.SourceOp(op="insert", text="".join(lb[j1:j2])))
    return ops


def _row(status: str, a: dict[str, Any] | None, b: dict[str, Any] | None) -> m.CellDiff:
    sa = _text(a.get("source")) if a is not None else None
    sb = _text(b.get("source")) if b is not None else None
    if sa is not None and sb is not None:
        ops = source_ops(sa, sb)
    else:
        text = sa if sa is not None else sb or ""
        ops = [m.SourceOp(op="delete" if sb is None else "insert", text=text)] if text else []
    return m.CellDiff(
        status=status,  # type: ignore[arg-type]
        cell_type=str((a or b or {}).get("cell_type", "code")),
        source_a=sa,
        source_b=sb,
        outputs_a=outputs_text(a) if a is not None else None,
        outputs_b=outputs_text(b) if b is not None else None,
        source_diff=ops,
    )


def load(path: Path) -> dict[str, Any]:
    try:
        nb = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        raise InvalidInput(f"{path.name} is not a readable notebook: {exc}") from exc
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        raise InvalidInput(f"{path.name} is not a notebook (no cells)")
    return nb


def diff_cells(nb_a: dict[str, Any], nb_b: dict[str, Any]) -> list[m.CellDiff]:
    """Cells of a and b aligned by nbdime's diff: unchanged/modified pairs, added, removed."""
    import nbdime
    import nbformat

    # reads() joins multi-line sources saved as lists of lines (nbdime diffs strings)
    a = nbformat.reads(json.dumps(nb_a), as_version=4)  # type: ignore[no-untyped-call]
    b = nbformat.reads(json.dumps(nb_b), as_version=4)  # type: ignore[no-untyped-call]
    cells_a, cells_b = a.get("cells", []), b.get("cells", [])
    cell_ops: list[Any] = []
    for d in nbdime.diff_notebooks(a, b):
        if d["key"] == "cells":
            cell_ops = sorted(d["diff"], key=lambda op: (op["key"], op["op"] != "addrange"))
    rows: list[m.CellDiff] = []
    ia = ib = 0

    def pair_until(stop: int) -> None:
        nonlocal ia, ib
        while ia < stop:
            if ib >= len(cells_b):
                rows.append(_row("removed", cells_a[ia], None))
                ia += 1
                continue
            ca, cb = cells_a[ia], cells_b[ib]
            changed = _text(ca.get("source")) != _text(cb.get("source")) or outputs_text(
                ca
            ) != outputs_text(cb)
            rows.append(_row("modified" if changed else "unchanged", ca, cb))
            ia, ib = ia + 1, ib + 1

    for op in cell_ops:
        pair_until(op["key"])
        if op["op"] == "addrange":
            for c in op["valuelist"]:
                rows.append(_row("added", None, c))
                ib += 1
        elif op["op"] == "removerange":
            for _ in range(op["length"]):
                rows.append(_row("removed", cells_a[ia], None))
                ia += 1
        elif op["op"] == "patch":
            pair_until(ia + 1)
    pair_until(len(cells_a))
    while ib < len(cells_b):  # nbdime accounts for every cell; this only guards odd input
        rows.append(_row("added", None, cells_b[ib]))
        ib += 1
    return rows
