"""The reaper: expire due deadlines (start, heartbeat, round, job, cancel grace, finalize).

Every ``reaper_interval_s`` one indexed query (``status``, ``deadline_at``) finds the jobs with
a deadline past; each due deadline becomes a ``DeadlineExpired`` event with a deterministic id,
applied through the same store path as every other event. ``decide`` re-checks that the
deadline is still due, so a heartbeat that lands meanwhile wins. A start deadline carries
why the job could not be dispatched (the workers named, from one liveness read of the due
NOT_STARTED jobs' workers), which becomes its ``cannot_schedule`` error.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import anyio
from anyio.abc import ObjectSendStream

from orchestrator.bus import Bus
from orchestrator.core import DeadlineExpired, Job, due
from orchestrator.daemon.admission import start_reasons
from orchestrator.daemon.apply import apply_events, observe
from orchestrator.daemon.commit import Commit
from orchestrator.daemon.retry import Retrier
from orchestrator.daemon.stats import Stats, utcnow
from orchestrator.daemon.waits import sleep_unless, wait_for
from orchestrator.logs import get_logger
from orchestrator.store import JobStore

log = get_logger("orchestrator.daemon.reaper")


def expired_events(jobs: list[Job], now: datetime,
                   start_reasons: Mapping[str, str] | None = None) -> list[DeadlineExpired]:
    """One event per due deadline of each job (pure); a start deadline carries the job's
    reason from ``start_reasons`` (job id -> why it could not be dispatched)."""
    reasons = start_reasons or {}
    return [
        DeadlineExpired(
            event_id=f"deadline.{job.id}.{d.kind}.{d.participant or 'job'}.v{job.version}",
            job_id=job.id,
            kind=d.kind,
            participant=d.participant,
            message=reasons.get(job.id) if d.kind == "start" else None,
        )
        for job in jobs
        for d in due(job, now)
    ]


@dataclass(slots=True)
class Reaper:
    """Every ``interval_s``, expires what is due (one indexed query)."""

    store: JobStore
    bus: Bus
    retry: Retrier
    stats: Stats
    commits: ObjectSendStream[Commit]

    async def run(self, stopping: anyio.Event, caught_up: anyio.Event, *, interval_s: float,
                  catch_up_wait_s: float) -> None:
        """Waits first (at most ``catch_up_wait_s``) until the event reader has caught up with
        the backlog, so that heartbeats queued while no daemon ran are not taken for silence."""
        async with self.commits:
            await wait_for(caught_up, stopping, catch_up_wait_s)
            while not stopping.is_set():
                await self.reap_once()
                await sleep_unless(stopping, interval_s)

    async def reap_once(self) -> int:
        now = utcnow()
        jobs = await self.retry(lambda: self.store.find_due(now), "find due jobs", shield=False)
        events = expired_events(jobs, now, await start_reasons(self.bus, self.retry, jobs))
        if not events:
            return 0
        log.debug("deadlines due", count=len(events))
        applied = await self.retry(lambda: apply_events(self.store, events, now),
                                   "expire deadlines")
        observe(applied, self.stats)
        fired = sum(1 for o in applied.outcomes if o.applied)
        self.stats.deadlines_fired += fired
        commit = Commit()
        commit.add(self.bus, applied.commands, applied.decisions)
        await self.commits.send(commit)
        return fired
