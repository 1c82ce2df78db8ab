"""What the CLI and the watcher show of a job, as plain data (no I/O, no clock: ``now`` is given).

``job_summary`` is one row of the job table (and the object ``status --json``, ``list --json``
and ``watch --json`` print); ``JobDetail.as_dict`` adds participants, metrics with their trend
across rounds, checkpoints and history. Everything here is JSON-ready after ``jsonable``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any

from orchestrator.core import Job, JobStatus, Participant, ParticipantState

SPARK_BLOCKS = "▁▂▃▄▅▆▇█"
PREFERRED_METRICS = ("accuracy", "loss", "train_loss", "val_loss", "samples")


def age_s(then: datetime | None, now: datetime) -> float | None:
    """Seconds from ``then`` to ``now`` (never negative), None without ``then``."""
    if then is None:
        return None
    return max(0.0, (now - then).total_seconds())


def format_age(seconds: float | None) -> str:
    """``4s``, ``3m12s``, ``2h05m``, ``3d04h``; ``-`` for None."""
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86_400:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    return f"{s // 86_400}d{(s % 86_400) // 3600:02d}h"


MIN_RELATIVE_SPAN = 0.05
"""A sparkline's vertical scale spans at least this fraction of the series' largest magnitude,
so that a wobble of 0.713..0.716 draws as the near-flat line it is, not as full-height swings."""


def spark_scale(values: Sequence[float]) -> tuple[float, float]:
    """The (low, high) a sparkline of ``values`` is drawn against: the series' min and max,
    widened around their middle to at least :data:`MIN_RELATIVE_SPAN` of its magnitude."""
    low, high = min(values), max(values)
    span = max(high - low, MIN_RELATIVE_SPAN * max(abs(low), abs(high)))
    middle = (low + high) / 2
    return (middle - span / 2, middle + span / 2) if span > high - low else (low, high)


def sparkline(values: Sequence[float]) -> str:
    """One block character per value, against :func:`spark_scale` (a flat series: mid-height)."""
    if not values:
        return ""
    low, high = spark_scale(values)
    if high - low < 1e-12:
        return SPARK_BLOCKS[len(SPARK_BLOCKS) // 2] * len(values)
    top = len(SPARK_BLOCKS) - 1
    return "".join(SPARK_BLOCKS[round((v - low) / (high - low) * top)] for v in values)


def value_range(values: Sequence[float]) -> str:
    """``min..max`` of a series, for reading a sparkline's scale (``-`` when empty)."""
    if not values:
        return "-"
    low, high = min(values), max(values)
    return format_metric(low) if low == high else f"{format_metric(low)}..{format_metric(high)}"


def format_metric(value: float) -> str:
    if value == int(value) and abs(value) < 1e9:
        return str(int(value))
    return f"{value:.4g}"


def participant_alive(p: Participant, job: Job, now: datetime) -> bool:
    """Dispatched, not finished, and heard from within the job's heartbeat timeout."""
    if not p.active or p.last_seen is None:
        return False
    seen = age_s(p.last_seen, now)
    return seen is not None and seen <= job.spec.timeouts.heartbeat_s


def rounds_done(job: Job) -> int:
    """Rounds to show as done: a job (or participant) that succeeded without reporting rounds,
    as ``noop`` does, is complete, not at round 0 of 1."""
    if job.status is JobStatus.FINISHED_SUCCESSFULLY and job.round == 0:
        return job.spec.rounds
    return job.round


def participant_rounds_done(p: Participant, job: Job) -> int:
    """Like :func:`rounds_done` for one participant (finished without rounds: all done)."""
    if p.state is ParticipantState.FINISHED and p.round == 0:
        return job.spec.rounds
    return p.round


def participants_text(job: Job, now: datetime) -> str:
    """The job table's participants cell: ``alive/total`` while the job runs; once it is
    finished, how its participants ended (``3 finished, 1 failed``), as "0/4 alive" would say
    nothing about a finished job."""
    participants = list(job.participants.values())
    if not job.is_terminal:
        alive = sum(participant_alive(p, job, now) for p in participants)
        return f"{alive}/{len(participants)}"
    counts = Counter(p.state.value for p in participants)
    return ", ".join(f"{n} {state}" for state, n in sorted(
        counts.items(), key=lambda item: (-item[1], item[0]))) or "-"


def participant_row(p: Participant, job: Job, now: datetime) -> dict[str, Any]:
    return {
        "id": p.id,
        "role": p.role.value,
        "worker": p.worker,
        "state": p.state.value,
        "round": p.round,
        "rounds": job.spec.rounds,
        "alive": participant_alive(p, job, now),
        "last_seen": p.last_seen,
        "heartbeat_age_s": age_s(p.last_seen, now),
        "metrics_round": p.metrics_round,
        "metrics": dict(p.metrics),
        "final_checkpoint": p.final_checkpoint,
        "error": None if p.error is None else p.error.model_dump(mode="json"),
    }


def job_summary(job: Job, now: datetime) -> dict[str, Any]:
    """The headline of a job: what one row of ``list`` and of the watcher's table shows."""
    participants = list(job.participants.values())
    return {
        "id": job.id,
        "status": job.status.value,
        "phase": job.phase.value,
        "round": job.round,
        "rounds": job.spec.rounds,
        "workload": job.spec.workload,
        "participants": len(participants),
        "participants_alive": sum(participant_alive(p, job, now) for p in participants),
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "updated_at": job.updated_at,
        "age_s": age_s(job.created_at, now),
        "error": None if job.error is None else job.error.model_dump(mode="json"),
        "idempotency_key": job.idempotency_key,
        "labels": dict(job.spec.labels),
        "version": job.version,
    }


