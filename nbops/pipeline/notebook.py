"""What the pipeline needs to know of a notebook, read as JSON (no nbformat on the fast path):
the hash of its code, and the parameters its ``parameters`` cell declares (with defaults).

The reading and the inference of parameters (as papermill infers them) are
:mod:`nbops.tracking.parameters`, shared with tracking; so a notebook papermill can run is one
nbops can run, and what the cell does wrong shows when the kernel runs it, as a failure of that
stage. A notebook that cannot be read at all is a ``ConfigError`` naming it; the runner turns
that into a failure of its stage only."""

from __future__ import annotations

from pathlib import Path

import xxhash

from nbops.tracking.parameters import (
    MAX_DEFAULT_CHARS,
    MAX_NOTEBOOK_BYTES,
    PARAMETER_PATTERN,
    Parameter,
    cell_source,
    cell_tags,
    declared_parameters,
    inspect_parameters,
    inspect_source,
    read_cells,
    read_notebook,
)


def code_digest(path: Path) -> str:
    """xxh3 of the code cells' sources, in order (outputs, markdown and injected params ignored)."""
    h = xxhash.xxh3_128()
    for cell in read_notebook(path)[1]:
        if cell.get("cell_type") == "code" and "injected-parameters" not in cell_tags(cell):
            h.update(cell_source(cell).encode("utf-8", "surrogatepass") + b"\0")
    return h.hexdigest()


def parameters_cell(path: Path) -> str | None:
    """The source of the first cell tagged ``parameters`` (papermill injects after it), or None."""
    for cell in read_notebook(path)[1]:
        if "parameters" in cell_tags(cell):
            return cell_source(cell)
    return None


__all__ = [
    "MAX_DEFAULT_CHARS",
    "MAX_NOTEBOOK_BYTES",
    "PARAMETER_PATTERN",
    "Parameter",
    "code_digest",
    "declared_parameters",
    "inspect_parameters",
    "inspect_source",
    "parameters_cell",
    "read_cells",
]
