"""Rich renderables for the watcher and ``status``: the job table and the job in detail.

Pure functions of the data in :mod:`orchestrator.watch.model`; the clock is the ``now`` given.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rich import box
from rich.console import Console, Group, RenderableType
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from orchestrator.core import Job
from orchestrator.watch.model import (
    JobDetail,
    age_s,
    checkpoint_rows,
    display_trends,
    format_age,
    format_metric,
    job_summary,
    participant_rounds_done,
    participant_row,
    participants_text,
    rounds_done,
    sparkline,
    value_range,
)
from orchestrator.watch.styles import state_style


@dataclass(frozen=True, slots=True)
class Budget:
    """How much of each section the job view shows (rows); see :data:`BUDGETS`."""

    trends: int
    checkpoints: int
    events: int
    participants: int | None = None  # None: all


BUDGETS = (
    Budget(trends=12, checkpoints=3, events=6),
    Budget(trends=8, checkpoints=2, events=4),
    Budget(trends=6, checkpoints=0, events=3),
    Budget(trends=4, checkpoints=0, events=2, participants=12),
    Budget(trends=2, checkpoints=0, events=0, participants=6),
)
"""From the fullest job view to the most compact: :func:`job_view` with ``max_rows`` takes the
first that fits (a job of 8 clients and several metrics fits 45 rows with the first)."""


def round_bar(done: int, total: int, *, width: int = 16) -> Table:
    """A progress bar with ``k/n`` next to it."""
    grid = Table.grid(padding=(0, 1))
    grid.add_column(width=width)
    grid.add_column(no_wrap=True)
    grid.add_row(
        ProgressBar(total=max(total, 1), completed=min(done, total), width=width),
        f"{done}/{total}",
    )
    return grid


def _time(value: datetime | None) -> str:
    return "-" if value is None else value.strftime("%Y-%m-%d %H:%M:%S")


def _error_text(error: Mapping[str, Any] | None) -> str:
    if not error:
        return ""
    who = f" [{error['participant']}]" if error.get("participant") else ""
    return f"{error.get('code', '?')}{who}: {error.get('message', '')}"


def jobs_table(jobs: Sequence[Job], now: datetime, *, title: str = "jobs") -> Table:
    """One row per job: status, phase, round k of n as a bar, participants (alive ones while
    it runs, how they ended once it is finished), age, error."""
    table = Table(title=title, title_justify="left", expand=False)
    table.add_column("job", no_wrap=True, style="bold")
    table.add_column("workload", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("phase", no_wrap=True)
    table.add_column("round", no_wrap=True)
    table.add_column("alive / ended", justify="right", no_wrap=True)
    table.add_column("age", justify="right", no_wrap=True)
    table.add_column("last error", overflow="ellipsis", max_width=48)
    if not jobs:
        table.add_row("(no jobs)", "", "", "", "", "", "", "")
    for job in jobs:
        row = job_summary(job, now)
        table.add_row(
            row["id"],
            row["workload"],
            Text(row["status"], style=state_style(row["status"])),
            row["phase"],
            round_bar(rounds_done(job), row["rounds"], width=10),
            participants_text(job, now),
            format_age(row["age_s"]),
            Text(_error_text(row["error"]), style="red"),
        )
    return table


def _header(detail: JobDetail) -> Panel:
    """The job's panel: status, phase and round on one line, then workload, times (one line),
    error and final model."""
    job, now = detail.job, detail.now
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="dim", no_wrap=True)
    grid.add_column()
    state = Table.grid(padding=(0, 2))
    for _ in range(3):
        state.add_column(no_wrap=True)
    state.add_row(Text(job.status.value, style=state_style(job.status.value)), job.phase.value,
                  round_bar(rounds_done(job), job.spec.rounds, width=24))
    grid.add_row("status", state)
    grid.add_row("workload", job.spec.workload + (f"  model {job.spec.model}"
                                                   if job.spec.model else ""))
    times = f"created {_time(job.created_at)} ({format_age(age_s(job.created_at, now))} ago)"
    if job.started_at:
        times += f"  started {_time(job.started_at)[11:]}"
    if job.finished_at:
        times += f"  finished {_time(job.finished_at)[11:]}"
    grid.add_row("times", times)
    if job.error is not None:
        grid.add_row("error", Text(_error_text(job.error.model_dump(mode="json")), style="red"))
    if job.final_checkpoint is not None:
        grid.add_row("final model", job.final_checkpoint.key)
    return Panel(grid, title=f"job {job.id}", title_align="left")


def participants_table(detail: JobDetail, *, limit: int | None = None) -> Table:
    job, now = detail.job, detail.now
    table = Table(title="participants", title_justify="left", box=box.SIMPLE_HEAD,
                  padding=(0, 1), show_edge=False)
    for name, opts in (
        ("participant", {"no_wrap": True, "style": "bold"}),
        ("worker", {"no_wrap": True}),
        ("state", {"no_wrap": True}),
        ("round", {"no_wrap": True}),
        ("heartbeat", {"justify": "right", "no_wrap": True}),
        ("latest metrics", {"no_wrap": True, "overflow": "ellipsis"}),
    ):
        table.add_column(name, **opts)
    participants = list(job.participants.values())
    for p in participants[:limit]:
        row = participant_row(p, job, now)
        beat = format_age(row["heartbeat_age_s"])
        if row["heartbeat_age_s"] is not None:
            beat += " ago"
        metrics = "  ".join(f"{k}={format_metric(v)}" for k, v in sorted(row["metrics"].items()))
        if row["metrics_round"] is not None and metrics:
            metrics = f"r{row['metrics_round']}: {metrics}"
        state = Text(row["state"], style=state_style(row["state"]))
        if row["error"]:
            state.append(f" ({row['error'].get('code')})", style="red")
        table.add_row(
            row["id"], row["worker"], state,
            round_bar(participant_rounds_done(p, job), row["rounds"], width=10),
            Text(beat, style="green" if row["alive"] else "dim"), metrics,
        )
    if limit is not None and len(participants) > limit:
        table.caption = (f"{len(participants) - limit} more (orchestrator status {job.id} "
                         "--json)")
    return table


def trends_table(detail: JobDetail, *, limit: int = 12) -> Table | None:
    """Metric trends by round: the server's, and the clients' mean when several report a
    metric (:func:`display_trends`); the range column gives each sparkline's scale."""
    trends = display_trends(detail.trends)
    if not trends or limit <= 0:
        return None
    table = Table(title="metrics by round", title_justify="left", box=box.SIMPLE_HEAD,
                  padding=(0, 1), show_edge=False)
    table.add_column("participant", no_wrap=True)
    table.add_column("metric", no_wrap=True)
    table.add_column("trend", no_wrap=True, style="cyan")
    table.add_column("range", justify="right", no_wrap=True)
    table.add_column("latest", justify="right", style="bold")
    table.add_column("rounds", justify="right")
    for trend in trends[:limit]:
        window = trend.values[-40:]
        table.add_row(
            trend.participant, trend.name, sparkline(window), value_range(window),
            format_metric(trend.latest),
            f"{trend.rounds[0]}-{trend.rounds[-1]}" if len(trend.rounds) > 1
            else str(trend.rounds[0]),
        )
    if len(trends) > limit:
        table.caption = f"{len(trends) - limit} more (orchestrator status {detail.job.id} --json)"
    return table


