"""The scheduling decisions, pure: which fire times are due, what catch-up does after downtime,
no overlap, retry back-off and the timeout backstop. Plain data over an injectable clock; the
daemon carries the actions out and persists the slots. Nothing here sleeps or starts a process.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from nbops.scheduler import cron
from nbops.scheduler.model import Schedule

MISFIRE_GRACE = 60.0
"""A fire time at most this many seconds old is on time, not missed (catchup: none runs it)."""
CATCHUP_LIMIT = 100
"""catchup: all runs at most this many missed fire times (the latest ones); the rest are skipped."""
KILL_GRACE = 30.0
"""The execution stops itself at its timeout; the backstop kills it this much later."""
BACKOFF_BASE = 30.0
BACKOFF_CAP = 3600.0


def backoff(attempt: int, base: float = BACKOFF_BASE, cap: float = BACKOFF_CAP) -> float:
    """Seconds to wait before retry number ``attempt + 1``: base, 2*base, 4*base, ... up to cap."""
    return float(min(cap, base * (2 ** max(0, attempt))))


@dataclass
class Pending:
    """An execution waiting to start: the fire time it stands for, why, which attempt."""

    fire: float
    reason: str  # cron | catchup | manual | retry
    attempt: int = 0
    not_before: float = 0.0


@dataclass
class Running:
    """The execution of a schedule that is under way (at most one per schedule)."""

    fire: float
    reason: str
    attempt: int
    started: float
    deadline: float | None  # hard-kill backstop (None: no timeout)
    history_id: int | None = None


@dataclass
class Slot:
    """A schedule's runtime state: the last fire time handled, the queue, what runs now."""

    cursor: float | None = None
    queue: list[Pending] = field(default_factory=list)
    running: Running | None = None

    @property
    def busy(self) -> bool:
        return self.running is not None or bool(self.queue)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any) -> Slot:
        """The slot ``to_json`` wrote; ValueError for anything else (wrong types, missing or
        extra keys): a hand-edited or damaged row must not reach the core."""
        if not isinstance(data, dict) or set(data) - {"cursor", "queue", "running"}:
            raise ValueError("not a slot")
        queue, running = data.get("queue") or [], data.get("running")
        if not isinstance(queue, list):
            raise ValueError("queue is not a list")
        return cls(
            cursor=_number(data.get("cursor"), "cursor", none=True),
            queue=[Pending(**_fields(p, _PENDING)) for p in queue],
            running=Running(**_fields(running, _RUNNING)) if running else None,
        )


def _number(v: Any, what: str, none: bool = False) -> Any:
    if v is None and none:
        return None
    if isinstance(v, bool) or not isinstance(v, int | float) or v != v:
        raise ValueError(f"{what} is {v!r}, not a number")
    return v


# field -> (kind, may be None)
_PENDING = {"fire": ("n", False), "reason": ("s", False), "attempt": ("i", False),
            "not_before": ("n", False)}  # fmt: skip
_RUNNING = {"fire": ("n", False), "reason": ("s", False), "attempt": ("i", False),
            "started": ("n", False), "deadline": ("n", True),
            "history_id": ("i", True)}  # fmt: skip


def _fields(data: Any, kinds: dict[str, tuple[str, bool]]) -> dict[str, Any]:
    if not isinstance(data, dict) or set(data) - set(kinds):
        raise ValueError(f"{str(data)[:60]} is not a queued or running execution")
    out: dict[str, Any] = {}
    for key, (kind, none) in kinds.items():
        if key not in data:
            if key in ("attempt", "not_before", "history_id"):
                continue  # defaults
            raise ValueError(f"{key} is missing")
        v = data[key]
        if v is None and none:
            out[key] = v
        elif kind == "s":
            if not isinstance(v, str):
                raise ValueError(f"{key} is {v!r}, not text")
            out[key] = v
        elif kind == "i":
            if isinstance(v, bool) or not isinstance(v, int):
                raise ValueError(f"{key} is {v!r}, not a whole number")
            out[key] = v
        else:
            out[key] = _number(v, key)
    return out


@dataclass(frozen=True)
class Start:
    """Start an execution of ``name`` now."""

    name: str
    pending: Pending


@dataclass(frozen=True)
class Skip:
    """Record that a fire time (or ``missed`` of them) was not run, and why."""

    name: str
    fire: float
    reason: str
    missed: int = 1


Action = Start | Skip


@dataclass(frozen=True)
class RetryDecision:
    """What to do after an execution ended: retry at ``retry_at``, or ``gave_up`` (run the hook)."""

    retry_at: float | None = None
    gave_up: bool = False


