"""REST handlers of /nbops/api/ (docs/architecture.md, "REST contract"). Every handler is
authenticated; POSTs are XSRF-checked by APIHandler; store reads run in worker threads; errors map
to 4xx/503 JSON in one place (``api``: the status is the error class's, ``http_status_of``),
inputs are bounded in one place (``limits``), and anything unexpected is a logged 500 with a JSON
body, never a dead server.
"""

from __future__ import annotations

import asyncio
import functools
import json
import mimetypes
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import tornado.iostream
import tornado.web
from jupyter_server.base.handlers import APIHandler
from pydantic import BaseModel, ValidationError

from nbops import tags
from nbops.errors import InvalidInput, NbopsError, NotFound, http_status_of
from nbops.mlflow.readers.base import check_run_id
from nbops.server import limits
from nbops.server import models as m
from nbops.server.app import ServerContext

T = TypeVar("T")
B = TypeVar("B", bound=BaseModel)
API = "/nbops/api"
_CODES = {400: "bad_request", 403: "forbidden", 404: "not_found", 409: "conflict"}


def api(method: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
    """Map nbops errors and bad bodies to ``{"error", "message"}`` with the error's status
    (:func:`nbops.errors.http_status_of`: 404 NotFound, 403 OutsideArtifactRoot, 409 Conflict,
    503 StoreUnavailable, else 400); anything
    else (a bug, a store gone wrong) to a logged 500 with the same body. Tornado's own errors
    (auth, XSRF, missing arguments) pass through to ``write_error``."""

    @functools.wraps(method)
    async def wrapper(self: NbopsHandler, *args: Any) -> None:
        try:
            await method(self, *args)
        except NbopsError as exc:
            msg = exc.message + (f" (hint: {exc.hint})" if exc.hint else "")
            self.fail(http_status_of(exc), msg)
        except ValidationError as exc:
            errs = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])[:100] or 'body'}: {e['msg'][:200]}"
                for e in exc.errors()[:5]
            )
            self.fail(400, f"invalid request body: {errs}")
        except tornado.web.HTTPError:
            raise
        except sqlite3.Error as exc:  # locked, unreadable or half-written store: try again later
            self.log.warning("nbops: %s %s: %s", self.request.method, self.request.path, exc)
            self.fail(503, f"the tracking store cannot be read now: {str(exc)[:300]}")
        except Exception as exc:  # noqa: BLE001 - the server must answer whatever goes wrong
            self.log.error(
                "nbops: %s %s failed", self.request.method, self.request.path, exc_info=True
            )
            self.fail(
                500,
                f"internal error ({type(exc).__name__}) in nbops; the Jupyter server log has the "
                "traceback",
            )

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
        if self._finished:
            return
        if self._headers_written:  # a streamed answer broke off: end it, the client sees a cut
            self.finish()
            return
        code = _CODES.get(status, "unavailable" if status == 503 else "internal")
        self.clear()
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
        """The request body as ``model``, parsed within limits.MAX_BODY_BYTES/MAX_JSON_DEPTH."""
        return model.model_validate(limits.json_body(self.request.body))

    async def send_file(
        self, path: Path, what: str, kind: str, scratch: Path | None = None
    ) -> None:
        """Stream a file in 1 MiB chunks (never all of it in memory), read in worker threads.
        ``scratch``: the temporary folder the file was fetched into, removed as soon as the file
        is open (the open file keeps its content), so nothing of it is left once the answer
        arrives."""
        from nbops.server.artifacts import open_regular

        f = await self.blocking(open_regular, path, what)
        if scratch is not None:
            await self.blocking(_drop, scratch)
        try:
            self.set_header("Content-Type", kind)
            while chunk := await self.blocking(f.read, 1 << 20):
                self.write(chunk)
                await self.flush()
            self.finish()
        except tornado.iostream.StreamClosedError:
            pass  # the client went away mid-file: nothing to answer
        finally:
            f.close()

    def int_arg(self, name: str, default: int, lo: int, hi: int) -> int:
        raw = self.get_query_argument(name, None)
        if raw in (None, ""):
            return default
        try:
            value = int(raw[:40])
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
        max_results = self.int_arg("max_results", 100, 1, limits.MAX_RESULTS)
        token = self.get_query_argument("page_token", "") or None
        limits.text("experiment", experiment or "")
        limits.search(filter_string, order, max_results)  # again in the reader: fail before it

        def search() -> m.RunList:
            return self.ctx.reader().run_list(experiment, filter_string, order, max_results, token)

        self.reply(await self.blocking(search))


