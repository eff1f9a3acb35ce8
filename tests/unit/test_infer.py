"""The %%track inference rules on realistic cells (AST level): what a person would log by hand."""

import ast
from types import SimpleNamespace

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nbops.ipython.infer import MAX_PARAM_TEXT, as_metric, as_param, plan
from nbops.ipython.infer_record import Recorder, instrument, metric_values


def _plan(src):
    return plan(ast.parse(src))


def _rule(p, name):
    (choice,) = [c for c in p.choices if c.name == name]
    return choice.kind, choice.rule


def test_the_readme_example_logs_its_settings_and_its_score():
    p = _plan(
        "C = 1.0\nkind = 'logreg'\nmodel = LogisticRegression(C=C).fit(X_train, y_train)\n"
        "accuracy = model.score(X_test, y_test)\nplt.plot(losses)\n"
    )
    assert p.params == ["C", "kind"] and p.metrics == ["accuracy"]
    assert "feeds LogisticRegression" in _rule(p, "C")[1]
    assert "does not read" in _rule(p, "kind")[1]
    assert _rule(p, "model") == (
        "skip",
        "an object built by LogisticRegression(C=C).fit(...), not a value",
    )


def test_loop_counters_built_up_lists_styling_data_and_timestamps_are_left_out():
    p = _plan(
        "i = 0\ny_true = []\nlw = 2\ncolors = ['navy', 'darkorange']\nmarkers = ('o', 's')\n"
        "X = [[0, 1], [1, 0]]\nstart_time = time.time()\nn_rows = len(data)\n"
        "for clf, color, marker in zip(classifiers, colors, markers):\n"
        "    clf.fit(X_train, y_train)\n    y_true.append(y_test)\n    i += 1\n"
        "    plt.scatter(a, b, color=color, marker=marker, lw=lw)\n"
        "ax.set_xlim(0, 10)\nlow, high = ax.get_ylim()\n"
    )
    assert p.params == [] and p.metrics == []
    assert "augmented" in _rule(p, "i")[1]
    assert "built up" in _rule(p, "y_true")[1]
    for styling in ("lw", "colors", "markers"):
        assert _rule(p, styling)[1].startswith("plot styling"), styling
    assert _rule(p, "X")[1].startswith("data")
    assert "time.time()" in _rule(p, "start_time")[1]
    assert "len(data)" in _rule(p, "n_rows")[1]
    assert _rule(p, "clf") == ("skip", "a loop variable")


def test_literals_feed_a_fit_through_other_names_loops_and_searches():
    p = _plan(
        "n_samples = 500\nseed = 0\ntest_size = 0.2\nparam_grid = {'C': [0.1, 1, 10]}\n"
        "Cs = [0.01, 0.1]\nn_epochs = 5\nthreshold = 0.5\nlabel = 'unused by anything'\n"
        "title = 'scores'\n"
        "X, y = make_classification(n_samples=n_samples, random_state=seed)\n"
        "X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=test_size)\n"
        "search = GridSearchCV(SVC(), param_grid).fit(X_train, y_train)\n"
        "for c in Cs:\n    LogisticRegression(C=c).fit(X_train, y_train)\n"
        "for epoch in range(n_epochs):\n    net.partial_fit(X_train, y_train)\n"
        "acc = accuracy_score(y_test, proba > threshold)\nprint(title)\n"
    )
    assert p.params == [
        "n_samples",
        "seed",
        "test_size",
        "param_grid",
        "Cs",
        "n_epochs",
        "threshold",
        "label",
    ]
    assert "how often a loop fits" in _rule(p, "n_epochs")[1]
    assert "reaches no fit" in _rule(p, "title")[1]


def test_a_tuple_of_literals_is_a_param_like_a_single_literal_never_metrics():
    p = _plan("shape = (64, 64)\nsize, depth = 3, 4\nlr: float = 1e-3\nmodel = MLP(shape, lr)\n")
    assert p.params == ["shape", "size", "depth", "lr"] and p.metrics == []


