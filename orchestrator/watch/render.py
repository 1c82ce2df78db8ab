"""Rich renderables for the watcher and ``status``: the job table and the job in detail.

Pure functions of the data in :mod:`orchestrator.watch.model`; the clock is the ``now`` given.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from orchestrator.core import Job
from orchestrator.watch.model import (
    JobDetail,
    age_s,
    checkpoint_rows,
    format_age,
    format_metric,
    job_summary,
    participant_row,
    sparkline,
    state_style,
)

MAX_TREND_ROWS = 12
MAX_CHECKPOINT_ROWS = 6
MAX_EVENT_ROWS = 8


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
    """One row per job: status, phase, round k of n as a bar, participants alive, age, error."""
    table = Table(title=title, title_justify="left", expand=False)
    table.add_column("job", no_wrap=True, style="bold")
    table.add_column("workload", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("phase", no_wrap=True)
    table.add_column("round", no_wrap=True)
    table.add_column("alive", justify="right", no_wrap=True)
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
            round_bar(row["round"], row["rounds"], width=10),
            f"{row['participants_alive']}/{row['participants']}",
            format_age(row["age_s"]),
            Text(_error_text(row["error"]), style="red"),
        )
    return table


def _header(detail: JobDetail) -> Panel:
    job, now = detail.job, detail.now
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="dim", no_wrap=True)
    grid.add_column()
    grid.add_row("status", Text(job.status.value, style=state_style(job.status.value)))
    grid.add_row("phase", job.phase.value)
    grid.add_row("round", round_bar(job.round, job.spec.rounds, width=30))
    grid.add_row("workload", job.spec.workload + (f"  model {job.spec.model}"
                                                   if job.spec.model else ""))
    created_age = format_age(age_s(job.created_at, now))
    grid.add_row("created", f"{_time(job.created_at)}  ({created_age} ago)")
    if job.started_at:
        grid.add_row("started", _time(job.started_at))
    if job.finished_at:
        grid.add_row("finished", _time(job.finished_at))
    if job.error is not None:
        grid.add_row("error", Text(_error_text(job.error.model_dump(mode="json")), style="red"))
    if job.final_checkpoint is not None:
        grid.add_row("final model", job.final_checkpoint.key)
    return Panel(grid, title=f"job {job.id}", title_align="left")


def participants_table(detail: JobDetail) -> Table:
    job, now = detail.job, detail.now
    table = Table(title="participants", title_justify="left")
    for name, opts in (
        ("participant", {"no_wrap": True, "style": "bold"}),
        ("worker", {"no_wrap": True}),
        ("state", {"no_wrap": True}),
        ("round", {"no_wrap": True}),
        ("heartbeat", {"justify": "right", "no_wrap": True}),
        ("latest metrics", {"overflow": "fold"}),
    ):
        table.add_column(name, **opts)
    for p in job.participants.values():
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
            row["id"], row["worker"], state, round_bar(row["round"], row["rounds"], width=12),
            Text(beat, style="green" if row["alive"] else "dim"), metrics,
        )
    return table


def trends_table(detail: JobDetail) -> Table | None:
    trends = detail.trends
    if not trends:
        return None
    table = Table(title="metrics by round", title_justify="left")
    table.add_column("participant", no_wrap=True)
    table.add_column("metric", no_wrap=True)
    table.add_column("trend", no_wrap=True, style="cyan")
    table.add_column("first", justify="right")
    table.add_column("latest", justify="right", style="bold")
    table.add_column("rounds", justify="right")
    for trend in trends[:MAX_TREND_ROWS]:
        table.add_row(
            trend.participant, trend.name, sparkline(trend.values[-40:]),
            format_metric(trend.values[0]), format_metric(trend.latest),
            f"{trend.rounds[0]}-{trend.rounds[-1]}" if len(trend.rounds) > 1
            else str(trend.rounds[0]),
        )
    if len(trends) > MAX_TREND_ROWS:
        table.caption = f"{len(trends) - MAX_TREND_ROWS} more (orchestrator status --json)"
    return table


def checkpoints_table(rows: Sequence[Mapping[str, Any]], *, limit: int | None = None) -> Table:
    table = Table(title="checkpoints", title_justify="left")
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
        table.caption = f"{len(rows) - limit} earlier (orchestrator checkpoints JOB)"
    return table


def events_table(detail: JobDetail) -> Table:
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
    table = Table(title="events", title_justify="left", show_header=False)
    table.add_column("at", no_wrap=True, style="dim")
    table.add_column("what", overflow="fold")
    for at, text in rows[-MAX_EVENT_ROWS:]:
        table.add_row(_time(at)[11:] if at else "", text)
    return table


def job_view(detail: JobDetail, *, banner: str | None = None) -> RenderableType:
    """The job in detail: header, participants, metric trends, checkpoints, events."""
    parts: list[RenderableType] = []
    if banner:
        parts.append(Text(banner, style="bold yellow"))
    parts.append(_header(detail))
    parts.append(participants_table(detail))
    trends = trends_table(detail)
    if trends is not None:
        parts.append(trends)
    if detail.checkpoints:
        parts.append(checkpoints_table(checkpoint_rows(detail.checkpoints),
                                       limit=MAX_CHECKPOINT_ROWS))
    parts.append(events_table(detail))
    return Group(*parts)


def jobs_view(jobs: Sequence[Job], now: datetime, *, banner: str | None = None) -> RenderableType:
    parts: list[RenderableType] = []
    if banner:
        parts.append(Text(banner, style="bold yellow"))
    parts.append(jobs_table(jobs, now, title=f"jobs  (updated {now:%H:%M:%S} UTC)"))
    return Group(*parts)


def progress_line(job: Job, now: datetime, reason: str | None = None) -> str:
    """One plain line for logs and non-terminal output."""
    summary = job_summary(job, now)
    text = (
        f"{now:%H:%M:%S} job {job.id} {summary['status']} {summary['phase']} "
        f"round {summary['round']}/{summary['rounds']} "
        f"alive {summary['participants_alive']}/{summary['participants']}"
    )
    accuracy = job.server.metrics.get("accuracy") if "server" in job.participants else None
    if accuracy is not None:
        text += f" accuracy {accuracy:.4f}"
    if reason:
        text += f" ({reason})"
    if job.error is not None:
        text += f" error {_error_text(job.error.model_dump(mode='json'))}"
    return text
