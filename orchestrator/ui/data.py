"""What the dashboard reads, always through :class:`orchestrator.client.Client` (never the store
or Redis directly), shaped by :mod:`orchestrator.ui.views`.

Every page takes the updates stream's position *before* it reads its data and hands it to its
script (``data-stream-id``): the live stream then starts from there, so no change between the
read and the subscription is lost (the watcher's rule, :mod:`orchestrator.watch.follow`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from orchestrator.errors import OrchestratorError
from orchestrator.ui import views
from orchestrator.ui.filters import JobFilters
from orchestrator.watch.follow import utcnow

if TYPE_CHECKING:
    from orchestrator.client import Client
    from orchestrator.client.records import JobPage
    from orchestrator.watch.model import JobDetail


async def jobs_page(client: Client, filters: JobFilters) -> JobPage:
    """One page of the jobs list, newest first."""
    return await client.list(status=filters.status, workload=filters.workload,
                             labels=filters.labels or None, cursor=filters.cursor,
                             limit=filters.limit)


async def job_logs(client: Client, job_id: str, participants: Sequence[str]
                   ) -> dict[str, list[str]]:
    """The last lines of each participant's log (stored logs of those that ended, live lines
    of those running), every participant of the job in order; no lines when the logs cannot
    be read (they are extra: never lose the page for them)."""
    found: dict[str, list[str]] = {pid: [] for pid in participants}
    try:
        lines = await client.logs(job_id)
    except OrchestratorError:
        return found
    for line in lines:
        found.setdefault(line.participant, []).append(
            f"{line.at} {line.stream} {line.line}".strip())
    return {pid: rows[-views.LOG_LINES_SHOWN:] for pid, rows in found.items()}


@dataclass
class JobView:
    """A job's detail as the page shows it, and the JSON of it."""

    detail: JobDetail
    events: list[dict[str, Any]]
    logs: dict[str, list[str]]
    data: dict[str, Any]


async def job_view(client: Client, job_id: str, *, allow_cancel: bool,
                   events: Sequence[dict[str, Any]] | None = None) -> JobView:
    """The job's detail, its last update notes (read from the stream unless ``events`` are
    given: a live stream keeps them itself) and log tails (``JobNotFoundError`` for an
    unknown id)."""
    detail = await client.detail(job_id)
    if events is None:
        events = await client.recent_updates(job_id, count=views.EVENTS_SHOWN)
    events = list(events)[-views.EVENTS_SHOWN:]
    logs = await job_logs(client, job_id, list(detail.job.participants))
    can_cancel = allow_cancel and not detail.job.is_terminal
    data = views.detail_data(detail, events=events, logs=logs, can_cancel=can_cancel)
    return JobView(detail, events, logs, data)


async def workers_data(client: Client) -> list[dict[str, Any]]:
    return views.worker_rows(await client.workers())


async def rejections_data(client: Client, limit: int) -> list[dict[str, Any]]:
    rows: Sequence[Any] = await client.rejections(limit=limit)
    return [views.rejection_row(r) for r in rows]


__all__ = ["JobView", "job_logs", "job_view", "jobs_page", "rejections_data", "utcnow",
           "workers_data"]
