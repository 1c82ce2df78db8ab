"""The producer side of the bus: what workers, the daemon and the CLI write to Redis.

Field formats are listed in ``orchestrator.bus.wire``; the key of every stream is in
``orchestrator.bus.keys``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic_core import to_json
from redis.asyncio.cluster import RedisCluster

from orchestrator.bus.packing import execute_batch
from orchestrator.bus.wire import Batch, Redis, now_iso, text, translated

if TYPE_CHECKING:
    from orchestrator.bus.keys import Keys
    from orchestrator.core import Command, Event, Job

UPDATES_MAXLEN = 10_000
CONTROL_MAXLEN = 100_000
#: How long past its expiry a dead worker stays in the cluster's registry (``Keys.workers``);
#: generous, so that clock skew between workers never drops a live one.
REGISTRY_GRACE_MS = 3_600_000


def update_payload(job: Job, reason: str, at: datetime | None = None) -> str:
    """The JSON of one job update (see ``Bus.publish_update``)."""
    return to_json(
        {
            "job_id": job.id,
            "status": job.status.value,
            "phase": job.phase.value,
            "round": job.round,
            "version": job.version,
            "reason": reason,
            "error": job.error.code.value if job.error is not None else None,
            "at": (at or job.updated_at).isoformat(),
        }
    ).decode()


class Bus:
    """What producers do on the bus: events, commands, submissions, cancels, updates, liveness.

    Every method raises ``BusUnavailableError`` (transient) when Redis is unreachable after the
    client's own retries; callers retry with backoff.

    ``seal`` (the daemon's ``RunAuth.seal``) is applied to every command as it is serialized:
    the run secrets are added there and only there, so they exist in no other value the
    daemon keeps, stores or logs.
    """

    def __init__(self, redis: Redis, keys: Keys, *, maxlen: int = 1_000_000,
                 seal: Callable[[Command], Command] | None = None) -> None:
        self.redis = redis
        self.keys = keys
        self.maxlen = maxlen
        self.seal = seal

    # --- events (workers) ----------------------------------------------------------------------
    async def publish_event(self, event: Event) -> str:
        """XADD one event to its job's shard: field ``event`` = the event's JSON."""
        async with translated("publish event"):
            entry_id = await self.redis.xadd(
                self.keys.events_for(event.job_id),
                {b"event": event.model_dump_json()},
                maxlen=self.maxlen,
                approximate=True,
            )
        return text(entry_id)

    async def publish_events(self, events: Sequence[Event]) -> list[str]:
        """XADD many events in one round trip; returns their entry ids in order."""
        if not events:
            return []
        batch: Batch = [("XADD", self.keys.events_for(event.job_id), "MAXLEN", "~", self.maxlen,
                         "*", "event", event.model_dump_json()) for event in events]
        async with translated("publish events"):
            ids: list[bytes] = await execute_batch(self.redis, batch)
        return [text(i) for i in ids]

    # --- commands (daemon → workers) -------------------------------------------------------
    def queue_commands(self, batch: Batch, commands: Iterable[Command]) -> None:
        """Add an XADD of each command to its worker's stream (field ``command``), sealed."""
        seal = self.seal
        for command in commands:
            wire = command if seal is None else seal(command)
            batch.append(("XADD", self.keys.commands(command.worker), "MAXLEN", "~",
                          self.maxlen, "*", "command", wire.model_dump_json()))

    async def send_commands(self, commands: Sequence[Command]) -> None:
        """XADD each command to its worker's stream (field ``command``), in one round trip."""
        if not commands:
            return
        batch: Batch = []
        self.queue_commands(batch, commands)
        async with translated("send commands"):
            await execute_batch(self.redis, batch)

    # --- submissions and control -----------------------------------------------------------
    async def submit(self, spec_json: str, *, idempotency_key: str | None = None) -> str:
        """XADD a submission (field ``spec``, optional ``idempotency_key``); returns the entry id.

        If the spec has no ``job_id``, the daemon names the job
        ``submission_job_id(entry_id, keys.namespace)``.
        """
        fields: dict[bytes, str] = {b"spec": spec_json}
        if idempotency_key is not None:
            fields[b"idempotency_key"] = idempotency_key
        async with translated("submit"):
            entry_id = await self.redis.xadd(
                self.keys.submissions, fields, maxlen=self.maxlen, approximate=True  # type: ignore[arg-type]
            )
        return text(entry_id)

    async def request_cancel(
        self, job_id: str, *, reason: str = "cancelled by user", requested_by: str | None = None
    ) -> str:
        """XADD ``{type: cancel, job_id, reason, requested_by}`` to the control stream."""
        fields = {b"type": "cancel", b"job_id": job_id, b"reason": reason}
        if requested_by is not None:
            fields[b"requested_by"] = requested_by
        async with translated("request cancel"):
            entry_id = await self.redis.xadd(
                self.keys.control, fields, maxlen=CONTROL_MAXLEN, approximate=True  # type: ignore[arg-type]
            )
        return text(entry_id)

    # --- updates (daemon → watchers) -----------------------------------------------------------
    def queue_updates(self, batch: Batch, updates: Iterable[tuple[Job, str]]) -> None:
        """Add the XADD of each update (see ``publish_update``) to a batch."""
        every = self.keys.updates
        for job, reason in updates:
            batch.append(("XADD", every, "MAXLEN", "~", UPDATES_MAXLEN, "*", "update",
                          update_payload(job, reason)))

    async def publish_update(self, job: Job, reason: str) -> None:
        """Announce a committed change of ``job`` to watchers.

        One XADD, field ``update`` = JSON object::

            {"job_id": str, "status": "IN_PROGRESS", "phase": "running", "round": 3,
             "version": 17, "reason": "round 3 started", "error": null | "worker_lost",
             "at": "2026-11-02T10:00:00.123+00:00"}

        to ``keys.updates`` (every job, MAXLEN ~ 10 000; a view of one job filters on
        ``job_id``). The daemon publishes at most one per job per batch, after a committed
        change of status, phase, round, error, checkpoints, or a participant that ended —
        not for liveness (heartbeats, a participant starting) or metrics alone. Updates are
        hints for live views; Mongo stays the truth (re-read the job there on an update).
        """
        await self.publish_updates([(job, reason)])

    async def publish_updates(self, updates: Sequence[tuple[Job, str]]) -> None:
        """``publish_update`` for many changes, in one round trip."""
        if not updates:
            return
        batch: Batch = []
        self.queue_updates(batch, updates)
        async with translated("publish updates"):
            await execute_batch(self.redis, batch)

    # --- worker liveness -------------------------------------------------------------------
    async def register_worker(
        self, name: str, role: str, *, ttl_s: float, info: Mapping[str, Any] | None = None
    ) -> None:
        """SET the worker's alive key (JSON, expires after ``ttl_s``); call it periodically.

        A *new* registration (the key had expired or never existed) also XADDs
        ``{type: worker_registered, worker, role}`` to the control stream, which wakes
        admission. On Redis Cluster the name also goes into the registry ``Keys.workers``
        (scored by expiry; names expired an hour ago are dropped), in the same round trip.
        """
        value = json.dumps(
            {"name": name, "role": role, "at": now_iso(), **(info or {})},
            separators=(",", ":"),
            default=str,
        )
        ttl_ms = max(1, int(ttl_s * 1000))
        async with translated("register worker"):
            if isinstance(self.redis, RedisCluster):
                now_ms = int(time.time() * 1000)
                previous, _, _ = await execute_batch(self.redis, [
                    ("SET", self.keys.worker_alive(name), value, "PX", ttl_ms, "GET"),
                    ("ZADD", self.keys.workers, now_ms + ttl_ms, name),
                    ("ZREMRANGEBYSCORE", self.keys.workers, "-inf", now_ms - REGISTRY_GRACE_MS),
                ])
            else:
                previous = await self.redis.set(self.keys.worker_alive(name), value,
                                                px=ttl_ms, get=True)
            if previous is None:
                await self.redis.xadd(
                    self.keys.control,
                    {b"type": "worker_registered", b"worker": name, b"role": role},
                    maxlen=CONTROL_MAXLEN,
                    approximate=True,
                )

    async def unregister_worker(self, name: str) -> None:
        """Delete the worker's alive key (it is no longer offered work)."""
        async with translated("unregister worker"):
            await self.redis.delete(self.keys.worker_alive(name))
            if isinstance(self.redis, RedisCluster):
                await self.redis.zrem(self.keys.workers, name)

    async def alive_workers(self, names: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
        """Registration info of the workers alive now (MGET of ``names``, or SCAN of all).

        On Redis Cluster, "all" are the names in the registry ``Keys.workers`` (no SCAN over
        every node), and their keys are read with one GET each, one round trip per node.
        """
        cluster = self.redis if isinstance(self.redis, RedisCluster) else None
        async with translated("alive workers"):
            if names is None and cluster is not None:
                [members] = await execute_batch(cluster, [("ZRANGE", self.keys.workers, 0, -1)])
                names = [text(n) for n in members]
            if names is None:
                keys = [k async for k in self.redis.scan_iter(match=self.keys.worker_pattern,
                                                              count=1000)]
            else:
                keys = [self.keys.worker_alive(n) for n in dict.fromkeys(names)]
            if not keys:
                return {}
            if cluster is not None:
                values = await execute_batch(cluster, [("GET", key) for key in keys])
            else:
                values = await self.redis.mget(keys)
        alive: dict[str, dict[str, Any]] = {}
        prefix_len = len(self.keys.worker_alive(""))
        for key, raw in zip(keys, values, strict=True):
            if raw is None:
                continue
            name = text(key)[prefix_len:]
            try:
                info = json.loads(raw)
            except ValueError:
                info = {}
            alive[name] = info if isinstance(info, dict) else {}
        return alive


__all__ = ["CONTROL_MAXLEN", "UPDATES_MAXLEN", "Bus", "update_payload"]
