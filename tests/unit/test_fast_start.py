"""import nbops and %load_ext nbops import no heavy library (docs/architecture.md, "Fast start")."""

import json
import subprocess
import sys

HEAVY = ["mlflow", "pandas", "papermill", "nbformat", "jsonschema", "dask", "distributed"]


def _loaded_after(code: str) -> list[str]:
    probe = f"""
import sys, json
{code}
print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))
"""
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_nbops_imports_no_heavy_library():
    assert _loaded_after("import nbops; nbops.__version__") == []


def test_load_ext_imports_no_heavy_library():
    code = (
        "from IPython.core.interactiveshell import InteractiveShell\n"
        "sh = InteractiveShell.instance()\n"
        "sh.run_line_magic('load_ext', 'nbops')\n"
        "assert 'track' in sh.magics_manager.magics['line']\n"
    )
    assert _loaded_after(code) == []


def test_starting_a_run_and_logging_imports_no_heavy_library(tmp_path):
    code = (
        "import os, nbops\n"
        f"os.environ['NBOPS_PROJECT_ROOT'] = {str(tmp_path)!r}\n"
        "r = nbops.start_run('fast')\n"
        "nbops.log_metric('m', 1.0)\n"
    )
    assert _loaded_after(code) == []
