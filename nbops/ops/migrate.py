"""``nbops migrate --to URI``: copy a project's store (by default its embedded ``.nbops/mlflow.db``
and artifacts) onto a tracking server, then check the copy (README, "Move a project onto the
server").

What is copied: every active experiment (by name: an experiment the server already has with that
name receives the runs; a new one keeps its tags and gets the server's artifact location), every
active run with its name, start and end times, status, params, tags, every value of every metric
(step and timestamp), its datasets and every artifact file; every registered model with its
description, tags, versions (their tags and descriptions; the source pointing at the new run's
artifacts) and aliases. Run ids change: every tag value that names a copied run (``mlflow.
parentRunId``, nbops' pipeline, sweep, re-run, verify and drift links, the gates' text) is
rewritten to the new id, and ``nbops.alias_history.*`` to the new version numbers.

Resumable and idempotent: each copied run and model version carries ``nbops.migrated_from`` (the
source's run id; ``<run id>/v<version>`` on a version), found again on the next migrate and
skipped. A run left half-copied by an interruption (its status not yet the source's) is deleted
and copied again. Nothing on the source is changed; the local store is kept.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from nbops import envvars, project, tags
from nbops.errors import AccessDenied, Exit, InvalidInput, StoreUnavailable
from nbops.mlflow import credentials
from nbops.mlflow.migration import ForeignArtifacts
from nbops.table import table

if TYPE_CHECKING:  # typing only
    from nbops.mlflow.migration import Endpoint, Model, Point, Run, Version

RUN_ID = re.compile(r"(?<![0-9a-f])[0-9a-f]{32}(?![0-9a-f])")
_TERMINAL = ("FINISHED", "FAILED", "KILLED")


def add_parsers(sub: Any) -> None:
    """Register ``migrate`` on the CLI's subparsers."""
    text = (
        "copy this project's store (.nbops/mlflow.db and its artifacts) onto a tracking server: "
        "experiments, runs with their metric histories, artifacts, registered models and "
        "aliases; then verify the counts. Running it again copies only what is missing"
    )
    sp = sub.add_parser("migrate", help=text, description=text)
    sp.add_argument("--to", dest="to", metavar="URI", help="the server, e.g. http://mlflow:5000")
    sp.add_argument(
        "--from",
        dest="source",
        metavar="URI",
        help="the store to copy (default: the project's embedded store .nbops/mlflow.db)",
    )
    sp.add_argument(
        "--dry-run", action="store_true", help="say what would be copied; write nothing"
    )
    sp.set_defaults(func=cmd_migrate)


# --- URIs ------------------------------------------------------------------------------------
def server_uri(raw: str | None) -> str:
    """The ``--to`` URI, checked: an ``http(s)://host[:port]`` MLflow server."""
    if not raw or not raw.strip():
        raise InvalidInput(
            "nbops migrate needs --to URI: the tracking server to copy the project onto",
            "nbops migrate --to http://mlflow.example:5000 (add --dry-run to see what it copies)",
        )
    uri = raw.strip().rstrip("/")
    parsed = urlparse(uri)
    try:
        port_ok = parsed.port is None or 0 < parsed.port < 65536
    except ValueError:
        port_ok = False
    if parsed.scheme in ("postgresql", "postgres", "mysql", "sqlite", "mssql"):
        raise InvalidInput(
            f"--to {credentials.server(uri)!r} is a database: migrate copies onto an MLflow "
            "server, which keeps the artifacts as well",
            "give the server's address: --to http://HOST:5000 (README, 'Team mode')",
        )
    if parsed.scheme not in ("http", "https") or not parsed.hostname or not port_ok:
        raise InvalidInput(
            f"--to {credentials.server(uri)[:200]!r} is not a tracking server URI",
            "give http://HOST:PORT or https://HOST, e.g. --to http://mlflow.example:5000",
        )
    return uri


