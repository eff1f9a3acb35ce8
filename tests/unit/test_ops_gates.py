"""Promotion gates are plain functions over plain data: a Gate of nbops.yaml, a run's stage and
metrics, and the current alias holder's metrics in, GateOutcomes (and the refusal) out."""

from __future__ import annotations

import pytest

from nbops.errors import GateFailed, InvalidInput
from nbops.ops.gates import GateOutcome, check, refusal
from nbops.pipeline.spec import Gate

GATE = Gate(stage="train", require={"accuracy": ">= 0.9"}, better_than_current="log_loss")


def test_every_check_of_a_gate_is_one_gate_outcome_naming_it():
    outcomes = check(GATE, "wine", "r1", "train", {"accuracy": 0.95, "log_loss": 0.2}, None)
    assert outcomes == [
        GateOutcome("stage train", True, "run r1 is a run of stage 'train'"),
        GateOutcome("require accuracy >= 0.9", True, "accuracy = 0.95"),
        GateOutcome(
            "better_than_current log_loss", True, "log_loss = 0.2; no version holds the alias yet"
        ),
    ]
    assert refusal("wine", "r1", outcomes) is None


def test_a_loss_must_be_lower_than_the_current_holders_to_pass():
    current = ("version 1 (@champion, run r0)", {"log_loss": 0.1})
    outcomes = check(GATE, "wine", "r1", "train", {"accuracy": 0.95, "log_loss": 0.2}, current)
    assert outcomes[-1] == GateOutcome(
        "better_than_current log_loss",
        False,
        "log_loss = 0.2 vs 0.1 of version 1 (@champion, run r0) (lower is better)",
    )
    err = refusal("wine", "r1", outcomes)
    assert isinstance(err, GateFailed) and err.exit_code == 1
    assert "gate better_than_current log_loss failed" in err.message


def test_the_refusal_names_the_first_failed_check_and_counts_the_rest():
    outcomes = check(GATE, "wine", "r1", "evaluate", {"accuracy": 0.5, "log_loss": 0.2}, None)
    err = refusal("wine", "r1", outcomes)
    assert err is not None
    said = "gate stage train failed: run r1 is a run of stage 'evaluate', not 'train' (and 1 more)"
    assert said in err.message


def test_a_gate_on_a_metric_the_run_never_logged_is_bad_input_not_a_failed_gate():
    with pytest.raises(InvalidInput, match="needs metric 'accuracy', which run r1 never logged"):
        check(GATE, "wine", "r1", "train", {"log_loss": 0.2}, None)


def test_the_stage_gate_accepts_a_sweep_point_of_the_stage_and_names_every_other_kind():
    point = {"nbops.stage": "train", "nbops.sweep_point": "train[C=0.1]"}
    (o, *_) = check(
        GATE, "wine", "r1", "train", {"accuracy": 0.95, "log_loss": 0.2}, None, run_tags=point
    )
    assert o == GateOutcome(
        "stage train", True, "run r1 is sweep point train[C=0.1] of stage 'train'"
    )
    pipeline = {"nbops.pipeline": "nbops.yaml"}
    (o, *_) = check(
        GATE, "wine", "r2", None, {"accuracy": 0.95, "log_loss": 0.2}, None, run_tags=pipeline
    )
    assert not o.passed
    assert o.detail.startswith(
        "run r2 is the pipeline run of an `nbops run`, not a run of stage 'train'"
    )
    (o, *_) = check(
        GATE, "wine", "r3", None, {"accuracy": 0.95, "log_loss": 0.2}, None, run_tags={}
    )
    assert (
        not o.passed
        and "run r3 is not a pipeline stage run (a run that `nbops run` did not make" in o.detail
    )
    assert "it has no nbops.stage tag, and the gate needs a run of stage 'train'" in o.detail
    (o, *_) = check(GATE, "wine", "r4", None, {"accuracy": 0.95, "log_loss": 0.2}, None)
    assert o.detail.startswith("run r4 is not a pipeline stage run: it has no nbops.stage tag")