def test_scores_assigned_printed_appended_and_searched_are_metrics():
    p = _plan(
        "mse = mean_squared_error(y_test, pred)\nrmse = np.sqrt(mse)\n"
        "print(f'R2: {r2_score(y_test, pred):.3f}')\nprint('Silhouette:', silhouette_score(X, k))\n"
        "print('AUC %.2f' % roc_auc_score(y, s))\n"
        "print('MAE {:.2f}'.format(mean_absolute_error(y, p)))\n"
        "scores = cross_val_score(model, X, y, cv=5)\nprint(f'cv: {scores.mean():.2f}')\n"
        "search.fit(X, y)\nbest = search.best_score_\nprint(search.best_params_)\n"
        "report = classification_report(y, p, output_dict=True)\n"
        "accuracy = (pred == y).sum() / len(y)\nclf.score(X, y)\n"
    )
    assert p.metrics == [
        "mse",
        "rmse",
        "r2",
        "silhouette",
        "auc",
        "mae",
        "scores",
        "cv",
        "best",
        "report",
        "accuracy",
        "clf_score",
    ]
    assert [c.name for c in p.choices if c.kind == "param"] == ["best_params.*"]
    assert p.params == []  # best_params_ is recorded as it is read, not looked up by name


def test_scores_in_loops_and_comprehensions_are_recorded_at_each_step():
    src = (
        "history = []\nfor epoch in range(3):\n    loss = 1.0 / (epoch + 1)\n"
        "    history.append(loss)\nfold_scores = [f1_score(a, b) for a, b in folds]\n"
    )
    tree = ast.parse(src)
    p = plan(tree)
    assert p.metrics == ["loss", "fold_scores"]
    rec = Recorder()
    ns = {
        "__nbops_record__": rec,
        "folds": [([0, 1], [0, 1]), ([1, 1], [0, 1])],
        "f1_score": lambda a, b: sum(x == y for x, y in zip(a, b, strict=True)) / len(a),
    }
    rec.start()
    exec(compile(instrument(tree, p), "<cell>", "exec"), ns)  # noqa: S102
    rec.stop()
    assert rec.metrics == {"loss": [1.0, 0.5, 1 / 3], "fold_scores": [1.0, 0.5]}
    assert ns["history"] == [1.0, 0.5, 1 / 3]  # the cell computes what it computed before


def test_code_in_functions_and_lambdas_is_not_instrumented():
    tree = ast.parse(
        "def evaluate(m):\n    return accuracy_score(y, m.predict(X))\n"
        "key = lambda m: f1_score(y, m)\n"
    )
    p = plan(tree)
    assert p.sites == {} and p.metrics == []


def test_recorded_values_become_numbers_histories_or_flattened_reports():
    assert metric_values("acc", np.float32(0.5)) == [("acc", 0.5)]
    assert metric_values("scores", np.array([0.9, 0.8])) == [("scores", 0.9), ("scores", 0.8)]
    report = {
        "0": {"precision": 1.0, "recall": 0.5, "f1-score": 0.6, "support": 10},
        "accuracy": 0.75,
        "macro avg": {"precision": 0.8, "recall": 0.7, "f1-score": 0.7, "support": 20},
        "weighted avg": {"precision": 0.8, "recall": 0.7, "f1-score": 0.7, "support": 20},
    }
    got = dict(metric_values("report", report))
    assert got["report.accuracy"] == 0.75 and got["report.macro_avg.f1-score"] == 0.7
    assert not any("support" in k or k.startswith("report.0") for k in got)
    cv = {"fit_time": np.array([0.1, 0.2]), "test_score": np.array([0.9, 0.7])}
    assert metric_values("cv", cv) == [("cv.test_score", 0.9), ("cv.test_score", 0.7)]
    assert metric_values("model", object()) == []
    assert metric_values("text", "0.5") == []


def test_params_are_literal_values_with_a_length_cap():
    assert as_param(0.1) == "0.1" and as_param({"C": [1, 10]}) == "{'C': [1, 10]}"
    assert as_param(object()) is None and as_param(np.zeros(3)) is None
    assert as_param("x" * MAX_PARAM_TEXT) is not None
    assert as_param("x" * (MAX_PARAM_TEXT + 1)) is None
    assert as_param(list(range(200))) is None


