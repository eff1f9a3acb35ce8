"""``nbops lineage NAME@ALIAS | NAME/VERSION | RUN``: where a model came from.

model version → run → stage → executed notebook → git commit → params → data fingerprints
(``nbops.dep.*`` content hashes of what the stage read, ``nbops.data.*`` of ``track_data``,
``nbops.out.*`` of what it wrote) → upstream stage runs, and recursively theirs:

- a dep on a file: the run whose out has exactly that content (``nbops.out.<path>`` =
  ``nbops.dep.<path>``), the same pipeline execution first, a sweep point before its parent;
- a dep on a directory: the stage runs whose outs lie inside it and, with the files no stage
  wrote, make up exactly the content read (its tree digest): for a sweep with per-point outs,
  the point runs, each with the files it wrote; a directory that is a shared out of a sweep
  names the parent (which point wrote which file is not recorded then, and the tree says so);
- a tracked file (``nbops.data.<role>.<name>``, any role but ``output``): the run whose out
  has that content (evaluate tracks the model file it loads: the exact sweep point).

Every kind of run has a lineage (:func:`kind_of`): a stage run, a sweep point (its stage, its
parent, its own outs), a sweep's parent (its points; its reads are theirs), a pipeline run (its
stage runs), and a run that ``nbops run`` did not make (what it recorded: notebook, git, params,
tracked data). Where something cannot be known the node carries a ``note`` saying exactly what.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from nbops import project, tags
from nbops.errors import InvalidInput, NotFound
from nbops.ops.runkinds import KINDS, kind_of

if TYPE_CHECKING:
    from nbops.mlflow.store import TrackingStore

MAX_DEPTH = 20
MAX_CANDIDATES = 1000  # the newest stage runs of an experiment that may have written an input


def _store() -> TrackingStore:
    from nbops.mlflow.store import open_store

    return open_store()


def _read_store() -> RunSource:
    """The runs, read through the embedded store's SQL when it can (no MLflow imported), else
    the facade (:func:`nbops.mlflow.readers.facade.open_read_store`)."""
    from nbops.mlflow.readers.facade import open_read_store

    return open_read_store()


class RunSource(Protocol):
    """What the walk reads: :class:`~nbops.mlflow.store.TrackingStore`'s reads, which
    :class:`~nbops.mlflow.readers.facade.ReadStore` has too."""

    def get_run(self, run_id: str) -> Any: ...

    def search_runs(
        self,
        experiment_ids: list[str],
        filter_string: str = "",
        order_by: list[str] | None = None,
        max_results: int = 1000,
    ) -> list[Any]: ...

    def experiment_by_name(self, name: str) -> Any: ...

    def list_artifacts(self, run_id: str, path: str | None = None) -> list[Any]: ...


def prefixed(run_tags: dict[str, str], prefix: str) -> dict[str, str]:
    """The tags whose name starts with ``prefix`` (``nbops.dep.``), keyed by the rest, sorted."""
    return {k[len(prefix) :]: v for k, v in sorted(run_tags.items()) if k.startswith(prefix)}


def resolve(target: str) -> tuple[dict[str, Any] | None, str]:
    """(model version info or None, run id) for NAME@ALIAS, NAME/VERSION or a run id."""
    from nbops.ops import names

    if not isinstance(target, str) or not target:
        raise InvalidInput(
            "the lineage target is empty", "name NAME@ALIAS, NAME/VERSION or a run id"
        )
    if "@" not in target and "/" not in target:
        names.run_id(target, "run (or NAME@ALIAS, NAME/VERSION)")
        _read_store().get_run(target)  # NotFound naming it
        return None, target
    from nbops.ops import registry  # (its gates' config models cost 0.2 s to import)

    store = _store()  # the model registry: through MLflow
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


def tree_digest(files: dict[str, str]) -> str:
    """The digest :meth:`nbops.pipeline.hashing.HashCache.digest` gives a directory holding
    ``files`` (name inside it -> content digest): its walk order (a folder's files before its
    sub-folders, each sorted) and its lines."""
    import xxhash

    def order(name: str) -> tuple[tuple[int, str], ...]:
        parts = name.split("/")
        return (*((1, d) for d in parts[:-1]), (0, parts[-1]))

    h = xxhash.xxh3_128()
    for name in sorted(files, key=order):
        h.update(f"{name}\0{files[name]}\n".encode())
    return "tree:" + h.hexdigest()


def _is_content(digest: str | None) -> bool:
    return bool(digest) and digest != "missing"


class Walker:
    """Walks lineage over one store (default: the project's; the server passes its own)."""

    def __init__(self, root: Path, store: RunSource | None = None) -> None:
        self.store: RunSource = store if store is not None else _read_store()
        self.root = root
        self.seen: set[str] = set()
        self._runs: dict[str, Any] = {}
        self._children: dict[str, list[Any]] = {}
        self._candidates: dict[str, list[Any]] = {}

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
        """The runs whose parent is ``run`` (oldest first)."""
        from nbops.ops.names import filter_value

        rid = str(run.info.run_id)
        if rid not in self._children:
            quoted = filter_value(rid)
            found = (
                self.store.search_runs(
                    [run.info.experiment_id],
                    f"tags.`{tags.MLFLOW_PARENT_RUN_ID}` = {quoted}",
                    ["attributes.start_time ASC"],
                )
                if quoted is not None
                else []
            )
            self._children[rid] = list(found)
            for c in found:
                self._runs.setdefault(c.info.run_id, c)
        return self._children[rid]

    def points(self, run: Any) -> list[Any]:
        """A sweep parent's point runs ([] for any other run)."""
        if tags.STAGE not in run.data.tags or tags.SWEEP_POINT in run.data.tags:
            return []
        return [c for c in self.children(run) if tags.SWEEP_POINT in c.data.tags]

    def kind(self, run: Any) -> str:
        """:func:`kind_of` the run, asking the store whether a stage run has sweep points."""
        return kind_of(run.data.tags, bool(self.points(run)))

    def deps(self, run: Any) -> dict[str, str]:
        deps = prefixed(run.data.tags, tags.DEP_PREFIX)
        if not deps and tags.STAGE in run.data.tags:  # a sweep's stage run: its points read
            for child in self.children(run):
                for k, v in prefixed(child.data.tags, tags.DEP_PREFIX).items():
                    deps.setdefault(k, v)
        return deps

    def tracked(self, run: Any) -> dict[str, str]:
        """The files the run tracked as read (``nbops.data.<role>.<name>``, role not output)."""
        return {
            k: v
            for k, v in prefixed(run.data.tags, tags.DATA_PREFIX).items()
            if not k.startswith("output.")
        }

    def _rank(self, run: Any, found: list[Any]) -> list[Any]:
        """``found`` with the runs of ``run``'s pipeline execution first, and of those a sweep
        point before its parent (both record a point's outs), else newest first."""
        mine = self.pipeline_run(run)

        def key(r: Any) -> tuple[bool, bool, int]:
            same = bool(mine) and self.pipeline_run(r) == mine
            return (not same, tags.SWEEP_POINT not in r.data.tags, -(r.info.start_time or 0))

        return sorted(found, key=key)

    def producer(self, run: Any, path: str, digest: str) -> Any:
        """The stage run whose out ``path`` holds ``digest``: same pipeline execution first, a
        sweep point before its parent (the point's own outs.json holds it)."""
        from nbops.ops.names import filter_value

        if not _is_content(digest):
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
        return self._rank(run, list(found))[0]

    def candidates(self, run: Any) -> list[Any]:
        """The newest stage runs (with outs) that may have written what ``run`` read: in its
        experiment and, for a run that is no stage run, in the project pipeline's."""
        ids = [str(run.info.experiment_id)]
        if tags.STAGE not in run.data.tags:
            ids += [e for e in self._pipeline_experiment() if e not in ids]
        key = ",".join(ids)
        if key not in self._candidates:
            found = self.store.search_runs(
                ids,
                f"tags.`{tags.STAGE}` LIKE '%'",
                ["attributes.start_time DESC"],
                MAX_CANDIDATES,
            )
            self._candidates[key] = [
                r for r in found if any(k.startswith(tags.OUT_PREFIX) for k in r.data.tags)
            ]
            for r in found:
                self._runs.setdefault(r.info.run_id, r)
        return self._candidates[key]

    def _pipeline_experiment(self) -> list[str]:
        from nbops.errors import NbopsError

        try:
            from nbops.ops.registry import pipeline

            spec = pipeline(self.root)
            exp = self.store.experiment_by_name(spec.experiment) if spec is not None else None
        except (NbopsError, OSError):  # no readable nbops.yaml: the run's experiment only
            return []
        return [str(exp.experiment_id)] if exp is not None else []

    def tracked_producer(self, run: Any, name: str, digest: str) -> Any:
        """The stage run whose out holds the content of a file ``run`` tracked (``name``:
        ``<role>.<file name>``); one whose out has that file name first."""
        if not _is_content(digest):
            return None
        base = name.split(".", 1)[-1]
        found = [
            r
            for r in self.candidates(run)
            if r.info.run_id != run.info.run_id
            and any(k.startswith(tags.OUT_PREFIX) and v == digest for k, v in r.data.tags.items())
        ]
        if not found:
            return None

        def named(r: Any) -> bool:
            return any(
                k.startswith(tags.OUT_PREFIX)
                and v == digest
                and k.rsplit("/", 1)[-1].endswith(base)
                for k, v in r.data.tags.items()
            )

        ranked = self._rank(run, found)
        return next((r for r in ranked if named(r)), ranked[0])

    def inside(
        self, run: Any, path: str, digest: str
    ) -> tuple[list[tuple[Any, list[str]]], list[str]] | None:
        """For a dep on the directory ``path`` read with tree digest ``digest``: the stage runs
        whose outs lie inside it, each with its files, and the files no stage run wrote; None
        when no pipeline execution's outs (with the files on disk no stage wrote) make up
        exactly that content."""
        if not (digest or "").startswith("tree:"):
            return None
        prefix = f"{tags.OUT_PREFIX}{path.rstrip('/')}/"
        groups: dict[str | None, list[Any]] = {}
        for r in self.candidates(run):
            if r.info.run_id == run.info.run_id:
                continue
            if any(k.startswith(prefix) for k in r.data.tags):
                groups.setdefault(self.pipeline_run(r), []).append(r)
        mine = self.pipeline_run(run)
        order = sorted(groups, key=lambda g: g != mine)  # this execution first, then newest
        on_disk = self._disk_files(path)
        for g in order:
            claimed: dict[str, tuple[str, Any]] = {}
            # a point before its parent: the parent repeats every point's outs
            for r in sorted(groups[g], key=lambda r: tags.SWEEP_POINT not in r.data.tags):
                for k, v in r.data.tags.items():
                    if k.startswith(prefix) and _is_content(v) and not v.startswith("tree:"):
                        claimed.setdefault(k[len(prefix) :], (v, r))
            files = {n: d for n, (d, _) in claimed.items()}
            unclaimed = {n: d for n, d in on_disk.items() if n not in files}
            if tree_digest({**files, **unclaimed}) != digest:
                continue
            by_run: dict[str, tuple[Any, list[str]]] = {}
            for n in sorted(claimed):
                r = claimed[n][1]
                by_run.setdefault(r.info.run_id, (r, []))[1].append(n)
            return list(by_run.values()), sorted(unclaimed)
        return None

    def _disk_files(self, path: str) -> dict[str, str]:
        """The files inside the project's directory ``path`` now, with their digests."""
        from nbops.tracking.fingerprint import file_digest

        top = self.root / path
        out: dict[str, str] = {}
        if not top.is_dir() or top.is_symlink():
            return out
        for p in sorted(top.rglob("*")):
            if len(out) >= MAX_CANDIDATES:
                break
            if p.is_file() and not p.is_symlink():
                try:
                    out[p.relative_to(top).as_posix()] = file_digest(p)[0]
                except OSError:
                    continue
        return out

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

    @staticmethod
    def brief(run: Any) -> dict[str, Any]:
        """A run as a line: id, stage, sweep point, name, status."""
        t = run.data.tags
        return {
            "run_id": run.info.run_id,
            "stage": t.get(tags.STAGE),
            "sweep_point": t.get(tags.SWEEP_POINT),
            "name": run.info.run_name,
            "status": run.info.status,
        }

    def node(self, rid: str, depth: int = 0) -> dict[str, Any]:
        run = self.run(rid)
        run_tags, info = run.data.tags, run.info
        kind = self.kind(run)
        node: dict[str, Any] = {
            "run_id": rid,
            "kind": kind,
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
            "sweep": None,
            "points": [],
            "stages": [],
            "note": None,
            "upstream": [],
        }
        self._kind_facts(run, kind, node)
        if rid in self.seen or depth >= MAX_DEPTH:
            node["upstream_cut"] = True
            return node
        self.seen.add(rid)
        for path, digest in node["data"]["deps"].items():
            node["upstream"] += self._dep_edges(run, path, digest, depth)
        for name, digest in self.tracked(run).items():
            up = self.tracked_producer(run, name, digest)
            if up is not None and up.info.run_id != rid:
                node["upstream"].append(
                    {
                        "dep": name.split(".", 1)[-1],
                        "digest": digest,
                        "via": "tracked",
                        "run": self.node(up.info.run_id, depth + 1),
                    }
                )
        return node

    def _kind_facts(self, run: Any, kind: str, node: dict[str, Any]) -> None:
        """What a run's kind adds: a point's parent, a sweep's points, a pipeline's stages, and
        the note on what cannot be known."""
        rid = run.info.run_id
        if kind == "point":
            parent_id = run.data.tags.get(tags.MLFLOW_PARENT_RUN_ID)
            node["sweep"] = {"run_id": parent_id, "stage": run.data.tags.get(tags.STAGE)}
            shared = self._shared_outs(parent_id)
            if shared and node["data"]["outs"]:
                node["note"] = (
                    f"the outs {', '.join(shared)} are shared by the points of stage "
                    f"{run.data.tags.get(tags.STAGE)}: recorded on the sweep's run {parent_id}"
                )
            elif not node["data"]["outs"]:
                node["note"] = (
                    f"sweep point {run.data.tags.get(tags.SWEEP_POINT)} recorded no outs of its "
                    f"own: the outs of stage {run.data.tags.get(tags.STAGE)} are shared by its "
                    f"points and recorded on the sweep's run {parent_id or '-'} (give each "
                    "point its own files with ${NAME} in outs: to know which point wrote what)"
                )
        elif kind == "sweep":
            pts = self.points(run)
            node["points"] = [self.brief(p) for p in pts]
            node["note"] = (
                f"run {rid} is the sweep of stage {run.data.tags.get(tags.STAGE)}: its "
                f"{len(pts)} point runs executed the notebook; it reads what they read and "
                "holds all their outs"
            )
        elif kind == "pipeline":
            node["stages"] = [self.brief(c) for c in self.children(run)]
            node["note"] = (
                f"run {rid} is the pipeline run of an `nbops run`: it read and wrote nothing "
                f"itself; its {len(node['stages'])} stage runs did (nbops lineage <stage run>)"
            )
        elif kind in ("run", "drift", "verify"):
            node["note"] = (
                f"run {rid} is {KINDS[kind]}: it declares no deps or outs, so its lineage is "
                "what it recorded (notebook, git, params, tracked data); a tracked file leads "
                "upstream when a stage run wrote that content"
            )

    def _shared_outs(self, sweep_id: str | None) -> list[str]:
        """The outs a sweep's points share (``nbops.shared_outs`` of its run, a JSON list)."""
        import json

        if not sweep_id:
            return []
        try:
            raw = self.run(sweep_id).data.tags.get(tags.SHARED_OUTS)
            value = json.loads(raw) if raw else []
        except (NotFound, ValueError, RecursionError):
            return []
        return [str(v) for v in value] if isinstance(value, list) else []

    def _dep_edges(self, run: Any, path: str, digest: str, depth: int) -> list[dict[str, Any]]:
        rid = run.info.run_id
        up = self.producer(run, path, digest)
        if up is not None and up.info.run_id == rid:
            return []
        if up is not None:
            entry: dict[str, Any] = {"dep": path, "digest": digest, "run": None}
            pts = self.points(up)
            if pts and digest.startswith("tree:"):
                entry["note"] = (
                    f"{path} is an out shared by the {len(pts)} points of sweep "
                    f"{up.data.tags.get(tags.STAGE)} (run {up.info.run_id}); which point "
                    "wrote which file is not recorded (declare per-point outs with ${NAME})"
                )
            entry["run"] = self.node(up.info.run_id, depth + 1)
            return [entry]
        found = self.inside(run, path, digest)
        if found is None:
            return [{"dep": path, "digest": digest, "run": None}]  # source data
        writers, unclaimed = found
        edges: list[dict[str, Any]] = [
            {
                "dep": path,
                "digest": digest,
                "files": files,
                "run": self.node(w.info.run_id, depth + 1),
            }
            for w, files in writers
        ]
        if unclaimed:
            edges.append({"dep": path, "digest": digest, "files": unclaimed, "run": None})
        return edges


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
    _render_run(tree["run"], lines, "  " if m else "", set())
    return "\n".join(lines)


def _render_run(n: dict[str, Any], out: list[str], pad: str, shown: set[str]) -> None:
    what = n.get("sweep_point") or n.get("name") or ""
    out.append(f"{pad}run {n['run_id']}  {what}  {n['status']}".rstrip())
    p = pad + "  "
    if n.get("upstream_cut") and n["run_id"] in shown:
        out.append(f"{p}(shown above)")
        return
    shown.add(n["run_id"])
    kind = n.get("kind") or "stage"
    if n.get("stage"):
        where = f"pipeline run {n.get('pipeline_run') or '-'}"
        if kind == "point" and n.get("sweep"):
            where = f"sweep run {n['sweep'].get('run_id') or '-'}, " + where
        word = {"point": "sweep point of", "sweep": "sweep of"}.get(kind, "")
        out.append(f"{p}stage     {(word + ' ') if word else ''}{n['stage']}  ({where})")
    else:
        out.append(f"{p}kind      {KINDS.get(kind, kind)}")
    if kind != "pipeline":  # its source is nbops itself, not a notebook
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
    for pt in n.get("points") or []:
        out.append(f"{p}point     {pt['run_id']}  {pt.get('sweep_point') or '-'}  {pt['status']}")
    for st in n.get("stages") or []:
        label = st.get("sweep_point") or st.get("stage") or st.get("name") or "-"
        out.append(f"{p}stage run {st['run_id']}  {label}  {st['status']}")
    if n.get("note"):
        out.append(f"{p}note      {n['note']}")
    for up in n["upstream"]:
        files = f" ({', '.join(up['files'])})" if up.get("files") else ""
        what = f"tracked {up['dep']}" if up.get("via") == "tracked" else up["dep"]
        if up["run"] is None:
            if up.get("files"):
                out.append(f"{p}<- {what}{files}: source data (no stage run wrote these files)")
            else:
                out.append(f"{p}<- {what}: source data (no stage run wrote this content)")
        else:
            out.append(f"{p}<- {what}{files} made by")
            if up.get("note"):
                out.append(f"{p}   ({up['note']})")
            _render_run(up["run"], out, p + "   ", shown)