@dataclass(frozen=True, slots=True)
class MetricTrend:
    """One metric of one participant across rounds."""

    participant: str
    name: str
    rounds: list[int]
    values: list[float]

    @property
    def latest(self) -> float:
        return self.values[-1]

    def as_dict(self) -> dict[str, Any]:
        return {
            "participant": self.participant,
            "metric": self.name,
            "rounds": self.rounds,
            "values": self.values,
            "latest": self.latest,
            "min": min(self.values),
            "max": max(self.values),
            "sparkline": sparkline(self.values),
        }


def metric_trends(rows: Iterable[Mapping[str, Any]]) -> list[MetricTrend]:
    """Group metric rows (job_id, participant, round, metrics) into per-metric series.

    The server comes first, then clients by id; preferred metric names (accuracy, loss …)
    before the others.
    """
    series: dict[tuple[str, str], dict[int, float]] = {}
    for row in rows:
        participant = str(row.get("participant", "?"))
        round_ = int(row.get("round", 0))
        for name, value in dict(row.get("metrics") or {}).items():
            if isinstance(value, int | float):
                series.setdefault((participant, str(name)), {})[round_] = float(value)

    def order(key: tuple[str, str]) -> tuple[int, str, int, str]:
        participant, name = key
        rank = PREFERRED_METRICS.index(name) if name in PREFERRED_METRICS else len(
            PREFERRED_METRICS)
        return (0 if participant == "server" else 1, participant, rank, name)

    trends = []
    for key in sorted(series, key=order):
        points = sorted(series[key].items())
        trends.append(
            MetricTrend(key[0], key[1], [r for r, _ in points], [v for _, v in points])
        )
    return trends


def display_trends(trends: Sequence[MetricTrend]) -> list[MetricTrend]:
    """The series the terminal views draw: the server's as they are; when several clients
    report a metric, their series folded into one, the clients' mean per round (labelled
    ``clients (mean of N)``), so that a job of 8 clients still fits a terminal. ``--json``
    keeps every participant's own series."""
    shown: list[MetricTrend] = []
    by_metric: dict[str, list[MetricTrend]] = {}
    for trend in trends:
        if trend.participant == "server":
            shown.append(trend)
        else:
            by_metric.setdefault(trend.name, []).append(trend)
    for name, series in by_metric.items():
        if len(series) == 1:
            shown.append(series[0])
            continue
        per_round: dict[int, list[float]] = {}
        for trend in series:
            for round_, value in zip(trend.rounds, trend.values, strict=True):
                per_round.setdefault(round_, []).append(value)
        rounds = sorted(per_round)
        shown.append(MetricTrend(f"clients (mean of {len(series)})", name, rounds,
                                 [sum(per_round[r]) / len(per_round[r]) for r in rounds]))
    return shown


def checkpoint_rows(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Manifest rows for display (``final`` is sticky in the store: a later save of the same
    key without the flag never clears it)."""
    return [
        {
            "round": row.get("round"),
            "participant": row.get("participant"),
            "key": row.get("key"),
            "size": row.get("size"),
            "sha256": row.get("sha256"),
            "parent": row.get("parent"),
            "final": bool(row.get("final", False)),
            "at": row.get("at"),
        }
        for row in rows
    ]


def history_rows(job: Job) -> list[dict[str, Any]]:
    return [
        {
            "from": None if h.from_status is None else h.from_status.value,
            "to": h.to_status.value,
            "at": h.at,
            "event_id": h.event_id,
            "reason": h.reason,
        }
        for h in job.history
    ]


@dataclass
class JobDetail:
    """Everything ``status`` and the watcher's job view show.

    Only ``now`` changes while the watcher redraws the same state (its clock ticks between
    reloads); ``trends`` is therefore computed once per loaded state, not once per redraw.
    """

    job: Job
    now: datetime
    metrics: Sequence[Mapping[str, Any]] = field(default_factory=list)
    checkpoints: Sequence[Mapping[str, Any]] = field(default_factory=list)
    updates: Sequence[Mapping[str, Any]] = field(default_factory=list)  # newest last
    #: The last lines each failed participant printed (from the job's log stream).
    failed_logs: Mapping[str, Sequence[str]] = field(default_factory=dict)

    @cached_property
    def trends(self) -> list[MetricTrend]:
        return metric_trends(self.metrics)

    def as_dict(self) -> dict[str, Any]:
        job = self.job
        data = job_summary(job, self.now)
        data.update(
            {
                "participants": [
                    participant_row(p, job, self.now) for p in job.participants.values()
                ],
                "model": job.spec.model,
                "deadline_at": job.deadline_at,
                "cancel_requested_at": job.cancel_requested_at,
                "latest_checkpoint": None if job.latest_checkpoint is None
                else job.latest_checkpoint.model_dump(mode="json"),
                "final_checkpoint": None if job.final_checkpoint is None
                else job.final_checkpoint.model_dump(mode="json"),
                "metrics": [t.as_dict() for t in self.trends],
                "checkpoints": checkpoint_rows(self.checkpoints),
                "history": history_rows(job),
            }
        )
        return data