def test_only_finite_real_numbers_are_metrics():
    assert as_metric(0.5) == 0.5
    assert as_metric(np.float64(2)) == 2.0
    assert as_metric(np.array(3.0)) == 3.0  # a 0-d array (or tensor) is a number
    assert as_metric(True) is None
    assert as_metric("1") is None
    assert as_metric(float("nan")) is None
    assert as_metric(np.array([1, 2])) is None


_names = st.sampled_from(["acc", "X", "i", "lr", "model", "scores", "lw", "plt", "ax", "np"])
_exprs = st.one_of(
    st.integers(-5, 5).map(str),
    _names,
    st.builds(
        lambda f, a: f"{f}({a})",
        st.sampled_from(
            ["accuracy_score", "LogisticRegression", "plt.plot", "len", "range", "np.mean"]
        ),
        _names,
    ),
    st.builds(lambda a, b: f"[{a}, {b}]", _names, _names),
    st.builds(lambda a: f"{a}.mean()", _names),
    st.builds(lambda a: f"f'{{{a}:.2f}}'", _names),
)
_stmts = st.one_of(
    st.builds(lambda n, e: f"{n} = {e}", _names, _exprs),
    st.builds(lambda n, e: f"{n} += {e}", _names, _exprs),
    st.builds(lambda e: f"print('score:', {e})", _exprs),
    st.builds(lambda n, e: f"{n}.append({e})", _names, _exprs),
    st.builds(lambda n, e: f"for {n} in {e}:\n    pass", _names, _exprs),
    st.builds(lambda n, e: f"{n} = [{e} for _ in {n}]", _names, _exprs),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_stmts, min_size=1, max_size=8))
def test_random_cells_never_raise_and_instrumenting_keeps_them_valid_python(lines):
    src = "\n".join(lines)
    tree = ast.parse(src)
    p = plan(tree)
    compile(instrument(tree, p), "<cell>", "exec")  # still compiles
    assert not set(p.params) & set(p.metrics)
    for c in p.choices:
        assert c.kind in ("param", "metric", "skip") and c.rule


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_source_text_never_raises(text):
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return
    compile(instrument(tree, plan(tree)), "<cell>", "exec")


def test_unpacked_stored_and_printed_reports_are_recorded_under_their_names():
    src = (
        "scores = {}\nfor name in ['a', 'b']:\n    scores[name] = clf.score(X, y)\n"
        "loss, acc = model.evaluate(X, y)\np, r, f, _ = precision_recall_fscore_support(y, q)\n"
        "print(classification_report(y, q))\ncv = cross_validate(model, X, y)\n"
    )
    tree = ast.parse(src)
    p = plan(tree)
    assert p.metrics == ["scores", "loss", "acc", "p", "r", "f", "classification_report", "cv"]
    text = (
        "              precision    recall  f1-score   support\n\n"
        "           0       1.00      0.50      0.67         2\n\n"
        "    accuracy                           0.75         4\n"
        "   macro avg       0.83      0.75      0.73         4\n"
        "weighted avg       0.83      0.75      0.73         4\n"
    )

    class Model:
        def score(self, X, y):
            return 0.5

        def evaluate(self, X, y):
            return [0.25, 0.875]

    rec = Recorder()
    ns = {
        "__nbops_record__": rec,
        "clf": Model(),
        "model": Model(),
        "X": None,
        "y": None,
        "q": None,
        "precision_recall_fscore_support": lambda y, q: (0.1, 0.2, 0.3, None),
        "classification_report": lambda y, q: text,
        "cross_validate": lambda m, X, y: {"fit_time": [0.1], "test_score": [0.6, 0.7]},
        "print": lambda *a: None,
    }
    rec.start()
    exec(compile(instrument(tree, p), "<cell>", "exec"), ns)  # noqa: S102
    rec.stop()
    assert rec.metrics["scores"] == [0.5, 0.5]
    assert (rec.metrics["loss"], rec.metrics["acc"]) == ([0.25], [0.875])
    assert (rec.metrics["p"], rec.metrics["f"]) == ([0.1], [0.3]) and "_" not in rec.metrics
    assert rec.metrics["classification_report.accuracy"] == [0.75]
    assert rec.metrics["classification_report.weighted_avg.f1-score"] == [0.73]
    assert rec.metrics["cv.test_score"] == [0.6, 0.7] and "cv.fit_time" not in rec.metrics
    assert ns["loss"] == 0.25 and ns["scores"] == {"a": 0.5, "b": 0.5}


