"""Run lifecycle, the spool and its writer, capture, fingerprints. Core layer: it imports base
modules and the adapters (nbops.mlflow for the store), never nbops.pipeline or anything above it."""
