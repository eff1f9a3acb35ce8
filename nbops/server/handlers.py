"""REST handlers of /nbops/api/ (API-CONTRACT.md). Every handler is authenticated; POSTs are
XSRF-checked by APIHandler; store reads run in worker threads; errors map to 4xx JSON in one place.
"""

from __future__ import annotations

import asyncio
import functools
import json
import mimetypes
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import tornado.web
from jupyter_server.base.handlers import APIHandler
from pydantic import BaseModel, ValidationError

from nbops.errors import InvalidInput, NbopsError, NotFound, StoreUnavailable
from nbops.server import models as m
from nbops.server.app import ServerContext
from nbops.server.reader import check_run_id

T = TypeVar("T")
B = TypeVar("B", bound=BaseModel)
API = "/nbops/api"
_CODES = {400: "bad_request", 403: "forbidden", 404: "not_found", 409: "conflict"}


def status_of(exc: NbopsError) -> int:
    from nbops.server.launches import Conflict

    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, Conflict):
        return 409
    if isinstance(exc, StoreUnavailable):
        return 503
    return 400


def api(method: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
    """Map nbops errors and bad bodies to ``{"error", "message"}`` with a 4xx status."""

    @functools.wraps(method)
    async def wrapper(self: NbopsHandler, *args: Any) -> None:
        try:
            await method(self, *args)
        except NbopsError as exc:
            msg = exc.message + (f" (hint: {exc.hint})" if exc.hint else "")
            self.fail(status_of(exc), msg)
        except ValidationError as exc:
            errs = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()
            )
            self.fail(400, f"invalid request body: {errs}")

    return wrapper


