"""Job commands: ``submit``, ``status``, ``list``, ``cancel``, ``events``, ``checkpoints``.

Exit codes: 0 success; 1 failure (a server unreachable, a job that did not succeed with
``--wait``, a download that did not verify); 2 bad usage or input (an unreadable or invalid
spec, an unknown job id, invalid settings).
"""

from __future__ import annotations

import getpass
import json
import socket
import sys
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import click
from pydantic import ValidationError
from rich.table import Table
from rich.text import Text

from orchestrator.cli.common import (
    EXIT_FAILURE,
    EXIT_OK,
    BadInput,
    bus_for,
    cli_settings,
    console,
    echo_json,
    json_option,
    keys_for,
    open_redis,
    open_store,
    run,
    run_interruptible,
    warn,
)
from orchestrator.cli.watch import Mode, follow_job
from orchestrator.core import JobSpec, JobStatus, validation_problems
from orchestrator.core.spec import MAX_SPEC_BYTES
from orchestrator.errors import StorageError
from orchestrator.storage.port import validate_key
from orchestrator.watch.follow import (
    entry_time,
    load_detail,
    parse_update,
    stream_entries,
    utcnow,
)
from orchestrator.watch.model import checkpoint_rows, history_rows, job_summary
from orchestrator.watch.render import checkpoints_table, job_view, jobs_table

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from orchestrator.settings import Settings
    from orchestrator.storage.port import ObjectStore

IDEMPOTENT_JOB_IDS = uuid.UUID("9c7f0b52-51f6-4a38-8f43-2d1f0c6f7e11")
EVENT_SCAN_PAGE = 1000
EVENT_SCAN_MAX = 20_000


# --- submit ----------------------------------------------------------------------------------


def read_spec_text(source: str) -> tuple[str, str]:
    """(text, name) from a path or ``-`` (stdin); unreadable input is bad input."""
    if source == "-":
        return sys.stdin.read(MAX_SPEC_BYTES + 1), "<stdin>"
    path = Path(source)
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_SPEC_BYTES + 1)
    except FileNotFoundError as exc:
        raise BadInput(f"{source}: no such file") from exc
    except IsADirectoryError as exc:
        raise BadInput(f"{source}: is a directory, not a spec file") from exc
    except OSError as exc:
        raise BadInput(f"{source}: cannot read: {exc.strerror}") from exc
    try:
        return raw.decode("utf-8"), source
    except UnicodeDecodeError as exc:
        raise BadInput(f"{source}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc


def validate_spec(text: str, name: str) -> JobSpec:
    """Parse and validate locally; every problem is printed, then BadInput (exit 2)."""
    if len(text.encode()) > MAX_SPEC_BYTES:
        raise BadInput(f"{name}: spec is larger than the {MAX_SPEC_BYTES} byte limit")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadInput(f"{name}: not valid JSON: {exc.msg} (line {exc.lineno}, column "
                       f"{exc.colno})") from exc
    if not isinstance(data, dict):
        raise BadInput(f"{name}: a job spec is a JSON object, got {type(data).__name__}")
    try:
        return JobSpec.model_validate(data)
    except ValidationError as exc:
        problems = validation_problems(exc)
        for problem in problems:
            warn(f"{name}: {problem}")
        noun = "problem" if len(problems) == 1 else "problems"
        raise BadInput(f"{name}: invalid job spec ({len(problems)} {noun}); nothing "
                       "submitted") from exc


def job_id_for(spec: JobSpec, idempotency_key: str | None) -> str:
    """The spec's own id; else one derived from the idempotency key (a resubmission names the
    same job); else a fresh uuid4."""
    if spec.job_id is not None:
        return spec.job_id
    if idempotency_key is not None:
        return uuid.uuid5(IDEMPOTENT_JOB_IDS, idempotency_key).hex
    return uuid.uuid4().hex


def _unknown_workload(spec: JobSpec) -> str | None:
    try:
        from workers.registry import workload_names  # noqa: PLC0415
    except ImportError:  # pragma: no cover - workers are part of this distribution
        return None
    names = workload_names()
    if spec.workload in names:
        return None
    return (f"note: workload {spec.workload!r} is not registered in this installation "
            f"(known here: {', '.join(names)}); the workers must know it")


def requested_by() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()} (cli)"


@click.command()
@click.argument("spec_file", metavar="SPEC.json|-")
@click.option("--idempotency-key", metavar="K",
              help="Submitting the same key again names the same job (never a second one).")
@click.option("--wait", is_flag=True,
              help="Follow the job; exit 0 only if it FINISHED_SUCCESSFULLY, else 1.")
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=0, min_open=True),
              help="With --wait: give up (exit 1) after this many seconds.")
