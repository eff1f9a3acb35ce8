"""Seeding real MLflow stores for the server tests and bench/server.py: a small experiment made
with MlflowClient, and 10,000 runs written with bulk SQL into the schema MLflow created."""

from __future__ import annotations

import json
import math
import random
import sqlite3
import uuid
from pathlib import Path
from typing import Any


def small_experiment(root: Path) -> dict[str, Any]:
    """Experiment ``iris``: 5 runs (one with a NaN metric, one stage run, two with notebooks),
    and ``other`` with 1 run. Returns ids by name."""
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    from nbops.mlflow.store import open_store

    uri = f"sqlite:///{root / '.nbops' / 'mlflow.db'}"
    store = open_store(uri)
    client = MlflowClient(uri)
    exp = store.experiment_id("iris")
    other = store.experiment_id("other")
    ids: dict[str, Any] = {"experiment": exp, "other": other}
    t0 = 1_700_000_000_000
    for i, (c, kind) in enumerate(
        [(0.1, "rf"), (1.0, "rf"), (10.0, "rf"), (1.0, "svm"), (5, "rf")]
    ):
        tags = {"team": "vision" if i % 2 else "nlp"}
        if i == 2:
            tags.update({"nbops.stage": "train", "nbops.notebook": str(root / "train.ipynb")})
        run = client.create_run(exp, start_time=t0 + i * 1000, run_name=f"run-{i}", tags=tags)
        rid = run.info.run_id
        metrics = [Metric("acc", 0.5 + 0.1 * i + 0.01 * s, t0 + s, s) for s in range(5)]
        metrics += [Metric("loss", 1.0 / (i + 1) + s, t0 + s, s) for s in range(3)]
        if i == 4:
            metrics.append(Metric("weird", math.nan, t0, 0))
        client.log_batch(
            rid,
            metrics=metrics,
            params=[Param("C", str(c)), Param("kind", kind), Param("seed", "0")],
            tags=[RunTag("nbops.rerun_of", ids["run-0"])] if i == 3 else [],
            synchronous=True,
        )
        client.set_terminated(rid, "FAILED" if i == 1 else "FINISHED", end_time=t0 + i * 1000 + 500)
        ids[f"run-{i}"] = rid
    # executed notebooks for two runs (as artifacts under notebook/) and a plain text artifact
    for i, acc in ((0, "0.5"), (1, "0.6")):
        nb = notebook_json(
            [
                ("# Train", "markdown", ""),
                ("C = 0.1" if i == 0 else "C = 1.0", "code", ""),
                ("print('accuracy', acc)", "code", f"accuracy {acc}\n"),
            ]
            + ([("print('extra')", "code", "extra\n")] if i == 1 else [])
        )
        tmp = root / f"nb{i}" / "train.ipynb"
        tmp.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(nb))
        client.log_artifact(ids[f"run-{i}"], str(tmp), "notebook")
    note = root / "note.txt"
    note.write_text("hello")
    client.log_artifact(ids["run-0"], str(note), "reports")
    run = client.create_run(other, start_time=t0, run_name="lonely")
    client.set_terminated(run.info.run_id, "FINISHED", end_time=t0 + 10)
    ids["lonely"] = run.info.run_id
    return ids


def notebook_json(cells: list[tuple[str, str, str]]) -> dict[str, Any]:
    out = []
    for n, (src, kind, stream) in enumerate(cells):
        cell: dict[str, Any] = {"cell_type": kind, "id": f"c{n}", "metadata": {}, "source": src}
        if kind == "code":
            cell["execution_count"] = n
            cell["outputs"] = (
                [{"output_type": "stream", "name": "stdout", "text": stream}] if stream else []
            )
        out.append(cell)
    return {
        "cells": out,
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def bulk_runs(db: Path, experiment_id: str, n: int = 10_000, seed: int = 0) -> list[str]:
    """``n`` runs with 4 params, 3 metrics (latest + a 10-step history of ``acc``) and 2 tags,
    inserted in one transaction into MLflow's schema (it must exist: create it with MLflow)."""
    rnd = random.Random(seed)
    t0 = 1_700_000_000_000
    runs, params, latest, metrics, tags = [], [], [], [], []
    ids = []
    for i in range(n):
        rid = uuid.UUID(int=rnd.getrandbits(128)).hex
        ids.append(rid)
        start = t0 + i * 1000 + (7 if i % 97 == 0 else 0)
        runs.append(
            (
                rid,
                f"bulk-{i}",
                "LOCAL",
                "",
                "",
                "bench",
                "FINISHED" if i % 10 else "FAILED",
                start,
                start + 5000,
                "",
                "active",
                f"file:///tmp/nbops-bulk/{rid}/artifacts",
                int(experiment_id),
            )
        )
        lr = rnd.choice(["0.001", "0.01", "0.1"])
        params += [
            (rid, "lr", lr),
            (rid, "depth", str(i % 8)),
            (rid, "kind", "rf"),
            (rid, "i", str(i)),
        ]
        acc = rnd.random()
        for key, value in (("acc", acc), ("loss", 1 - acc), ("epoch_s", rnd.random() * 10)):
            latest.append((rid, key, value, start + 9, 9, 0))
        for step in range(10):
            metrics.append((rid, "acc", acc * (step + 1) / 10, start + step, step, 0))
        tags += [(rid, "mlflow.runName", f"bulk-{i}"), (rid, "team", "a" if i % 3 else "b")]
    con = sqlite3.connect(str(db), timeout=60)
    try:
        with con:
            con.executemany(
                "INSERT INTO runs (run_uuid, name, source_type, source_name, entry_point_name,"
                " user_id, status, start_time, end_time, source_version, lifecycle_stage,"
                " artifact_uri, experiment_id) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                runs,
            )
            con.executemany("INSERT INTO params (run_uuid, key, value) VALUES (?,?,?)", params)
            con.executemany(
                "INSERT INTO latest_metrics (run_uuid, key, value, timestamp, step, is_nan)"
                " VALUES (?,?,?,?,?,?)",
                latest,
            )
            con.executemany(
                "INSERT INTO metrics (run_uuid, key, value, timestamp, step, is_nan)"
                " VALUES (?,?,?,?,?,?)",
                metrics,
            )
            con.executemany("INSERT INTO tags (run_uuid, key, value) VALUES (?,?,?)", tags)
    finally:
        con.close()
    return ids
