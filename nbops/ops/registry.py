"""Promotion and rollback on MLflow's Model Registry, through the store facade (nbops.mlflow.store).

``promote`` checks the gates of nbops.yaml *before* it writes anything, then registers the run's
model (``runs:/<run_id>/<artifact>``; a run promoted before reuses its version) and moves the
alias. Each alias keeps its history in the registered-model tag ``nbops.alias_history.<alias>``
(a JSON list of versions, oldest first), so ``rollback`` can walk back step by step.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nbops import project, tags
from nbops.errors import InvalidInput, NbopsError, NotFound, StoreUnavailable
from nbops.ops import names
from nbops.ops.gates import GateOutcome, check, refusal
from nbops.ops.runkinds import listed
from nbops.tracking import audit

if TYPE_CHECKING:
    from nbops.mlflow.entities import ModelVersion, RegisteredModel, Run
    from nbops.mlflow.store import TrackingStore

DEFAULT_ALIAS = "champion"


def _store() -> TrackingStore:
    from nbops.mlflow.store import open_store

    return open_store()


def pipeline(root: Path | None = None) -> Any:
    """nbops.yaml of the project, or None when there is none (then no gates apply)."""
    from nbops.pipeline import spec
    from nbops.pipeline.graph import check_references

    path = (root or project.find_root()) / project.CONFIG_FILE
    if not path.is_file():
        return None
    loaded = spec.load(path)
    check_references(loaded)  # gates and drift.on_drift name real stages (file:line errors)
    return loaded


@contextlib.contextmanager
def _locked(root: Path | None = None) -> Iterator[None]:
    """One registry change at a time in this project (promote/rollback read-modify-write)."""
    fd = os.open(project.state_dir(root) / "registry.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


# --- reading the registry -------------------------------------------------------------------------
def registered_model(store: TrackingStore, name: str) -> RegisteredModel:
    """The registered model ``name``; NotFound naming the models there are when it is not
    registered (or is a name MLflow cannot look up)."""
    from nbops.mlflow.failures import INVALID_PARAMETER_VALUE, error_code

    names.model_name(name)
    try:
        rm = store.get_registered_model(name)
    except Exception as exc:
        if error_code(exc) != INVALID_PARAMETER_VALUE:
            raise
        rm = None
    if rm is None:
        known = sorted(m.name for m in store.search_registered_models(max_results=200))
        raise NotFound(
            f"model {names.shown(name)} is not registered",
            "registered models: "
            + (", ".join(known) or "none yet (nbops promote RUN --model NAME registers one)"),
        )
    return rm


def version_by_alias(store: TrackingStore, name: str, alias: str) -> ModelVersion:
    names.alias(alias)
    rm = registered_model(store, name)
    if alias not in rm.aliases:
        have = ", ".join(f"@{a} (v{v})" for a, v in sorted(rm.aliases.items())) or "none"
        raise NotFound(
            f"model {name!r} has no alias {alias!r}",
            f"its aliases: {have}; promote a run with --alias {alias}",
        )
    version = str(rm.aliases[alias])
    mv = store.get_model_version(name, version)
    if mv is None:  # the version was deleted under the alias
        raise NotFound(
            f"model {name!r} @{alias} points at version {version}, which does not exist",
            f"promote a run with --alias {alias}",
        )
    return mv


def model_version(store: TrackingStore, name: str, version: str) -> ModelVersion:
    registered_model(store, name)
    version = names.version(version, name)
    mv = store.get_model_version(name, str(version))
    if mv is None:
        raise NotFound(
            f"model {name!r} has no version {version!r}",
            f"list its versions with `nbops models {name}`",
        )
    return mv


def history(rm: RegisteredModel, alias: str) -> list[str]:
    """The versions that held ``alias``, oldest first (the ``nbops.alias_history.<alias>`` tag)."""
    raw = (rm.tags or {}).get(tags.ALIAS_HISTORY_PREFIX + alias)
    try:
        return [str(v) for v in json.loads(raw)] if raw else []
    except (ValueError, RecursionError):
        return []


def model_artifact(store: TrackingStore, run: Run) -> str:
    """The artifact path of the model a run logged (``nbops.model.<name>`` tags, else a folder
    with an ``MLmodel`` file); NotFound naming the run if it logged none."""
    prefix = tags.MODEL_PREFIX
    tagged = sorted(k[len(prefix) :] for k in run.data.tags if k.startswith(prefix))
    if tagged:
        return "model" if "model" in tagged else tagged[0]
    rid = run.info.run_id
    try:
        for item in store.list_artifacts(rid):
            if item.is_dir and any(
                a.path.endswith("MLmodel") for a in store.list_artifacts(rid, item.path)
            ):
                return str(item.path)
    except StoreUnavailable:  # a refused login or permission, a server gone: said as such
        raise
    except Exception:  # noqa: BLE001 - unreadable artifacts: treated as no model
        pass
    points = _sweep_points(store, run)
    if points:
        raise NotFound(
            f"run {rid} is the parent of a sweep ({len(points)} points): its points logged the "
            "models, not it",
            f"promote one of its point runs: {listed(points, 5)} (nbops runs shows their metrics)",
        )
    if tags.PIPELINE in run.data.tags:
        raise NotFound(
            f"run {rid} is the pipeline run of an `nbops run`: it logged no model; its stage runs "
            "did",
            "promote a stage run or sweep point (nbops runs shows them)",
        )
    raise NotFound(
        f"run {rid} logged no model",
        "log one in the notebook with nbops.log_model(model, 'model'), or promote the stage "
        "run that did (nbops runs shows them)",
    )


def _sweep_points(store: TrackingStore, run: Run) -> list[Run]:
    """A sweep parent's point runs (newest first), or [] for any other run."""
    rid = run.info.run_id
    if len(rid) != 32 or not all(c in "0123456789abcdef" for c in rid):
        return []
    try:
        children = store.search_runs(
            [run.info.experiment_id],
            filter_string=f"tags.`{tags.PARENT_RUN}` = '{rid}'",
            max_results=1000,
        )
    except Exception:  # noqa: BLE001 - the hint is a courtesy: plain "no model" then
        return []
    return [c for c in children if tags.SWEEP_POINT in c.data.tags]