@json_option
def submit(spec_file: str, idempotency_key: str | None, wait: bool, timeout_s: float | None,
           as_json: bool) -> None:
    """Validate a job spec locally and put it on the submissions stream; print the job id.

    An invalid spec prints every problem with its field path and submits nothing (exit 2).
    """
    text, name = read_spec_text(spec_file)
    spec = validate_spec(text, name)
    settings = cli_settings()
    key = idempotency_key or spec.idempotency_key
    job_id = job_id_for(spec, key)
    update: dict[str, Any] = {"job_id": job_id}
    if key is not None:
        update["idempotency_key"] = key
    spec = spec.model_copy(update=update)
    note = _unknown_workload(spec)
    if note:
        warn(note)

    async def main() -> int:
        async with open_redis(settings) as redis:
            entry_id = await bus_for(redis, settings).submit(
                spec.model_dump_json(exclude_none=True), idempotency_key=key)
            if as_json:
                echo_json({"id": job_id, "entry_id": entry_id, "idempotency_key": key,
                           "submitted": True}, lines=wait)
            else:
                click.echo(job_id)
                sys.stdout.flush()
            if not wait:
                return EXIT_OK
            async with open_store(settings) as store:
                mode: Mode = "json" if as_json else "plain"
                outcome = await follow_job(store, redis, settings, job_id, mode=mode,
                                           wait_for_job_s=None, timeout_s=timeout_s)
            if outcome.message:
                warn(outcome.message)
            elif outcome.job is not None and not as_json:
                error = outcome.job.error
                detail = f": {error.code.value}: {error.message}" if error else ""
                warn(f"job {job_id} {outcome.job.status.value}{detail}")
            return outcome.exit_code

    sys.exit(_run_waiting(settings, main, wait))


def _run_waiting(settings: Settings, main: Callable[[], Awaitable[int]], wait: bool) -> int:
    """Run a command body; with ``--wait``, Ctrl-C ends the wait (exit 1, the job goes on)."""
    if not wait:
        return run(settings, main)
    try:
        return run_interruptible(settings, main)
    except KeyboardInterrupt:
        warn("interrupted: stopped waiting (the job itself goes on)")
        return EXIT_FAILURE


# --- status / list ---------------------------------------------------------------------------


@click.command()
@click.argument("job_id", metavar="JOB")
@json_option
def status(job_id: str, as_json: bool) -> None:
    """Show one job: status, phase, round, participants, error, metrics, checkpoints.

    Unknown JOB: exit 2.
    """
    settings = cli_settings()

    async def main() -> None:
        async with open_store(settings) as store:
            detail = await load_detail(store, await store.get(job_id), utcnow())
        if as_json:
            echo_json(detail.as_dict())
        else:
            console().print(job_view(detail))

    run(settings, main)


_STATUS_CHOICE = click.Choice(JobStatus.list(), case_sensitive=False)


@click.command("list")
@click.option("--status", "status_", type=_STATUS_CHOICE, help="Only jobs with this status.")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@json_option
def list_jobs(status_: str | None, limit: int, as_json: bool) -> None:
    """List jobs, newest first."""
    settings = cli_settings()

    async def main() -> None:
        wanted = None if status_ is None else JobStatus(status_.upper())
        async with open_store(settings) as store:
            jobs = await store.find_by_status(wanted, limit=limit)
        now = utcnow()
        if as_json:
            echo_json([job_summary(j, now) for j in jobs])
        else:
            console().print(jobs_table(jobs, now, title=f"jobs ({len(jobs)} shown, newest "
                                                         "first)"))

    run(settings, main)


# --- cancel ----------------------------------------------------------------------------------


@click.command()
@click.argument("job_id", metavar="JOB")
@click.option("--reason", default="cancelled by user", show_default=True)
@click.option("--wait", is_flag=True,
              help="Wait until the job is FINISHED_*; exit 0 only if FINISHED_CANCELLED.")
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=0, min_open=True),
              help="With --wait: give up (exit 1) after this many seconds.")
@json_option
def cancel(job_id: str, reason: str, wait: bool, timeout_s: float | None, as_json: bool) -> None:
    """Ask the daemon to cancel a job (its participants are stopped).

    A job that already finished is left alone (exit 0, or 1 with --wait unless it was
    cancelled). Unknown JOB: exit 2.
    """
    settings = cli_settings()

    async def main() -> int:
        async with open_store(settings) as store:
            job = await store.get(job_id)
            if job.is_terminal:
                if as_json:
                    echo_json({"id": job_id, "status": job.status.value, "requested": False})
                else:
                    click.echo(f"job {job_id} already {job.status.value}; nothing to cancel")
                if wait and job.status is not JobStatus.FINISHED_CANCELLED:
                    return EXIT_FAILURE
                return EXIT_OK
            async with open_redis(settings) as redis:
                entry_id = await bus_for(redis, settings).request_cancel(
                    job_id, reason=reason, requested_by=requested_by())
                if as_json:
                    echo_json({"id": job_id, "status": job.status.value, "requested": True,
                               "entry_id": entry_id}, lines=wait)
                else:
                    click.echo(f"cancel requested for job {job_id} ({job.status.value})")
                if not wait:
                    return EXIT_OK
                mode: Mode = "json" if as_json else "quiet"
                outcome = await follow_job(store, redis, settings, job_id, mode=mode,
                                           wait_for_job_s=None, timeout_s=timeout_s)
        if outcome.message:
            warn(outcome.message)
            return EXIT_FAILURE
        final = outcome.status
        if not as_json and final is not None:
            click.echo(f"job {job_id} {final.value}")
        return EXIT_OK if final is JobStatus.FINISHED_CANCELLED else EXIT_FAILURE

    sys.exit(_run_waiting(settings, main, wait))


