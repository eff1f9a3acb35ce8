"""``nbops.log_model``: save a model in MLflow's format into the run's spool, so it lands as
``<name>/`` in the run's artifacts with an ``MLmodel`` file, registrable as
``runs:/<run_id>/<name>`` and loadable with ``mlflow.pyfunc.load_model``.

The flavor comes from the model's class (:mod:`nbops.mlflow.flavors`), the requirements are
written explicitly (the flavor's packages at their installed versions: no inference in a
subprocess), and a signature is inferred only from an ``input_example`` (the model predicts on
those few rows). MLflow's own log lines and warnings during the save are not shown. Importing
MLflow (and the framework's MLflow module) here is the price of an explicit model save.
"""

from __future__ import annotations

import inspect
import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import import_module
from typing import Any

from nbops import project
from nbops.errors import InvalidInput, NbopsError
from nbops.mlflow import flavors, verbose
from nbops.mlflow.flavors import Flavor, qualified

#: rows of an ``input_example`` kept (a DataFrame, array or list; each column of a dict)
EXAMPLE_ROWS = 10

#: where MLflow 3.17 checks the requirements it is given against this environment: a scan of
#: every installed distribution (1.8 s on the first save in a process). nbops pins the installed
#: versions itself, so the check can only agree; it is skipped for the save (tests/unit/
#: test_models_flavors.py fails when an MLflow upgrade moves it).
REQUIREMENT_CHECK = ("mlflow.utils.environment", "warn_dependency_requirement_mismatches")


def infer_flavor(model: Any) -> str:
    """The name of the flavor ``model`` is saved in (see :mod:`nbops.mlflow.flavors`)."""
    return flavors.infer(model).name


def save(
    model: Any,
    path: str,
    flavor: str | None,
    *,
    input_example: Any = None,
    pip_requirements: list[str] | None = None,
) -> str:
    """Save ``model`` as an MLflow model directory at ``path``; returns the flavor used.

    ``flavor``: a name of :data:`flavors.FLAVORS`, or None to infer it from the model's class.
    ``input_example``: a few rows of real input (a pandas DataFrame, a numpy array, a dict of
    columns or a list of rows; the first :data:`EXAMPLE_ROWS` are kept), saved with the model
    and, with the model's predictions on them, its signature. Without one the model has no
    signature and nothing is predicted. ``pip_requirements`` replaces the requirements nbops
    writes (the flavor's packages and those of the model's classes, pinned to the installed
    versions); MLflow adds ``mlflow`` itself.
    """
    chosen = flavors.flavor(flavor) if flavor is not None else flavors.infer(model)
    if chosen.name == "pyfunc" and not callable(getattr(model, "predict", None)):
        raise InvalidInput(
            f"log_model: a {qualified(type(model))} has no predict() method, "
            "which flavor='pyfunc' calls",
            f"give it one, or pass the flavor of its framework ({flavors.names()})",
        )
    reqs = (
        requirements_given(pip_requirements)
        if pip_requirements is not None
        else flavors.requirements(chosen, model)
    )
    example = head(input_example) if input_example is not None else None
    signature = _signature(chosen, model, example) if example is not None else None
    try:
        root = project.find_root()
    except OSError:
        root = None
    code = flavors.local_code(flavors.model_modules(model), root)
    with _quiet(), _requirements_taken_as_given():
        try:
            _save(chosen, model, path, signature, example, reqs, code)
        except NbopsError:
            raise
        except Exception as e:  # noqa: BLE001 - MLflow's or the framework's refusal, named
            raise InvalidInput(
                f"log_model: MLflow's {chosen.name} flavor could not save a "
                f"{qualified(type(model))}: {type(e).__name__}: {e}",
                f"pass the flavor of the model's framework ({flavors.names()}), or save it "
                "yourself and log the file with nbops.log_artifact",
            ) from e
    return chosen.name


