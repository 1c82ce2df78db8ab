"""``GET /events``: server-sent events from the daemon's updates stream, per page.

Theory of operation. The page hands over the updates stream's position it took before reading
its data (``?after=``); on a reconnect the browser sends the last event id it received
(``Last-Event-ID``), which wins. From there the server tails the stream through
:meth:`Client.updates` and turns each batch of notes into what the page needs: ``job``
summaries (jobs view, filtered by workload and labels — the page itself drops rows whose status
no longer matches), the job's ``detail`` (job view) or the ``workers`` table (workers view).
Every message of a batch carries ``id:`` = the batch's last entry id, so a resumed stream
replays exactly what the page missed. An empty batch (the block timed out, ~1 s) becomes a
``: keepalive`` comment — which is also how a closed connection is noticed: the write fails and
the stream ends, giving its Redis connection back to the pool. A position trimmed off the
stream is ``event: reset`` (the page reloads); a server that fails is ``event: trouble`` with
its gist (no URL, no password), retried every ``RETRY_S``, and cleared by ``event: ok``.
Nothing polls the browser; the job and workers views re-read their data every ``REFRESH_S``
while idle, because some changes (heartbeats, metrics alone, workers that vanish) announce
nothing on the stream.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Sequence
from contextlib import aclosing
from typing import Any

import anyio
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from orchestrator.client.updates import UpdatesTrimmedError, entry_key
from orchestrator.errors import JobNotFoundError, OrchestratorError, PermanentError
from orchestrator.ui import data, views
from orchestrator.ui.filters import FilterError, JobFilters, parse_filters
from orchestrator.ui.state import Dashboard, dashboard, unavailable_errors

VIEWS = ("jobs", "job", "workers")
BLOCK_MS = 1000
RETRY_S = 2.0
REFRESH_S = 5.0
RETRY_MS = 2000
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def message(event: str, payload: Any, entry_id: str | None = None) -> str:
    """One SSE message (``id:`` when given); the payload as one line of JSON."""
    head = f"id: {entry_id}\n" if entry_id else ""
    return f"{head}event: {event}\ndata: {json.dumps(payload, separators=(',', ':'))}\n\n"


class Feed:
    """What one page's stream sends, given a batch of notes (or an idle tick)."""

    def __init__(self, board: Dashboard, view: str, job_id: str | None,
                 filters: JobFilters) -> None:
        self.board, self.view, self.job_id, self.filters = board, view, job_id, filters
        # the workers view gets its table at the first idle tick (the page may be old)
        self.last_refresh = -REFRESH_S if view == "workers" else anyio.current_time()
        self.last_detail: str | None = None
        self.job_done = False
        self.events: list[dict[str, Any]] | None = None  # the job's last notes, once read

    async def for_batch(self, notes: Sequence[dict[str, Any]]) -> list[str]:
        """The messages a batch of notes makes (each with the batch's last id)."""
        last = str(notes[-1]["entry_id"])
        self.last_refresh = anyio.current_time()
        if self.view == "jobs":
            return [message("job", row, last) for row in await self._summaries(notes)]
        if self.view == "job":
            if self.events is not None:  # (the batch holds this job's notes only)
                seen = {e.get("entry_id") for e in self.events}
                fresh = [n for n in notes if n.get("entry_id") not in seen]
                self.events = [*self.events, *fresh][-views.EVENTS_SHOWN:]
            detail = await self._detail()
            return [] if detail is None else [message("detail", detail, last)]
        return [message("workers", {"workers": await data.workers_data(self.board.client)},
                        last)]

    async def on_idle(self) -> list[str]:
        """Every ``REFRESH_S`` without notes: the workers table, or the job's detail if it
        changed (heartbeats, metrics and log lines come without notes)."""
        if anyio.current_time() - self.last_refresh < REFRESH_S or self.view == "jobs":
            return []
        self.last_refresh = anyio.current_time()
        if self.view == "workers":
            return [message("workers", {"workers": await data.workers_data(self.board.client)})]
        if self.job_done:
            return []
        detail = await self._detail(only_changed=True)
        return [] if detail is None else [message("detail", detail)]

    async def _summaries(self, notes: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        ids = list(dict.fromkeys(str(n.get("job_id")) for n in notes if n.get("job_id")))
        rows = []
        now = data.utcnow()
        for job_id in ids:
            try:
                job = await self.board.client.get(job_id)
            except JobNotFoundError:
                continue
            row = views.summary(job, now)
            if self.filters.matches(row, with_status=False):
                rows.append(row)
        return rows

    async def _detail(self, *, only_changed: bool = False) -> dict[str, Any] | None:
        assert self.job_id is not None
        try:
            view = await data.job_view(self.board.client, self.job_id,
                                       allow_cancel=self.board.options.allow_cancel,
                                       events=self.events)
        except JobNotFoundError:
            return None
        self.events = view.events
        self.job_done = view.detail.job.is_terminal
        stamp = _fingerprint(view.data)
        if only_changed and stamp == self.last_detail:
            return None
        self.last_detail = stamp
        return view.data


def _fingerprint(detail: dict[str, Any]) -> str:
    """The detail without what only the clock changes (ages, alive flags)."""
    stable = {k: v for k, v in detail.items() if k not in ("age_s", "participants")}
    stable["participants"] = [{k: v for k, v in p.items()
                               if k not in ("heartbeat_age_s", "alive")}
                              for p in detail.get("participants", [])]
    return json.dumps(stable, sort_keys=True, default=str)


async def stream(board: Dashboard, request: Request, feed: Feed, after: str | None
                 ) -> AsyncIterator[str]:
    """The event stream of one page until the browser goes away."""
    position, troubled = after, False
    if position is None:  # now, before anything is sent: what follows the first line counts
        with contextlib.suppress(*unavailable_errors()):
            position = await board.client.updates_position()
    yield f"retry: {RETRY_MS}\n\n"
    job_filter = feed.job_id if feed.view == "job" else None
    while not await request.is_disconnected():
        try:
            if position is None:
                position = await board.client.updates_position()
            updates = board.client.updates(after=position, job_id=job_filter,
                                           block_ms=BLOCK_MS)
            async with aclosing(updates) as batches:
                async for batch in batches:
                    out = await (feed.for_batch(batch) if batch else feed.on_idle())
                    if troubled:
                        out.insert(0, message("ok", {}))
                        troubled = False
                    if batch:
                        position = str(batch[-1]["entry_id"])
                    yield "".join(out) if out else ": keepalive\n\n"
                    if await request.is_disconnected():
                        return
        except UpdatesTrimmedError:
            yield message("reset", {})
            return
        except OrchestratorError as exc:  # unreachable servers above all; retried alike
            troubled = True
            yield message("trouble", {"message": board.trouble(exc)})
            await anyio.sleep(RETRY_S)


def _bad(text: str) -> Response:
    return JSONResponse({"error": text}, status_code=400)


async def events(request: Request) -> Response:
    """``/events?view=jobs|job|workers&job=&after=&status=&workload=&label=``."""
    board = dashboard(request)
    params = request.query_params
    view = params.get("view") or "jobs"
    if view not in VIEWS:
        return _bad(f"view: one of {', '.join(VIEWS)}")
    job_id = (params.get("job") or "").strip() or None
    if view == "job" and job_id is None:
        return _bad("view=job needs job=JOB_ID")
    # Only workload and labels: the page filters by status itself (a job that leaves its
    # status is removed from it), and paging is not the stream's business.
    wanted = QueryParams([(k, v) for k, v in params.multi_items() if k in ("workload", "label")])
    try:
        filters = parse_filters(wanted) if view == "jobs" else JobFilters()
    except FilterError as exc:
        return _bad(str(exc))
    after = (request.headers.get("last-event-id") or params.get("after") or "").strip() or None
    if after is not None:
        try:
            entry_key(after)
        except PermanentError:
            return _bad("after / Last-Event-ID: not a stream entry id (like 1700000000000-0)")
    feed = Feed(board, view, job_id, filters)
    return StreamingResponse(stream(board, request, feed, after),
                             media_type="text/event-stream", headers=HEADERS)


__all__ = ["events", "message"]