_HELPERS = {
    "accuracy_score": lambda a: 0.5,
    "LogisticRegression": lambda a: ("model", 1),
    "plt": SimpleNamespace(plot=lambda a: None),
    "np": SimpleNamespace(mean=lambda a: 0.25),
    "print": lambda *a: None,
}


def _run(code, rec):
    ns = {n: [1, 2] for n in ("acc", "X", "i", "lr", "model", "scores", "lw", "ax")}
    ns.update(_HELPERS, __nbops_record__=rec)
    try:
        exec(code, ns)  # noqa: S102
    except Exception as exc:  # noqa: BLE001 - the same error either way
        return type(exc).__name__
    # repr: a cell can build self-referencing lists (acc += [acc])
    return {k: repr(v) for k, v in ns.items() if k not in ("__builtins__", "__nbops_record__")}


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_stmts, min_size=1, max_size=6))
def test_instrumenting_a_cell_never_changes_what_it_computes(lines):
    src = "\n".join(lines)
    plain = _run(compile(src, "<cell>", "exec"), Recorder())
    rec = Recorder()
    rec.start()
    tree = ast.parse(src)
    recorded = _run(compile(instrument(tree, plan(tree)), "<cell>", "exec"), rec)
    assert recorded == plain


def test_the_recorder_bounds_what_a_hostile_or_huge_loop_can_record():
    rec = Recorder()
    rec.start()
    for i in range(3000):
        rec("cv", {f"test_{i}": 0.5})  # a dict whose keys change every step
    for _ in range(20_000):
        rec("loss", 0.1)
    rec.param("best_params", {"k" * 500: 1, "ok": object()})
    rec.stop()
    assert len(rec.metrics) == 1000 and len(rec.metrics["cv.test_0"]) == 1
    assert "more than 1000 metrics" in rec.dropped["cv.test_2999"]
    assert "loss" not in rec.metrics  # the key budget was spent: said in dropped
    (key,) = rec.params
    assert key == "best_params." + "k" * 100 and rec.params[key] == "1"
    assert rec("after", 1.0) == 1.0 and "after" not in rec.metrics  # inert once stopped


def test_predictions_named_like_scores_are_data_and_named_scores_must_be_numbers():
    src = (
        "y_score = clf.decision_function(X_test)\nscore_proba = clf.predict_proba(X_test)\n"
        "val_loss = losses[-3:]\nf1 = 2 * p * r / (p + r)\n"
    )
    tree = ast.parse(src)
    p = plan(tree)
    assert p.metrics == ["val_loss", "f1"]
    assert _rule(p, "y_score")[0] == "skip" and _rule(p, "score_proba")[0] == "skip"
    rec = Recorder()
    ns = {"__nbops_record__": rec, "losses": [0.3, 0.2, 0.1], "p": 0.5, "r": 1.0}
    ns["clf"] = SimpleNamespace(decision_function=list, predict_proba=list)
    ns["X_test"] = [1.0, 2.0]
    rec.start()
    exec(compile(instrument(tree, p), "<cell>", "exec"), ns)  # noqa: S102
    rec.stop()
    assert rec.metrics == {"f1": [2 * 0.5 / 1.5]}  # a list named val_loss is not a history
    assert rec.dropped["val_loss"] == "not a number (list)"


def test_the_recorder_never_consumes_an_iterator_the_cell_reads():
    """A score-named value or an unpacked evaluation that is an iterator (a generator) passes
    through the recorder untouched: reading it would leave the cell nothing to read."""
    from nbops.ipython.infer_record import Recorder

    rec = Recorder()
    rec.start()
    gen = (x / 10 for x in range(3))
    assert list(rec("val_scores", gen)) == [0.0, 0.1, 0.2]
    pair = iter([0.5, 0.9])
    assert list(rec.unpack("loss,acc", pair)) == [0.5, 0.9]
    assert rec.metrics == {} and set(rec.dropped) == {"val_scores", "loss,acc"}
    # a list is read (and still returned whole)
    assert rec("fold_scores", [0.8, 0.9]) == [0.8, 0.9]
    assert rec.metrics == {"fold_scores": [0.8, 0.9]}