def _same_store(a: str, b: str) -> bool:
    def key(uri: str) -> str:
        db = project.sqlite_path(uri)
        if db is not None:
            return "sqlite:" + str(db.resolve())
        p = urlparse(uri.rstrip("/"))
        port = p.port or (443 if p.scheme == "https" else 80)
        host = {"localhost": "127.0.0.1", "::1": "127.0.0.1"}.get(p.hostname or "", p.hostname)
        return f"{p.scheme}://{host}:{port}{p.path}"

    try:
        return key(a) == key(b)
    except ValueError:
        return False


def source_uri(raw: str | None, target: str, root: Path) -> str:
    """The store to copy: ``--from``, else ``MLFLOW_TRACKING_URI`` unless it already is the
    target, else the project's embedded store (which must exist: migrate never creates one)."""
    uri = (raw or "").strip()
    if not uri:
        env = os.environ.get(envvars.MLFLOW_TRACKING_URI, "").strip()
        uri = env if env and not _same_store(env, target) else project.default_tracking_uri(root)
    db = project.sqlite_path(uri)
    if db is not None and not db.is_file():
        raise InvalidInput(
            f"there is no store to migrate at {db}",
            "run it in the project's folder (the one with nbops.yaml or .nbops/), or name the "
            "store with --from sqlite:///PATH/mlflow.db",
        )
    if _same_store(uri, target):
        raise InvalidInput(
            f"--to {credentials.server(target)} is the store being copied: the source and the "
            "target are the same",
            "name the embedded store as the source: --from " + project.default_tracking_uri(root),
        )
    return uri


def rewrite(value: str, ids: dict[str, str]) -> str:
    """``value`` with every run id of ``ids`` replaced by its new id."""
    if not ids or len(value) < 32:
        return value
    return RUN_ID.sub(lambda m: ids.get(m.group(0), m.group(0)), value)


# --- the migration ---------------------------------------------------------------------------
@dataclass
class Plan:
    """What a migrate copies (or, in a dry run, would copy)."""

    experiments: dict[str, str] = field(default_factory=dict)  # name -> "new" / "exists"
    runs: dict[str, int] = field(default_factory=dict)  # experiment name -> runs to copy
    present: dict[str, int] = field(default_factory=dict)  # experiment name -> already copied
    versions: dict[str, int] = field(default_factory=dict)  # model -> versions to copy
    copied_runs: int = 0
    copied_versions: int = 0