# --- promote -------------------------------------------------------------------------------------
@dataclass
class Promotion:
    model: str
    alias: str
    version: str
    run_id: str
    previous: str | None
    outcomes: list[GateOutcome] = field(default_factory=list)
    reused: bool = False


def promote(
    run_id: str, model: str, alias: str | None = None, root: Path | None = None
) -> Promotion:
    """Check the gates, then register the run's model and point ``alias`` at it."""
    names.run_id(run_id)
    names.model_name(model)
    if alias is not None:
        names.alias(alias)
    store = _store()
    run = store.get_run(run_id)
    spec = pipeline(root)
    gate = spec.gates.get(model) if spec is not None else None
    alias = names.alias(alias or (gate.alias if gate is not None else DEFAULT_ALIAS))
    if store.get_registered_model(model) is None:
        names.model_name(model, new=True)  # a model nbops registers gets a plain name
    artifact = model_artifact(store, run)
    with _locked(root):
        rm = store.get_registered_model(model)
        current = None
        cur_v = None
        if rm is not None and alias in rm.aliases:
            cur_v = store.get_model_version(model, str(rm.aliases[alias]))
        if cur_v is not None:
            cur_metrics = store.get_run(cur_v.run_id).data.metrics if cur_v.run_id else {}
            current = (f"version {cur_v.version} (@{alias}, run {cur_v.run_id})", cur_metrics)
        outcomes: list[GateOutcome] = []
        if gate is not None:
            outcomes = check(
                gate,
                model,
                run_id,
                run.data.tags.get(tags.STAGE),
                run.data.metrics,
                current,
                run_tags=run.data.tags,
            )
            refused = refusal(model, run_id, outcomes)
            if refused is not None:
                audit.safe_record(
                    "promote.refused",
                    root=root,
                    store=store,
                    model=model,
                    alias=alias,
                    run_id=run_id,
                    reason=refused.message,
                )
                raise refused
        # every check passed: now, and only now, write to the registry
        if rm is None:
            rm = _create_model(store, model)
        existing = _version_of_run(store, model, run_id, artifact)
        if existing is not None:
            version, reused = str(existing.version), True
        else:
            mv = store.create_model_version(
                model,
                f"runs:/{run_id}/{artifact}",
                run_id=run_id,
                tags={tags.STAGE: run.data.tags.get(tags.STAGE, "")},
            )
            version, reused = str(mv.version), False
        previous = str(rm.aliases[alias]) if alias in rm.aliases else None
        hist = history(rm, alias)
        if previous is not None and (not hist or hist[-1] != previous):
            hist.append(previous)  # the alias was moved outside nbops: remember where it was
        if not hist or hist[-1] != version:
            hist.append(version)
        try:
            store.set_registered_model_alias(model, alias, version)
            store.set_registered_model_tag(
                model, tags.ALIAS_HISTORY_PREFIX + alias, json.dumps(hist)
            )
        except Exception:
            if previous is not None:  # put the alias back: a promotion is all or nothing
                with contextlib.suppress(Exception):
                    store.set_registered_model_alias(model, alias, previous)
            raise
        gates_text = json.dumps([o.__dict__ for o in outcomes])
        with contextlib.suppress(Exception):
            store.set_model_version_tag(model, version, tags.GATES, gates_text[:4900])
    audit.safe_record(
        "promote",
        root=root,
        store=store,
        model=model,
        alias=alias,
        version=version,
        run_id=run_id,
        previous=previous,
    )
    return Promotion(model, alias, version, run_id, previous, outcomes, reused)


