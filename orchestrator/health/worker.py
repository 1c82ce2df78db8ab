"""A worker's ``/metrics``, ``/healthz`` and ``/readyz``.

Off unless ``--metrics-addr`` (or ``ORCHESTRATOR_METRICS_ADDR``) is given, and then on
127.0.0.1 unless the address names a host: a worker often runs on a data holder's machine.
:func:`serve_worker_endpoint` is one task beside the agent; it reads the agent's own state at
scrape time (participants running, events published, the outbox's depth) and the process's
:class:`~orchestrator.health.counters.UploadCounters`. The agent is described by a Protocol,
so this module does not import :mod:`workers`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sized
from typing import Protocol

import anyio
from anyio.abc import TaskStatus
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from orchestrator.bus import Redis
from orchestrator.health.counters import UploadCounters
from orchestrator.health.endpoint import counter, histogram, new_registry, serve_endpoint
from orchestrator.health.readiness import Readiness, probe


class OutboxView(Protocol):
    @property
    def pending(self) -> int: ...
    @property
    def sent(self) -> int: ...
    @property
    def connected(self) -> bool: ...


class AgentView(Protocol):
    """What the endpoint reads of a ``workers.agent.WorkerAgent``."""

    redis: Redis
    runs: Sized
    ready: anyio.Event

    @property
    def outbox(self) -> OutboxView: ...
    @property
    def shutdown_requested(self) -> bool: ...


class WorkerCollector:
    def __init__(self, agent: AgentView, uploads: UploadCounters) -> None:
        self.agent, self.uploads = agent, uploads

    def collect(self) -> Iterator[Metric]:
        p, agent, up = "orchestrator_worker_", self.agent, self.uploads
        yield GaugeMetricFamily(p + "participants_running", "Participant runs of this worker",
                                value=len(agent.runs))
        yield counter(p + "events_published", "Events published to the event streams",
                      agent.outbox.sent)
        yield GaugeMetricFamily(p + "outbox_depth", "Events queued and not yet published",
                                value=agent.outbox.pending)
        uploads = CounterMetricFamily(p + "checkpoint_uploads", "Checkpoint uploads by "
                                      "outcome (failed: after the last retry)",
                                      labels=["outcome"])
        uploads.add_metric(["succeeded"], up.succeeded)
        uploads.add_metric(["failed"], up.failed)
        yield uploads
        yield counter(p + "checkpoint_bytes", "Bytes of checkpoints stored", up.bytes)
        yield histogram(p + "checkpoint_upload_seconds", "Time from a checkpoint's submit to "
                        "its stored (or failed) outcome, retries included", up.seconds)


def worker_readiness(agent: AgentView, *, stale_s: float) -> Readiness:
    readiness = Readiness(stale_s=stale_s)

    def consuming() -> str | None:
        if agent.shutdown_requested:
            return "worker: shutting down"
        if not agent.ready.is_set():
            return "worker: starting"
        if not agent.outbox.connected:
            return f"worker: cannot publish events ({agent.outbox.pending} queued)"
        return None

    readiness.require(consuming)
    return readiness


async def serve_worker_endpoint(agent: AgentView, address: str, uploads: UploadCounters, *,
                                probe_every_s: float = 1.0, stale_s: float = 5.0,
                                task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED
                                ) -> None:
    """Serve the worker's endpoint until cancelled (run it beside ``agent.run``)."""
    readiness = worker_readiness(agent, stale_s=stale_s)
    registry = new_registry(WorkerCollector(agent, uploads))
    async with anyio.create_task_group() as tg:
        port: int = await tg.start(lambda *, task_status: serve_endpoint(
            address, registry, readiness, what="worker", task_status=task_status))
        tg.start_soon(lambda: probe(readiness, "redis", agent.redis.ping, every_s=probe_every_s))
        task_status.started(port)
