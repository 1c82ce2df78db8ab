"""Admission and dispatch: NOT_STARTED jobs, oldest first, start once their workers are alive.

A job is admitted when its server's worker and at least ``required_clients`` client workers
are registered (``Bus.alive_workers``). Admission applies ``JobDispatched`` (one run uuid per
participant; clients whose worker is away are skipped when ``min_clients`` allows) through the
store's CAS, so two replicas admitting the same job cannot both win; the winner's start
commands go out in the commit pipeline. Jobs that wait past their start deadline are expired
by the reaper (``cannot_schedule``); a job whose participant names a worker that is alive but
registered for the other role fails at once (``JobUnschedulable``, also ``cannot_schedule``,
naming the worker and its role). Intake dispatches new jobs itself when their workers are
alive; admission handles the ones that wait. It sleeps until woken (intake created jobs that
wait, a new worker registered) or, while jobs wait, until ``admission_poll_s`` passes.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import anyio
from anyio.abc import ObjectSendStream

from orchestrator.bus import Bus
from orchestrator.core import Job, JobDispatched, JobStatus, JobUnschedulable, Role
from orchestrator.daemon.apply import apply_events, observe
from orchestrator.daemon.commit import Commit
from orchestrator.daemon.reconcile import dispatch_event_id
from orchestrator.daemon.retry import Retrier
from orchestrator.daemon.stats import Stats, utcnow
from orchestrator.daemon.waits import Wakeup
from orchestrator.logs import get_logger
from orchestrator.store import JobStore

log = get_logger("orchestrator.daemon.admission")

_ROLE_OK = {Role.SERVER: {None, "server", "any"}, Role.CLIENT: {None, "client", "any"}}


def unschedulable_event_id(job_id: str) -> str:
    """Deterministic, like the dispatch's: a second replica's refusal is the same event."""
    return f"unschedulable.{job_id}"


Plan = JobDispatched | JobUnschedulable | str


def plan_dispatch(job: Job, alive: dict[str, dict[str, Any]]) -> Plan:
    """The dispatch of ``job`` given the workers alive now; or, when a participant names a
    worker that is alive but registered for the other role, the refusal that fails the job
    at once (waiting would not help); or why it must wait (pure)."""
    for p in job.participants.values():
        info = alive.get(p.worker)
        if info is not None and info.get("role") not in _ROLE_OK[p.role]:
            message = (f"worker {p.worker} is registered as a {info.get('role')} worker and "
                       f"cannot run {p.id}, whose role is {p.role.value}")
            return JobUnschedulable(event_id=unschedulable_event_id(job.id), job_id=job.id,
                                    participant=p.id, worker=p.worker, message=message)

    def up(worker: str, role: Role) -> bool:
        info = alive.get(worker)
        return info is not None and info.get("role") in _ROLE_OK[role]

    server = job.server
    if not up(server.worker, Role.SERVER):
        return f"server worker {server.worker} is not alive"
    clients = [p for p in job.clients if up(p.worker, Role.CLIENT)]
    required = job.spec.required_clients
    if len(clients) < required:
        return f"{len(clients)} of {required} required client workers alive"
    assignments = {"server": uuid.uuid4().hex, **{p.id: uuid.uuid4().hex for p in clients}}
    return JobDispatched(event_id=dispatch_event_id(job.id), job_id=job.id,
                         assignments=assignments)


@dataclass(slots=True)
class Admission:
    """Dispatches NOT_STARTED jobs, oldest first, once their workers are alive."""

    store: JobStore
    bus: Bus
    retry: Retrier
    stats: Stats
    commits: ObjectSendStream[Commit]
    batch: int = 500
    _waiting_logged: set[str] = field(default_factory=set)

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
                if job.id not in self._waiting_logged:
                    self._waiting_logged.add(job.id)
                    log.info("job waits for workers", job_id=job.id, reason=plan)
                continue
            self._waiting_logged.discard(job.id)
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
