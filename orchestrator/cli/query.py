"""The read-only job commands: ``status JOB``, ``list`` and ``events JOB``, on the Python client
(:mod:`orchestrator.client`).

Jobs are read through the job store's query verbs; ``events`` also scans the job's event
stream shard and its update stream in Redis. ``status`` of an id whose submission the daemon
rejected shows the rejection (exit 0).

Exit codes: 0 success; 1 a server unreachable; 2 an unknown job id, invalid settings, a bad
filter.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

import click
from rich.table import Table
from rich.text import Text

from orchestrator.cli.common import BadInput, cli_settings
from orchestrator.cli.output import console, echo_json, json_option, screen_fit
from orchestrator.cli.running import run
from orchestrator.client import Client
from orchestrator.core import JobStatus, parse_utc
from orchestrator.watch.follow import (
    StreamTail,
    entry_time,
    load_detail,
    stream_entries,
    utcnow,
)
from orchestrator.watch.model import history_rows, job_summary
from orchestrator.watch.render import job_view, jobs_table

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from orchestrator.store import Rejection

EVENT_SCAN_PAGE = 1000
EVENT_SCAN_MAX = 20_000


def rejection_row(rejection: Rejection) -> dict[str, Any]:
    """A rejection as ``status --json`` and ``rejections --json`` print it."""
    return {"at": rejection.at, "kind": rejection.kind, "reason": rejection.reason,
            "job_id": rejection.job_id, "entry_id": rejection.entry_id,
            "source": rejection.source}


@click.command()
@click.argument("job_id", metavar="JOB")
@json_option
def status(job_id: str, as_json: bool) -> None:
    """Show one job: status, phase, round, participants, error, metrics, checkpoints.

    A rejected submission shows the daemon's reason. Unknown JOB: exit 2.
    """
    settings = cli_settings()

    async def main() -> None:
        async with Client(settings) as client:
            store = await client.connections.store()
            job = await store.find_by_id(job_id)
            if job is None:
                rejection = await client.rejection(job_id)
                if rejection is None:
                    await client.get(job_id)  # raises: no job with id
                    return
                if as_json:
                    echo_json({"id": job_id, "status": "REJECTED",
                               "rejection": rejection_row(rejection)})
                else:
                    click.echo(f"job {job_id} was rejected by the daemon at "
                               f"{rejection.at:%Y-%m-%d %H:%M:%S} UTC: {rejection.kind}: "
                               f"{rejection.reason}")
                return
            detail = await load_detail(store, job, utcnow())
        if as_json:
            echo_json(detail.as_dict())
        else:
            out = console()
            out.print(job_view(detail, **screen_fit(out)))

    run(settings, main)


_STATUS_CHOICE = click.Choice(JobStatus.list(), case_sensitive=False)


def parse_label(value: str) -> tuple[str, str]:
    key, sep, wanted = value.partition("=")
    if not sep or not key:
        raise BadInput(f"--label {value!r}: give it as KEY=VALUE")
    return key, wanted


def parse_time(value: str | None, option: str) -> datetime | None:
    """An ISO 8601 time (UTC when it names no zone); bad input otherwise."""
    if value is None:
        return None
    when = parse_utc(value)
    if when is None:
        raise BadInput(f"{option} {value!r}: not an ISO 8601 time (e.g. 2026-12-01T10:00)")
    return when


@click.command("list")
@click.option("--status", "status_", type=_STATUS_CHOICE, help="Only jobs with this status.")
@click.option("--workload", help="Only jobs of this workload.")
@click.option("--label", "labels", multiple=True, metavar="KEY=VALUE",
              help="Only jobs with this label (repeatable: all must match).")
@click.option("--created-after", metavar="TIME", help="Only jobs created at or after TIME.")
@click.option("--created-before", metavar="TIME", help="Only jobs created before TIME.")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@click.option("--skip", type=click.IntRange(0), default=0, help="Skip this many jobs first.")
@click.option("--cursor", help="Start after this cursor (printed under a page that has more).")
@json_option
def list_jobs(  # noqa: PLR0917 - one parameter per click option
    status_: str | None, workload: str | None, labels: tuple[str, ...],
    created_after: str | None, created_before: str | None, limit: int, skip: int,
    cursor: str | None, as_json: bool,
) -> None:
    """List jobs, newest first (filtered; paged with --cursor or --skip/--limit)."""
    settings = cli_settings()
    wanted_labels = dict(parse_label(v) for v in labels)
    after = parse_time(created_after, "--created-after")
    before = parse_time(created_before, "--created-before")

    async def main() -> None:
        async with Client(settings) as client:
            page = await client.list(status=status_, workload=workload, labels=wanted_labels,
                                     created_after=after, created_before=before, limit=limit,
                                     skip=skip, cursor=cursor)
        jobs = page.jobs
        now = utcnow()
        if as_json:
            echo_json([job_summary(j, now) for j in jobs])
        else:
            console().print(jobs_table(jobs, now, title=f"jobs ({len(jobs)} shown, newest "
                                                         "first)"))
            if page.next_cursor is not None:
                click.echo(f"more: orchestrator list --cursor '{page.next_cursor}'")

    run(settings, main)


async def job_events(redis: Redis, stream: str, job_id: str, limit: int) -> list[dict[str, Any]]:
    """The job's newest ``limit`` events on its shard stream (scanning back a bounded amount)."""
    found: list[dict[str, Any]] = []
    upper = "+"
    scanned = 0
    while len(found) < limit and scanned < EVENT_SCAN_MAX:
        page = stream_entries(
            await redis.xrevrange(stream, max=upper, min="-", count=EVENT_SCAN_PAGE))
        if not page:
            break
        for eid, fields in page:
            raw = fields.get(b"event") or fields.get("event")
            if raw is None:
                continue
            try:
                event = json.loads(raw)
            except ValueError:
                continue
            if isinstance(event, dict) and event.get("job_id") == job_id:
                found.append({"entry_id": eid, "received_at": entry_time(eid), **event})
                if len(found) >= limit:
                    break
        scanned += len(page)
        upper = "(" + page[-1][0]
    return list(reversed(found))