def requirements_given(reqs: Any) -> list[str]:
    """``pip_requirements=`` checked: a list of requirement strings (``"lightgbm==4.7.0"``, or
    pip's ``-r file`` / ``-c file`` lines)."""
    from packaging.requirements import InvalidRequirement, Requirement

    if isinstance(reqs, str) or not isinstance(reqs, (list, tuple)):
        raise InvalidInput(
            f"log_model: pip_requirements= takes a list of requirements, not a "
            f"{type(reqs).__name__} ({reqs!r:.60})",
            'e.g. pip_requirements=["lightgbm==4.7.0", "pandas"]',
        )
    out = []
    for i, r in enumerate(reqs):
        if not isinstance(r, str) or not r.strip():
            raise InvalidInput(
                f"log_model: pip_requirements[{i}] is {r!r}, not a requirement",
                'each item is a string such as "lightgbm==4.7.0"',
            )
        r = r.strip()
        if not r.startswith("-"):
            try:
                Requirement(r)
            except InvalidRequirement as e:
                raise InvalidInput(
                    f"log_model: pip_requirements[{i}] {r!r} is not a pip requirement: {e}",
                    'write it as pip does, e.g. "lightgbm==4.7.0" or "pandas>=2"',
                ) from None
        out.append(r)
    return out


def _is(value: Any, module: str, *names: str) -> bool:
    """Whether ``value``'s class (or a base) is ``module``'s class named one of ``names``,
    without importing ``module``."""
    return any(
        c.__module__.split(".")[0] == module and c.__name__ in names for c in type(value).__mro__
    )


def head(example: Any, rows: int = EXAMPLE_ROWS) -> Any:
    """The first ``rows`` rows of an input example; InvalidInput for what MLflow cannot store."""
    if _is(example, "pandas", "DataFrame"):
        return example.head(rows)
    if _is(example, "pandas", "Series"):
        return example.head(rows).to_frame()
    if _is(example, "numpy", "ndarray"):
        return example[:rows] if example.ndim > 0 else example
    if _is(example, "scipy", "csr_matrix", "csc_matrix", "csr_array", "csc_array"):
        return example[:rows]
    if _is(example, "torch", "Tensor"):
        return example[:rows].detach().cpu().numpy()
    if isinstance(example, dict) and all(isinstance(k, str) for k in example):
        return {k: _rows(v, rows) for k, v in example.items()}
    if isinstance(example, (list, tuple)):
        return list(example[:rows])
    if isinstance(example, str):
        return example
    raise InvalidInput(
        f"log_model: input_example is a {qualified(type(example))}, which MLflow cannot store",
        "pass a few rows as a pandas DataFrame, a numpy array, a dict of columns "
        "({name: values}) or a list of rows",
    )


def _rows(value: Any, rows: int) -> Any:
    if isinstance(value, (list, tuple)) or (_is(value, "numpy", "ndarray") and value.ndim > 0):
        return value[:rows]
    return value


def _predictions(chosen: Flavor, model: Any, example: Any) -> Any:
    """What the model returns for ``example``, as its MLflow pyfunc would; None where MLflow's
    own save infers the signature (onnx, transformers, a user's PythonModel)."""
    if chosen.name == "pytorch":
        import numpy as np

        torch = import_module("torch")  # imported already: the model is a torch Module
        # as MLflow's pytorch pyfunc does: a DataFrame becomes float32, an array stays as it is
        if hasattr(example, "to_numpy"):
            values = example.to_numpy(dtype=np.float32)
        else:
            values = np.asarray(example)
        with torch.no_grad():
            out = model(torch.from_numpy(values))
        return out.detach().cpu().numpy() if hasattr(out, "detach") else out
    if chosen.name == "keras":
        return model.predict(example, verbose=0)
    if chosen.name == "xgboost" and _is(model, "xgboost", "Booster"):
        xgboost = import_module("xgboost")
        return model.predict(xgboost.DMatrix(example))
    if chosen.name in ("onnx", "transformers") or _is_python_model(model):
        return None
    return model.predict(example)


