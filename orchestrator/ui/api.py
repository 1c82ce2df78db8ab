"""The dashboard's JSON: ``/api/jobs``, ``/api/jobs/{id}``, ``/api/workers``,
``/api/rejections`` — the same objects the pages render and the live events carry (datetimes
as ISO 8601 with their offset). Errors are JSON too: ``{"error": "..."}`` with 400, 404 or
503, never a traceback."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from orchestrator.core import jsonable
from orchestrator.errors import JobNotFoundError, OrchestratorError
from orchestrator.ui import data, views
from orchestrator.ui.filters import FilterError, parse_filters
from orchestrator.ui.pages import rejections_limit
from orchestrator.ui.state import dashboard, unavailable_errors


def _json(value: Any, status_code: int = 200) -> JSONResponse:
    return JSONResponse(jsonable(value), status_code=status_code,
                        headers={"Cache-Control": "no-store"})


def _error(request: Request, exc: BaseException, status_code: int) -> JSONResponse:
    board = dashboard(request)
    message = board.trouble(exc) if status_code == 503 else board.scrub(str(exc))
    return _json({"error": message}, status_code)


async def jobs(request: Request) -> Response:
    board = dashboard(request)
    try:
        filters = parse_filters(request.query_params)
        page = await data.jobs_page(board.client, filters)
    except unavailable_errors() as exc:
        return _error(request, exc, 503)
    except (FilterError, OrchestratorError) as exc:
        return _error(request, exc, 400)
    now = data.utcnow()
    return _json({"jobs": [views.summary(j, now) for j in page.jobs],
                  "next_cursor": page.next_cursor})


async def job(request: Request) -> Response:
    board = dashboard(request)
    try:
        view = await data.job_view(board.client, request.path_params["job_id"],
                                   allow_cancel=board.options.allow_cancel)
    except JobNotFoundError as exc:
        return _error(request, exc, 404)
    except unavailable_errors() as exc:
        return _error(request, exc, 503)
    return _json(view.data)


async def workers(request: Request) -> Response:
    board = dashboard(request)
    try:
        rows = await data.workers_data(board.client)
    except unavailable_errors() as exc:
        return _error(request, exc, 503)
    return _json({"workers": rows})


async def rejections(request: Request) -> Response:
    board = dashboard(request)
    try:
        limit = rejections_limit(request)
        rows = await data.rejections_data(board.client, limit)
    except FilterError as exc:
        return _error(request, exc, 400)
    except unavailable_errors() as exc:
        return _error(request, exc, 503)
    return _json({"rejections": rows})


__all__ = ["job", "jobs", "rejections", "workers"]
