"""Test session set-up shared by tests/ and the nbval run of example_notebooks/.

Every kernel and writer started by the tests logs into a throwaway store, never into a store of
the checkout, and no test reaches a tracking server that happens to be configured.
"""

from __future__ import annotations

import os
import tempfile

# the handler tests' jp_fetch & co.; declared here, at the root, where pytest expects plugins
pytest_plugins = ["pytest_jupyter.jupyter_server"]

_session_root = tempfile.mkdtemp(prefix="nbops-tests-")
os.makedirs(os.path.join(_session_root, ".nbops"), exist_ok=True)
os.environ["NBOPS_PROJECT_ROOT"] = _session_root
os.environ.pop("MLFLOW_TRACKING_URI", None)
os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")


def pytest_sessionfinish(session: object, exitstatus: int) -> None:
    import shutil

    shutil.rmtree(_session_root, ignore_errors=True)
