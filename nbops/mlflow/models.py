"""``nbops.log_model``: save a model in MLflow's format (flavor inferred) into the run's spool,
so it lands as ``<name>/`` in the run's artifacts with an ``MLmodel`` file, registrable as
``runs:/<run_id>/<name>``. Importing MLflow here is the price of an explicit model save."""

from __future__ import annotations

from typing import Any

from nbops.errors import InvalidInput

FLAVORS = ("sklearn",)
SKLEARN_PACKAGES = ("scikit-learn", "cloudpickle", "numpy", "scipy")


def _requirements(packages: tuple[str, ...]) -> list[str]:
    """``name==version`` of each installed package a flavor's models need to load."""
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for name in packages:
        try:
            out.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            continue
    return out


def infer_flavor(model: Any) -> str:
    module = type(model).__module__.split(".")[0]
    if module == "sklearn":
        return "sklearn"
    raise InvalidInput(
        f"log_model cannot tell the flavor of a {type(model).__module__}.{type(model).__name__}",
        f"pass flavor= one of {', '.join(FLAVORS)}, or log the file with nbops.log_artifact",
    )


def save(
    model: Any,
    path: str,
    flavor: str | None,
    *,
    input_example: Any = None,
    pip_requirements: list[str] | None = None,
) -> str:
    flavor = flavor or infer_flavor(model)
    if flavor == "sklearn":
        import mlflow.sklearn

        # explicit requirements: MLflow's inference of them re-imports the model in a
        # subprocess and took 5-14 s a call here, in the user's cell
        mlflow.sklearn.save_model(model, path, pip_requirements=_requirements(SKLEARN_PACKAGES))
        return flavor
    raise InvalidInput(f"flavor {flavor!r} is not supported", f"use one of {', '.join(FLAVORS)}")
