"""REST handlers for schedules (nbops.scheduler.api) and run lineage (nbops.ops.lineage).

    GET    /nbops/api/schedules                  list + daemon status
    POST   /nbops/api/schedules                  create (400 naming the field, 409 duplicate)
    DELETE /nbops/api/schedules/<name>           remove a CLI schedule (409 for nbops.yaml's)
    POST   /nbops/api/schedules/<name>/run       run now (202)
    GET    /nbops/api/schedules/<name>/history   executions, newest first
    GET    /nbops/api/runs/<run_id>/lineage      where the run came from, and nbops.verified

Every call into the scheduler or MLflow runs in the server's worker pool.
"""

from __future__ import annotations

from pathlib import Path

import tornado.web

from nbops import tags
from nbops.errors import ConfigError, Conflict, InvalidInput, NbopsError
from nbops.mlflow.readers.base import check_run_id
from nbops.server import schedule_models as sm
from nbops.server.app import ServerContext
from nbops.server.handlers import API, NbopsHandler, api


def _ms(seconds: float | None) -> int | None:
    return None if seconds is None else int(round(float(seconds) * 1000))


def _daemon(root: Path) -> sm.SchedulerDaemon:
    from nbops.scheduler import api as sched

    d = sched.daemon_status(root)
    hint = d.get("hint")
    if not d["alive"]:
        hint = "The scheduler is not running: start it with `nbops scheduler` in the project folder"
    return sm.SchedulerDaemon(
        alive=d["alive"],
        pid=d.get("pid"),
        since=_ms(d.get("since")),
        last_beat=_ms(d.get("last_beat")),
        hint=hint,
    )


def list_schedules(root: Path) -> sm.ScheduleList:
    from nbops.scheduler import api as sched

    daemon = _daemon(root)
    try:
        rows = sched.list_schedules(root)
    except NbopsError as exc:
        # no nbops.yaml or a broken one, a scheduler database that is damaged or locked: say
        # so (200: the panel shows it), list nothing. One bad schedule is not this: it is
        # listed with `invalid` set, among the others
        msg = exc.message + (f" (hint: {exc.hint})" if exc.hint else "")
        return sm.ScheduleList(schedules=[], daemon=daemon, problem=msg)
    return sm.ScheduleList(
        schedules=[sm.ScheduleInfo.model_validate(r) for r in rows], daemon=daemon
    )


def create_schedule(root: Path, req: sm.CreateSchedule) -> sm.ScheduleInfo:
    """Add the schedule the body describes (checked as it was read), as `nbops schedule add`."""
    from nbops.scheduler import api as sched
    from nbops.scheduler import sources
    from nbops.scheduler.model import Schedule

    taken = {e.name: e.source for e in sources.entries(root)}
    if req.name in taken:
        where = "nbops.yaml" if taken[req.name] == "nbops.yaml" else "the schedule list"
        raise Conflict(
            f"name: a schedule named {req.name!r} already exists (in {where})",
            "pick another name, or remove the existing schedule first",
        )
    try:
        row = sched.add_schedule(root, Schedule.model_validate(req.model_dump()))
    except InvalidInput as exc:
        if "already exists" in exc.message:  # added by someone else since the check above
            raise Conflict(exc.message, exc.hint) from None
        raise
    return sm.ScheduleInfo.model_validate(row)


def remove_schedule(root: Path, name: str) -> sm.ScheduleRemoved:
    from nbops.scheduler import api as sched
    from nbops.scheduler import sources

    entry = sources.find_entry(root, name)  # NotFound -> 404 (an invalid one can be removed)
    if entry.source == "nbops.yaml":
        try:
            sched.remove_schedule(root, name)
        except ConfigError as exc:
            raise Conflict(exc.message, exc.hint) from None
    else:
        sched.remove_schedule(root, name)
    return sm.ScheduleRemoved(removed=name)


def history(root: Path, name: str, limit: int) -> sm.ScheduleHistory:
    from nbops.scheduler import api as sched

    rows = sched.history_rows(root, name, limit)
    return sm.ScheduleHistory(
        schedule=name,
        executions=[
            sm.ScheduleExecution(
                id=r.id,
                schedule=r.schedule,
                status=r.status,
                reason=r.reason,
                attempt=r.attempt,
                fire_time=_ms(r.fire_time),
                start_time=_ms(r.started),
                end_time=_ms(r.ended),
                duration_s=r.duration,
                pipeline_run_id=r.pipeline_run_id,
                run_ids=list(r.run_ids),
                error=r.error,
                exit_code=r.exit_code,
            )
            for r in rows
        ],
    )


def run_lineage(ctx: ServerContext, run_id: str) -> sm.Lineage:
    """nbops.ops.lineage's tree of a run, read from the server's store (ctx.uri)."""
    from nbops.mlflow.store import open_store
    from nbops.ops import lineage

    ctx.reader()  # waits for the background MLflow import (no two threads import it at once)

    walker = lineage.Walker(ctx.root, open_store(ctx.uri))  # the server's store, not the cwd's
    found = walker.run(run_id).data.tags  # NotFound -> 404
    node = walker.node(run_id)
    verified = found.get(tags.VERIFIED)
    return sm.Lineage(
        run=sm.LineageRun.model_validate(node),
        verified=verified if verified in ("true", "false") else None,
        verified_at=found.get(tags.VERIFIED_AT),
        verified_by=found.get(tags.VERIFIED_BY),
    )


class SchedulesHandler(NbopsHandler):
    @tornado.web.authenticated
    @api
    async def get(self) -> None:
        self.reply(await self.blocking(list_schedules, self.ctx.root))

    @tornado.web.authenticated
    @api
    async def post(self) -> None:
        req = self.body(sm.CreateSchedule)
        self.reply(await self.blocking(create_schedule, self.ctx.root, req), 201)


class ScheduleHandler(NbopsHandler):
    @tornado.web.authenticated
    @api
    async def delete(self, name: str) -> None:
        self.reply(await self.blocking(remove_schedule, self.ctx.root, name))


class ScheduleRunHandler(NbopsHandler):
    @tornado.web.authenticated
    @api
    async def post(self, name: str) -> None:
        from nbops.scheduler import api as sched

        res = await self.blocking(sched.run_now, self.ctx.root, name)
        self.reply(sm.ScheduleRunAccepted.model_validate(res), 202)


class ScheduleHistoryHandler(NbopsHandler):
    @tornado.web.authenticated
    @api
    async def get(self, name: str) -> None:
        limit = self.int_arg("limit", 50, 1, 1000)
        self.reply(await self.blocking(history, self.ctx.root, name, limit))


class LineageHandler(NbopsHandler):
    @tornado.web.authenticated
    @api
    async def get(self, run_id: str) -> None:
        check_run_id(run_id)
        self.reply(await self.blocking(run_lineage, self.ctx, run_id))


def routes() -> list[tuple[str, type[NbopsHandler]]]:
    name = r"([^/]+)"
    return [
        (rf"{API}/schedules/?", SchedulesHandler),
        (rf"{API}/schedules/{name}/run/?", ScheduleRunHandler),
        (rf"{API}/schedules/{name}/history/?", ScheduleHistoryHandler),
        (rf"{API}/schedules/{name}/?", ScheduleHandler),
        (rf"{API}/runs/{name}/lineage/?", LineageHandler),
    ]
