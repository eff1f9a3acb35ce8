"""Planning an ``nbops run``: the command line's ``-p``/``--sweep``/``--tag`` values read as typed
values, the points each selected stage executes (one per sweep combination), and which of them
are stale now. Plain data and functions over it: no kernel, no store."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nbops.errors import ConfigError, ParameterError
from nbops.pipeline import notebook as nbmod
from nbops.pipeline import paths
from nbops.pipeline import spec as specmod
from nbops.pipeline.graph import Graph
from nbops.pipeline.hashing import HashCache
from nbops.pipeline.staleness import Fingerprint, fingerprint, point_key, reasons
from nbops.pipeline.state import State

MAX_TIMEOUT = 30 * 86400.0  # seconds: as a schedule's timeout
MAX_JOBS = 1024


@dataclass
class Point:
    """One execution of a stage: its parameters (one sweep point, or the only one)."""

    label: str
    params: dict[str, Any]
    sweep: dict[str, Any]
    key: str
    fp: Fingerprint | None = None
    why: list[str] = field(default_factory=list)
    outs: list[str] = field(default_factory=list)  # its own files: the ${...} outs expanded


@dataclass
class StagePlan:
    name: str
    stage: specmod.Stage
    notebook: Path
    code: str
    points: list[Point]
    problem: ConfigError | None = None  # the notebook cannot be read: the stage fails at run time

    @property
    def is_sweep(self) -> bool:
        """More than one point: each point is a run of its own under the stage's run."""
        return len(self.points) > 1

    @property
    def shared(self) -> list[str]:
        """The outs without ``${...}``: every point of a sweep writes into them (folders)."""
        return [o for o in self.stage.outs if not specmod.is_per_point(o)]

    def outs_of(self, pt: Point) -> list[str]:
        """What one point's record holds: its own outs, then the shared ones."""
        return [*pt.outs, *self.shared]

    def all_outs(self) -> list[str]:
        """Every point's own outs, then the shared ones: what the stage's run records."""
        return [*(o for pt in self.points for o in pt.outs), *self.shared]


# --- the command line's values --------------------------------------------------------------------
def parse_assignments(items: list[str], what: str) -> list[tuple[str, Any]]:
    """``k=v`` strings → (k, typed v), each value read by :func:`nbops.values.parse_value`
    (``1`` → int, ``0.1`` → float; aliases, deep nesting and huge numbers refused, naming
    ``what k``)."""
    from nbops.values import parse_value

    out = []
    for item in items:
        k, sep, v = item.partition("=")
        if not sep or not k.strip():
            raise ParameterError(
                f"{what} {shown(item)} is not NAME=VALUE",
                f"write it as {what} C=0.1 (or {what} train.C=0.1)",
            )
        out.append((k.strip(), parse_value(v, f"{what} {shown(k.strip())}")))
    return out


def shown(text: str, limit: int = 80) -> str:
    """A user's text in an error message: as typed if it is a plain name (``train.C``), else
    quoted, and cut if it is long."""
    if len(text) <= limit and text.replace(".", "").replace("-", "").replace("_", "").isalnum():
        return text
    return repr(text) if len(text) <= limit else repr(text[:limit]) + f"... ({len(text)} chars)"


def split_list(v: Any, what: str) -> list[Any]:
    """A ``--sweep`` value: a list as typed (``[1, 2]``), or text split at commas, each item
    read as a value of its own (``0.1,1,10`` → three floats)."""
    from nbops.values import parse_value

    if isinstance(v, list):
        if not v:
            raise ParameterError(f"{what}: the list of values is empty", "give values: C=0.1,1,10")
        return v
    if v == "":
        raise ParameterError(f"{what}: no values given", "give values: --sweep C=0.1,1,10")
    if isinstance(v, str) and "," in v:
        return [parse_value(x, f"{what} (item {i + 1})") for i, x in enumerate(v.split(","))]
    return [v]


def param_str(v: Any) -> str:
    """A parameter or tag value as MLflow keeps it: text as is, lists and mappings as JSON."""
    return v if isinstance(v, str) else to_json(v) if isinstance(v, (list, dict)) else str(v)


def to_json(v: Any) -> str:
    return json.dumps(v, indent=1, sort_keys=True, default=str)