class Core:
    """Decides, for every schedule, what to start and what to skip at the clock's ``now``."""

    def __init__(
        self,
        clock: Callable[[], float],
        *,
        grace: float = MISFIRE_GRACE,
        catchup_limit: int = CATCHUP_LIMIT,
        kill_grace: float = KILL_GRACE,
        backoff_base: float = BACKOFF_BASE,
    ) -> None:
        self.clock = clock
        self.grace = grace
        self.catchup_limit = catchup_limit
        self.kill_grace = kill_grace
        self.backoff_base = backoff_base
        self.specs: dict[str, Schedule] = {}
        self.slots: dict[str, Slot] = {}
        # name -> (the spec, why its fire times failed): left out until the spec changes
        self.broken: dict[str, tuple[Schedule, str]] = {}

    # --- the set of schedules -------------------------------------------------------------
    def load(self, specs: Iterable[Schedule], slots: dict[str, Slot] | None = None) -> None:
        """Take the current schedules (and persisted slots). A schedule seen for the first time
        starts counting from now: fire times before it existed are not missed ones."""
        now = self.clock()
        self.specs = {
            s.name: s for s in specs if s.name not in self.broken or self.broken[s.name][0] != s
        }
        if slots is not None:
            self.slots = dict(slots)
        for name in self.specs:
            slot = self.slots.setdefault(name, Slot())
            if slot.cursor is None:
                slot.cursor = now
        for name in [n for n, s in self.slots.items() if n not in self.specs and not s.running]:
            del self.slots[name]

    # --- decisions ------------------------------------------------------------------------
    def tick(self) -> list[Action]:
        """Fire times that came due since the last tick, by each schedule's catch-up policy,
        then the queue heads of idle schedules. Marks started executions as running."""
        now = self.clock()
        actions: list[Action] = []
        for name, spec in list(self.specs.items()):
            try:
                actions += self._due(spec, self.slots[name], now)
            except Exception as exc:  # never one schedule's problem for the others
                actions.append(self._drop(name, exc))
        for name, slot in self.slots.items():
            if name in self.specs and slot.running is None and slot.queue:
                head = slot.queue[0]
                if head.not_before <= now:
                    slot.queue.pop(0)
                    slot.running = Running(
                        head.fire, head.reason, head.attempt, now, self._deadline(name, now)
                    )
                    actions.append(Start(name, head))
        return actions

    def _due(self, spec: Schedule, slot: Slot, now: float) -> list[Action]:
        after = slot.cursor if slot.cursor is not None else now
        fires, count = cron.fires_between(spec.cron, spec.timezone, after, now, self.catchup_limit)
        if not count:
            return []
        slot.cursor = fires[-1]
        name = spec.name
        if spec.catchup == "all":
            run = fires
        elif spec.catchup == "latest" or now - fires[-1] <= self.grace:
            run = fires[-1:]
        else:
            run = []
        actions: list[Action] = []
        missed = count - len(run)
        if missed:
            last_missed = fires[-len(run) - 1] if len(fires) > len(run) else fires[0]
            why = {
                "none": "catchup: none skips them",
                "latest": "catchup: latest runs only the last",
                "all": f"catchup: all runs at most the last {self.catchup_limit}",
            }[spec.catchup]
            more = "more than " if count > cron.SCAN_CAP else ""
            actions.append(
                Skip(
                    name,
                    last_missed,
                    f"missed {more}{missed} fire time(s) while the scheduler was not running "
                    f"({why})",
                    missed,
                )
            )
        late = bool(missed) or any(now - f > self.grace for f in run)
        if slot.busy:
            for f in run:
                actions.append(Skip(name, f, "still running"))
            return actions
        reason = "catchup" if late else "cron"
        slot.queue.extend(Pending(f, reason) for f in run)
        return actions

    def _drop(self, name: str, exc: Exception) -> Skip:
        """Take a schedule whose fire times cannot be computed out of the running set (loaded
        schedules were validated: this is the backstop); the Skip records why."""
        spec = self.specs.pop(name)
        why = f"{type(exc).__name__}: {exc}"
        self.broken[name] = (spec, why)
        return Skip(name, self.clock(), f"invalid schedule, not run: {why}")

    def _deadline(self, name: str, now: float) -> float | None:
        timeout = self.specs[name].timeout
        return None if timeout is None else now + timeout + self.kill_grace

    def request(self, name: str) -> Skip | None:
        """A run-now request: queued for the next tick, or skipped if the schedule is busy."""
        now = self.clock()
        slot = self.slots[name]
        if slot.busy:
            return Skip(name, now, "still running")
        slot.queue.append(Pending(now, "manual"))
        return None

    def finished(self, name: str, ok: bool) -> RetryDecision:
        """The running execution of ``name`` ended; a failure is retried with back-off until
        ``retries`` is used up, then the schedule gives up (and its on_failure hook runs)."""
        slot = self.slots.get(name)
        running = slot.running if slot else None
        if slot is None or running is None:
            return RetryDecision()
        slot.running = None
        if ok:
            return RetryDecision()
        spec = self.specs.get(name)
        if spec is not None and running.attempt < spec.retries:
            at = self.clock() + backoff(running.attempt, self.backoff_base)
            slot.queue.insert(0, Pending(running.fire, "retry", running.attempt + 1, at))
            return RetryDecision(retry_at=at)
        return RetryDecision(gave_up=True)

    def overdue(self) -> list[str]:
        """Schedules whose execution outlived its timeout plus the grace: kill them."""
        now = self.clock()
        return [
            n
            for n, s in self.slots.items()
            if s.running and s.running.deadline is not None and now >= s.running.deadline
        ]

    # --- when to look again ---------------------------------------------------------------
    def next_fire(self, name: str) -> float | None:
        spec, slot = self.specs.get(name), self.slots.get(name)
        if spec is None:
            return None
        after = max(slot.cursor or 0.0, self.clock()) if slot else self.clock()
        return cron.next_fire(spec.cron, spec.timezone, after)

    def next_wake(self) -> float | None:
        """The earliest time something can become due: a fire time, a retry, a deadline."""
        times: list[float] = []
        for name, slot in list(self.slots.items()):
            if name in self.specs:
                try:
                    t = self.next_fire(name)
                except Exception:  # the next tick drops it (``_drop``) and records why
                    t = self.clock()
                if t is not None:
                    times.append(t)
            if slot.running is None and slot.queue:
                times.append(slot.queue[0].not_before)
            if slot.running and slot.running.deadline is not None:
                times.append(slot.running.deadline)
        return min(times) if times else None