def _describe_event(event: dict[str, Any]) -> str:
    kind = str(event.get("type", "?"))
    who = event.get("participant")
    parts = [kind] + ([f"[{who}]"] if who else [])
    if "round" in event and event["round"] is not None:
        parts.append(f"round {event['round']}")
    if kind == "round.metrics":
        metrics = event.get("metrics") or {}
        parts.append(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                              for k, v in sorted(metrics.items())))
    elif kind == "checkpoint.saved":
        parts.append(f"{event.get('key')} ({event.get('size')} bytes)"
                     + (" final" if event.get("final") else ""))
    elif kind == "participant.failed":
        parts.append(f"{event.get('code')}: {event.get('message')}")
    elif kind in ("participant.stopped", "cancel.requested"):
        parts.append(str(event.get("reason", "")))
    elif kind == "deadline.expired":
        parts.append(str(event.get("kind", "")))
    return " ".join(p for p in parts if p)


@click.command()
@click.argument("job_id", metavar="JOB")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True,
              help="Recent events and updates to show.")
@click.option("--heartbeats/--no-heartbeats", default=False, show_default=True,
              help="Include participant heartbeats.")
@json_option
def events(job_id: str, limit: int, heartbeats: bool, as_json: bool) -> None:
    """A job's status history, its recent events and the changes they made.

    Events come from the job's event stream shard (a bounded scan back); history from MongoDB.
    Unknown JOB: exit 2.
    """
    settings = cli_settings()

    async def main() -> None:
        async with Client(settings) as client:
            job = await client.get(job_id)
            keys = client.connections.keys
            redis = await client.connections.redis()
            raw_events = await job_events(redis, keys.events_for(job_id), job_id,
                                          limit if heartbeats else limit * 4)
            updates = await StreamTail(redis, keys.updates, job_id=job_id).recent(limit)
        recent = [e for e in raw_events
                  if heartbeats or e.get("type") != "participant.heartbeat"][-limit:]
        if as_json:
            echo_json({"id": job_id, "status": job.status.value, "history": history_rows(job),
                       "events": recent, "updates": updates})
            return
        timeline: list[tuple[datetime, str, Text]] = []
        for h in history_rows(job):
            arrow = f"{h['from']} → {h['to']}" if h["from"] else f"submitted → {h['to']}"
            timeline.append((h["at"], "status", Text(f"{arrow}: {h['reason']}", style="bold")))
        for e in recent:
            timeline.append((e["received_at"], "event", Text(_describe_event(e))))
        for u in updates:
            change = f"{u.get('status')} {u.get('phase')} round {u.get('round')}: {u.get('reason')}"
            timeline.append((u["at"], "change", Text(change)))
        timeline.sort(key=lambda row: row[0])
        table = Table(title=f"job {job_id} ({job.status.value})", title_justify="left")
        table.add_column("at (UTC)", no_wrap=True, style="dim")
        table.add_column("kind", no_wrap=True)
        table.add_column("what", overflow="fold")
        for at, kind, what in timeline:
            table.add_row(f"{at:%Y-%m-%d %H:%M:%S.%f}"[:-3], kind, what)
        console().print(table)

    run(settings, main)
