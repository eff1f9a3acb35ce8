"""Run lifecycle, the spool and its writer, capture, fingerprints. Only store.py imports mlflow."""
