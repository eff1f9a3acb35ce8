"""Pipelines: nbops.yaml as a model (spec), its stage DAG (graph), and their execution."""
