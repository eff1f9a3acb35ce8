"""labextension/src/api.generated.ts is generated from nbops/server/models.py: it must not drift."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "gen_api_types.py"
OUT = REPO / "labextension" / "src" / "api.generated.ts"


def test_generated_typescript_matches_the_pydantic_models():
    res = subprocess.run(
        [sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True, check=False
    )
    assert res.returncode == 0, (
        f"{OUT.name} drifted from nbops/server/models.py: run `python scripts/gen_api_types.py`"
        f"\n{res.stderr}"
    )


def test_every_contract_field_is_in_the_typescript():
    text = OUT.read_text()
    for needle in (
        "export interface RunSummary {",
        "  rerun_of: string | null;",
        "  next_page_token: string | null;",
        "  params_differ: { [key: string]: { [key: string]: string | null } };",
        "  histories: { [key: string]: { [key: string]: ([number, number | null])[] } };",
        '  status: "unchanged" | "modified" | "added" | "removed";',
        '  state: "running" | "done" | "failed";',
        "export interface RunDetail {",
        "  has_notebook: boolean;",
    ):
        assert needle in text, needle


def test_a_changed_model_is_detected(tmp_path, monkeypatch):
    """The check compares the rendered text: a model with one field more renders differently."""
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import gen_api_types
    finally:
        sys.path.remove(str(SCRIPT.parent))
    from nbops.server import models

    before = gen_api_types.render()
    assert before == OUT.read_text()

    class Extra(models._Response):
        surprise: int

    monkeypatch.setattr(models, "API_MODELS", [*models.API_MODELS, Extra])
    after = gen_api_types.render()
    assert "export interface Extra {\n  surprise: number;\n}" in after
    assert after != OUT.read_text()