def _create_model(store: TrackingStore, name: str) -> RegisteredModel:
    from nbops.mlflow.failures import ALREADY_EXISTS, INVALID_PARAMETER_VALUE, error_code

    try:
        return store.create_registered_model(
            name, tags={tags.CREATED_BY: "nbops promote"}, description="registered by nbops"
        )
    except Exception as exc:
        code = error_code(exc)
        if code == ALREADY_EXISTS:  # another process registered it first
            return registered_model(store, name)
        if code == INVALID_PARAMETER_VALUE:
            first = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            raise InvalidInput(
                f"model name {names.shown(name)} is not valid: {first}",
                "use letters, digits, '_', '.', '-' (e.g. --model wine-classifier)",
            ) from None
        raise


def _version_of_run(
    store: TrackingStore, model: str, run_id: str, artifact: str
) -> ModelVersion | None:
    source = f"runs:/{names.run_id(run_id)}/{artifact}"
    for mv in _versions(store, model, f"run_id='{run_id}'"):
        if mv.source == source:
            return mv
    return None


def _versions(store: TrackingStore, model: str, extra: str | None = None) -> list[ModelVersion]:
    """Every version of ``model`` (and matching ``extra``, a filter of checked values), paged;
    the name goes into the filter quoted, or is compared here when no quoting can hold it."""
    quoted = names.filter_value(model)
    terms = ([f"name={quoted}"] if quoted else []) + ([extra] if extra else [])
    out: list[ModelVersion] = []
    token = None
    while True:
        page, token = store.search_model_versions(
            " and ".join(terms), max_results=1000, page_token=token
        )
        out += [mv for mv in page if mv.name == model]
        if not token:
            return out


# --- rollback ------------------------------------------------------------------------------------
def rollback(model: str, alias: str = DEFAULT_ALIAS, root: Path | None = None) -> tuple[str, str]:
    """Move ``alias`` back to the version that held it before; returns (from, to)."""
    store = _store()
    names.alias(alias)
    with _locked(root):
        rm = registered_model(store, model)
        if alias not in rm.aliases:
            version_by_alias(store, model, alias)  # raises NotFound naming the aliases
        current = str(rm.aliases[alias])
        hist = history(rm, alias)
        if hist and hist[-1] != current:
            hist.append(current)
        if len(hist) < 2:
            raise NbopsError(
                f"model {model!r} @{alias} (version {current}) has no earlier version to roll "
                "back to",
                f"promote another run with `nbops promote RUN --model {model} --alias {alias}`",
            )
        hist.pop()
        target = hist[-1]
        store.set_registered_model_alias(model, alias, target)
        store.set_registered_model_tag(model, tags.ALIAS_HISTORY_PREFIX + alias, json.dumps(hist))
    audit.safe_record(
        "rollback",
        root=root,
        store=store,
        model=model,
        alias=alias,
        version=target,
        previous=current,
    )
    return current, target


# --- listing -------------------------------------------------------------------------------------
def models(name: str | None = None, root: Path | None = None) -> list[dict[str, Any]]:
    """Registered models (no name) or the versions of one: aliases, source run, gate metrics."""
    store = _store()
    rows: list[dict[str, Any]] = []
    if name is None:
        for rm in store.search_registered_models(max_results=1000):
            latest = max((int(v.version) for v in (rm.latest_versions or [])), default=None)
            rows.append(
                {
                    "model": rm.name,
                    "aliases": {a: str(v) for a, v in sorted(rm.aliases.items())},
                    "latest": str(latest) if latest is not None else None,
                }
            )
        return sorted(rows, key=lambda r: r["model"])
    rm = registered_model(store, name)
    spec = pipeline(root)
    gate = spec.gates.get(name) if spec is not None else None
    metrics_of_gate = list(gate.require) if gate is not None else []
    if gate is not None and gate.better_than_current not in (None, *metrics_of_gate):
        metrics_of_gate.append(gate.better_than_current)
    by_version: dict[str, list[str]] = {}
    for a, v in rm.aliases.items():
        by_version.setdefault(str(v), []).append(a)
    for mv in _versions(store, name):
        metrics: dict[str, float] = {}
        if mv.run_id:
            try:
                metrics = store.get_run(mv.run_id).data.metrics
            except NotFound:
                metrics = {}
        rows.append(
            {
                "version": str(mv.version),
                "aliases": sorted(by_version.get(str(mv.version), [])),
                "run_id": mv.run_id,
                "source": mv.source,
                "created": mv.creation_timestamp,
                "metrics": {m: metrics.get(m) for m in metrics_of_gate},
            }
        )
    return sorted(rows, key=lambda r: int(r["version"]), reverse=True)
