"""The dashboard's HTML pages: jobs, one job, workers, rejections; the checkpoint download and
the cancel button.

Each page takes the updates stream's position first (``data-stream-id``), then reads its data
through the client, and renders tables that work without JavaScript. A server that cannot be
reached is a 503 page naming it; a bad filter a 400 page saying which value; an unknown job a
404 page (saying why, when the daemon refused the submission).
"""

from __future__ import annotations

from urllib.parse import quote, urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from orchestrator.client.records import encode_cursor
from orchestrator.core import JobStatus
from orchestrator.errors import JobNotFoundError, OrchestratorError, StorageError
from orchestrator.ui import data, views
from orchestrator.ui.auth import same_origin
from orchestrator.ui.filters import FilterError, JobFilters, parse_filters
from orchestrator.ui.state import dashboard, unavailable_errors

PRESIGN_EXPIRES_S = 300
"""How long a checkpoint's download link (made at click time) stays valid."""

REJECTIONS_LIMIT = 100
MAX_REJECTIONS = 1000


async def home(request: Request) -> Response:
    return RedirectResponse("/jobs", status_code=307)


async def healthz(request: Request) -> Response:
    return Response("ok", media_type="text/plain")


async def jobs(request: Request) -> Response:
    board = dashboard(request)
    context: dict[str, object] = {"statuses": JobStatus.list(), "jobs": [], "next_href": None,
                                  "filter_error": None}
    try:
        filters = parse_filters(request.query_params)
    except FilterError as exc:
        form = {k: (request.query_params.get(k) or "")[:256]
                for k in ("status", "workload", "label")}
        context.update(filters=JobFilters(), form=form, filter_error=str(exc))
        return board.render(request, "jobs.html", context, page="jobs", status_code=400)
    context.update(filters=filters, form=filters.form())
    try:
        position = await board.client.updates_position()
        page = await data.jobs_page(board.client, filters)
    except unavailable_errors() as exc:
        return board.unavailable(request, exc, page="jobs")
    except OrchestratorError as exc:  # e.g. a label the store refuses
        context["filter_error"] = board.scrub(str(exc))
        return board.render(request, "jobs.html", context, page="jobs", status_code=400)
    now = data.utcnow()
    context["jobs"] = [views.summary(job, now) for job in page.jobs]
    if page.next_cursor is not None and page.jobs:
        query = filters.query(cursor=encode_cursor(page.jobs[-1]))
        context["next_href"] = "?" + urlencode(query)
    return board.render(request, "jobs.html", context, page="jobs", stream_id=position)


async def job(request: Request) -> Response:
    board = dashboard(request)
    job_id = request.path_params["job_id"]
    try:
        position = await board.client.updates_position()
        view = await data.job_view(board.client, job_id, allow_cancel=board.options.allow_cancel)
    except JobNotFoundError as exc:
        return await _not_found(request, job_id, exc)
    except unavailable_errors() as exc:
        return board.unavailable(request, exc, page="job")
    context = {"job": view.data, "can_cancel": view.data["can_cancel"],
               "job_json": views.script_json(view.data)}
    return board.render(request, "job.html", context, page="job", stream_id=position)


async def _not_found(request: Request, job_id: str, exc: JobNotFoundError) -> Response:
    board = dashboard(request)
    rejection = None
    try:
        found = await board.client.rejection(job_id)
    except OrchestratorError:
        found = None
    if found is not None:
        rejection = views.rejection_row(found)
    return board.problem(request, status_code=404, heading="No such job", message=str(exc),
                         page="job", rejection=rejection)


async def checkpoint(request: Request) -> Response:
    """307 to a presigned GET of the manifest row ``index`` (made now, valid 300 s)."""
    board = dashboard(request)
    job_id = request.path_params["job_id"]
    index = request.path_params["index"]
    try:
        rows = await board.client.checkpoints(job_id)
    except JobNotFoundError as exc:
        return await _not_found(request, job_id, exc)
    except unavailable_errors() as exc:
        return board.unavailable(request, exc, page="job")
    if not 0 <= index < len(rows):
        return board.problem(request, status_code=404, heading="No such checkpoint",
                             message=f"job {job_id} has {len(rows)} checkpoints; there is no "
                                     f"number {index}", page="job")
    try:
        url = await board.client.presign(str(rows[index]["key"]), PRESIGN_EXPIRES_S)
    except StorageError as exc:
        return board.problem(request, status_code=503, heading="No download link",
                             message=f"the object store cannot make download links: "
                                     f"{board.trouble(exc)}", page="job")
    return RedirectResponse(url, status_code=307, headers={"Cache-Control": "no-store",
                                                           "Referrer-Policy": "no-referrer"})


async def cancel(request: Request) -> Response:
    """Cancel the job (only with ``--allow-cancel``, the token and a same-origin form)."""
    board = dashboard(request)
    job_id = request.path_params["job_id"]
    if not board.options.allow_cancel:
        return board.problem(request, status_code=403, heading="Cancel is off",
                             message="this dashboard was started without --allow-cancel",
                             page="job")
    if not same_origin(request.headers):
        return board.problem(request, status_code=403, heading="Refused",
                             message="a cancel must come from this dashboard's own page",
                             page="job")
    try:
        await board.client.cancel(job_id, reason="cancelled from the dashboard",
                                  requested_by_="dashboard")
    except JobNotFoundError as exc:
        return await _not_found(request, job_id, exc)
    except unavailable_errors() as exc:
        return board.unavailable(request, exc, page="job")
    except OrchestratorError as exc:  # e.g. NOPERM: started with the watcher's credentials
        return board.problem(request, status_code=503, heading="Cancel not sent",
                             message=f"the cancel request could not be sent: "
                                     f"{board.trouble(exc)} (--allow-cancel needs the "
                                     "submitter's Redis credentials)", page="job")
    return RedirectResponse(f"/jobs/{quote(job_id, safe='')}", status_code=303)


async def workers(request: Request) -> Response:
    board = dashboard(request)
    try:
        position = await board.client.updates_position()
        rows = await data.workers_data(board.client)
    except unavailable_errors() as exc:
        return board.unavailable(request, exc, page="workers")
    return board.render(request, "workers.html", {"workers": rows}, page="workers",
                        stream_id=position)


def rejections_limit(request: Request) -> int:
    """``?limit=`` (1..1000, default 100); ``FilterError`` otherwise."""
    text = (request.query_params.get("limit") or "").strip()
    if not text:
        return REJECTIONS_LIMIT
    if not text.isdigit() or not 1 <= int(text) <= MAX_REJECTIONS:
        raise FilterError(f"limit: a whole number from 1 to {MAX_REJECTIONS}")
    return int(text)


async def rejections(request: Request) -> Response:
    board = dashboard(request)
    try:
        limit = rejections_limit(request)
    except FilterError as exc:
        return board.problem(request, status_code=400, heading="Bad request",
                             message=str(exc), page="rejections")
    try:
        position = await board.client.updates_position()
        rows = await data.rejections_data(board.client, limit)
    except unavailable_errors() as exc:
        return board.unavailable(request, exc, page="rejections")
    return board.render(request, "rejections.html", {"rejections": rows},
                        page="rejections", stream_id=position)


__all__ = ["cancel", "checkpoint", "healthz", "home", "job", "jobs", "rejections",
           "rejections_limit", "workers"]
