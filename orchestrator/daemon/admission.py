"""Admission and dispatch: NOT_STARTED jobs, oldest first, start once their workers are suitable.

A participant's worker is suitable when it is registered (``Bus.alive_workers``), has the
participant's role and offers the job's workload (the ``workloads`` of its registration; see
``orchestrator.core.suitability``). The daemon keeps no list of workload names: intake accepts
any well-formed name, and whether some worker offers it is decided here, per worker.

A job is admitted when its server's worker and at least ``required_clients`` client workers
are suitable. Admission applies ``JobDispatched`` (one run uuid per participant; clients whose
worker is away are skipped when ``min_clients`` allows) through the store's CAS, so two
replicas admitting the same job cannot both win; the winner's start commands go out in the
commit pipeline.

A worker that is alive but cannot run its participant as registered — the other role, or the
workload not offered — fails the job at once (``JobUnschedulable``, code ``cannot_schedule``,
naming the worker): waiting would not help until its operator restarts it, and the user
learns in seconds rather than at the start deadline. A worker that is not registered may still
come: the job waits, and admission logs why (once per job and reason). When the start deadline
passes, the reaper fails the job with ``cannot_schedule`` and the reason as it stands then
(``start_reasons``), e.g. ``worker 'clinet-1' is not registered``.

Intake dispatches new jobs itself when their workers are suitable; admission handles the ones
that wait. It sleeps until woken (intake created jobs that wait, a new worker registered) or,
while jobs wait, until ``admission_poll_s`` passes.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
from anyio.abc import ObjectSendStream

from orchestrator.bus import Bus
from orchestrator.core import Job, JobDispatched, JobStatus, JobUnschedulable
from orchestrator.core.suitability import Unsuitable, describe_problems, unsuitable
from orchestrator.daemon.apply import apply_events, observe
from orchestrator.daemon.commit import Commit
from orchestrator.daemon.reconcile import dispatch_event_id
from orchestrator.daemon.retry import Retrier
from orchestrator.daemon.stats import Stats, utcnow
from orchestrator.daemon.waits import Wakeup
from orchestrator.logs import get_logger
from orchestrator.store import JobStore

log = get_logger("orchestrator.daemon.admission")


def unschedulable_event_id(job_id: str) -> str:
    """Deterministic, like the dispatch's: a second replica's refusal is the same event."""
    return f"unschedulable.{job_id}"


Plan = JobDispatched | JobUnschedulable | str


def job_problems(job: Job, alive: dict[str, dict[str, Any]]) -> list[Unsuitable]:
    """Why each participant's worker cannot run it now, in participant order (pure)."""
    problems = []
    for p in job.participants.values():
        problem = unsuitable(p.id, p.role, p.worker, job.spec.workload, alive.get(p.worker))
        if problem is not None:
            problems.append(problem)
    return problems


def plan_dispatch(job: Job, alive: dict[str, dict[str, Any]]) -> Plan:
    """The dispatch of ``job`` given the workers alive now; or, when a participant's worker
    is alive but cannot run it (the other role, the workload not offered), the refusal that
    fails the job at once; or why it must wait, naming the workers (pure)."""
    problems = job_problems(job, alive)
    permanent = next((u for u in problems if u.permanent), None)
    if permanent is not None:
        return JobUnschedulable(event_id=unschedulable_event_id(job.id), job_id=job.id,
                                participant=permanent.participant, worker=permanent.worker,
                                message=permanent.message)
    away = {u.participant for u in problems}
    clients = [p for p in job.clients if p.id not in away]
    required = job.spec.required_clients
    short = len(clients) < required
    if "server" in away or short:  # (name what blocks: clients that may be skipped do not)
        reason = describe_problems(u for u in problems if short or u.participant == "server")
        if short:
            reason += f" ({len(clients)} of {required} required client workers available)"
        return reason
    assignments = {"server": uuid.uuid4().hex, **{p.id: uuid.uuid4().hex for p in clients}}
    return JobDispatched(event_id=dispatch_event_id(job.id), job_id=job.id,
                         assignments=assignments)


def wait_reason(job: Job, alive: dict[str, dict[str, Any]]) -> str | None:
    """Why ``job`` cannot be dispatched now (None: it can), as plan_dispatch words it."""
    plan = plan_dispatch(job, alive)
    if isinstance(plan, str):
        return plan
    return plan.message if isinstance(plan, JobUnschedulable) else None


async def start_reasons(bus: Bus, retry: Retrier, jobs: Sequence[Job]) -> dict[str, str]:
    """job id -> why each NOT_STARTED job of ``jobs`` cannot be dispatched now (one liveness
    read): what the reaper puts in the error of an expired start deadline."""
    queued = [job for job in jobs if job.status is JobStatus.NOT_STARTED]
    if not queued:
        return {}
    names = sorted({p.worker for job in queued for p in job.participants.values()})
    alive = await retry(lambda: bus.alive_workers(names), "worker liveness", shield=False)
    reasons = {job.id: wait_reason(job, alive) for job in queued}
    return {job_id: reason for job_id, reason in reasons.items() if reason is not None}


@dataclass(slots=True)
class Admission:
    """Dispatches NOT_STARTED jobs, oldest first, once their workers are alive."""

    store: JobStore
    bus: Bus
    retry: Retrier
    stats: Stats
    commits: ObjectSendStream[Commit]
    batch: int = 500
    #: job id -> the wait reason last logged (a job's reason is logged when it changes).
    _waiting_logged: dict[str, str] = field(default_factory=dict)

    async def run(self, wakeup: Wakeup, stopping: anyio.Event, *, poll_s: float,
                  idle_s: float) -> None:
        async with self.commits:
            while not stopping.is_set():
                waiting = await self.admit_once()
                await wakeup.sleep(poll_s if waiting else idle_s, stopping)

    async def admit_once(self) -> int:
        """One pass; returns how many jobs are still waiting for workers."""
        queued = await self.retry(
            lambda: self.store.find_active(JobStatus.NOT_STARTED, limit=self.batch),
            "find queued jobs", shield=False)
        if not queued:
            return 0
        names = sorted({p.worker for job in queued for p in job.participants.values()})
        alive = await self.retry(lambda: self.bus.alive_workers(names), "worker liveness",
                                 shield=False)
        dispatches: list[JobDispatched | JobUnschedulable] = []
        waiting = 0
        for job in queued:
            plan = plan_dispatch(job, alive)
            if isinstance(plan, str):
                waiting += 1
                if self._waiting_logged.get(job.id) != plan:
                    self._waiting_logged[job.id] = plan
                    log.info("job waits for workers", job_id=job.id, reason=plan)
                continue
            self._waiting_logged.pop(job.id, None)
            if isinstance(plan, JobUnschedulable):
                log.warning("job cannot be scheduled", job_id=job.id, reason=plan.message)
            dispatches.append(plan)
        if dispatches:
            applied = await self.retry(lambda: apply_events(self.store, dispatches, utcnow()),
                                       "dispatch jobs")
            observe(applied, self.stats)
            self.stats.dispatched += sum(1 for d in applied.decisions
                                         if d.job.status is JobStatus.IN_PROGRESS)
            commit = Commit()
            commit.add(self.bus, applied.commands, applied.decisions)
            await self.commits.send(commit)
        if len(self._waiting_logged) > 10_000:
            self._waiting_logged.clear()
        return waiting