def _signature(chosen: Flavor, model: Any, example: Any) -> Any:
    try:
        output = _predictions(chosen, model, example)
    except Exception as e:  # noqa: BLE001 - the user's model refused the rows: say so
        raise InvalidInput(
            f"log_model: input_example: {qualified(type(model))} could not predict on it: "
            f"{type(e).__name__}: {e}",
            "pass a few rows of the input the model was fitted on (same columns and types)",
        ) from e
    if output is None:
        return None
    from mlflow.models import infer_signature

    with _quiet():
        try:
            return infer_signature(example, output)
        except Exception as e:  # noqa: BLE001 - a type MLflow's schema cannot describe
            raise InvalidInput(
                f"log_model: no signature can be inferred from input_example and the model's "
                f"output ({type(output).__name__}): {type(e).__name__}: {e}",
                "pass the rows as a pandas DataFrame or a numpy array",
            ) from e


def _is_python_model(model: Any) -> bool:
    return any(qualified(c) == "mlflow.pyfunc.model.PythonModel" for c in type(model).__mro__)


def _predicting(model: Any) -> Any:
    """``model`` as an MLflow PythonModel calling its ``predict``; the class is made here, not
    importable, so cloudpickle saves it by value and loading it needs no nbops."""
    import mlflow.pyfunc

    pd = import_module("pandas")  # MLflow's own dependency

    def __init__(self: Any, inner: Any) -> None:
        self.inner = inner

    def predict(self: Any, context: Any, model_input: Any, params: Any = None) -> Any:
        return self.inner.predict(model_input)

    # a hint MLflow takes as "no schema from hints": without one (or with a string, as this
    # module's annotations are) it warns, at the save and again at every load
    predict.__annotations__ = {"model_input": pd.DataFrame}
    predicting = type(
        "Predicting", (mlflow.pyfunc.PythonModel,), {"__init__": __init__, "predict": predict}
    )
    return predicting(model)


def _save(
    chosen: Flavor,
    model: Any,
    path: str,
    signature: Any,
    example: Any,
    reqs: list[str],
    code: list[str],
) -> None:
    module = import_module(chosen.mlflow_module)
    kwargs: dict[str, Any] = {
        "signature": signature,
        "input_example": example,
        "pip_requirements": reqs,
    }
    if code and "code_paths" in inspect.signature(module.save_model).parameters:
        kwargs["code_paths"] = code
    if chosen.name in ("sklearn", "lightgbm") and not _is(model, "lightgbm", "Booster"):
        # skops (MLflow's default) refuses what it does not know (a function of the user's in a
        # FunctionTransformer) and costs 1.7 s to import: cloudpickle, as for every other pickle
        kwargs["serialization_format"] = "cloudpickle"
    if chosen.name == "pytorch":
        # MLflow 3's default, "pt2" (torch.export), needs an input example to trace and refuses
        # models with data-dependent control flow: the whole module, pickled, loads as it was
        kwargs["serialization_format"] = "pickle"
    if chosen.name == "pyfunc":
        python_model = model if _is_python_model(model) else _predicting(model)
        module.save_model(path, python_model=python_model, **kwargs)
    else:
        module.save_model(model, path, **kwargs)


@contextmanager
def _quiet() -> Iterator[None]:
    """MLflow's log lines and warnings are not shown while it saves (nbops' own output only; an
    error still raises), unless ``NBOPS_VERBOSE`` asks for them (:func:`nbops.mlflow.verbose`)."""
    if verbose():
        yield
        return
    logger = logging.getLogger("mlflow")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", module=r"mlflow(\.|$)")
            yield
    finally:
        logger.setLevel(level)


@contextmanager
def _requirements_taken_as_given() -> Iterator[None]:
    """Skip MLflow's check of the requirements against this environment during the save
    (:data:`REQUIREMENT_CHECK`); a no-op if this MLflow has no such function."""
    module = import_module(REQUIREMENT_CHECK[0])
    original = getattr(module, REQUIREMENT_CHECK[1], None)
    if original is None:
        yield
        return
    setattr(module, REQUIREMENT_CHECK[1], lambda *a, **k: None)
    try:
        yield
    finally:
        setattr(module, REQUIREMENT_CHECK[1], original)