def _detail(ctx: ServerContext, run_id: str) -> tuple[Any, Any, Path | None, str | None]:
    """A run's info, its artifact listing, its executed notebook here (None: none readable) and
    else the artifact path of one in a remote artifact store (None: none)."""
    from nbops.server.artifacts import executed_notebook, list_artifacts, remote_notebook

    info = ctx.reader().run_info(run_id)
    roots = ctx.artifact_roots
    listing = list_artifacts(info, roots, ctx.store)
    local = executed_notebook(info, ctx.state_dir, listing.files, roots)
    return info, listing, local, None if local else remote_notebook(info, listing.files)


def _notebook_file(ctx: ServerContext, run_id: str, into: Path, max_bytes: int) -> Path:
    """The run's executed notebook as a local file: kept here, or fetched from the remote
    artifact store into ``into`` (at most ``max_bytes``); the exact 404 (:func:`_no_notebook`)
    when it has none."""
    from nbops.server.artifacts import fetch_remote

    info, _, local, remote = _detail(ctx, run_id)
    if local is not None:
        return local
    if remote is not None:
        return fetch_remote(info, remote, ctx.store(), into, max_bytes)
    raise _no_notebook(ctx, info, "show")


def _scratch(ctx: ServerContext) -> Path:
    """A private temporary directory for artifacts fetched from a remote store, under the
    project's ``.nbops/tmp/`` (nbops writes nothing outside the project; removed by
    :func:`_drop`)."""
    import tempfile

    base = ctx.state_dir / "tmp"
    base.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="nbops-artifact-", dir=base))


def _drop(d: Path) -> None:
    import shutil

    shutil.rmtree(d, ignore_errors=True)


def _no_notebook(ctx: ServerContext, info: Any, purpose: str) -> NbopsError:
    """The exact 404 for a run without an executed notebook (artifacts.no_notebook), with the
    runs whose parent it is read from the server's reader."""
    from nbops.ops.names import filter_value
    from nbops.server.artifacts import no_notebook

    rid = info.summary.run_id
    quoted = filter_value(rid)
    children: list[Any] = []
    if quoted is not None and (tags.PIPELINE in info.tags or tags.STAGE in info.tags):
        found = ctx.reader().run_list(
            info.summary.experiment_id,
            f"tags.`{tags.MLFLOW_PARENT_RUN_ID}` = {quoted}",
            ["attributes.start_time ASC"],
            100,
            None,
        )
        children = list(found.runs)
    return no_notebook(info, children, purpose)


class RunHandler(NbopsHandler):
    @tornado.web.authenticated
    @api
    async def get(self, run_id: str) -> None:
        check_run_id(run_id)
        info, listing, nb, remote = await self.blocking(_detail, self.ctx, run_id)
        self.reply(
            m.RunDetail(
                **info.summary.model_dump(),
                tags=info.tags,
                artifacts=listing.files,
                artifacts_note=listing.note,
                has_notebook=nb is not None or remote is not None,
            )
        )


class MetricHandler(NbopsHandler):
    @tornado.web.authenticated
    @api
    async def get(self, run_id: str, key: str) -> None:
        check_run_id(run_id)
        limits.text("metric key", key, limits.MAX_NAME_CHARS)
        hist = await self.blocking(lambda: self.ctx.reader().metric_history(run_id, key))
        if not hist:
            raise NotFound(f"run {run_id} has no metric {key[:200]!r}", "see the run's metrics")
        self.reply(m.MetricHistory(key=key, history=hist))


class NotebookHandler(NbopsHandler):
    @tornado.web.authenticated
    @api
    async def get(self, run_id: str) -> None:
        check_run_id(run_id)
        tmp = _scratch(self.ctx)
        try:
            nb = await self.blocking(
                _notebook_file, self.ctx, run_id, tmp, limits.MAX_FETCHED_ARTIFACT_BYTES
            )
            await self.send_file(
                nb, f"the executed notebook of run {run_id}", "application/json", tmp
            )
        finally:
            await self.blocking(_drop, tmp)


