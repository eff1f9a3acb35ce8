"""The model save behind nbops.log_model: the flavor read from the model's class (no framework
imported), the requirements pinned (a pipeline's steps included), the input example and
signature, what cannot be saved named with its fix, MLflow quiet. Real LightGBM, XGBoost,
statsmodels and scikit-learn models, saved and loaded back with mlflow.pyfunc."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from importlib import import_module
from importlib.metadata import packages_distributions, version
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nbops.errors import InvalidInput
from nbops.mlflow import flavors, models

X = pd.DataFrame(np.random.default_rng(0).random((40, 3)), columns=["a", "b", "c"])
Y = (X.a + X.b > 1).astype(int)


def _fake(qualname: str) -> type:
    """A class that claims to live in a framework's module (the framework is not imported)."""
    module, _, name = qualname.rpartition(".")
    return type(name, (), {"__module__": module})


def test_the_flavor_is_read_from_the_class_without_importing_the_framework():
    code = textwrap.dedent(
        """
        import sys
        from nbops.mlflow import flavors

        def fake(qualname, *bases):
            module, _, name = qualname.rpartition(".")
            return type(name, bases, {"__module__": module})

        module = fake("torch.nn.modules.module.Module")
        seen = {
            "net": flavors.infer(fake("__main__.Net", module)()).name,
            "keras": flavors.infer(fake("keras.src.models.sequential.Sequential")()).name,
            "tf_keras": flavors.infer(fake("tf_keras.src.engine.training.Model")()).name,
            "tf": flavors.infer(fake("tensorflow.python.module.module.Module")()).name,
            "catboost": flavors.infer(fake("catboost.core.CatBoostClassifier")()).name,
            "onnx": flavors.infer(fake("onnx.onnx_ml_pb2.ModelProto")()).name,
            "hf": flavors.infer(fake("transformers.pipelines.base.Pipeline")()).name,
            "lgbm": flavors.infer(fake("lightgbm.sklearn.LGBMClassifier")()).name,
            "xgb": flavors.infer(fake("xgboost.sklearn.XGBRegressor")()).name,
            "sm": flavors.infer(fake("statsmodels.base.wrapper.ResultsWrapper")()).name,
            "py": flavors.infer(fake("mlflow.pyfunc.model.PythonModel")()).name,
        }
        heavy = ["torch", "keras", "tensorflow", "catboost", "onnx", "transformers",
                 "lightgbm", "xgboost", "statsmodels", "sklearn", "mlflow", "pandas"]
        print((seen, [m for m in heavy if m in sys.modules]))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == str(
        (
            {
                "net": "pytorch",
                "keras": "keras",
                "tf_keras": "tensorflow",
                "tf": "tensorflow",
                "catboost": "catboost",
                "onnx": "onnx",
                "hf": "transformers",
                "lgbm": "lightgbm",
                "xgb": "xgboost",
                "sm": "statsmodels",
                "py": "pyfunc",
            },
            [],
        )
    )


def test_real_models_get_their_frameworks_flavor_and_a_pipeline_is_sklearn():
    import lightgbm
    import statsmodels.api as sm
    import xgboost
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    class Tuned(lightgbm.LGBMClassifier):  # a user's subclass: still LightGBM
        pass

    class Rule:
        def predict(self, x):
            return x

    lgbm = lightgbm.LGBMClassifier(n_estimators=2, verbose=-1).fit(X, Y)
    assert flavors.infer(lgbm).name == "lightgbm"
    assert flavors.infer(Tuned()).name == "lightgbm"
    assert flavors.infer(lgbm.booster_).name == "lightgbm"
    assert flavors.infer(xgboost.XGBRegressor()).name == "xgboost"
    assert flavors.infer(xgboost.Booster()).name == "xgboost"
    assert flavors.infer(make_pipeline(StandardScaler(), lightgbm.LGBMClassifier())).name == (
        "sklearn"
    )
    assert flavors.infer(LogisticRegression()).name == "sklearn"
    assert flavors.infer(sm.OLS(Y.astype(float), X).fit()).name == "statsmodels"
    assert flavors.infer(Rule()).name == "pyfunc"


def test_what_cannot_be_saved_is_named_with_the_fix(tmp_path):
    with pytest.raises(InvalidInput, match=r"cannot tell the flavor of a builtins\.object") as e:
        flavors.infer(object())
    assert "flavor=" in str(e.value) and "nbops.log_artifact" in str(e.value)
    with pytest.raises(InvalidInput, match="a class, not a fitted model: pass an instance"):
        flavors.infer(dict)
    with pytest.raises(InvalidInput, match=r"flavor='torch' is not a flavor") as e:
        models.save(object(), str(tmp_path / "m"), "torch")
    assert "pytorch" in str(e.value) and "lightgbm" in str(e.value)
    with pytest.raises(InvalidInput, match=r"builtins\.object has no predict\(\) method"):
        models.save(object(), str(tmp_path / "m"), "pyfunc")
    with pytest.raises(InvalidInput, match=r"input_example is a builtins\.set"):
        models.head({1, 2})
    with pytest.raises(InvalidInput, match="takes a list of requirements, not a str"):
        models.requirements_given("lightgbm")
    with pytest.raises(InvalidInput, match=r"pip_requirements\[1\] 'light gbm!' is not a pip"):
        models.requirements_given(["pandas", "light gbm!"])
    with pytest.raises(InvalidInput, match=r"pip_requirements\[0\] is 3"):
        models.requirements_given([3])
    assert not (tmp_path / "m").exists()


def test_requirements_pin_the_installed_versions_of_the_flavor_and_of_a_pipelines_steps():
    import lightgbm
    import xgboost
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    pipe = make_pipeline(FunctionTransformer(np.log1p), lightgbm.LGBMClassifier())
    reqs = flavors.requirements(flavors.infer(pipe), pipe)
    assert reqs[:2] == [
        f"scikit-learn=={version('scikit-learn')}",
        f"cloudpickle=={version('cloudpickle')}",
    ]
    assert f"lightgbm=={version('lightgbm')}" in reqs  # a step's framework
    assert len({r.split("==")[0].lower() for r in reqs}) == len(reqs)  # each once
    # XGBoost's module is provided here by the xgboost-cpu distribution: the pin names it
    (provider,) = packages_distributions()["xgboost"]
    reqs = flavors.requirements(flavors.infer(xgboost.XGBRegressor()), xgboost.XGBRegressor())
    assert reqs[0] == f"{provider}=={version(provider)}"
    assert f"scikit-learn=={version('scikit-learn')}" in reqs  # its sklearn API needs it


def test_the_users_own_module_ships_with_the_model_and_is_no_requirement(tmp_path, monkeypatch):
    (tmp_path / "rules.py").write_text(
        "class Rule:\n    def predict(self, x):\n        return x['a'] > 0.5\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    rule = import_module("rules").Rule()
    assert flavors.local_code(flavors.model_modules(rule), tmp_path) == [
        str((tmp_path / "rules.py").resolve())
    ]
    assert flavors.local_code({"numpy"}, tmp_path) == []  # installed packages are requirements
    assert not any(r.startswith("rules") for r in flavors.requirements(flavors.infer(rule), rule))
    monkeypatch.setenv("NBOPS_PROJECT_ROOT", str(tmp_path))
    models.save(rule, str(tmp_path / "m"), None)
    assert (tmp_path / "m" / "code" / "rules.py").is_file()  # MLflow puts code/ on sys.path


def _mlmodel(path: Path) -> dict[str, object]:
    import yaml

    return dict(yaml.safe_load((path / "MLmodel").read_text()))


def test_a_save_writes_flavor_example_signature_requirements_and_prints_nothing(tmp_path, capfd):
    import lightgbm
    import mlflow.pyfunc
    import statsmodels.api as sm
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    ints = X.assign(n=np.arange(len(X)))  # integer column: MLflow warns about it, unseen here
    lgbm = lightgbm.LGBMClassifier(n_estimators=5, verbose=-1).fit(ints, Y)
    assert models.save(lgbm, str(tmp_path / "lgbm"), None, input_example=ints) == "lightgbm"
    mlmodel = _mlmodel(tmp_path / "lgbm")
    assert {"lightgbm", "python_function"} <= set(mlmodel["flavors"])  # type: ignore[arg-type]
    inputs = json.loads(mlmodel["signature"]["inputs"])  # type: ignore[index]
    assert [c["name"] for c in inputs] == ["a", "b", "c", "n"]
    example = json.loads((tmp_path / "lgbm" / "input_example.json").read_text())
    assert len(example["data"]) == models.EXAMPLE_ROWS
    loaded = mlflow.pyfunc.load_model(str(tmp_path / "lgbm"))
    assert list(loaded.predict(ints.iloc[:5])) == list(lgbm.predict(ints.iloc[:5]))

    # no example: no signature, nothing predicted; pip_requirements= replaces nbops' list
    models.save(lgbm, str(tmp_path / "plain"), None, pip_requirements=["lightgbm==4.7.0"])
    assert "signature" not in _mlmodel(tmp_path / "plain")
    assert not (tmp_path / "plain" / "input_example.json").exists()
    reqs = (tmp_path / "plain" / "requirements.txt").read_text().split()
    assert reqs[1:] == ["lightgbm==4.7.0"] and reqs[0].startswith("mlflow==")

    # a pipeline with a lambda: skops (MLflow's default) would refuse it; cloudpickle saves it
    pipe = make_pipeline(FunctionTransformer(lambda v: v * 2), LogisticRegression()).fit(X, Y)
    assert models.save(pipe, str(tmp_path / "pipe"), None, input_example=X) == "sklearn"
    assert list(mlflow.pyfunc.load_model(str(tmp_path / "pipe")).predict(X)) == list(
        pipe.predict(X)
    )
    exog = sm.add_constant(X)
    ols = sm.OLS(Y.astype(float), exog).fit()
    assert models.save(ols, str(tmp_path / "ols"), None, input_example=exog) == "statsmodels"
    served = mlflow.pyfunc.load_model(str(tmp_path / "ols")).predict(exog.iloc[:3])
    assert np.allclose(np.asarray(served), ols.predict(exog.iloc[:3]))
    printed = capfd.readouterr()
    assert printed.out == "" and printed.err == ""


def test_a_model_that_cannot_predict_on_the_example_or_a_wrong_flavor_is_named(tmp_path):
    import lightgbm
    from sklearn.linear_model import LogisticRegression

    lgbm = lightgbm.LGBMClassifier(n_estimators=2, verbose=-1).fit(X, Y)
    with pytest.raises(InvalidInput, match=r"input_example: lightgbm\.sklearn\.LGBMClassifier "):
        models.save(lgbm, str(tmp_path / "a"), None, input_example=X[["a"]])
    with pytest.raises(InvalidInput, match=r"MLflow's xgboost flavor could not save a sklearn\."):
        models.save(LogisticRegression().fit(X, Y), str(tmp_path / "b"), "xgboost")


def test_a_predict_model_is_saved_by_value_and_loads_where_nbops_is_not(tmp_path):
    class Rule:  # local: cloudpickle saves it by value, as it does a notebook's class
        def __init__(self, t: float) -> None:
            self.t = t

        def predict(self, x: pd.DataFrame) -> np.ndarray:
            return (x["a"].to_numpy() > self.t).astype(int)

    assert models.save(Rule(0.5), str(tmp_path / "m"), None, input_example=X) == "pyfunc"
    reqs = (tmp_path / "m" / "requirements.txt").read_text().split()
    assert f"cloudpickle=={version('cloudpickle')}" in reqs
    code = (
        "import sys\nsys.modules['nbops'] = None  # not importable\n"
        "import mlflow.pyfunc, pandas as pd\n"
        f"m = mlflow.pyfunc.load_model({str(tmp_path / 'm')!r})\n"
        "print(list(m.predict(pd.DataFrame({'a': [0.2, 0.8], 'b': [0, 0], 'c': [0, 0]}))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd="/", check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[np.int64(0), np.int64(1)]"
    assert out.stderr == ""  # no "add type hints" warning from MLflow at load


def test_mlflow_still_checks_requirements_where_nbops_skips_it():
    """An MLflow upgrade that moves the check fails here (the save would get 1.8 s slower)."""
    module, name = models.REQUIREMENT_CHECK
    env = import_module(module)
    assert callable(getattr(env, name))
    assert name in env._process_pip_requirements.__code__.co_names


_ROWS = st.one_of(
    st.lists(st.integers(), max_size=30),
    st.dictionaries(st.text(max_size=5), st.lists(st.floats(), max_size=30), max_size=4),
    st.integers(min_value=0, max_value=30).map(lambda n: np.zeros((n, 2))),
    st.integers(min_value=0, max_value=30).map(lambda n: pd.DataFrame({"a": range(n)})),
    st.text(max_size=20),
    st.none(),
    st.integers(),
    st.sets(st.integers(), max_size=3),
)


@settings(max_examples=200, deadline=None)
@given(_ROWS)
def test_an_input_example_is_cut_to_its_first_rows_or_refused_by_name(example):
    try:
        got = models.head(example)
    except InvalidInput as e:
        assert "input_example is a" in str(e)
        return
    n = models.EXAMPLE_ROWS
    if isinstance(example, dict):
        assert all(len(v) <= n for v in got.values())
    elif not isinstance(example, str):
        assert len(got) == min(len(example), n)


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.lists(st.one_of(st.text(max_size=30), st.integers())), st.text()))
def test_pip_requirements_are_accepted_as_pip_writes_them_or_refused_by_item(reqs):
    try:
        got = models.requirements_given(reqs)
    except InvalidInput as e:
        assert "pip_requirements" in str(e)
        return
    assert got == [r.strip() for r in reqs]


def test_every_flavors_mlflow_module_takes_what_nbops_passes_it():
    """MLflow's save_model of each flavor (keras and tensorflow are left out: MLflow's modules
    import the framework, not installed here) takes the arguments nbops gives it."""
    import inspect

    for name in flavors.FLAVORS.keys() - {"keras", "tensorflow"}:
        module = import_module(flavors.FLAVORS[name].mlflow_module)
        params = set(inspect.signature(module.save_model).parameters)
        assert {"signature", "input_example", "pip_requirements", "code_paths"} <= params, name
    pytorch = import_module("mlflow.pytorch")
    assert pytorch.SERIALIZATION_FORMAT_PICKLE == "pickle"  # what nbops saves torch models as
    for name in ("sklearn", "lightgbm", "pytorch"):
        save = import_module(flavors.FLAVORS[name].mlflow_module).save_model
        assert "serialization_format" in inspect.signature(save).parameters, name
