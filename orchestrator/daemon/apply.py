"""The domain loop: load the batch's jobs → ``decide`` per job → compare-and-set → retry.

A batch of events costs one load of the jobs it names, one upsert of the metrics and
manifest rows it brings (records first: a manifest row is durable before any status that
relies on it) and one bulk compare-and-set of the changed fields, whatever its size. A job
whose CAS lost to another replica is re-read and decided again, alone.

``check`` (the events pipeline passes ``RunAuth.check``) screens each event against its job
as loaded, before ``decide``: a refused event never reaches it, gets an outcome with the
refusal reason and is listed in ``Applied.refused`` (to be recorded by the caller).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import anyio

from orchestrator.core import Command, Decision, Event, Job, Outcome, decide
from orchestrator.daemon.stats import Stats
from orchestrator.errors import ConflictError
from orchestrator.logs import get_logger
from orchestrator.store import JobStore, JobWrite

MAX_CAS_ATTEMPTS = 64
CAS_BACKOFF_MAX_S = 0.05
log = get_logger("orchestrator.daemon")


@dataclass(slots=True)
class Applied:
    """What one batch did: a decision per job that was written, an outcome per event, and
    the events ``check`` refused, each with its reason."""

    decisions: list[Decision] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)
    refused: list[tuple[Event, str]] = field(default_factory=list)
    cas_retries: int = 0

    @property
    def commands(self) -> list[Command]:
        return [c for d in self.decisions for c in d.commands]


Check = Callable[[Job, Event], str | None]
"""None when an event may reach ``decide`` for the job; else why it is refused."""


async def apply_events(store: JobStore, events: Sequence[Event], now: datetime, *,
                       check: Check | None = None) -> Applied:
    """Apply a batch of events (grouped by job, each job's in order)."""
    by_job: dict[str, list[Event]] = {}
    for event in events:
        by_job.setdefault(event.job_id, []).append(event)
    applied = Applied()
    pending = by_job
    for attempt in range(MAX_CAS_ATTEMPTS):
        jobs = await store.load_many(list(pending), history=False)
        decisions: dict[str, Decision] = {}
        refused: dict[str, list[tuple[Event, str]]] = {}
        for job_id, job_events in pending.items():
            job = jobs.get(job_id)
            if job is None:
                applied.outcomes.extend(Outcome(e.event_id, job_id, False, f"unknown job {job_id}")
                                        for e in job_events)
                continue
            passed = job_events
            if check is not None:
                passed, refused[job_id] = screen(job, job_events, check)
                if not passed:
                    continue
            decisions[job_id] = decide(job, passed, now)
        metrics = [m for d in decisions.values() for m in d.metrics]
        checkpoints = [c for d in decisions.values() for c in d.checkpoints]
        if metrics or checkpoints:
            await store.upsert_records(metrics, checkpoints)
        writes = [JobWrite.of(d) for d in decisions.values() if d.changed]
        lost = await store.cas_many(writes) if writes else set()
        for job_id, job_refused in refused.items():
            if job_id not in lost:
                applied.refused.extend(job_refused)
                applied.outcomes.extend(Outcome(e.event_id, job_id, False, reason)
                                        for e, reason in job_refused)
        for job_id, decision in decisions.items():
            if job_id in lost:
                continue  # decided again on the next pass
            applied.outcomes.extend(decision.outcomes)
            if decision.applied or decision.commands:
                applied.decisions.append(decision)
        if not lost:
            return applied
        applied.cas_retries += len(lost)
        pending = {job_id: by_job[job_id] for job_id in lost}
        # Jittered backoff desynchronises rivals that keep colliding on one hot job.
        await anyio.sleep(random.uniform(0, min(CAS_BACKOFF_MAX_S, 0.0005 * 2**attempt)))
    raise ConflictError(f"compare-and-set lost {MAX_CAS_ATTEMPTS} times for {sorted(pending)}")


def screen(job: Job, events: list[Event], check: Check
           ) -> tuple[list[Event], list[tuple[Event, str]]]:
    """The events ``check`` lets through for ``job``, and the refused ones with the reason."""
    passed: list[Event] = []
    refused: list[tuple[Event, str]] = []
    for event in events:
        reason = check(job, event)
        if reason is None:
            passed.append(event)
        else:
            refused.append((event, reason))
    return passed, refused


def observe(applied: Applied, stats: Stats) -> None:
    """Count and log: status changes at INFO, refused events at INFO, the rest at DEBUG."""
    stats.batches += 1
    stats.cas_retries += applied.cas_retries
    for outcome in applied.outcomes:
        if outcome.applied:
            stats.events_applied += 1
            continue
        stats.events_ignored += 1
        if outcome.reason.startswith(("refused", "unknown job")):
            log.info("event ignored", job_id=outcome.job_id, event_id=outcome.event_id,
                     reason=outcome.reason)
    for decision in applied.decisions:
        note_status_changes(decision, stats)


def note_status_changes(decision: Decision, stats: Stats) -> None:
    """Count and log each status change of a decision that was written: the end of a job at
    INFO, its start at DEBUG (one INFO line per job; the job's history keeps both)."""
    job = decision.job
    for entry in decision.history:
        stats.note_transition(entry, job)
        emit = log.info if entry.to_status.is_terminal else log.debug
        emit("job status changed", job_id=job.id, event_id=entry.event_id,
                 from_status=entry.from_status, to_status=entry.to_status.value,
                 phase=job.phase.value, reason=entry.reason,
                 error=job.error.code.value if job.error else None)
