import ast

import numpy as np

from nbops.ipython.infer import as_metric, infer


def _infer(src):
    return infer(ast.parse(src))


def test_literal_assignments_are_params_and_computed_ones_metric_candidates():
    got = _infer("lr = 0.1\nkind = 'rf'\nlayers = [64, 32]\nacc = score(x)\nn = len(x)\n")
    assert got.params == ["lr", "kind", "layers"]
    assert got.metrics == ["acc", "n"]


def test_negative_numbers_and_annotated_literals_are_params():
    got = _infer("a = -3\nb: float = 2.5\n")
    assert got.params == ["a", "b"]


def test_private_names_nested_code_and_tuple_unpacking():
    got = _infer("_tmp = 1\nfor i in range(3):\n    inner = 1\np, r = f()\n")
    assert got.params == []
    assert got.metrics == ["p", "r"]


def test_name_rebound_to_computed_value_is_a_metric_not_a_param():
    got = _infer("best = 0\nbest = max(scores)\n")
    assert got.params == [] and got.metrics == ["best"]


def test_augmented_assignment_is_a_metric_candidate():
    assert _infer("total = 0\ntotal += 5\n").metrics == ["total"]


def test_only_finite_real_numbers_are_metrics():
    assert as_metric(0.5) == 0.5
    assert as_metric(np.float64(2)) == 2.0
    assert as_metric(True) is None
    assert as_metric("1") is None
    assert as_metric(float("nan")) is None
    assert as_metric(np.array([1, 2])) is None
