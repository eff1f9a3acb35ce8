"""``nbops lineage NAME@ALIAS | NAME/VERSION | RUN``: where a model came from.

model version → run → stage → executed notebook → git commit → params → data fingerprints
(``nbops.dep.*`` content hashes of what the stage read, ``nbops.data.*`` of ``track_data``,
``nbops.out.*`` of what it wrote) → upstream stage runs: the runs whose outs have exactly the
content this run read (``nbops.out.<path>`` = ``nbops.dep.<path>``), preferring those of the same
pipeline execution, and recursively theirs.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from nbops import project, tags
from nbops.errors import InvalidInput, NotFound

if TYPE_CHECKING:
    from nbops.mlflow.store import TrackingStore

MAX_DEPTH = 20


def _store() -> TrackingStore:
    from nbops.mlflow.store import open_store

    return open_store()


def prefixed(run_tags: dict[str, str], prefix: str) -> dict[str, str]:
    """The tags whose name starts with ``prefix`` (``nbops.dep.``), keyed by the rest, sorted."""
    return {k[len(prefix) :]: v for k, v in sorted(run_tags.items()) if k.startswith(prefix)}


def resolve(target: str) -> tuple[dict[str, Any] | None, str]:
    """(model version info or None, run id) for NAME@ALIAS, NAME/VERSION or a run id."""
    from nbops.ops import names, registry

    if not isinstance(target, str) or not target:
        raise InvalidInput(
            "the lineage target is empty", "name NAME@ALIAS, NAME/VERSION or a run id"
        )
    if "@" not in target and "/" not in target:
        names.run_id(target, "run (or NAME@ALIAS, NAME/VERSION)")
    store = _store()
    mv = None
    if "@" in target:
        name, _, alias = target.rpartition("@")
        mv = registry.version_by_alias(store, name, alias)
    elif "/" in target:
        name, _, version = target.rpartition("/")
        mv = registry.model_version(store, name, version)
    if mv is None:
        store.get_run(target)  # NotFound naming it
        return None, target
    rm = registry.registered_model(store, mv.name)
    aliases = sorted(a for a, v in rm.aliases.items() if str(v) == str(mv.version))
    info = {
        "name": mv.name,
        "version": str(mv.version),
        "aliases": aliases,
        "source": mv.source,
        "created": mv.creation_timestamp,
    }
    if not mv.run_id:
        raise NotFound(
            f"model {mv.name} version {mv.version} has no source run ({mv.source})",
            "lineage follows versions registered from runs (nbops promote)",
        )
    return info, str(mv.run_id)


class Walker:
    """Walks lineage over one store (default: the project's; the server passes its own)."""

    def __init__(self, root: Path, store: TrackingStore | None = None) -> None:
        self.store = store if store is not None else _store()
        self.root = root
        self.seen: set[str] = set()
        self._runs: dict[str, Any] = {}

    def run(self, rid: str) -> Any:
        if rid not in self._runs:
            self._runs[rid] = self.store.get_run(rid)
        return self._runs[rid]

    def pipeline_run(self, run: Any) -> str | None:
        """The pipeline execution a stage run belongs to (the ancestor tagged nbops.pipeline)."""
        cur, hops = run, 0
        while cur is not None and hops < 5:
            if tags.PIPELINE in cur.data.tags:
                return str(cur.info.run_id)
            parent = cur.data.tags.get(tags.MLFLOW_PARENT_RUN_ID)
            if not parent:
                return None
            try:
                cur = self.run(parent)
            except NotFound:
                return None
            hops += 1
        return None

    def children(self, run: Any) -> list[Any]:
        from nbops.ops.names import filter_value

        quoted = filter_value(str(run.info.run_id))
        if quoted is None:
            return []
        return list(
            self.store.search_runs(
                [run.info.experiment_id], f"tags.`{tags.MLFLOW_PARENT_RUN_ID}` = {quoted}"
            )
        )

    def deps(self, run: Any) -> dict[str, str]:
        deps = prefixed(run.data.tags, tags.DEP_PREFIX)
        if not deps and tags.STAGE in run.data.tags:  # a sweep's stage run: its points read
            for child in self.children(run):
                for k, v in prefixed(child.data.tags, tags.DEP_PREFIX).items():
                    deps.setdefault(k, v)
        return deps

    def producer(self, run: Any, path: str, digest: str) -> Any:
        """The stage run whose out ``path`` holds ``digest``: same pipeline execution first."""
        from nbops.ops.names import filter_value

        if not digest or digest == "missing":
            return None
        key = f"{tags.OUT_PREFIX}{path}".replace("`", "")
        quoted = filter_value(digest)
        if quoted is None:  # not a content hash nbops wrote: nothing produced it
            return None
        found = self.store.search_runs(
            [run.info.experiment_id],
            f"tags.`{key}` = {quoted}",
            ["attributes.start_time DESC"],
            50,
        )
        if not found:
            return None
        mine = self.pipeline_run(run)
        for r in found:
            if mine and self.pipeline_run(r) == mine:
                return r
        return found[0]

    def executed(self, run: Any) -> str | None:
        rid = run.info.run_id
        runs_dir = project.state_dir(self.root, create=False) / "runs"
        for name in (rid, run.data.tags.get(tags.SPOOL)):  # kept by run id, or spool id
            kept = runs_dir / name if name else None
            if kept is not None and kept.is_dir():
                nbs = sorted(kept.glob("*.ipynb"))
                if nbs:
                    return str(nbs[0])
        try:
            for a in self.store.list_artifacts(rid, "notebook"):
                if a.path.endswith(".ipynb"):
                    return f"{run.info.artifact_uri}/{a.path}"
        except Exception:  # noqa: BLE001 - no artifacts readable: nothing to point at
            pass
        return None

    def node(self, rid: str, depth: int = 0) -> dict[str, Any]:
        run = self.run(rid)
        run_tags, info = run.data.tags, run.info
        node: dict[str, Any] = {
            "run_id": rid,
            "name": info.run_name,
            "status": info.status,
            "experiment_id": info.experiment_id,
            "stage": run_tags.get(tags.STAGE),
            "sweep_point": run_tags.get(tags.SWEEP_POINT),
            "pipeline_run": self.pipeline_run(run),
            "notebook": run_tags.get(tags.NOTEBOOK) or run_tags.get(tags.MLFLOW_SOURCE_NAME),
            "executed_notebook": self.executed(run),
            "git": {
                "commit": run_tags.get(tags.GIT_COMMIT) or run_tags.get(tags.MLFLOW_GIT_COMMIT),
                "branch": run_tags.get(tags.GIT_BRANCH),
                "dirty": run_tags.get(tags.GIT_DIRTY),
            },
            "params": dict(sorted(run.data.params.items())),
            "metrics": dict(sorted(run.data.metrics.items())),
            "data": {
                "deps": self.deps(run),
                "tracked": prefixed(run_tags, tags.DATA_PREFIX),
                "outs": prefixed(run_tags, tags.OUT_PREFIX),
            },
            "models": sorted(prefixed(run_tags, tags.MODEL_PREFIX)),
            "upstream": [],
        }
        if rid in self.seen or depth >= MAX_DEPTH:
            node["upstream_cut"] = True
            return node
        self.seen.add(rid)
        for path, digest in node["data"]["deps"].items():
            up = self.producer(run, path, digest)
            entry: dict[str, Any] = {"dep": path, "digest": digest}
            if up is None:
                entry["run"] = None  # source data: no stage run wrote this content
            elif up.info.run_id == rid:
                continue
            else:
                entry["run"] = self.node(up.info.run_id, depth + 1)
            node["upstream"].append(entry)
        return node


def lineage(target: str, root: Path | None = None) -> dict[str, Any]:
    """The lineage tree of a model version (NAME@ALIAS, NAME/VERSION) or a run, as plain data."""
    model, rid = resolve(target)
    tree = Walker(root or project.find_root()).node(rid)
    return {"target": target, "model": model, "run": tree}


# --- the terminal tree --------------------------------------------------------------------------
def _short(h: str | None) -> str:
    return (h or "-")[:12]


def render(tree: dict[str, Any]) -> str:
    lines: list[str] = []
    m = tree.get("model")
    if m:
        al = " ".join("@" + a for a in m["aliases"])
        lines.append(f"model {m['name']} version {m['version']} {al}".rstrip())
        lines.append(f"  source {m['source']}")
    _render_run(tree["run"], lines, "  " if m else "")
    return "\n".join(lines)


def _render_run(n: dict[str, Any], out: list[str], pad: str) -> None:
    what = n.get("sweep_point") or n.get("name") or ""
    out.append(f"{pad}run {n['run_id']}  {what}  {n['status']}".rstrip())
    p = pad + "  "
    if n.get("stage"):
        out.append(f"{p}stage     {n['stage']}  (pipeline run {n.get('pipeline_run') or '-'})")
    out.append(f"{p}notebook  {n.get('notebook') or '-'}")
    if n.get("executed_notebook"):
        out.append(f"{p}executed  {n['executed_notebook']}")
    g = n["git"]
    if g.get("commit"):
        extra = ", ".join(
            x for x in (g.get("branch"), "dirty" if g.get("dirty") == "true" else "") if x
        )
        out.append(f"{p}git       {g['commit'][:12]}" + (f" ({extra})" if extra else ""))
    else:
        out.append(f"{p}git       - (not in a git work tree)")
    if n["params"]:
        out.append(f"{p}params    " + ", ".join(f"{k}={v}" for k, v in n["params"].items()))
    for label, key in (("reads", "deps"), ("tracked", "tracked"), ("writes", "outs")):
        for path, digest in n["data"][key].items():
            out.append(f"{p}{label:<9} {path}  {_short(digest)}")
    if n.get("models"):
        out.append(f"{p}models    {', '.join(n['models'])}")
    for up in n["upstream"]:
        if up["run"] is None:
            out.append(f"{p}<- {up['dep']}: source data (no stage run wrote this content)")
        else:
            out.append(f"{p}<- {up['dep']} made by")
            _render_run(up["run"], out, p + "   ")
