"""The stage DAG of nbops.yaml: edges from outs → deps and ``after:``, a deterministic order, and
validation (cycles, two writers of one out, unknown stages, missing notebooks, deps nothing
produces), each problem a ConfigError at the offending entry. Pure: files are only stat'ed."""

from __future__ import annotations

import difflib
import heapq
import posixpath
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from nbops.errors import ConfigError
from nbops.pipeline.spec import TEMPLATE_RE, Key, Pipeline


def norm(path: str, root: Path | None = None) -> str:
    """A dep or out as a comparable path: '/'-separated, normalised, without a trailing slash,
    and relative to ``root`` when it is an absolute path inside it."""
    text = posixpath.normpath(path.replace("\\", "/")) if path else "."
    if root is not None and posixpath.isabs(text):
        base = root.absolute().as_posix()
        rel = posixpath.relpath(text, base)
        if not rel.startswith("../") and rel != "..":
            return rel
    return text


def covers(outer: str, inner: str) -> bool:
    """Whether normalised path ``inner`` is ``outer`` or lies inside directory ``outer``."""
    return outer in (inner, ".") or inner.startswith(outer.rstrip("/") + "/")


def overlap(a: str, b: str) -> bool:
    """Whether one normalised path is, or is inside, the other: a dep ``data/`` reads the out
    ``data/train.csv`` as much as a dep ``models/m.pkl`` reads the out ``models/``. A sweep's
    per-point out (``models/model-C${C}.pkl``) stands for every file it expands to: the dep
    ``models`` and the dep ``models/model-C0.1.pkl`` both read it."""
    if "${" not in a and "${" not in b:
        return covers(a, b) or covers(b, a)
    if "." in (a, b):
        return True
    pa, pb = a.split("/"), b.split("/")
    return all(_may_match(x, y) for x, y in zip(pa, pb, strict=False))


def _may_match(x: str, y: str) -> bool:
    """Whether two path components can name the same file, ``${...}`` matching any text."""
    if "${" not in x and "${" not in y:
        return x == y
    if "${" in x and "${" in y:  # both patterns: their fixed head and tail must agree
        hx, tx = _ends(x)
        hy, ty = _ends(y)
        heads = hx.startswith(hy) or hy.startswith(hx)
        tails = tx.endswith(ty) or ty.endswith(tx)
        return heads and tails
    pattern, text = (x, y) if "${" in x else (y, x)
    parts = [re.escape(part) for part in TEMPLATE_RE.split(pattern)[::2]]
    return re.fullmatch(".+".join(parts), text) is not None


def _ends(component: str) -> tuple[str, str]:
    """The fixed text before the first and after the last ``${...}`` of a component."""
    head = component.split("${", 1)[0]
    tail = component.rsplit("}", 1)[1] if "}" in component else ""
    return head, tail


@dataclass
class Graph:
    """The stages of a pipeline in a runnable order, with their dependencies."""

    order: list[str]  # topological; file order where the edges leave a choice
    edges: dict[str, list[str]]  # stage -> its direct upstream stages, in file order
    producers: dict[str, str] = field(default_factory=dict)  # normalised out -> its stage
    pipeline: Pipeline | None = None
    _children: dict[str, list[str]] = field(init=False, repr=False, default_factory=dict)

    def __post_init__(self) -> None:
        self._children = {name: [] for name in self.edges}
        for name in self.order:
            for up in self.edges[name]:
                self._children[up].append(name)

    def upstream(self, name: str) -> list[str]:
        """The stages ``name`` directly depends on."""
        return list(self.edges.get(name, ()))

    def downstream(self, name: str) -> set[str]:
        """Every stage that depends on ``name``, directly or through others."""
        found: set[str] = set()
        frontier = [name]
        while frontier:
            for child in self._children.get(frontier.pop(), ()):
                if child not in found:
                    found.add(child)
                    frontier.append(child)
        return found

    def select(self, names: list[str]) -> list[str]:
        """The named stages and everything upstream of them, in order."""
        wanted: set[str] = set()
        for name in names:
            if name not in self.edges:
                raise self._unknown(name)
            frontier = [name]
            while frontier:
                current = frontier.pop()
                if current not in wanted:
                    wanted.add(current)
                    frontier.extend(self.edges[current])
        return [s for s in self.order if s in wanted]

    def _unknown(self, name: str) -> ConfigError:
        where = f" in {self.pipeline.path}" if self.pipeline is not None else ""
        return ConfigError(f"no stage named {name!r}{where}", _known_stages(name, self.order))


def _known_stages(name: str, known: Iterable[str]) -> str:
    """A hint for a stage name that does not exist: the closest one, and all of them."""
    known = list(known)
    listing = f"stages: {', '.join(known)}" if known else "nbops.yaml has no stages yet"
    close = difflib.get_close_matches(name, known, n=1)
    return f"did you mean {close[0]!r}? ({listing})" if close else listing


def _unknown_stage(p: Pipeline, name: str, what: str, *keys: str | int) -> ConfigError:
    message = f"{what} stage {name!r}, which does not exist"
    return p.error(message, _known_stages(name, p.stages), *keys, value=True)


def build(p: Pipeline) -> Graph:
    """The validated DAG of a pipeline: every problem is a ConfigError at the offending entry.

    A stage's notebook is not opened here: a missing or unreadable notebook fails that stage
    alone when it runs (as papermill would), and ``nbops status`` shows it as broken."""
    producers = _producers(p)
    edges, reasons = _edges(p, producers)
    order = _order(p, edges, reasons)
    check_references(p)
    return Graph(order=order, edges=edges, producers=producers, pipeline=p)