def checkpoints_table(rows: Sequence[Mapping[str, Any]], *, limit: int | None = None,
                      job_id: str | None = None, compact: bool = False) -> Table:
    """Manifest rows, the last ``limit`` of them (the caption names the command that lists
    them all); ``compact``: without the outer frame, as in the job view."""
    table = Table(title="checkpoints", title_justify="left",
                  box=box.SIMPLE_HEAD if compact else box.HEAVY_HEAD, show_edge=not compact)
    table.add_column("round", justify="right")
    table.add_column("participant", no_wrap=True)
    table.add_column("key", overflow="fold")
    table.add_column("size", justify="right")
    table.add_column("sha256", no_wrap=True)
    table.add_column("final")
    shown = list(rows) if limit is None else list(rows)[-limit:]
    for row in shown:
        table.add_row(
            str(row.get("round")), str(row.get("participant")), str(row.get("key")),
            str(row.get("size")), str(row.get("sha256", ""))[:12],
            "yes" if row.get("final") else "",
        )
    if limit is not None and len(rows) > limit:
        command = f"orchestrator checkpoints {job_id}" if job_id else "orchestrator checkpoints"
        table.caption = f"{len(rows) - limit} earlier ({command})"
    return table


def events_table(detail: JobDetail, *, limit: int = 6) -> Table:
    """The tail of the job's history and applied changes, newest last."""
    rows: list[tuple[datetime | None, str]] = []
    for h in detail.job.history:
        source = "submitted" if h.from_status is None else f"{h.from_status.value} →"
        rows.append((h.at, f"{source} {h.to_status.value}: {h.reason}"))
    for update in detail.updates:
        reason = update.get("reason") or ""
        text = f"{update.get('status', '')} {update.get('phase', '')}"
        if update.get("round"):
            text += f" round {update['round']}"
        if reason:
            text += f" — {reason}"
        at = update.get("at")
        rows.append((at if isinstance(at, datetime) else None, text))
    rows.sort(key=lambda r: (r[0] is not None, r[0] or datetime.min))
    table = Table(title="events", title_justify="left", show_header=False, box=None,
                  padding=(0, 1))
    table.add_column("at", no_wrap=True, style="dim")
    table.add_column("what", overflow="ellipsis", no_wrap=True)
    for at, text in rows[-limit:]:
        table.add_row(_time(at)[11:] if at else "", text)
    return table


