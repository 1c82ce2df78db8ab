"""A worker's liveness: its alive key, refreshed every third of its TTL while it lives.

A SIGKILLed worker simply stops refreshing the key, which then expires; a worker that shuts
down cleanly deletes it. Redis outages are retried for as long as the worker lives.

The key's value is the agent's ``info()``: its capacity and load, and the workloads it offers
(``workers.registry.offered_workloads``: name -> version, config JSON Schemas and, for one
loaded by reference, its ``source``; about 9 KB with the built-ins). The daemon's admission
dispatches a job only to workers whose registration names its workload, and ``orchestrator
workloads`` and ``orchestrator submit`` read the same value.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
from anyio.abc import TaskStatus
from structlog.typing import FilteringBoundLogger

from orchestrator.bus import Bus
from orchestrator.errors import BusError

OUTAGE_RETRY_S = 0.5
"""The longest wait between two registration attempts while Redis is unreachable."""


async def keep_registered(
    bus: Bus,
    name: str,
    role: str,
    *,
    ttl_s: float,
    info: Callable[[], dict[str, Any]],
    log: FilteringBoundLogger,
    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Register ``name`` every ``ttl_s / 3`` until cancelled; started after the first attempt."""
    interval_s = ttl_s / 3
    failures = 0
    started = False
    while True:
        try:
            await bus.register_worker(name, role, ttl_s=ttl_s, info=info())
        except Exception as exc:  # keep trying: Redis may come back
            failures += 1
            if failures == 1 or failures % 20 == 0:
                log.warning("cannot register worker", error=str(exc), attempts=failures)
        else:
            if failures:
                log.info("worker registered again", attempts=failures)
            failures = 0
        if not started:
            started = True
            task_status.started()
        await anyio.sleep(interval_s if failures == 0 else min(interval_s, OUTAGE_RETRY_S))


async def deregister(bus: Bus, name: str, log: FilteringBoundLogger) -> None:
    """Delete the worker's alive key (once; a failure is logged)."""
    try:
        await bus.unregister_worker(name)
    except BusError as exc:
        log.warning("cannot deregister worker", error=str(exc))
