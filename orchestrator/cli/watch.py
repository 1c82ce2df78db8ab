"""``orchestrator watch [JOB]``: the live view of jobs (rich), or JSON lines for scripts; the
frames come from the Python client (:meth:`orchestrator.client.Client.frames`).

Without a job id: a table of recent and active jobs, until Ctrl-C (exit 0). With a job id: the
job in detail until it finishes — exit 0 if it FINISHED_SUCCESSFULLY, 1 otherwise (also when
interrupted). ``--json`` prints one line per change; ``--once`` one frame. Off a terminal the
view falls back to one plain line per change.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import anyio
import click
from rich.live import Live
from rich.text import Text

from orchestrator.cli.common import EXIT_FAILURE, EXIT_OK, BadInput, cli_settings
from orchestrator.cli.output import console, echo_json, screen_fit, warn
from orchestrator.cli.running import run, run_interruptible
from orchestrator.client import Client
from orchestrator.core import Job, JobSpec, JobStatus
from orchestrator.settings import Settings
from orchestrator.watch.follow import Frame, load_detail, load_jobs, utcnow
from orchestrator.watch.model import JobDetail, job_summary
from orchestrator.watch.render import job_view, jobs_view, progress_line

Mode = Literal["live", "plain", "json", "quiet"]

DEFAULT_WAIT_FOR_JOB_S = 10.0
LIVE_FPS = 4


def default_mode(as_json: bool) -> Mode:
    if as_json:
        return "json"
    return "live" if sys.stdout.isatty() else "plain"


def json_line(job: Job, now: datetime, note: dict[str, Any] | None) -> dict[str, Any]:
    """One line of ``--json``: the job's summary, overlaid with the change note that caused it."""
    line = job_summary(job, now)
    line["type"] = "job"
    line["participant_states"] = {pid: p.state.value for pid, p in job.participants.items()}
    line["server_metrics"] = dict(job.server.metrics) if "server" in job.participants else {}
    line["final_checkpoint"] = (
        None if job.final_checkpoint is None else job.final_checkpoint.key
    )
    line["reason"] = None
    line["at"] = job.updated_at
    if note is not None:
        for name in ("status", "phase", "round", "version", "reason", "at"):
            if note.get(name) is not None:
                line[name] = note[name]
    return line


@dataclass(frozen=True, slots=True)
class JobOutcome:
    """How following a job ended: the last state seen (None: the job never appeared)."""

    detail: JobDetail | None = None
    message: str | None = None  # e.g. the daemon's rejection, or a timeout

    @property
    def job(self) -> Job | None:
        return None if self.detail is None else self.detail.job

    @property
    def status(self) -> JobStatus | None:
        """The FINISHED_* status; None if the job did not finish while followed."""
        job = self.job
        return job.status if job is not None and job.is_terminal else None

    @property
    def exit_code(self) -> int:
        return EXIT_OK if self.status is JobStatus.FINISHED_SUCCESSFULLY else EXIT_FAILURE


class _Printer:
    """Turns frames into output for one mode; remembers the last version shown."""

    def __init__(self, job_id: str, mode: Mode, live: Live | None) -> None:
        self.job_id = job_id
        self.mode = mode
        self.live = live
        self.version = -1

    def job_frame(self, frame: Frame) -> None:
        detail = frame.detail
        if self.mode == "live" and self.live is not None:
            if detail is not None:
                size = self.live.console.size  # the whole job on one screen
                self.live.update(job_view(detail, banner=frame.banner, max_rows=size.height,
                                          width=size.width), refresh=True)
            else:
                waiting = Text(f"waiting for job {self.job_id} to appear …", style="dim")
                if frame.banner:
                    waiting = Text(frame.banner, style="bold yellow")
                self.live.update(waiting, refresh=True)
            return
        if frame.banner and self.mode != "quiet":
            warn(frame.banner)
        if detail is None:
            return
        job = detail.job
        notes = [n for n in frame.updates if int(n.get("version", -1)) > self.version]
        if self.mode == "json":
            for note in notes:
                echo_json(json_line(job, frame.now, note), lines=True)
                self.version = max(self.version, int(note["version"]))
            if job.version > self.version:  # a change without a note (or the first state)
                echo_json(json_line(job, frame.now, None), lines=True)
        elif self.mode == "plain" and job.version > self.version:
            reason = notes[-1].get("reason") if notes else None
            click.echo(progress_line(job, frame.now, reason))
            sys.stdout.flush()
        self.version = max(self.version, job.version)


