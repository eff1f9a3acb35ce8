"""Is a stage up to date? Its fingerprint (code, params, deps, environment) against the record of
its last successful execution, plus whether its outs still hold what that execution wrote.
Pure functions over plain data: no kernel, no MLflow."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import xxhash

from nbops.pipeline.hashing import HashCache
from nbops.pipeline.state import Record


@lru_cache(maxsize=1)
def environment_digest() -> str:
    """Python version plus every installed distribution (name and version from the names of
    ``*.dist-info`` directories: a directory listing, not an import of importlib.metadata)."""
    names: set[str] = set()
    for entry in sys.path:  # the set of distributions, whatever the order or number of entries
        try:
            names.update(
                n for n in os.listdir(entry or ".") if n.endswith((".dist-info", ".egg-info"))
            )
        except OSError:
            continue
    h = xxhash.xxh3_128(sys.version.encode())
    h.update("\n".join(sorted(names)).encode())
    return h.hexdigest()


def point_key(params: dict[str, Any]) -> str:
    """A stable name for one sweep point (its swept values; "-" for a stage without a sweep), so
    a changed base parameter is reported as a change, not as a point never run."""
    if not params:
        return "-"
    canon = json.dumps(params, sort_keys=True, default=str, separators=(",", ":"))
    return xxhash.xxh3_64(canon.encode()).hexdigest()


@dataclass
class Fingerprint:
    code: str
    params: dict[str, Any]
    deps: dict[str, str | None]
    env: str

    def record(self, outs: dict[str, str | None], run_id: str | None, finished: float) -> Record:
        return Record(self.code, self.params, self.deps, self.env, outs, run_id, finished)


def fingerprint(
    code: str, params: dict[str, Any], deps: list[str], cache: HashCache
) -> Fingerprint:
    return Fingerprint(code, params, {d: cache.digest(d) for d in deps}, environment_digest())


def _show(v: Any) -> str:
    return "(unset)" if v is None else json.dumps(v, default=str) if not isinstance(v, str) else v


def reasons(fp: Fingerprint, rec: Record | None, outs: list[str], cache: HashCache) -> list[str]:
    """Why the stage must run (empty: it is up to date)."""
    if rec is None:
        return ["never run"]
    why: list[str] = []
    if rec.code != fp.code:
        why.append("notebook changed")
    changed = [
        f"{k} {_show(rec.params.get(k))} → {_show(fp.params.get(k))}"
        for k in sorted(set(rec.params) | set(fp.params))
        if _norm(rec.params.get(k)) != _norm(fp.params.get(k))
    ]
    if changed:
        why.append("params changed: " + ", ".join(changed))
    for d in sorted(set(rec.deps) | set(fp.deps)):
        if rec.deps.get(d) != fp.deps.get(d):
            why.append(f"dep {'missing' if fp.deps.get(d) is None else 'changed'}: {d}")
    if rec.env != fp.env:
        why.append("environment changed")
    for o in outs:
        now = cache.digest(o)
        if now is None:
            why.append(f"out missing: {o}")
        elif o in rec.outs and rec.outs[o] != now:
            why.append(f"out changed: {o}")
        elif o not in rec.outs:
            why.append(f"out not recorded: {o}")
    return why


def inputs_digest(fp: Fingerprint) -> str:
    """One digest of what a stage point read (its notebook's code, its params, its deps' contents),
    recorded on its run (``nbops.inputs``) so that a fresh clone finds, on a tracking server, the
    run that is its up-to-date record (:mod:`nbops.pipeline.sharing`). The environment is not in
    it: it is recorded beside it (``nbops.env``) and compared as :func:`reasons` compares it."""
    canon = json.dumps(
        {"code": fp.code, "params": fp.params, "deps": fp.deps},
        sort_keys=True,
        default=str,
        separators=(",", ":"),
    )
    return xxhash.xxh3_128(canon.encode()).hexdigest()


def fetchable(fp: Fingerprint, rec: Record | None, outs: list[str], cache: HashCache) -> list[str]:
    """The outs a stage point lacks here when that is the only reason it would run (its inputs
    and environment are those of ``rec``, which recorded a digest for each of them): they can be
    fetched instead of made again. [] otherwise."""
    if rec is None:
        return []
    missing = [o for o in outs if cache.digest(o) is None]
    if not missing or any(rec.outs.get(o) is None for o in missing):
        return []
    if reasons(fp, rec, [o for o in outs if o not in missing], cache):
        return []
    return missing


def _norm(v: Any) -> str:
    return json.dumps(v, sort_keys=True, default=str)
