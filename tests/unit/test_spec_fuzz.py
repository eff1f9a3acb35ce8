"""A few hundred mutated nbops.yaml files: each loads, or fails with a located ConfigError."""

from __future__ import annotations

import random

from nbops.errors import ConfigError
from nbops.pipeline import graph, spec

VALID = """\
experiment: wine
stages:
  prepare:
    notebook: a.ipynb
    params: {test_size: 0.25, seed: 0}
    outs: [data/train.csv, data/test.csv]
  train:
    notebook: b.ipynb
    deps: [data/train.csv]
    outs: [models]
    sweep: {C: [0.01, 0.1, 1.0]}
    checks: {cv_accuracy: ">= 0.8"}
schedules:
  nightly: {cron: "0 2 * * *", stages: [prepare, train], catchup: latest, retries: 1}
gates:
  wine-model: {stage: train, require: {accuracy: ">= 0.9"}}
"""
JUNK = [
    ":",
    "- ",
    "{",
    "}",
    "[",
    "]",
    "\t",
    "'",
    '"',
    "&a",
    "*a",
    "!!python/object x",
    "%",
    "@",
    "  ",
    "\n",
    "null",
    "~",
    "0x",
    "1e99",
    "notebook",
    "stages",
    "deps",
    "?",
]


def mutate(rng: random.Random, text: str) -> str:
    lines = text.splitlines()
    for _ in range(rng.randint(1, 3)):
        op = rng.randrange(6)
        i = rng.randrange(len(lines))
        if op == 0:
            del lines[i]
        elif op == 1:
            lines.insert(i, lines[rng.randrange(len(lines))])
        elif op == 2:
            pos = rng.randrange(len(lines[i]) + 1)
            lines[i] = lines[i][:pos] + rng.choice(JUNK) + lines[i][pos:]
        elif op == 3:
            lines[i] = lines[i].replace(":", rng.choice(["", " :", "::"]), 1)
        elif op == 4:
            lines[i] = " " * rng.randint(0, 6) + lines[i].lstrip()
        else:
            lines = lines[: rng.randint(1, len(lines))]
        if not lines:
            lines = [""]
    return "\n".join(lines) + "\n"


def test_every_mutation_loads_or_gives_a_located_config_error(tmp_path):
    for nb in ("a.ipynb", "b.ipynb"):
        (tmp_path / nb).write_text('{"cells": [], "metadata": {}, "nbformat": 4}')
    rng = random.Random(20261124)
    path = tmp_path / "nbops.yaml"
    errors = 0
    for _ in range(400):
        path.write_text(mutate(rng, VALID))
        try:
            graph.build(spec.load(path))
        except ConfigError as err:
            errors += 1
            assert "nbops.yaml" in str(err), str(err)
            assert err.line is not None, str(err)
    assert errors > 100  # the mutations do break things
