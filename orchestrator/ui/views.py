"""What the dashboard shows, as plain data (no I/O, no clock: ``now`` is given).

Pages and JSON answers are built from the same objects so that the HTML a page renders and the
JSON its script receives later (``/api/...``, ``/events``) never disagree: a job summary is
:func:`orchestrator.watch.model.job_summary`, a job's detail :meth:`JobDetail.as_dict` plus the
``charts`` object (:func:`charts`), the tail of its update notes and of its logs. Everything
here is JSON-ready (:func:`jsonable`: datetimes as ISO 8601 with their offset).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from orchestrator.core import Job, Role, jsonable, parse_utc
from orchestrator.watch.model import PREFERRED_METRICS, JobDetail, job_summary

EVENTS_SHOWN = 20
"""Update notes a job's page shows (``#events``)."""

LOG_LINES_SHOWN = 50
"""Log lines per participant a job's page shows."""

_SCRIPT_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026",
                   "\u2028": "\\u2028", "\u2029": "\\u2029"}


def script_json(value: Any) -> str:
    """JSON fit to sit inside ``<script type="application/json">``: ``<``, ``>``, ``&`` (and
    the two JavaScript line separators) as ``\\uXXXX`` escapes, so no text in it can close the
    tag or open a comment."""
    text = json.dumps(jsonable(value), separators=(",", ":"), sort_keys=True)
    for char, escape in _SCRIPT_ESCAPES.items():
        text = text.replace(char, escape)
    return text




def iso(value: datetime | str | None) -> str:
    """ISO 8601 in UTC with its offset (``2026-12-02T01:02:03.456000+00:00``); '' for None."""
    when = parse_utc(value)
    return "" if when is None else when.astimezone(UTC).isoformat()


def shown_time(value: datetime | str | None) -> str:
    """``2026-12-02 01:02:03 UTC`` (what a page shows before its script localises it)."""
    when = parse_utc(value)
    return "-" if when is None else when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def age_seconds(value: datetime | str | None, now: datetime) -> float | None:
    """Seconds from ``value`` to ``now`` (never negative); None without ``value``."""
    when = parse_utc(value)
    return None if when is None else max(0.0, (now - when).total_seconds())


def human_size(size: Any) -> str:
    """``512 B``, ``3.2 KiB``, ``41.0 MiB``; '-' when unknown."""
    if not isinstance(size, int) or isinstance(size, bool):
        return "-"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def error_text(error: Mapping[str, Any] | None) -> str:
    """A job's or participant's error as one line: ``kind: message`` ('' without one)."""
    if not error:
        return ""
    code, message = error.get("code") or "error", error.get("message") or ""
    return f"{code}: {message}" if message else str(code)


def summary(job: Job, now: datetime) -> dict[str, Any]:
    """One row of the jobs table (and an SSE ``job`` event), JSON-ready."""
    data: dict[str, Any] = jsonable(job_summary(job, now))
    return data


def charts(job: Job, metrics: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The ``charts`` object the job page's script draws: ``rounds`` (every round any metric
    row has, ascending) and one entry per (metric, side) — side ``server`` for the server
    participant, ``clients`` for all clients, one series per participant, ``values[i]`` of
    ``rounds[i]`` (None: no value that round). Server metrics first, preferred names first."""
    servers = {pid for pid, p in job.participants.items() if p.role is Role.SERVER}
    points: dict[tuple[str, str], dict[str, dict[int, float]]] = {}
    rounds: set[int] = set()
    for row in metrics:
        participant = str(row.get("participant", "?"))
        try:
            round_ = int(row.get("round", 0))
        except (TypeError, ValueError):
            continue
        side = "server" if participant in servers else "clients"
        for name, value in dict(row.get("metrics") or {}).items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                series = points.setdefault((str(name), side), {})
                series.setdefault(participant, {})[round_] = float(value)
                rounds.add(round_)
    ordered_rounds = sorted(rounds)

    def order(key: tuple[str, str]) -> tuple[int, int, str]:
        name, side = key
        rank = (PREFERRED_METRICS.index(name) if name in PREFERRED_METRICS
                else len(PREFERRED_METRICS))
        return (0 if side == "server" else 1, rank, name)

    entries = []
    for key in sorted(points, key=order):
        name, side = key
        entries.append({
            "name": name,
            "side": side,
            "series": [
                {"participant": participant,
                 "values": [by_round.get(r) for r in ordered_rounds]}
                for participant, by_round in sorted(points[key].items(), key=_participant_order)
            ],
        })
    return {"rounds": ordered_rounds, "metrics": entries}


def _participant_order(item: tuple[str, Any]) -> tuple[str, int, str]:
    """``client-2`` before ``client-10``."""
    head, _, tail = item[0].rpartition("-")
    return (head, int(tail), "") if tail.isdigit() else (item[0], 0, item[0])


def event_line(note: Mapping[str, Any]) -> str:
    """One line of ``#events``: time, status, phase, round, reason."""
    at = note.get("at")
    when = shown_time(at) if parse_utc(at) is not None else str(at or "-")
    parts = [when, str(note.get("status") or "-"), str(note.get("phase") or "-"),
             f"round {note.get('round', '-')}", str(note.get("reason") or "")]
    return "  ".join(parts).rstrip()


def detail_data(detail: JobDetail, *, events: Sequence[Mapping[str, Any]],
                logs: Mapping[str, Sequence[str]], can_cancel: bool) -> dict[str, Any]:
    """The object of ``/api/jobs/{id}``, of the page's ``#job-data`` and of SSE ``detail``:
    :meth:`JobDetail.as_dict` plus ``charts``, ``events`` (the last notes, oldest first),
    ``logs`` ({participant: last lines}) and ``can_cancel``."""
    data = detail.as_dict()
    for row, entry in zip(data["history"], detail.job.history, strict=True):
        row["rule"] = entry.rule
    data["charts"] = charts(detail.job, detail.metrics)
    data["events"] = [dict(n) for n in events][-EVENTS_SHOWN:]
    data["logs"] = {pid: list(lines)[-LOG_LINES_SHOWN:] for pid, lines in logs.items()}
    data["can_cancel"] = can_cancel
    result: dict[str, Any] = jsonable(data)
    return result


def worker_rows(workers: Iterable[Any]) -> list[dict[str, Any]]:
    """``WorkerInfo.as_dict`` of each live worker, JSON-ready."""
    rows: list[dict[str, Any]] = [jsonable(w.as_dict()) for w in workers]
    return rows


EXCERPT_CHARS = 200
"""Characters of a rejected entry the rejections page shows."""


def rejection_row(rejection: Any) -> dict[str, Any]:
    """One rejection (a ``orchestrator.store.port.Rejection``), JSON-ready, with ``excerpt``:
    the first characters of the refused entry as the store keeps it."""
    row: dict[str, Any] = jsonable(rejection.model_dump())
    row["excerpt"] = str(row.pop("payload_excerpt", "") or "")[:EXCERPT_CHARS]
    return row


__all__ = [
    "EVENTS_SHOWN",
    "EXCERPT_CHARS",
    "LOG_LINES_SHOWN",
    "age_seconds",
    "charts",
    "detail_data",
    "error_text",
    "event_line",
    "human_size",
    "iso",
    "rejection_row",
    "script_json",
    "shown_time",
    "summary",
    "worker_rows",
]
