"""The daemon's ``/metrics``, ``/healthz`` and ``/readyz``.

:func:`serve_observed` runs a :class:`~orchestrator.daemon.app.Daemon` (through ``serve``)
beside its endpoint and three small tasks, in one task group:

* a Redis probe (``PING`` every second) and a store probe (``ping``), for ``/readyz``;
* a sampler that every ``sample_every_s`` seconds reads what a scrape should not wait for:
  the jobs by status (one indexed count per status, not per job) and, per stream of the
  daemon (event shards, submissions, control), each consumer group's ``lag`` and pending
  count (``XINFO GROUPS``), plus the dead-letter stream's length.

Everything else is read from the daemon's :class:`~orchestrator.daemon.stats.Stats` at
scrape time by :class:`DaemonCollector`, so the hot path only adds to integers.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import anyio
from anyio.abc import TaskStatus
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from orchestrator.bus import Redis
from orchestrator.bus.keys import Keys
from orchestrator.core import JobStatus
from orchestrator.daemon.app import Daemon, serve
from orchestrator.daemon.stats import Stats
from orchestrator.health.endpoint import counter, histogram, new_registry, serve_endpoint
from orchestrator.health.readiness import Readiness, probe
from orchestrator.logs import get_logger
from orchestrator.store import JobStore, MemoryJobStore, MongoJobStore

log = get_logger("orchestrator.health")


@dataclass(slots=True)
class Samples:
    """What the sampler read last (empty until its first pass)."""

    jobs: dict[str, int] = field(default_factory=dict)
    #: (stream, group) -> (lag or None when Redis cannot tell, pending)
    groups: dict[tuple[str, str], tuple[int | None, int]] = field(default_factory=dict)
    dead_letters: int | None = None


class DaemonCollector:
    """The daemon's series, built from its ``Stats`` and the last :class:`Samples`."""

    def __init__(self, stats: Stats, samples: Samples) -> None:
        self.stats, self.samples = stats, samples

    def collect(self) -> Iterator[Metric]:
        s, p = self.stats, "orchestrator_daemon_"
        yield counter(p + "batches", "Batches of events applied", s.batches)
        yield counter(p + "events_seen", "Events read from the event streams", s.events_seen)
        yield counter(p + "events_applied", "Events that changed a job or added a record",
                      s.events_applied)
        yield counter(p + "events_ignored", "Events that changed nothing (duplicates, late "
                      "or refused ones)", s.events_ignored)
        refused = CounterMetricFamily(p + "events_refused", "Events refused before decide "
                                      "(not authentic, checkpoint not verified)",
                                      labels=["reason"])
        for reason, n in sorted(s.refused_by_reason.items()):
            refused.add_metric([reason], n)
        yield refused
        rejected = CounterMetricFamily(p + "dead_lettered", "Entries rejected, recorded and "
                                       "dead-lettered, by kind", labels=["kind"])
        for kind, n in sorted(s.rejected_by_kind.items()):
            rejected.add_metric([kind], n)
        yield rejected
        transitions = CounterMetricFamily(p + "transitions", "Job status changes by the state "
                                          "machine's rule, cause, from and to",
                                          labels=["rule", "cause", "from", "to"])
        for (rule, cause, frm, to), n in sorted(s.transition_counts().items()):
            transitions.add_metric([rule, cause, frm, to], n)
        yield transitions
        yield counter(p + "submissions_accepted", "Submissions that created a job",
                      s.submissions_accepted)
        yield counter(p + "submissions_duplicate", "Submissions naming an existing job",
                      s.submissions_duplicate)
        yield counter(p + "dispatched", "Jobs dispatched to their workers", s.dispatched)
        yield counter(p + "deadlines_fired", "Deadlines that expired", s.deadlines_fired)
        yield counter(p + "commands_sent", "Commands sent to workers", s.commands_sent)
        yield counter(p + "entries_acked", "Stream entries acknowledged after their commit",
                      s.entries_acked)
        yield counter(p + "cas_retries", "Jobs decided again after losing a compare-and-set",
                      s.cas_retries)
        yield counter(p + "transient_errors", "Redis or store operations retried",
                      s.transient_errors)
        yield histogram(p + "batch_size", "Entries acknowledged per commit (one per batch)",
                        s.batch_sizes)
        yield histogram(p + "commit_seconds", "Time to send one commit (commands, updates, "
                        "XACK) to Redis, retries included", s.commit_seconds)
        yield from self._sampled()

    def _sampled(self) -> Iterator[Metric]:
        jobs = GaugeMetricFamily("orchestrator_jobs", "Jobs in the store by status (sampled "
                                 "every few seconds)", labels=["status"])
        for status, n in sorted(self.samples.jobs.items()):
            jobs.add_metric([status], n)
        yield jobs
        lag = GaugeMetricFamily("orchestrator_stream_lag", "Entries of a stream not yet "
                                "delivered to a consumer group (XINFO GROUPS lag)",
                                labels=["stream", "group"])
        pending = GaugeMetricFamily("orchestrator_stream_pending", "Entries delivered to a "
                                    "consumer group and not yet acknowledged",
                                    labels=["stream", "group"])
        for (stream, group), (n_lag, n_pending) in sorted(self.samples.groups.items()):
            if n_lag is not None:
                lag.add_metric([stream, group], n_lag)
            pending.add_metric([stream, group], n_pending)
        yield lag
        yield pending
        if self.samples.dead_letters is not None:
            yield GaugeMetricFamily("orchestrator_dead_letter_entries", "Entries in the "
                                    "dead-letter stream", value=self.samples.dead_letters)