# --- the plan -------------------------------------------------------------------------------------
class Planner:
    """What to run and why: :class:`nbops.pipeline.runner.Runner` is one (it sets these)."""

    root: Path
    pipeline: specmod.Pipeline
    graph: Graph
    param_args: list[tuple[str, Any]]
    sweep_args: dict[str, list[Any]]
    force: bool
    force_upstream: bool
    forced: set[str]  # the stages --force forces in this plan (set by plan())
    hashes: HashCache
    state: State
    broken: dict[str, ConfigError]  # stage -> why its notebook cannot be read
    _declared_cache: dict[str, dict[str, Any]]

    def plan(self, names: list[str] | None = None) -> list[StagePlan]:
        selected = self.graph.select(names) if names else list(self.graph.order)
        # --force: the named stages (every stage when none is named); --force-upstream: and
        # everything they depend on (what --force did before; DVC's `repro --force`)
        self.forced = set()
        if self.force or self.force_upstream:
            self.forced = set(selected if self.force_upstream or not names else names)
        per_stage: dict[str, dict[str, Any]] = {s: {} for s in selected}
        for k, v in self.param_args:
            stage, dot, rest = k.partition(".")
            if dot and stage in self.pipeline.stages:
                if stage not in per_stage:
                    raise ParameterError(
                        f"-p {k}: stage {stage!r} is not among those to run",
                        f"run it too: nbops run {stage}",
                    )
                per_stage[stage][rest] = v
            else:
                takers = [s for s in selected if k in self._declared(s)]
                if not takers and any(s in self.broken for s in selected):
                    continue  # maybe a parameter of the stage that cannot be read: it fails
                if not takers:
                    raise ParameterError(
                        f"-p {k}: no stage to run declares a parameter {k!r}",
                        "declared: "
                        + "; ".join(
                            f"{s}: {', '.join(self._declared(s)) or '-'}" for s in selected
                        ),
                    )
                for s in takers:
                    per_stage[s][k] = v
        plans = []
        for name in selected:
            st = self.pipeline.stages[name]
            nb = (self.root / st.notebook).resolve()
            declared = self._declared(name)
            base = specmod.resolve_params(st, per_stage[name])
            sweep = dict(st.sweep)
            sweep.update({k: v for k, v in self.sweep_args.items() if k in declared})
            for k in [*base, *sweep]:
                if k not in declared and name not in self.broken:
                    where = self.pipeline.where("stages", name, "params", k)
                    at = f"{self.pipeline.path}:{where[0]}: " if where else ""
                    raise ParameterError(
                        f"{at}stage {name!r}: parameter {k!r} is not declared by {st.notebook}",
                        "its parameters cell declares: "
                        + (", ".join(declared) or "nothing")
                        + " (tag a cell `parameters` in Jupyter to declare more)",
                    )
            points = []
            # --sweep values replace the yaml's values of the same key (one point: `--sweep C=5`)
            extra = {k: v for k, v in self.sweep_args.items() if k in declared}
            grid = specmod.sweep_points(st, extra or None) if sweep else [{}]
            for combo in grid:
                full = {**{k: v for k, v in declared.items() if v is not None}, **base, **combo}
                label = name + (
                    "[" + ",".join(f"{k}={v}" for k, v in combo.items()) + "]" if combo else ""
                )
                points.append(Point(label, full, combo, point_key(combo)))
            self._expand_outs(st, points)
            problem = self.broken.get(name)
            code = ""
            if problem is None:
                try:
                    code = nbmod.code_digest(nb)
                except ConfigError as err:
                    problem = self.broken[name] = err
            plans.append(StagePlan(name, st, nb, code, points, problem))
        unused = [k for k in self.sweep_args if not any(k in self._declared(p.name) for p in plans)]
        if unused and not any(p.problem for p in plans):
            raise ParameterError(
                f"--sweep {unused[0]}: no stage to run declares it",
                "sweep a parameter of a stage's parameters cell",
            )
        return plans

    def _expand_outs(self, st: specmod.Stage, points: list[Point]) -> None:
        """Each point's own outs (its ``${...}`` outs expanded); no two points may write one
        file, and a sweep's shared out must not be a file (each point would overwrite it)."""
        writer: dict[str, str] = {}
        for pt in points:
            for i, out in enumerate(st.outs):
                if not specmod.is_per_point(out):
                    continue
                where = self.pipeline.where("stages", st.name, "outs", i, value=True)
                at = f"{self.pipeline.path}:{where[0]}: " if where else ""
                try:
                    path = specmod.expand_out(out, pt.params)
                except ParameterError as err:
                    raise ParameterError(f"{at}{pt.label}: {err.message}", err.hint) from None
                found = paths.refusal(self.root, path, "out")
                if found is not None:
                    raise ParameterError(f"{at}{pt.label}: out {path!r} {found[0]}", found[1])
                if path in writer:
                    raise ParameterError(
                        f"{at}{writer[path]} and {pt.label} would both write {path}",
                        f"name every swept parameter in {out!r}, like ${{"
                        + next(iter(k for k in pt.sweep if k not in specmod.out_names(out)), "C")
                        + "}",
                    )
                writer[path] = pt.label
                pt.outs.append(path)
        if len(points) > 1:
            for out in st.outs:
                if not specmod.is_per_point(out) and (self.root / out).is_file():
                    raise specmod.shared_file_error(
                        self.pipeline, st.name, out, list(points[0].sweep)
                    )

    def _declared(self, stage: str) -> dict[str, Any]:
        """The parameters a stage's notebook declares ({} when it cannot be read: that is
        kept in ``broken`` and fails the stage when it would run, not the whole pipeline)."""
        if stage not in self._declared_cache:
            nb = self.root / self.pipeline.stages[stage].notebook
            try:
                self._declared_cache[stage] = nbmod.declared_parameters(nb)
            except ConfigError as err:
                self.broken[stage] = err
                self._declared_cache[stage] = {}
        return self._declared_cache[stage]

    def assess(self, plan: StagePlan) -> list[Point]:
        """Fingerprint every point of a stage now; return those that must run."""
        todo = []
        for pt in plan.points:
            pt.fp = fingerprint(plan.code, pt.params, list(plan.stage.deps), self.hashes)
            pt.why = reasons(
                pt.fp, self.state.get(plan.name, pt.key), plan.outs_of(pt), self.hashes
            )
            if plan.name in self.forced and not pt.why:
                pt.why = ["forced"]
            if pt.why:
                todo.append(pt)
        return todo

    def status(self, names: list[str] | None = None) -> list[tuple[str, list[str]]]:
        """(label, reasons) per point, as things are now; downstream of a stale stage is stale."""
        out = []
        stale: set[str] = set()
        for plan in self.plan(names):
            if plan.problem is None:
                self.assess(plan)
            ups = [u for u in self.graph.upstream(plan.name) if u in stale]
            for pt in plan.points:
                why = list(pt.why)
                if plan.problem is not None:
                    why = [f"cannot run: {plan.problem.message}"]
                if ups and not why:
                    why = [f"upstream stage {ups[0]} will run"]
                if why:
                    stale.add(plan.name)
                out.append((pt.label, why))
        self.hashes.save()
        return out