def _producers(p: Pipeline) -> dict[str, str]:
    """Each normalised out → the stage that writes it; two stages writing one path is an error."""
    producers: dict[str, str] = {}
    for name, stage in p.stages.items():
        for i, out in enumerate(stage.outs):
            path = norm(out, p.root)
            for other_path, other in producers.items():
                if other != name and overlap(path, other_path):
                    inside = "" if path == other_path else f" ({path} overlaps {other_path})"
                    raise p.error(
                        f"stages {other!r} and {name!r} both write {out}{inside}",
                        "give each out to exactly one stage",
                        "stages",
                        name,
                        "outs",
                        i,
                    )
            producers.setdefault(path, name)
    return producers


def _edges(
    p: Pipeline, producers: dict[str, str]
) -> tuple[dict[str, list[str]], dict[tuple[str, str], Key]]:
    """Each stage's direct upstream stages, and for each edge the entry that made it."""
    edges: dict[str, list[str]] = {}
    reasons: dict[tuple[str, str], Key] = {}
    for name, stage in p.stages.items():
        ups: list[str] = []
        for i, dep in enumerate(stage.deps):
            for up in _makers(p, producers, name, dep, i):
                reasons.setdefault((name, up), ("stages", name, "deps", i))
                if up not in ups:
                    ups.append(up)
        for i, up in enumerate(stage.after):
            if up not in p.stages:
                raise _unknown_stage(
                    p, up, f"stage {name!r} runs after", "stages", name, "after", i
                )
            reasons.setdefault((name, up), ("stages", name, "after", i))
            if up not in ups:
                ups.append(up)
        edges[name] = sorted(ups, key=list(p.stages).index)
    return edges, reasons


def _makers(p: Pipeline, producers: dict[str, str], name: str, dep: str, i: int) -> list[str]:
    """The stages that write (part of) dep ``i`` of stage ``name``; it must exist otherwise."""
    path = norm(dep, p.root)
    makers: list[str] = []
    for out, stage in producers.items():
        if overlap(path, out) and stage not in makers:
            makers.append(stage)
    if name in makers:
        raise p.error(
            f"stage {name!r} reads {dep}, which it also writes (outs)",
            "a stage cannot depend on its own outs: remove the dep, or split the stage in two",
            "stages",
            name,
            "deps",
            i,
            value=True,
        )
    if not makers and not (p.root / dep).exists():
        raise p.error(
            f"stage {name!r}: dep {dep} does not exist and no stage writes it",
            "create it, or add it to the outs: of the stage that writes it",
            "stages",
            name,
            "deps",
            i,
            value=True,
        )
    return makers


def _order(
    p: Pipeline, edges: dict[str, list[str]], reasons: dict[tuple[str, str], Key]
) -> list[str]:
    """A topological order that keeps file order wherever the edges allow (Kahn's algorithm,
    always taking the ready stage that comes first in the file)."""
    names = list(p.stages)
    index = {name: i for i, name in enumerate(names)}
    waiting = {name: len(ups) for name, ups in edges.items()}
    children: dict[str, list[str]] = {name: [] for name in names}
    for name, ups in edges.items():
        for up in ups:
            children[up].append(name)
    ready = [index[name] for name, count in waiting.items() if count == 0]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        name = names[heapq.heappop(ready)]
        order.append(name)
        for child in children[name]:
            waiting[child] -= 1
            if waiting[child] == 0:
                heapq.heappush(ready, index[child])
    if len(order) < len(names):
        raise _cycle_error(p, edges, reasons, set(order))
    return order


def _cycle_error(
    p: Pipeline,
    edges: dict[str, list[str]],
    reasons: dict[tuple[str, str], Key],
    done: set[str],
) -> ConfigError:
    """The cycle among the stages left unordered, in data-flow direction, starting from its
    first stage in the file, reported at the entry that feeds that stage."""
    index = {name: i for i, name in enumerate(p.stages)}
    start = next(name for name in p.stages if name not in done)
    path = [start]
    while True:  # every stage left has an upstream stage that is left too
        up = next(u for u in edges[path[-1]] if u not in done)
        if up in path:
            loop = path[path.index(up) :]
            break
        path.append(up)
    loop.reverse()  # upstream walk → data flow
    first = min(range(len(loop)), key=lambda i: index[loop[i]])
    loop = loop[first:] + loop[:first]
    head, feeder = loop[0], loop[-1]
    return p.error(
        "the stages form a cycle: " + " -> ".join([*loop, head]),
        f"{head!r} must not depend on {feeder!r} here: a stage cannot depend, directly or "
        "through others, on its own outs",
        *reasons[(head, feeder)],
        value=True,
    )


def check_references(p: Pipeline) -> None:
    """Schedules, gates and drift.on_drift may only name stages that exist."""
    for sname, schedule in p.schedules.items():
        for i, stage in enumerate(schedule.stages):
            if stage not in p.stages:
                what = f"schedule {sname!r} runs"
                raise _unknown_stage(p, stage, what, "schedules", sname, "stages", i)
    for gname, gate in p.gates.items():
        if gate.stage not in p.stages:
            raise _unknown_stage(p, gate.stage, f"gate {gname!r} checks", "gates", gname, "stage")
    if p.drift is not None:
        for i, stage in enumerate(p.drift.on_drift):
            if stage not in p.stages:
                raise _unknown_stage(p, stage, "drift.on_drift names", "drift", "on_drift", i)