# --- events ----------------------------------------------------------------------------------


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
        keys = keys_for(settings)
        async with open_store(settings) as store:
            job = await store.get(job_id)
        async with open_redis(settings) as redis:
            raw_events = await job_events(redis, keys.events_for(job_id), job_id,
                                          limit if heartbeats else limit * 4)
            rows = stream_entries(await redis.xrevrange(keys.job_updates(job_id), count=limit))
        recent = [e for e in raw_events
                  if heartbeats or e.get("type") != "participant.heartbeat"][-limit:]
        updates = [parse_update(eid, fields) for eid, fields in reversed(rows)]
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


# --- checkpoints -----------------------------------------------------------------------------


def open_checkpoint_store(settings: Settings) -> ObjectStore:
    from orchestrator.storage.registry import open_object_store  # noqa: PLC0415

    return open_object_store(settings.s3_url, endpoint_url=settings.s3_endpoint_url)


@click.command()
@click.argument("job_id", metavar="JOB")
@click.option("--download", "download_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Download the checkpoints into DIR (sha256-checked against the manifest).")
@click.option("--presign", is_flag=True, help="Add presigned GET URLs (S3 only).")
@click.option("--expires", "expires_s", type=click.IntRange(1, 604_800), default=3600,
              show_default=True, help="Lifetime of presigned URLs, in seconds.")
@click.option("--final", "final_only", is_flag=True, help="Only the final checkpoint.")
@click.option("--round", "round_", type=int, help="Only the checkpoints of this round.")
@json_option
def checkpoints(  # noqa: PLR0917 - one parameter per click option
    job_id: str, download_dir: Path | None, presign: bool, expires_s: int,
    final_only: bool, round_: int | None, as_json: bool,
) -> None:
    """A job's model trail: every checkpoint in the manifest (round, participant, key, sha256).

    Unknown JOB: exit 2. A download whose sha256 does not match the manifest: exit 1.
    """
    settings = cli_settings()

    async def main() -> int:
        async with open_store(settings) as store:
            job = await store.get(job_id)
            rows = checkpoint_rows(await store.checkpoints(job_id))
        if final_only:
            rows = [r for r in rows if r["final"]]
        if round_ is not None:
            rows = [r for r in rows if r["round"] == round_]
        failures: list[str] = []
        if rows and (download_dir is not None or presign):
            async with open_checkpoint_store(settings) as objects:
                for row in rows:
                    if presign:
                        request = await objects.presign_get(str(row["key"]), expires_s)
                        row["url"] = request.url
                    if download_dir is not None:
                        problem = await _download(objects, row, download_dir)
                        if problem:
                            failures.append(problem)
        if as_json:
            echo_json({"id": job_id, "status": job.status.value, "store": settings.s3_url,
                       "checkpoints": rows})
        else:
            out = console()
            if not rows:
                out.print(f"job {job_id} ({job.status.value}): no checkpoints"
                          + (" matching the filter" if final_only or round_ is not None
                             else ""))
            else:
                out.print(checkpoints_table(rows))
                out.print(f"store: {settings.s3_url}")
                for row in rows:
                    if "url" in row:
                        click.echo(f"{row['key']}  {row['url']}")
                    if "path" in row:
                        click.echo(f"{row['key']}  -> {row['path']}  (sha256 ok)")
        for problem in failures:
            warn(problem)
        return EXIT_FAILURE if failures else EXIT_OK

    sys.exit(run(settings, main))


async def _download(objects: ObjectStore, row: dict[str, Any], directory: Path) -> str | None:
    """Download one checkpoint; return a problem, or None when its sha256 matched.

    ``download_to`` streams and verifies the bytes against the object's own sha256, so the
    file is checked against the manifest by comparing that verified digest.
    """
    key = str(row["key"])
    try:
        target = anyio.Path(directory / validate_key(key))  # (before any folder is made)
        await target.parent.mkdir(parents=True, exist_ok=True)
        info = await objects.download_to(key, target)
    except StorageError as exc:
        return f"{key}: download failed: {exc}"
    actual = info.sha256
    if actual != row["sha256"]:
        await target.unlink(missing_ok=True)
        return f"{key}: sha256 {actual} does not match the manifest's {row['sha256']}"
    row["path"] = str(target)
    return None


__all__ = ["cancel", "checkpoints", "events", "list_jobs", "status", "submit", "validate_spec"]
