"""The reaper: expire due deadlines (start, heartbeat, round, job, cancel grace, finalize).

Every ``reaper_interval_s`` one indexed query (``status``, ``deadline_at``) finds the jobs with
a deadline past; each due deadline becomes a ``DeadlineExpired`` event with a deterministic id,
applied through the same store path as every other event. ``decide`` re-checks that the
deadline is still due, so a heartbeat that lands meanwhile wins.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio

from orchestrator.core import DeadlineExpired, Job, due
from orchestrator.daemon.effects import Stopping, utcnow
from orchestrator.logs import get_logger

if TYPE_CHECKING:
    from datetime import datetime

    from orchestrator.daemon.app import Daemon

log = get_logger("orchestrator.daemon.reaper")


def expired_events(jobs: list[Job], now: datetime) -> list[DeadlineExpired]:
    """One event per due deadline of each job (pure)."""
    return [
        DeadlineExpired(
            event_id=f"deadline.{job.id}.{d.kind}.{d.participant or 'job'}.v{job.version}",
            job_id=job.id,
            kind=d.kind,
            participant=d.participant,
        )
        for job in jobs
        for d in due(job, now)
    ]


class Reaper:
    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
                  ) -> None:
        task_status.started()
        daemon = self.daemon
        with daemon.until_stopped(daemon.options.catch_up_wait_s):
            await daemon.caught_up.wait()
        while not daemon.stopping.is_set():
            try:
                await self.reap_once()
            except Stopping:
                return
            await daemon.sleep(daemon.options.reaper_interval_s)

    async def reap_once(self) -> int:
        daemon = self.daemon
        now = utcnow()
        jobs = await daemon.effects.retry(lambda: daemon.store.find_due(now), "find due jobs",
                                          shield=False)
        events = expired_events(jobs, now)
        if not events:
            return 0
        log.debug("deadlines due", count=len(events))
        result = await daemon.effects.apply(events, now=now)
        fired = sum(1 for o in result.outcomes if o.applied)
        daemon.stats.deadlines_fired += fired
        return fired