class NbopsHandler(APIHandler):
    @property
    def ctx(self) -> ServerContext:
        return self.settings["nbops"]  # type: ignore[no-any-return]

    async def blocking(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a slow call (MLflow, files, nbdime) in a worker thread: the event loop stays free."""
        return await asyncio.get_running_loop().run_in_executor(self.ctx.pool, fn, *args)

    def reply(self, model: BaseModel, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(model.model_dump_json())

    def fail(self, status: int, message: str) -> None:
        code = _CODES.get(status, "unavailable" if status == 503 else "internal")
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"error": code, "message": message}))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Errors raised before or outside ``api`` (403 auth/XSRF, 404 route) in the same shape."""
        exc = kwargs.get("exc_info", (None, None, None))[1]
        message = self._reason
        if isinstance(exc, tornado.web.HTTPError) and exc.log_message:
            try:
                message = exc.log_message % exc.args if exc.args else exc.log_message
            except (TypeError, ValueError):
                message = exc.log_message
        self.fail(status_code, str(message))

    def body(self, model: type[B]) -> B:
        raw = self.request.body or b"{}"
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise InvalidInput(f"request body is not JSON: {exc}") from None
        return model.model_validate(data)

    def int_arg(self, name: str, default: int, lo: int, hi: int) -> int:
        raw = self.get_query_argument(name, None)
        if raw in (None, ""):
            return default
        try:
            value = int(raw)
        except ValueError:
            raise InvalidInput(f"{name}={raw[:40]!r} is not a whole number") from None
        if not lo <= value <= hi:
            raise InvalidInput(f"{name}={value} is out of range", f"use {lo}..{hi}")
        return value


class ExperimentsHandler(NbopsHandler):
    @tornado.web.authenticated
    @api
    async def get(self) -> None:
        exps = await self.blocking(lambda: self.ctx.reader().experiments())
        self.reply(m.ExperimentList(experiments=exps))


class RunsHandler(NbopsHandler):
    @tornado.web.authenticated
    @api
    async def get(self) -> None:
        experiment = self.get_query_argument("experiment", "") or None
        filter_string = self.get_query_argument("filter", "")
        order = [o.strip() for o in self.get_query_arguments("order_by") if o.strip()]
        order = [p.strip() for o in order for p in o.split(",") if p.strip()]
        max_results = self.int_arg("max_results", 100, 1, 1000)
        token = self.get_query_argument("page_token", "") or None

        def search() -> m.RunList:
            return self.ctx.reader().run_list(experiment, filter_string, order, max_results, token)

        self.reply(await self.blocking(search))


def _detail(ctx: ServerContext, run_id: str) -> tuple[Any, list[str], Any]:
    from nbops.server.artifacts import executed_notebook, list_artifacts

    info = ctx.reader().run_info(run_id)
    client = None
    if (
        info.artifact_uri
        and "://" in info.artifact_uri
        and not info.artifact_uri.startswith("file:")
    ):
        client = ctx.mlflow().client  # type: ignore[attr-defined]
    arts = list_artifacts(info, client)
    return info, arts, executed_notebook(info, ctx.state_dir, arts)


class RunHandler(NbopsHandler):
    @tornado.web.authenticated
    @api
    async def get(self, run_id: str) -> None:
        check_run_id(run_id)
        info, arts, nb = await self.blocking(_detail, self.ctx, run_id)
        self.reply(
            m.RunDetail(
                **info.summary.model_dump(),
                tags=info.tags,
                artifacts=arts,
                has_notebook=nb is not None,
            )
        )


class MetricHandler(NbopsHandler):
    @tornado.web.authenticated
    @api
    async def get(self, run_id: str, key: str) -> None:
        check_run_id(run_id)
        hist = await self.blocking(lambda: self.ctx.reader().metric_history(run_id, key))
        if not hist:
            raise NotFound(f"run {run_id} has no metric {key!r}", "see the run's metrics")
        self.reply(m.MetricHistory(key=key, history=hist))


class NotebookHandler(NbopsHandler):
    @tornado.web.authenticated
    @api
    async def get(self, run_id: str) -> None:
        check_run_id(run_id)
        _, _, nb = await self.blocking(_detail, self.ctx, run_id)
        if nb is None:
            raise NotFound(
                f"run {run_id} has no executed notebook",
                "pipeline stage runs and tracked notebook runs keep one",
            )
        text = await self.blocking(nb.read_bytes)
        self.set_header("Content-Type", "application/json")
        self.finish(text)


class ArtifactHandler(NbopsHandler):
    @tornado.web.authenticated
    @api
    async def get(self, run_id: str, path: str) -> None:
        from nbops.server.artifacts import artifact_file

        check_run_id(run_id)

        def read() -> tuple[str, bytes]:
            info = self.ctx.reader().run_info(run_id)
            p = artifact_file(info, path)
            return p.name, p.read_bytes()

        name, data = await self.blocking(read)
        kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
        self.set_header("Content-Type", kind)
        self.set_header("X-Content-Type-Options", "nosniff")
        if kind in ("text/html", "image/svg+xml"):  # never run a run's HTML in the Lab origin
            self.set_header("Content-Disposition", f'attachment; filename="{name}"')
        self.finish(data)


def _run_ids(raw: str, lo: int, hi: int) -> list[str]:
    ids = [s.strip() for s in raw.split(",") if s.strip()]
    if not lo <= len(ids) <= hi:
        raise InvalidInput(f"run_ids names {len(ids)} runs", f"compare {lo} to {hi} runs")
    for rid in ids:
        check_run_id(rid)
    if len(set(ids)) != len(ids):
        raise InvalidInput("run_ids names a run twice", "name each run once")
    return ids


class CompareHandler(NbopsHandler):
    @tornado.web.authenticated
    @api
    async def get(self) -> None:
        ids = _run_ids(self.get_query_argument("run_ids", ""), 2, 100)
        self.reply(await self.blocking(lambda: self.ctx.reader().compare(ids)))


class DiffHandler(NbopsHandler):
    @tornado.web.authenticated
    @api
    async def get(self) -> None:
        from nbops.server import nbdiff

        a = check_run_id(self.get_query_argument("a", ""))
        b = check_run_id(self.get_query_argument("b", ""))

        def diff() -> m.NotebookDiff:
            nbs = []
            for rid in (a, b):
                _, _, nb = _detail(self.ctx, rid)
                if nb is None:
                    raise NotFound(f"run {rid} has no executed notebook to diff")
                nbs.append(nbdiff.load(nb))
            return m.NotebookDiff(a=a, b=b, cells=nbdiff.diff_cells(nbs[0], nbs[1]))

        self.reply(await self.blocking(diff))


async def _find_rerun(ctx: ServerContext, job: Any) -> list[str]:
    """Runs tagged nbops.rerun_of=<id> that started after the job did (papermill re-runs)."""

    def find() -> list[str]:
        reader = ctx.reader()
        flt = (
            f"tags.`nbops.rerun_of` = '{job.launch.rerun_of}'"
            f" and attributes.start_time >= {job.started - 1000}"
        )
        page = reader.search(reader.experiment_ids(None), flt, [], 100, None)
        return [r.run_id for r in page.runs]

    return await asyncio.get_running_loop().run_in_executor(ctx.pool, find)


class RerunHandler(NbopsHandler):
    @tornado.web.authenticated
    @api
    async def post(self, run_id: str) -> None:
        from nbops.server import launches

        check_run_id(run_id)
        req = self.body(m.RerunRequest)
        ctx = self.ctx
        job_id = ctx.jobs.new_id()

        def plan() -> Any:
            info = ctx.reader().run_info(run_id)
            return launches.rerun(ctx.root, ctx.uri, info, req.params, job_id, ctx.jobs.dir)

        launch = await self.blocking(plan)
        job = await ctx.jobs.start(launch, lambda j: _find_rerun(ctx, j), job_id)
        self.reply(m.JobAccepted(job_id=job.job_id, state="running"), 202)


class JobHandler(NbopsHandler):
    @tornado.web.authenticated
    @api
    async def get(self, job_id: str) -> None:
        self.reply(self.ctx.jobs.get(job_id).model())


class PipelineHandler(NbopsHandler):
    @tornado.web.authenticated
    @api
    async def get(self) -> None:
        from nbops.server.status import in_subprocess

        ctx = self.ctx

        def status() -> m.Pipeline:
            pipe = in_subprocess(ctx.root)
            for st in pipe.stages:  # the runner records a run id only once the store has it
                if st.last_run_id is None and st.status != "never run":
                    st.last_run_id = _last_stage_run(ctx, st.name)
            return pipe

        self.reply(await self.blocking(status))


def _last_stage_run(ctx: ServerContext, stage: str) -> str | None:
    reader = ctx.reader()
    flt = f"tags.`nbops.stage` = '{stage}' and attributes.status = 'FINISHED'"
    page = reader.search(reader.experiment_ids(None), flt, [], 1, None)
    return page.runs[0].run_id if page.runs else None


class PipelineRunHandler(NbopsHandler):
    @tornado.web.authenticated
    @api
    async def post(self) -> None:
        from nbops.server import launches

        req = self.body(m.PipelineRunRequest)
        ctx = self.ctx
        job_id = ctx.jobs.new_id()
        launch = await self.blocking(
            launches.pipeline_run, ctx.root, ctx.uri, req, job_id, ctx.jobs.dir
        )

        async def none(_: Any) -> list[str]:
            return []

        job = await ctx.jobs.start(launch, none, job_id)
        self.reply(m.JobAccepted(job_id=job.job_id, state="running"), 202)


def routes() -> list[tuple[str, type[NbopsHandler]]]:
    rid = r"([^/]+)"
    return [
        (rf"{API}/experiments/?", ExperimentsHandler),
        (rf"{API}/runs/?", RunsHandler),
        (rf"{API}/runs/{rid}/?", RunHandler),
        (rf"{API}/runs/{rid}/metrics/(.+)", MetricHandler),
        (rf"{API}/runs/{rid}/notebook/?", NotebookHandler),
        (rf"{API}/runs/{rid}/artifacts/?(.*)", ArtifactHandler),
        (rf"{API}/runs/{rid}/rerun/?", RerunHandler),
        (rf"{API}/compare/?", CompareHandler),
        (rf"{API}/diff/?", DiffHandler),
        (rf"{API}/jobs/{rid}/?", JobHandler),
        (rf"{API}/pipeline/?", PipelineHandler),
        (rf"{API}/pipeline/run/?", PipelineRunHandler),
    ]