class Migration:
    def __init__(
        self, src: Endpoint, dst: Endpoint, root: Path, say: Callable[[str], None]
    ) -> None:
        self.src, self.dst, self.root, self.say = src, dst, root, say
        self.ids: dict[str, str] = {}  # source run id -> target run id
        self.experiment_ids: dict[str, str] = {}  # source experiment id -> target's
        self.versions: dict[str, dict[str, str]] = {}  # model -> {source version: target}
        self.source_runs: dict[str, list[Run]] = {}  # source experiment id -> runs
        self.target_tags: dict[str, dict[str, str]] = {}  # target run id -> tags it has
        # where the source store's local artifacts may be (beside an SQLite store's database)
        beside = project.artifact_root_for(src.uri)
        self.artifact_roots = [beside] if beside is not None else []
        parsed = urlparse(src.uri)
        if beside is None and parsed.scheme in ("", "file"):  # a file store keeps them inside
            self.artifact_roots.append(Path(parsed.path))
        self.partial: dict[str, str] = {}  # source run id -> a half-made copy to replace
        self.notes: list[str] = []
        self.plan = Plan()

    # experiments and runs
    def survey(self) -> None:
        """Read the source and what the target already holds of it (no writes)."""
        for exp in self.src.experiments():
            runs = self.src.runs(exp.id)
            there = self.dst.experiment_named(exp.name)
            if there is not None and not there.active:
                raise InvalidInput(
                    f"experiment {exp.name!r} is deleted on {credentials.server(self.dst.uri)}: "
                    "its runs cannot be copied into it",
                    f"restore it there (mlflow experiments restore --experiment-id {there.id}) "
                    "or delete it for good, then migrate again",
                )
            if not runs and exp.name == "Default":
                continue  # MLflow's own empty experiment: nothing to move
            self.source_runs[exp.id] = runs
            done: dict[str, Run] = {}
            if there is not None:
                self.experiment_ids[exp.id] = there.id
                done = self.dst.migrated_runs(there.id)
            self.plan.experiments[exp.name] = "exists" if there is not None else "new"
            missing = [r for r in runs if not _complete(r, done.get(r.id))]
            self.plan.runs[exp.name] = len(missing)
            self.plan.present[exp.name] = len(runs) - len(missing)
            for r in runs:
                t = done.get(r.id)
                if t is not None and _complete(r, t):
                    self.ids[r.id] = t.id
                    self.target_tags[t.id] = dict(t.tags)
                elif t is not None:
                    self.notes.append(f"run {r.id}: a partial copy {t.id} is copied again")
                    self.partial[r.id] = t.id
                if r.status == "RUNNING":
                    self.notes.append(
                        f"run {r.id} is still RUNNING in the source: it is copied as it is now"
                    )

    def copy_runs(self, scratch: Path) -> None:
        for exp in self.src.experiments():
            runs = self.source_runs.get(exp.id)
            if runs is None:
                continue
            target = self.experiment_ids.get(exp.id)
            if target is None:
                kept = {  # MLflow's own experiment tags are the server's, but its description
                    k: v
                    for k, v in exp.tags.items()
                    if not k.startswith("mlflow.") or k == "mlflow.note.content"
                }
                kept[tags.MIGRATED_FROM] = exp.id
                target = self.dst.create_experiment(exp.name, kept)
                self.experiment_ids[exp.id] = target
                self.say(f"created experiment {exp.name!r} ({target}) on the target")
            for r in runs:
                if r.id in self.ids:
                    continue
                partial = self.partial.pop(r.id, None)
                if partial is not None:
                    self.dst.delete_run(partial)
                self.ids[r.id] = self._copy_run(r, target, scratch)
                self.plan.copied_runs += 1
                self.say(f"copied run {r.id} -> {self.ids[r.id]} ({exp.name}/{r.name})")

    def _copy_run(self, r: Run, experiment_id: str, scratch: Path) -> str:
        new = self.dst.create_run(experiment_id, r.name, r.start, r.tags.get(tags.MLFLOW_USER))
        body = {k: rewrite(v, self.ids) for k, v in r.tags.items()}
        body[tags.MIGRATED_FROM] = r.id
        metrics: list[tuple[str, Point]] = []
        for key in r.metric_keys:
            metrics += [(key, p) for p in self.src.history(r.id, key)]
        self.dst.log_batch(new, metrics, sorted(r.params.items()), sorted(body.items()))
        self.dst.log_inputs(new, r.inputs)
        try:
            has_files = bool(self.src.artifact_files(r))
        except ForeignArtifacts:
            self.notes.append(
                f"run {r.id} keeps its artifacts at {credentials.server(r.artifact_uri)}, a host "
                "of its own: not fetched (MLflow would send it the login)"
            )
            has_files = False
        if has_files:
            with _scratch_dir(scratch, r.id) as where:
                fetched = self.src.fetch_artifacts(r, where)
                tree = self._safe_tree(r, fetched, where)
                if tree is not None:
                    self.dst.upload_artifacts(new, tree)
        if r.status in _TERMINAL:  # last: a copy with the source's status is a whole one
            self.dst.terminate(new, r.status, r.end)
        self.target_tags[new] = body
        return new

    def _safe_tree(self, r: Run, tree: Path, scratch: Path) -> Path | None:
        """The directory to upload for run ``r``: its artifacts, but nothing outside them. A local
        tree outside the source store's artifact root is not uploaded; a symbolic link is
        followed only to a regular file inside the run's own tree (others are left out). Each
        omission is a note, and the verification then names the run."""
        base = tree.resolve()
        allowed = [p.resolve() for p in self.artifact_roots] + [scratch.resolve()]
        if not any(base.is_relative_to(a) for a in allowed):
            self.notes.append(
                f"run {r.id} keeps its artifacts in {tree}, outside the store's artifact root "
                f"{self.artifact_roots[0] if self.artifact_roots else '?'}: not copied"
            )
            return None
        links = [p for p in base.rglob("*") if p.is_symlink()]
        if not links:
            return base
        safe = scratch / "safe"
        for p in sorted(base.rglob("*")):
            rel = p.relative_to(base)
            if p.is_symlink():
                target = p.resolve()
                if not (target.is_relative_to(base) and target.is_file()):
                    self.notes.append(
                        f"run {r.id}: artifact {rel} links outside the run: not copied"
                    )
                    continue
                (safe / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(target, safe / rel)
            elif p.is_dir():
                (safe / rel).mkdir(parents=True, exist_ok=True)
            elif p.is_file():
                (safe / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(p, safe / rel)
        return safe

    def link(self) -> None:
        """Every tag that names a copied run, now that every run has its new id."""
        for runs in self.source_runs.values():
            for r in runs:
                new = self.ids[r.id]
                have = self.target_tags.get(new, {})
                want = {k: rewrite(v, self.ids) for k, v in r.tags.items()}
                changed = sorted((k, v) for k, v in want.items() if have.get(k) != v)
                if changed:
                    self.dst.log_batch(new, run_tags=changed)
                    have.update(changed)

    # registry
    def copy_models(self) -> None:
        for sm in self.src.models():
            sm = self.src.model(sm.name) or sm  # the search may leave aliases out
            tm = self.dst.model(sm.name)
            created = tm is None
            if tm is None:
                self.dst.create_model(sm.name, sm.description)
                self.say(f"registered model {sm.name!r} on the target")
            elif sm.description and not tm.description:
                self.dst.set_model_description(sm.name, sm.description)
            have = {v.tags.get(tags.MIGRATED_FROM): v for v in self.dst.versions(sm.name)}
            mapped = self.versions.setdefault(sm.name, {})
            for sv in self.src.versions(sm.name):
                key = version_key(sv)
                if key in have:
                    mapped[sv.version] = have[key].version
                    continue
                vtags = {k: rewrite(v, self.ids) for k, v in sv.tags.items()}
                vtags[tags.MIGRATED_FROM] = key
                run = self.ids.get(sv.run_id or "")
                source = self._version_source(sv, run)
                if source is None:
                    continue
                mapped[sv.version] = self.dst.create_version(
                    sm.name, source, run, vtags, sv.description
                )
                self.plan.copied_versions += 1
                self.say(f"copied {sm.name} version {sv.version} -> {mapped[sv.version]}")
            self._aliases(sm, tm, mapped, created)

    def _version_source(self, sv: Version, run: str | None) -> str | None:
        """Where the copy of version ``sv`` takes its files from: the copied run's artifacts;
        a source elsewhere that every teammate can reach is kept; None (the version is not
        copied, with a note) when its files are on this machine only, outside any copied run."""
        if run is not None and sv.run_id is not None:
            if sv.source.startswith(f"runs:/{sv.run_id}"):
                return f"runs:/{run}" + sv.source[len(f"runs:/{sv.run_id}") :]
            for runs in self.source_runs.values():
                for r in runs:
                    base = r.artifact_uri.rstrip("/")
                    if r.id == sv.run_id and base and sv.source.startswith(base + "/"):
                        return f"runs:/{run}/" + sv.source[len(base) + 1 :]
        if urlparse(sv.source).scheme in ("", "file", "runs"):
            why = (
                f"its run {sv.run_id} is not an active run of the source (restore it with "
                f"`mlflow runs restore --run-id {sv.run_id}`, or delete the version)"
                if sv.run_id and run is None
                else f"its files ({sv.source}) are on this machine, outside any copied run"
            )
            self.notes.append(f"model {sv.name} version {sv.version} is not copied: {why}")
            return None
        self.notes.append(
            f"model {sv.name} version {sv.version}: source {sv.source} is not a copied run's "
            "artifacts; it is kept as it is"
        )
        return sv.source

    def _aliases(self, sm: Model, tm: Model | None, mapped: dict[str, str], created: bool) -> None:
        ours = set(mapped.values())
        kept: set[str] = set()
        for alias, old in sorted(sm.aliases.items()):
            new = mapped.get(old)
            current = tm.aliases.get(alias) if tm is not None else None
            if new is None or current == new:
                continue
            if current is not None and current not in ours:
                kept.add(alias)
                self.notes.append(
                    f"{sm.name}@{alias} already points at version {current} on the target (not "
                    f"one this migrate copied): left there; ours is version {new}"
                )
                continue
            self.dst.set_alias(sm.name, alias, new)
            self.say(f"{sm.name}@{alias} -> version {new}")
        for key, value in sorted(sm.tags.items()):
            if key.startswith(tags.ALIAS_HISTORY_PREFIX):
                if key[len(tags.ALIAS_HISTORY_PREFIX) :] in kept:
                    continue
                value = _versions_renamed(value, mapped)
            else:
                value = rewrite(value, self.ids)
            if tm is None or tm.tags.get(key) != value:
                self.dst.set_model_tag(sm.name, key, value)
        if created:
            self.dst.set_model_tag(sm.name, tags.MIGRATED_FROM, "nbops migrate")

    # local state
    def rewrite_local_state(self) -> list[str]:
        """Point what ``.nbops/`` records of runs at their new ids; what was done, as lines."""
        from nbops.pipeline.state import State

        said: list[str] = []
        state_dir = project.state_dir(self.root, create=False)
        st = State(state_dir)
        changed = 0
        for points in st.stages.values():
            for rec in points.values():
                if rec.run_id and rec.run_id in self.ids:
                    rec.run_id, changed = self.ids[rec.run_id], changed + 1
        if changed:
            backup = st.file.with_name(st.file.name + ".before-migrate")
            if not backup.exists():
                shutil.copy2(st.file, backup)
            st.save()
            said.append(
                f"{st.file}: {changed} run ids now name the server's runs (the embedded store's "
                f"are in {backup.name})"
            )
        runs_dir = state_dir / "runs"
        linked = 0
        for old, new in self.ids.items():
            if (runs_dir / old).is_dir() and not (runs_dir / new).exists():
                os.symlink(old, runs_dir / new)
                linked += 1
        if linked:
            said.append(f"{runs_dir}: {linked} executed notebooks also found by their new run ids")
        if (state_dir / "scheduler" / "scheduler.db").exists():
            said.append(
                "schedule history keeps the embedded store's run ids (find a run on the server "
                f"with tags.`{tags.MIGRATED_FROM}` = '<old id>')"
            )
        return said


def version_key(sv: Version) -> str:
    """What ``nbops.migrated_from`` says on a copied model version."""
    return f"{sv.run_id or '-'}/v{sv.version}"


def _versions_renamed(value: str, mapped: dict[str, str]) -> str:
    try:
        versions = json.loads(value)
    except (ValueError, RecursionError):
        return value
    if not isinstance(versions, list):
        return value
    return json.dumps([mapped.get(str(v), str(v)) for v in versions])


def _complete(src: Run, dst: Run | None) -> bool:
    """A target run is a whole copy of ``src``: its status and params are the source's."""
    if dst is None:
        return False
    return dst.status == src.status and dst.params == src.params


class _scratch_dir:
    """A fresh directory for one run's downloaded artifacts, removed afterwards."""

    def __init__(self, base: Path, name: str) -> None:
        self.path = base / name

    def __enter__(self) -> Path:
        self.path.mkdir(parents=True, exist_ok=True)
        return self.path

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


# --- verification ----------------------------------------------------------------------------
def _points(ep: Endpoint, run: Run) -> dict[str, list[Point]]:
    return {k: ep.history(run.id, k) for k in run.metric_keys}


def _files(ep: Endpoint, run: Run) -> dict[str, int] | None:
    """A run's artifact files, None when they are on a host of their own (never listed)."""
    try:
        return ep.artifact_files(run)
    except ForeignArtifacts:
        return None


def _same_points(a: list[Point], b: list[Point]) -> bool:
    return [(repr(v), ts, s) for v, ts, s in a] == [(repr(v), ts, s) for v, ts, s in b]


def verify(m: Migration) -> tuple[list[list[object]], list[str]]:
    """Compare the target with the source: a table's rows and what differs (empty: all equal)."""
    rows: list[list[object]] = []
    problems: list[str] = []
    names = {e.id: e.name for e in m.src.experiments()}
    for exp_id, runs in m.source_runs.items():
        name = names.get(exp_id, exp_id)
        target = m.experiment_ids.get(exp_id)
        copies = m.dst.migrated_runs(target) if target else {}
        n = dict.fromkeys(("params", "tags", "values", "files"), 0)
        t = dict(n)
        for r in runs:
            c = copies.get(r.id)
            sp, sf = _points(m.src, r), _files(m.src, r)
            n["params"] += len(r.params)
            n["tags"] += len(r.tags)
            n["values"] += sum(map(len, sp.values()))
            if sf is None:
                problems.append(
                    f"run {r.id} ({name}/{r.name}): its artifacts are on a host of their own "
                    f"({credentials.server(r.artifact_uri)}) and were not copied"
                )
            sf = sf or {}
            n["files"] += len(sf)
            if c is None:
                problems.append(f"run {r.id} ({name}/{r.name}) is not on the target")
                continue
            tp, tf = _points(m.dst, c), _files(m.dst, c)
            theirs = {k: v for k, v in c.tags.items() if k != tags.MIGRATED_FROM}
            t["params"] += len(c.params)
            t["tags"] += len(theirs)
            t["values"] += sum(map(len, tp.values()))
            tf = tf or {}
            t["files"] += len(tf)
            want = {k: rewrite(v, m.ids) for k, v in r.tags.items()}
            where = f"run {r.id} ({name}/{r.name}) -> {c.id}"
            if c.params != r.params:
                problems.append(f"{where}: params differ")
            bad = sorted(k for k in want if theirs.get(k) != want[k])
            extra = sorted(k for k in theirs if k not in want and not k.startswith("mlflow."))
            if bad or extra:
                problems.append(f"{where}: tags differ: {', '.join((bad + extra)[:5])}")
            for key in sorted(set(sp) | set(tp)):
                if not _same_points(sp.get(key, []), tp.get(key, [])):
                    problems.append(
                        f"{where}: metric {key!r} has {len(sp.get(key, []))} values in the "
                        f"source, {len(tp.get(key, []))} on the target"
                    )
            if sf != tf:
                diff = sorted(set(sf.items()) ^ set(tf.items()))[:3]
                problems.append(f"{where}: artifacts differ: {', '.join(p for p, _ in diff)}")
            if (c.status, c.start, c.end, c.name) != (r.status, r.start, r.end, r.name):
                problems.append(f"{where}: status, times or name differ")
            if len(c.inputs) != len(r.inputs):
                problems.append(f"{where}: {len(r.inputs)} datasets, {len(c.inputs)} on target")
        rows.append(
            [
                f"experiment {name}",
                f"{len(runs)}/{len(copies)}",
                f"{n['params']}/{t['params']}",
                f"{n['tags']}/{t['tags']}",
                f"{n['values']}/{t['values']}",
                f"{n['files']}/{t['files']}",
                "-",
                "-",
            ]
        )
    for sm in m.src.models():
        sm = m.src.model(sm.name) or sm
        tm = m.dst.model(sm.name)
        src_versions = {version_key(v) for v in m.src.versions(sm.name)}
        tv = [] if tm is None else m.dst.versions(sm.name)
        got = {v.tags.get(tags.MIGRATED_FROM): v.version for v in tv}
        found = src_versions & set(got)
        mapped = m.versions.get(sm.name, {})
        aliases = sum(
            1
            for a, old in sm.aliases.items()
            if tm is not None and tm.aliases.get(a) == mapped.get(old)
        )
        for missing in sorted(src_versions - found):
            problems.append(f"model {sm.name}: version {missing} is not on the target")
        for a, old in sorted(sm.aliases.items()):
            if tm is None or tm.aliases.get(a) != mapped.get(old):
                now = tm.aliases.get(a) if tm is not None else None
                problems.append(
                    f"model {sm.name}@{a}: version {old} in the source is version "
                    f"{mapped.get(old, '?')} on the target, but the alias points at {now}"
                )
        rows.append(
            [
                f"model {sm.name}",
                "-",
                "-",
                "-",
                "-",
                "-",
                f"{len(src_versions)}/{len(found)}",
                f"{len(sm.aliases)}/{aliases}",
            ]
        )
    return rows, problems


HEADER = ["WHAT", "RUNS", "PARAMS", "TAGS", "METRIC VALUES", "ARTIFACTS", "VERSIONS", "ALIASES"]


# --- the command -----------------------------------------------------------------------------
def cmd_migrate(args: argparse.Namespace) -> int:
    root = project.find_root()
    target = server_uri(args.to)
    source = source_uri(args.source, target, root)

    def say(line: str) -> None:
        print(line, flush=True)

    if project.sqlite_path(source) is not None:
        from nbops.mlflow.store import open_store

        open_store(source)  # an older embedded store is upgraded as every command does
    from nbops.mlflow.migration import Endpoint

    src = Endpoint(source, "source")
    try:
        dst = Endpoint(target, "target")
    except AccessDenied:
        raise
    except StoreUnavailable as exc:  # a usage error here: the address given does not answer
        raise InvalidInput(
            f"--to {credentials.server(target)} does not answer: {exc.message.split(': ', 1)[-1]}",
            "start the server (README, 'Team mode') or fix the URI, then migrate again",
        ) from exc
    m = Migration(src, dst, root, say)
    m.survey()
    print(f"migrate {credentials.server(source)} -> {credentials.server(target)}")
    _pending(root, source)
    if args.dry_run:
        return _dry_run(m)
    with project.scratch(root, prefix="nbops-migrate-") as scratch:
        m.copy_runs(Path(scratch))
    m.link()
    m.copy_models()
    if not m.plan.copied_runs and not m.plan.copied_versions:
        say("nothing to copy: the target already holds every run and model version")
    rows, problems = verify(m)
    print(table(rows, HEADER))
    print("(source/target)")
    for note in m.notes:
        print(f"note: {note}")
    if problems:
        for p in problems[:50]:
            print(f"nbops migrate: differs: {p}", file=sys.stderr)
        more = f" (and {len(problems) - 50} more)" if len(problems) > 50 else ""
        print(
            f"nbops migrate: the copy differs from the source in {len(problems)} places{more}; "
            "run `nbops migrate` again to copy what is missing",
            file=sys.stderr,
        )
        return Exit.FAILED
    if source == project.default_tracking_uri(root):
        for line in m.rewrite_local_state():
            print(line)
    print(
        f"verified: the target holds everything. Point the project at it:\n"
        f"  export {envvars.MLFLOW_TRACKING_URI}={credentials.server(target)}\n"
        f"The local store is kept ({credentials.server(source)}): delete it once you trust "
        "the copy."
    )
    return Exit.OK


def _dry_run(m: Migration) -> int:
    rows = [
        [f"experiment {name}", how, m.plan.runs[name], m.plan.present[name]]
        for name, how in m.plan.experiments.items()
    ]
    for sm in m.src.models():
        tm = m.dst.model(sm.name)
        have = {v.tags.get(tags.MIGRATED_FROM) for v in m.dst.versions(sm.name)} if tm else set()
        todo = [v for v in m.src.versions(sm.name) if version_key(v) not in have]
        rows.append([f"model {sm.name}", "exists" if tm else "new", len(todo), "-"])
    print(table(rows, ["WHAT", "ON TARGET", "TO COPY", "ALREADY COPIED"]))
    for note in m.notes:
        print(f"note: {note}")
    print("dry run: nothing was written")
    return Exit.OK


def _pending(root: Path, source: str) -> None:
    """A line when the project has spools not yet delivered to its embedded store."""
    if source != project.default_tracking_uri(root):
        return
    from nbops.tracking.recovery import spool_dirs

    waiting = spool_dirs(project.state_dir(root, create=False))
    if waiting:
        print(
            f"note: {len(waiting)} runs are still spooled, not yet in the embedded store: run "
            "`nbops sync`, then `nbops migrate` again to copy them",
            file=sys.stderr,
        )