async def follow_job(
    client: Client,
    job_id: str,
    *,
    mode: Mode,
    wait_for_job_s: float | None,
    timeout_s: float | None = None,
    on_frame: Callable[[Frame], None] | None = None,
    entry_id: str | None = None,
    spec: JobSpec | None = None,
) -> JobOutcome:
    """Follow one job until it is FINISHED_*; render according to ``mode``.

    ``wait_for_job_s``: how long an unknown id may take to appear (None: forever, for a job just
    submitted); a submission the daemon rejected ends the wait with its reason. With the
    submission's ``entry_id`` and ``spec`` (``submit --wait``), a job of that id with another
    spec is not ours: it is not shown, and the daemon's rejection of ours (``duplicate_job``)
    ends the wait.
    """
    started = anyio.current_time()
    live = Live(console=console(), auto_refresh=False, transient=False) if mode == "live" else None
    printer = _Printer(job_id, mode, live)
    seen: JobDetail | None = None
    submission = entry_id is not None or spec is not None
    try:
        if live is not None:
            live.start()
        async for frame in client.frames(job_id):
            job = None if frame.detail is None else frame.detail.job
            other = False
            if submission and (job is not None or frame.rejection is not None):
                other, rejection = await client.submission_refused(
                    job_id, job, entry_id=entry_id, spec=spec)
                if rejection is not None:
                    return JobOutcome(message=f"job {job_id} was rejected: {rejection.kind}: "
                                              f"{rejection.reason}")
            if not other:
                seen = frame.detail or seen
                if on_frame is not None:
                    on_frame(frame)
                printer.job_frame(frame)
            elapsed = anyio.current_time() - started
            if frame.detail is None:
                if frame.rejection is not None and not submission:
                    return JobOutcome(message=f"job {job_id} was rejected: {frame.rejection}")
                if frame.banner is None and wait_for_job_s is not None and (
                        elapsed >= wait_for_job_s):
                    raise BadInput(f"no job with id {job_id!r}")
            elif frame.detail.job.is_terminal and not other:
                return JobOutcome(frame.detail)
            if timeout_s is not None and elapsed >= timeout_s:
                if other:
                    return JobOutcome(message=f"gave up after {timeout_s:g}s: the daemon has not "
                                              f"handled the submission yet (job {job_id} exists "
                                              "with a different spec)")
                status = seen.job.status.value if seen else "not created yet"
                return JobOutcome(seen, message=f"gave up after {timeout_s:g}s: job {job_id} is "
                                                f"{status}")
    finally:
        if live is not None:
            live.stop()
    return JobOutcome()  # pragma: no cover - frames() never ends


async def _watch_table(client: Client, *, mode: Mode, limit: int) -> None:
    if mode == "live":
        with Live(console=console(), auto_refresh=False, transient=False) as live:
            async for frame in client.frames(None, limit=limit):
                live.update(jobs_view(frame.jobs, frame.now, banner=frame.banner), refresh=True)
        return
    versions: dict[str, int] = {}
    async for frame in client.frames(None, limit=limit):
        if frame.banner:
            warn(frame.banner)
        for job in reversed(frame.jobs):  # oldest first
            if versions.get(job.id, -1) >= job.version:
                continue
            versions[job.id] = job.version
            notes = [n for n in frame.updates if n.get("job_id") == job.id]
            if mode == "json":
                echo_json(json_line(job, frame.now, notes[-1] if notes else None), lines=True)
            else:
                click.echo(progress_line(job, frame.now, notes[-1].get("reason") if notes
                                         else None))
                sys.stdout.flush()


async def _once(settings: Settings, job_id: str | None, as_json: bool, limit: int) -> int:
    async with Client(settings) as client:
        store = await client.connections.store()
        now = utcnow()
        if job_id is None:
            jobs = await load_jobs(store, limit)
            if as_json:
                for job in jobs:
                    echo_json(json_line(job, now, None), lines=True)
            else:
                console().print(jobs_view(jobs, now))
            return EXIT_OK
        found = await store.find_by_id(job_id)
        if found is None:
            rejection = await client.rejection(job_id)
            if rejection is None:
                await client.get(job_id)  # raises: no job with id
            else:
                warn(f"job {job_id} was rejected: {rejection.kind}: {rejection.reason}")
                return EXIT_FAILURE
        job = await client.get(job_id)
        if as_json:
            echo_json(json_line(job, now, None), lines=True)
        else:
            out = console()
            logs = await _failed_logs(client, job)
            out.print(job_view(await load_detail(store, job, now, failed_logs=logs),
                               **screen_fit(out)))
        return EXIT_OK


async def _failed_logs(client: Client, job: Job) -> dict[str, list[str]]:
    """The last lines of the job's failed participants (none when Redis is unreachable)."""
    from orchestrator.watch.follow import load_failed_logs  # noqa: PLC0415

    if not any(p.state.value == "failed" for p in job.participants.values()):
        return {}
    try:
        return await load_failed_logs(await client.connections.redis(), client.connections.keys,
                                      job)
    except Exception:  # the lines are extra: the view is shown without them
        return {}


@click.command()
@click.argument("job_id", required=False, metavar="[JOB]")
@click.option("--json", "as_json", is_flag=True,
              help="Stream JSON lines, one per change (for scripts).")
@click.option("--once", is_flag=True, help="Render one frame and exit.")
@click.option("--limit", type=click.IntRange(1, 500), default=20, show_default=True,
              help="Jobs in the table (without JOB).")
@click.option("--wait-for-job", "wait_for_job_s", type=click.FloatRange(0, 3600),
              default=DEFAULT_WAIT_FOR_JOB_S, show_default=True,
              help="Seconds an unknown JOB may take to appear (a job just submitted).")
def watch(job_id: str | None, as_json: bool, once: bool, limit: int,
          wait_for_job_s: float) -> None:
    """Live view of jobs: the recent and active jobs, or JOB in detail.

    With JOB, exits when the job finishes: 0 if it FINISHED_SUCCESSFULLY, 1 otherwise.
    Without JOB, runs until Ctrl-C. Unknown JOB: exit 2.
    """
    settings = cli_settings()
    if once:
        sys.exit(run(settings, lambda: _once(settings, job_id, as_json, limit)))
    mode = default_mode(as_json)

    async def main() -> int:
        async with Client(settings) as client:
            if job_id is None:
                await _watch_table(client, mode=mode, limit=limit)
                return EXIT_OK
            outcome = await follow_job(client, job_id, mode=mode,
                                       wait_for_job_s=wait_for_job_s)
            if outcome.message:
                warn(outcome.message)
            elif outcome.job is not None and mode != "json":
                warn(f"job {job_id} {outcome.job.status.value}")
            return outcome.exit_code

    try:
        code = run_interruptible(settings, main)
    except KeyboardInterrupt:
        code = EXIT_OK if job_id is None else EXIT_FAILURE
    sys.exit(code)


__all__ = ["JobOutcome", "default_mode", "follow_job", "json_line", "watch"]