def _job_parts(detail: JobDetail, banner: str | None, budget: Budget) -> Group:
    parts: list[RenderableType] = []
    if banner:
        parts.append(Text(banner, style="bold yellow"))
    parts.append(_header(detail))
    parts.append(participants_table(detail, limit=budget.participants))
    for pid, lines in detail.failed_logs.items():  # (orchestrator logs JOB -p PID: the rest)
        parts.append(Text(f"last lines of {pid}:", style="bold red"))
        parts.append(Text("\n".join(f"  {line}" for line in lines), style="dim"))
    trends = trends_table(detail, limit=budget.trends)
    if trends is not None:
        parts.append(trends)
    if detail.checkpoints and budget.checkpoints > 0:
        parts.append(checkpoints_table(checkpoint_rows(detail.checkpoints),
                                       limit=budget.checkpoints, job_id=detail.job.id,
                                       compact=True))
    if budget.events > 0:
        parts.append(events_table(detail, limit=budget.events))
    return Group(*parts)


def rendered_height(renderable: RenderableType, width: int) -> int:
    """How many lines ``renderable`` takes at ``width`` columns."""
    measure = Console(width=width, file=io.StringIO(), color_system=None, legacy_windows=False)
    return len(measure.render_lines(renderable, measure.options, pad=False))


def job_view(detail: JobDetail, *, banner: str | None = None,
             max_rows: int | None = None, width: int = 120) -> RenderableType:
    """The job in detail: header, participants, metric trends, checkpoints, events.

    With ``max_rows`` (a terminal's height), the fullest layout of :data:`BUDGETS` that fits
    ``max_rows`` lines at ``width`` columns; without it, the fullest.
    """
    if max_rows is None:
        return _job_parts(detail, banner, BUDGETS[0])
    view = _job_parts(detail, banner, BUDGETS[0])
    for budget in BUDGETS:
        view = _job_parts(detail, banner, budget)
        if rendered_height(view, width) <= max_rows:
            break
    return view


def jobs_view(jobs: Sequence[Job], now: datetime, *, banner: str | None = None) -> RenderableType:
    parts: list[RenderableType] = []
    if banner:
        parts.append(Text(banner, style="bold yellow"))
    parts.append(jobs_table(jobs, now, title=f"jobs  (updated {now:%H:%M:%S} UTC)"))
    return Group(*parts)


def progress_line(job: Job, now: datetime, reason: str | None = None) -> str:
    """One plain line for logs and non-terminal output."""
    summary = job_summary(job, now)
    who = (f"participants {participants_text(job, now)}" if job.is_terminal
           else f"alive {participants_text(job, now)}")
    text = (
        f"{now:%H:%M:%S} job {job.id} {summary['status']} {summary['phase']} "
        f"round {rounds_done(job)}/{summary['rounds']} {who}"
    )
    accuracy = job.server.metrics.get("accuracy") if "server" in job.participants else None
    if accuracy is not None:
        text += f" accuracy {accuracy:.4f}"
    if reason:
        text += f" ({reason})"
    if job.error is not None:
        text += f" error {_error_text(job.error.model_dump(mode='json'))}"
    return text
