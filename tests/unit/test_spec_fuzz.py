"""Hundreds of mutated nbops.yaml files: each loads and builds, or fails with a ConfigError that
names the file and a line (never another exception, never a traceback)."""

from __future__ import annotations

import random
import re
from pathlib import Path

from nbops.errors import ConfigError
from nbops.pipeline import graph, spec

VALID = """\
experiment: iris
stages:
  prepare:
    notebook: notebooks/prepare.ipynb
    params: {test_size: 0.25, seed: 0}
    deps: [data/raw.csv]
    outs: [data/train.csv, data/test.csv]
  train:
    notebook: notebooks/train.ipynb
    params: &train_params
      C: 1.0
      lr: 1e-3
    deps:
      - data/train.csv
    outs: [models/]
    sweep: {C: [0.1, 1.0, 10.0]}
    checks: {accuracy: ">= 0.8"}
  evaluate:
    notebook: notebooks/evaluate.ipynb
    params: *train_params
    deps: [models, data/test.csv]
    after: [prepare]
schedules:
  nightly: {cron: "0 2 * * *", stages: [prepare, train], catchup: latest, retries: 1, timeout: 3600}
gates:
  iris-classifier: {stage: train, require: {accuracy: ">= 0.9"}, better_than_current: accuracy}
drift:
  reference: data/train.csv
  current: data/incoming.csv
  threshold: 0.05
  on_drift: [prepare, train]
"""
FILES = [
    "notebooks/prepare.ipynb",
    "notebooks/train.ipynb",
    "notebooks/evaluate.ipynb",
    "data/raw.csv",
]
GARBAGE = [
    ":",
    "- ",
    "{",
    "}",
    "[",
    "]",
    ",",
    "\t",
    "'",
    '"',
    "#",
    "&a ",
    "*a",
    "*nope",
    "!!set ",
    "!!python/object x",
    "%YAML",
    "@",
    "`",
    "|",
    ">",
    "?",
    "<<: ",
    "---",
    "\x07",
    "é",
    "  ",
]
VALUES = [
    "[1, 2]",
    "{a: 1}",
    "3",
    "-1",
    "0",
    "1.5",
    "true",
    "null",
    "~",
    "''",
    "'>= x'",
    "x",
    "[]",
    "{}",
    ".nan",
    "0x1F",
    "2024-01-01",
    "[[1]]",
    "*train_params",
    "../../x",
    "/etc/passwd",
    ".nbops/mlflow.db",
    "nbops.yaml",
    "[~/x]",
    "'a\\0b'",
    '"a\\0b"',
    "[data/raw.csv, ../up.csv]",
]
KEYS = [
    "notebok",
    "dep",
    "out",
    "stage",
    "name",
    "cron",
    "params",
    "deps",
    "prepare",
    "1",
    "x y",
    "<<",
    "after",
    "checks",
    "schedules",
    "drift",
    "threshold",
]
KEY_LINE = re.compile(r"^(\s*(?:- )?)([^\s:#][^:#]*?):(\s|$)")


def delete_line(rng: random.Random, lines: list[str]) -> None:
    del lines[rng.randrange(len(lines))]


def duplicate_line(rng: random.Random, lines: list[str]) -> None:
    lines.insert(rng.randrange(len(lines) + 1), rng.choice(lines))


def rename_key(rng: random.Random, lines: list[str]) -> None:
    i = rng.randrange(len(lines))
    lines[i] = KEY_LINE.sub(lambda m: f"{m[1]}{rng.choice(KEYS)}:{m[3]}", lines[i], count=1)


def change_value(rng: random.Random, lines: list[str]) -> None:
    i = rng.randrange(len(lines))
    head, colon, _ = lines[i].partition(": ")
    if colon:
        lines[i] = f"{head}: {rng.choice(VALUES)}"


def break_indentation(rng: random.Random, lines: list[str]) -> None:
    i = rng.randrange(len(lines))
    lines[i] = " " * rng.randint(0, 7) + lines[i].lstrip()


def insert_garbage(rng: random.Random, lines: list[str]) -> None:
    i = rng.randrange(len(lines))
    at = rng.randrange(len(lines[i]) + 1)
    lines[i] = lines[i][:at] + rng.choice(GARBAGE) + lines[i][at:]


def truncate(rng: random.Random, lines: list[str]) -> None:
    text = "\n".join(lines)
    del lines[:]
    lines.extend(text[: rng.randrange(len(text) + 1)].split("\n"))


MUTATIONS = [
    delete_line,
    duplicate_line,
    rename_key,
    change_value,
    break_indentation,
    insert_garbage,
    truncate,
]


def mutate(rng: random.Random, text: str) -> str:
    lines = text.splitlines()
    for _ in range(rng.randint(1, 3)):
        rng.choice(MUTATIONS)(rng, lines)
        if not lines:
            lines.append("")
    return "\n".join(lines) + "\n"


def project(tmp_path: Path) -> Path:
    for name in FILES:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("{}")
    return tmp_path / "nbops.yaml"


def test_the_unmutated_file_builds(tmp_path):
    path = project(tmp_path)
    path.write_text(VALID)
    assert graph.build(spec.load(path)).order == ["prepare", "train", "evaluate"]


def test_every_mutation_loads_or_gives_a_located_config_error(tmp_path):
    path = project(tmp_path)
    located = re.compile(re.escape(str(path)) + r":\d+(:\d+)?: \S")
    rng = random.Random(20261124)
    outcomes = {"loaded": 0, "error": 0}
    for attempt in range(500):
        text = mutate(rng, VALID)
        path.write_text(text, encoding="utf-8")
        try:
            graph.build(spec.load(path))
        except ConfigError as err:
            outcomes["error"] += 1
            context = f"mutation {attempt}:\n{text}\n-> {err}"
            assert located.match(str(err)), context
            assert err.line is not None and 1 <= err.line <= text.count("\n") + 1, context
            assert err.hint, context
        else:
            outcomes["loaded"] += 1
    assert outcomes["error"] > 150 and outcomes["loaded"] > 25, outcomes  # both paths exercised