async def count_jobs(store: JobStore) -> dict[str, int]:
    """Jobs by status: one count per status over the ``status`` index (a scan of nothing)."""
    if isinstance(store, MemoryJobStore):
        return {s.value: len(store.by_status[s]) for s in JobStatus}
    if isinstance(store, MongoJobStore):
        return {s.value: await store.jobs.count_documents({"status": s.value})
                for s in JobStatus}
    return {}


async def ping_store(store: JobStore) -> None:
    if isinstance(store, MongoJobStore):
        await store.db.command("ping")


async def read_groups(redis: Redis, streams: list[str]
                      ) -> dict[tuple[str, str], tuple[int | None, int]]:
    """``(stream, group) -> (lag, pending)`` of every group on ``streams`` (one pipeline)."""
    async with redis.pipeline(transaction=False) as pipe:
        for stream in streams:
            pipe.xinfo_groups(stream)
        replies: list[Any] = await pipe.execute(raise_on_error=False)
    found: dict[tuple[str, str], tuple[int | None, int]] = {}
    for stream, reply in zip(streams, replies, strict=True):
        if isinstance(reply, Exception):  # no such stream yet
            continue
        for group in reply:
            name = group.get("name", b"")
            name = name.decode() if isinstance(name, bytes) else str(name)
            lag = group.get("lag")
            found[(stream, name)] = (int(lag) if lag is not None else None,
                                     int(group.get("pending", 0)))
    return found


async def sample(daemon: Daemon, samples: Samples, *, every_s: float) -> None:
    """Refresh ``samples`` every ``every_s`` seconds (each part on its own: a store outage
    leaves the stream figures fresh)."""
    keys: Keys = daemon.keys
    streams = [*keys.all_event_streams(), keys.submissions, keys.control]
    while True:
        try:
            samples.jobs = await count_jobs(daemon.store)
        except Exception as exc:  # the store probe reports outages; keep the last figures
            log.debug("cannot count jobs", error=str(exc))
        try:
            samples.groups = await read_groups(daemon.redis, streams)
            samples.dead_letters = int(await daemon.redis.xlen(keys.dead_letter))
        except Exception as exc:
            log.debug("cannot read stream groups", error=str(exc))
        await anyio.sleep(every_s)


def daemon_readiness(daemon: Daemon, *, stale_s: float) -> Readiness:
    readiness = Readiness(stale_s=stale_s)

    def consuming() -> str | None:
        if daemon.stopping.is_set():
            return "daemon: stopping (draining what it read)"
        if not daemon.ready.is_set():
            return "daemon: starting (indexes, groups, reconciliation)"
        return None

    readiness.require(consuming)
    return readiness


async def serve_observed(daemon: Daemon, address: str, *, handle_signals: bool = True,
                         probe_every_s: float = 1.0, sample_every_s: float = 5.0,
                         stale_s: float = 5.0,
                         task_status: TaskStatus[Daemon] = anyio.TASK_STATUS_IGNORED) -> None:
    """Run ``daemon`` like :func:`orchestrator.daemon.app.serve`, with its endpoint on
    ``address`` from before startup (``/healthz`` answers while it connects) until it stops."""
    samples = Samples()
    readiness = daemon_readiness(daemon, stale_s=stale_s)
    registry = new_registry(DaemonCollector(daemon.stats, samples))
    async with anyio.create_task_group() as tg:
        await tg.start(lambda *, task_status: serve_endpoint(
            address, registry, readiness, what="daemon", task_status=task_status))
        tg.start_soon(lambda: probe(readiness, "redis", daemon.redis.ping, every_s=probe_every_s))
        tg.start_soon(lambda: probe(readiness, "store", lambda: ping_store(daemon.store),
                                    every_s=probe_every_s))
        tg.start_soon(lambda: sample(daemon, samples, every_s=sample_every_s))
        await serve(daemon, handle_signals=handle_signals, task_status=task_status)
        tg.cancel_scope.cancel()
