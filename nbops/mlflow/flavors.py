"""Which MLflow flavor saves a model, and which packages it needs to load: read from the model's
class (its module and MRO), never by importing a framework.

A model's flavor is found by walking ``type(model).__mro__`` from the most specific class: the
first class that belongs to a known framework decides (so a subclass of ``LGBMClassifier`` is
LightGBM, and a scikit-learn ``Pipeline`` is scikit-learn whatever its steps are). The sklearn
wrappers of LightGBM and XGBoost (``LGBMClassifier``, ``XGBRegressor``, ...) get their
framework's flavor, not scikit-learn's: MLflow's lightgbm and xgboost flavors load them back as
the same class, and their requirements name the framework. A ``mlflow.pyfunc.PythonModel`` is
saved as it is; anything else with a ``predict`` method is wrapped in one (``pyfunc``).

Requirements are explicit (never MLflow's inference, which re-imports the model in a subprocess):
the flavor's packages, the packages of the model's own classes (a pipeline's steps and the
functions it calls included), and, for a flavor that can run on several backends, those of them
this process has imported; each pinned to the version installed. Nothing here imports MLflow or a
framework: :mod:`nbops.mlflow.models` does the saving.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FunctionType, MethodType
from typing import Any

from nbops.errors import InvalidInput


@dataclass(frozen=True)
class Flavor:
    """An MLflow flavor nbops can save: ``name`` (what ``flavor=`` takes and the
    ``nbops.model.<name>`` tag says), the framework it serves, the MLflow module whose
    ``save_model`` writes it, the packages (import names) a model of it always needs, and those
    it needs only when this process has imported them (a backend, an optional dependency)."""

    name: str
    framework: str
    mlflow_module: str
    packages: tuple[str, ...]
    if_imported: tuple[str, ...] = ()


FLAVORS: dict[str, Flavor] = {
    f.name: f
    for f in (
        Flavor(
            "sklearn",
            "scikit-learn",
            "mlflow.sklearn",
            ("sklearn", "cloudpickle", "numpy", "scipy"),
        ),
        Flavor(
            "lightgbm", "LightGBM", "mlflow.lightgbm", ("lightgbm", "cloudpickle", "numpy", "scipy")
        ),
        Flavor("xgboost", "XGBoost", "mlflow.xgboost", ("xgboost", "numpy", "scipy")),
        Flavor("catboost", "CatBoost", "mlflow.catboost", ("catboost", "numpy")),
        Flavor(
            "statsmodels",
            "statsmodels",
            "mlflow.statsmodels",
            ("statsmodels", "numpy", "scipy", "pandas"),
            ("patsy", "formulaic"),
        ),
        Flavor("pytorch", "PyTorch", "mlflow.pytorch", ("torch", "cloudpickle", "numpy")),
        Flavor(
            "keras", "Keras", "mlflow.keras", ("keras", "numpy"), ("tensorflow", "torch", "jax")
        ),
        Flavor(
            "tensorflow", "TensorFlow", "mlflow.tensorflow", ("tensorflow", "numpy"), ("tf_keras",)
        ),
        Flavor("onnx", "ONNX", "mlflow.onnx", ("onnx", "onnxruntime", "numpy")),
        Flavor(
            "transformers",
            "Hugging Face transformers",
            "mlflow.transformers",
            ("transformers",),
            ("torch", "tensorflow", "tokenizers", "sentencepiece", "accelerate"),
        ),
        Flavor(
            "pyfunc",
            "any object with predict()",
            "mlflow.pyfunc",
            ("cloudpickle", "numpy", "pandas"),
        ),
    )
}

#: (a class's qualified name, or the top-level package of its module) -> flavor, in the order
#: tried for each class of the MRO; a qualified name wins over its package
_BY_CLASS = {
    "torch.nn.modules.module.Module": "pytorch",
    "onnx.onnx_ml_pb2.ModelProto": "onnx",
    "onnx.ModelProto": "onnx",
    "mlflow.pyfunc.model.PythonModel": "pyfunc",
    "sklearn.base.BaseEstimator": "sklearn",
}
_BY_PACKAGE = {
    "lightgbm": "lightgbm",
    "xgboost": "xgboost",
    "catboost": "catboost",
    "statsmodels": "statsmodels",
    "keras": "keras",
    "tf_keras": "tensorflow",
    "tensorflow": "tensorflow",
    "transformers": "transformers",
    "sklearn": "sklearn",
}

#: import name -> the distributions that may provide it, in the order tried (the rest: the
#: import name itself, then with "-" for "_", then a scan of the installed distributions)
DISTRIBUTIONS = {
    "sklearn": ("scikit-learn",),
    "xgboost": ("xgboost", "xgboost-cpu"),
    "tensorflow": ("tensorflow", "tensorflow-cpu", "tensorflow-macos", "tensorflow-intel"),
    "torch": ("torch",),
    "onnxruntime": ("onnxruntime", "onnxruntime-gpu"),
    "PIL": ("pillow",),
    "cv2": ("opencv-python", "opencv-python-headless", "opencv-contrib-python"),
    "yaml": ("PyYAML",),
    "skimage": ("scikit-image",),
    "imblearn": ("imbalanced-learn",),
    "dateutil": ("python-dateutil",),
}


def names() -> str:
    return ", ".join(FLAVORS)


def flavor(name: str) -> Flavor:
    """The flavor called ``name``; InvalidInput listing the known ones otherwise."""
    found = FLAVORS.get(name) if isinstance(name, str) else None
    if found is None:
        raise InvalidInput(
            f"log_model: flavor={name!r} is not a flavor nbops can save",
            f"pass one of {names()}, or flavor=None to infer it from the model's class",
        )
    return found


def qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def infer(model: Any) -> Flavor:
    """The flavor of ``model`` from its class (module and MRO), or InvalidInput naming the type
    and the fixes."""
    for cls in type(model).__mro__:
        by_class = _BY_CLASS.get(qualified(cls))
        if by_class is not None:
            return FLAVORS[by_class]
        by_package = _BY_PACKAGE.get(cls.__module__.split(".")[0])
        if by_package is not None:
            return FLAVORS[by_package]
    if callable(getattr(model, "predict", None)) and not isinstance(model, type):
        return FLAVORS["pyfunc"]
    kind = qualified(model if isinstance(model, type) else type(model))
    what = "a class, not a fitted model: pass an instance" if isinstance(model, type) else ""
    raise InvalidInput(
        f"log_model cannot tell the flavor of a {kind}{': ' + what if what else ''}",
        f"pass flavor= one of {names()} (any object with a predict() method is saved as "
        "pyfunc), or save it yourself and log the file with nbops.log_artifact",
    )


def _top(module: object) -> str | None:
    if not isinstance(module, str) or not module:
        return None
    top = module.split(".")[0]
    if top in ("__main__", "builtins", "__mp_main__") or top in sys.stdlib_module_names:
        return None
    return top


def _classes_and_functions(model: Any, depth: int = 0) -> Iterator[Any]:
    """The model's class, and for an estimator with ``get_params`` (scikit-learn's API) every
    estimator, class and function its parameters hold (a pipeline's steps, a
    FunctionTransformer's ``func``)."""
    yield type(model)
    get_params = getattr(model, "get_params", None)
    if depth > 4 or not callable(get_params) or isinstance(model, type):
        return
    try:
        params = get_params(deep=True)
    except Exception:  # noqa: BLE001 - an estimator-like object that is not one
        return
    if not isinstance(params, dict):
        return
    stack: list[tuple[Any, int]] = [(v, 0) for v in params.values()]
    while stack:
        value, level = stack.pop()
        if isinstance(value, (list, tuple)) and level < 3:
            stack.extend((v, level + 1) for v in value[:200])
        elif isinstance(value, (FunctionType, MethodType, type)):
            yield value
        elif hasattr(value, "get_params") or hasattr(value, "predict"):
            yield type(value)


def model_modules(model: Any) -> set[str]:
    """Top-level modules (not the standard library, not ``__main__``) of the model's classes
    and of the classes and functions its parameters hold."""
    out: set[str] = set()
    for thing in _classes_and_functions(model):
        classes = thing.__mro__ if isinstance(thing, type) else (thing,)
        for c in classes:
            top = _top(getattr(c, "__module__", None))
            if top is not None:
                out.add(top)
    return out


def local_code(modules: Iterable[str], root: Path | None) -> list[str]:
    """The files (a module) or folders (a package) under ``root`` that ``modules`` were imported
    from: the user's own code a pickled model refers to, shipped with the model (MLflow's
    ``code_paths``) so that it loads where that code is not importable."""
    if root is None:
        return []
    out = []
    base = root.resolve()
    for name in sorted(modules):
        path = getattr(sys.modules.get(name), "__file__", None)
        if not path:
            continue
        p = Path(path).resolve()
        if "site-packages" in p.parts or "dist-packages" in p.parts:
            continue
        if p.name == "__init__.py":
            p = p.parent
        if p.is_relative_to(base) and p != base:
            out.append(str(p))
    return out


_FOUND: dict[str, tuple[str, str] | None] = {}


def distribution(module: str) -> tuple[str, str] | None:
    """The installed distribution (its ``pip install`` name and version) that provides the
    import name ``module``, or None (not installed, or the user's own code). Remembered for the
    process."""
    from importlib.metadata import PackageNotFoundError, distributions
    from importlib.metadata import distribution as installed

    if module in _FOUND:
        return _FOUND[module]
    _FOUND[module] = None
    for candidate in DISTRIBUTIONS.get(module, (module, module.replace("_", "-"))):
        try:
            dist = installed(candidate)
        except PackageNotFoundError:
            continue
        _FOUND[module] = (str(dist.metadata["Name"]), dist.version)
        return _FOUND[module]
    if module in DISTRIBUTIONS or module not in sys.modules:
        return None
    # an import name that is not its distribution's: one scan of the installed RECORDs (~0.3 s)
    marks = (f"{module}/", f"{module}.py,")
    for dist in distributions():
        record = dist.read_text("RECORD") or ""
        if any(record.startswith(m) or f"\n{m}" in record for m in marks):
            _FOUND[module] = (str(dist.metadata["Name"]), dist.version)
            break
    return _FOUND[module]


def requirements(chosen: Flavor, model: Any) -> list[str]:
    """``name==version`` of each installed package a model of ``chosen`` needs to load: the
    flavor's packages, the optional ones this process imported, and those of the model's own
    classes; in that order, each once."""
    wanted = list(chosen.packages)
    wanted += [m for m in chosen.if_imported if m in sys.modules]
    wanted += sorted(model_modules(model) - {"mlflow"})
    out: list[str] = []
    seen: set[str] = set()
    for module in wanted:
        found = distribution(module)
        if found is None or found[0].lower() in seen:
            continue
        seen.add(found[0].lower())
        out.append(f"{found[0]}=={found[1]}")
    return out