class ArtifactHandler(NbopsHandler):
    @tornado.web.authenticated
    @api
    async def get(self, run_id: str, path: str) -> None:
        from nbops.server.artifacts import artifact_file

        check_run_id(run_id)
        limits.text("artifact path", path, limits.MAX_PATH_CHARS)

        tmp = _scratch(self.ctx)

        def find() -> Path:
            info = self.ctx.reader().run_info(run_id)
            return artifact_file(info, path, self.ctx.artifact_roots, self.ctx.store, tmp)

        try:
            p = await self.blocking(find)
            kind = mimetypes.guess_type(p.name)[0] or "application/octet-stream"
            self.set_header("X-Content-Type-Options", "nosniff")
            if kind in ("text/html", "image/svg+xml"):  # never run a run's HTML in the Lab origin
                name = json.dumps(p.name.encode("ascii", "replace").decode())
                self.set_header("Content-Disposition", f"attachment; filename={name}")
            await self.send_file(p, f"artifact {path[:200]!r} of run {run_id}", kind, tmp)
        finally:
            await self.blocking(_drop, tmp)


def _run_ids(raw: str, lo: int, hi: int) -> list[str]:
    limits.text("run_ids", raw, 34 * hi)
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
        ids = _run_ids(self.get_query_argument("run_ids", ""), 2, limits.MAX_COMPARE_RUNS)
        self.reply(await self.blocking(lambda: self.ctx.reader().compare(ids)))


class DiffHandler(NbopsHandler):
    @tornado.web.authenticated
    @api
    async def get(self) -> None:
        from nbops.server import nbdiff

        a = check_run_id(self.get_query_argument("a", ""))
        b = check_run_id(self.get_query_argument("b", ""))

        def diff(tmp: Path) -> m.NotebookDiff:
            from nbops.server.artifacts import fetch_remote

            nbs = []
            for rid in (a, b):
                info, _, nb, remote = _detail(self.ctx, rid)
                if nb is None and remote is not None:
                    into = tmp / rid
                    into.mkdir()
                    nb = fetch_remote(
                        info, remote, self.ctx.store(), into, limits.MAX_DIFF_NOTEBOOK_BYTES
                    )
                if nb is None:
                    raise _no_notebook(self.ctx, info, "diff")
                size = nb.stat().st_size
                if size > limits.MAX_DIFF_NOTEBOOK_BYTES:
                    raise InvalidInput(
                        f"the executed notebook of run {rid} is {size} bytes (diffs at most "
                        f"{limits.MAX_DIFF_NOTEBOOK_BYTES})",
                        "download both notebooks and diff them with nbdiff",
                    )
                nbs.append(nbdiff.load(nb))
            try:
                cells = nbdiff.diff_cells(nbs[0], nbs[1])
            except (ValueError, TypeError, KeyError, AttributeError) as exc:
                raise InvalidInput(
                    f"the notebooks of runs {a} and {b} cannot be diffed: {str(exc)[:200]}",
                    "one of them is not a valid notebook (open it in Jupyter)",
                ) from exc
            return m.NotebookDiff(a=a, b=b, cells=cells)

        tmp = _scratch(self.ctx)
        try:
            self.reply(await self.blocking(diff, tmp))
        finally:
            await self.blocking(_drop, tmp)


async def _find_rerun(ctx: ServerContext, job: Any) -> list[str]:
    """Runs tagged nbops.rerun_of=<id> that started after the job did (papermill re-runs)."""

    def find() -> list[str]:
        reader = ctx.reader()
        flt = (
            f"tags.`{tags.RERUN_OF}` = '{job.launch.rerun_of}'"
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
        self.reply(self.ctx.jobs.get(limits.text("job id", job_id, 64)).model())


class PipelineHandler(NbopsHandler):
    @tornado.web.authenticated
    @api
    async def get(self) -> None:
        from nbops.server.status import in_subprocess

        ctx = self.ctx

        def status() -> m.PipelineStatus:
            pipe = in_subprocess(ctx.root)
            for st in pipe.stages:  # the runner records a run id only once the store has it
                if st.last_run_id is None and st.status != "never run":
                    st.last_run_id = _last_stage_run(ctx, st.name)
            return pipe

        self.reply(await self.blocking(status))


def _last_stage_run(ctx: ServerContext, stage: str) -> str | None:
    reader = ctx.reader()
    flt = f"tags.`{tags.STAGE}` = '{stage}' and attributes.status = 'FINISHED'"
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
