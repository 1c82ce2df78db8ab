"""Admission and dispatch: NOT_STARTED jobs, oldest first, start once their workers are alive.

A job is admitted when its server's worker and at least ``required_clients`` client workers
are registered (``Bus.alive_workers``). Admission applies ``JobDispatched`` (one run uuid per
participant; clients whose worker is away are skipped when ``min_clients`` allows) through the
store's CAS, so two replicas admitting the same job cannot both win; the winner's start
commands go out in the commit pipeline. Jobs that wait past their start deadline are expired
by the reaper (``cannot_schedule``). Admission sleeps until woken (a job was created, a new
worker registered) or, while jobs wait, until ``admission_poll_s`` passes.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import anyio

from orchestrator.core import Job, JobDispatched, JobStatus, Role
from orchestrator.daemon.effects import Stopping
from orchestrator.logs import get_logger

if TYPE_CHECKING:
    from orchestrator.daemon.app import Daemon

log = get_logger("orchestrator.daemon.admission")

_ROLE_OK = {Role.SERVER: {None, "server", "any"}, Role.CLIENT: {None, "client", "any"}}


def dispatch_event_id(job_id: str) -> str:
    """Deterministic: the start commands' ids derive from it (workers dedupe on them)."""
    return f"dispatch.{job_id}"


def plan_dispatch(job: Job, alive: dict[str, dict[str, Any]]) -> JobDispatched | str:
    """The dispatch of ``job`` given the workers alive now, or why it must wait (pure)."""

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


class Admission:
    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self._waiting_logged: set[str] = set()

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
                  ) -> None:
        task_status.started()
        daemon = self.daemon
        opts = daemon.options
        while not daemon.stopping.is_set():
            try:
                waiting = await self.admit_once()
            except Stopping:
                return
            await daemon.sleep_until_woken(
                opts.admission_poll_s if waiting else opts.admission_idle_s)

    async def admit_once(self) -> int:
        """One pass; returns how many jobs are still waiting for workers."""
        daemon = self.daemon
        effects = daemon.effects
        queued = await effects.retry(
            lambda: daemon.store.find_active(JobStatus.NOT_STARTED,
                                             limit=daemon.options.admission_batch),
            "find queued jobs", shield=False)
        if not queued:
            return 0
        names = sorted({p.worker for job in queued for p in job.participants.values()})
        alive = await effects.retry(lambda: daemon.bus.alive_workers(names), "worker liveness",
                                    shield=False)
        dispatches: list[JobDispatched] = []
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
            dispatches.append(plan)
        if dispatches:
            result = await effects.apply(dispatches)
            started = {change.after.id for change in result.changed
                       if change.after.status is JobStatus.IN_PROGRESS}
            daemon.stats.dispatched += len(started)
        if len(self._waiting_logged) > 10_000:
            self._waiting_logged.clear()
        return waiting
