"""The stage DAG: order from outs → deps and ``after:``, validated (cycles, two writers of one
out, unknown stages, missing notebooks, deps nothing produces). Pure: files are only stat'ed."""

from __future__ import annotations

import difflib
import posixpath
from dataclasses import dataclass, field

from nbops.errors import ConfigError
from nbops.pipeline.spec import Pipeline


def norm(path: str) -> str:
    return posixpath.normpath(path.replace("\\", "/").rstrip("/")) or "."


def _inside(dep: str, out: str) -> bool:
    return dep == out or dep.startswith(out + "/") or out.startswith(dep + "/")


@dataclass
class Graph:
    order: list[str]
    edges: dict[str, list[str]]  # stage -> its direct upstream stages
    producers: dict[str, str] = field(default_factory=dict)
    pipeline: Pipeline | None = None

    def upstream(self, name: str) -> list[str]:
        return self.edges.get(name, [])

    def downstream(self, name: str) -> set[str]:
        out: set[str] = set()
        frontier = [name]
        while frontier:
            cur = frontier.pop()
            for s, ups in self.edges.items():
                if cur in ups and s not in out:
                    out.add(s)
                    frontier.append(s)
        return out

    def select(self, names: list[str]) -> list[str]:
        """The named stages and everything they depend on, in order."""
        want: set[str] = set()
        for n in names:
            if n not in self.edges:
                close = difflib.get_close_matches(n, self.order, n=1)
                hint = (
                    f"did you mean {close[0]!r}?"
                    if close
                    else ("stages: " + (", ".join(self.order) or "none"))
                )
                raise ConfigError(f"no stage named {n!r} in nbops.yaml", hint)
            stack = [n]
            while stack:
                cur = stack.pop()
                if cur not in want:
                    want.add(cur)
                    stack.extend(self.upstream(cur))
        return [s for s in self.order if s in want]


def _unknown(p: Pipeline, name: str, what: str, *keys: str | int) -> ConfigError:
    close = difflib.get_close_matches(name, list(p.stages), n=1)
    hint = f"did you mean {close[0]!r}?" if close else "stages: " + (", ".join(p.stages) or "none")
    return p.error(f"{what} names stage {name!r}, which does not exist", hint, *keys)


def build(p: Pipeline) -> Graph:
    producers: dict[str, str] = {}
    for name, st in p.stages.items():
        nb = p.root / st.notebook
        if not nb.is_file():
            raise p.error(
                f"stage {name!r}: notebook {st.notebook} does not exist",
                f"fix the path (relative to {p.root}) or create the notebook",
                "stages",
                name,
                "notebook",
            )
        for i, o in enumerate(st.outs):
            key = norm(o)
            other = next(
                (s for out, s in producers.items() if _inside(key, out) and s != name), None
            )
            if other is not None:
                raise p.error(
                    f"stages {other!r} and {name!r} both write {o}",
                    "give each out exactly one stage",
                    "stages",
                    name,
                    "outs",
                    i,
                )
            producers[key] = name
    edges: dict[str, list[str]] = {}
    for name, st in p.stages.items():
        ups: list[str] = []
        own = [norm(o) for o in st.outs]
        for i, d in enumerate(st.deps):
            key = norm(d)
            if any(_inside(key, o) for o in own):
                raise p.error(
                    f"stage {name!r} lists {d} both as a dep and as an out",
                    "a stage cannot read what it writes; split it in two stages",
                    "stages",
                    name,
                    "deps",
                    i,
                )
            makers = [s for out, s in producers.items() if _inside(key, out)]
            if not makers and not (p.root / d).exists():
                raise p.error(
                    f"stage {name!r}: dep {d} does not exist and no stage writes it",
                    "create it, or add the stage that writes it to its outs:",
                    "stages",
                    name,
                    "deps",
                    i,
                )
            ups += [m for m in makers if m not in ups]
        for i, a in enumerate(st.after):
            if a not in p.stages:
                raise _unknown(p, a, f"stage {name!r}: after:", "stages", name, "after", i)
            if a not in ups:
                ups.append(a)
        edges[name] = ups
    order = _topological(p, edges)
    for sname, sch in p.schedules.items():
        for i, s in enumerate(sch.stages):
            if s not in p.stages:
                raise _unknown(p, s, f"schedule {sname!r}", "schedules", sname, "stages", i)
    for gname, gate in p.gates.items():
        if gate.stage not in p.stages:
            raise _unknown(p, gate.stage, f"gate {gname!r}", "gates", gname, "stage")
    if p.drift is not None:
        for i, s in enumerate(p.drift.on_drift):
            if s not in p.stages:
                raise _unknown(p, s, "drift.on_drift", "drift", "on_drift", i)
    return Graph(order, edges, producers, p)


def _topological(p: Pipeline, edges: dict[str, list[str]]) -> list[str]:
    """File order where the edges allow it; a cycle is reported with its path."""
    order: list[str] = []
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(n: str, path: list[str]) -> None:
        if state.get(n) == 2:
            return
        if state.get(n) == 1:
            cycle = path[path.index(n) :] + [n]
            raise p.error(
                "the stages form a cycle: " + " -> ".join(cycle),
                "a stage cannot depend, directly or not, on its own outs",
                "stages",
                n,
            )
        state[n] = 1
        for u in edges[n]:
            visit(u, [*path, n])
        state[n] = 2
        order.append(n)

    for n in p.stages:
        visit(n, [])
    return order
