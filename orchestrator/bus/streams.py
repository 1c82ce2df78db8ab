"""Redis Streams: a reliable consumer-group reader and the producer side of the bus.

Theory of operation
-------------------
*Delivery is at least once.* A ``StreamConsumer`` reads with XREADGROUP; an entry stays in the
group's pending list (PEL) until ``ack`` (after the durable write) or ``dead_letter`` (after it
was found unprocessable). On start a consumer first drains *its own* pending entries (id ``0``)
— what it had read but not acknowledged before it died — then reads new ones (``>``) with
BLOCK. Entries left pending by a consumer that never came back are taken over by
``reclaim`` (XAUTOCLAIM, idle above ``reclaim_idle_ms``); one delivered more than
``max_deliveries`` times goes to the dead-letter stream with the reason and is acknowledged.
Entries that were deleted or trimmed while pending are dead-lettered too (with empty fields),
so nothing leaves the PEL silently. A lost group (NOGROUP, e.g. Redis restarted without its
data) is recreated from id ``0`` so whatever is still in the stream is read again; consumers
dedupe on the producer's ``event_id``, never on the entry id.

Connection errors are retried with backoff by ``read``; producers raise
``BusUnavailableError`` (transient) and callers retry. Trimming (``trim``) uses XTRIM MINID
at the oldest entry some group still needs, so it never passes a pending entry.

Wire formats (all values UTF-8 JSON strings):

* submissions  ``spec`` = JobSpec JSON, optional ``idempotency_key`` (overrides the spec's);
* events       ``event`` = one event (``orchestrator.core.EVENT_ADAPTER``);
* commands     ``command`` = one command (``orchestrator.core.COMMAND_ADAPTER``);
* control      ``type`` = ``cancel`` with ``job_id``, ``reason``, ``requested_by``;
  ``type`` = ``worker_registered`` with ``worker`` (wakes admission);
* dead letter  ``stream``, ``id``, ``fields`` (JSON object), ``reason``, ``deliveries``,
  ``group``, ``consumer``, ``at``;
* updates      see ``Bus.publish_update``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

import anyio
import redis.asyncio as aioredis
from pydantic_core import to_json
from redis.asyncio.retry import Retry
from redis.backoff import EqualJitterBackoff
from redis.exceptions import BusyLoadingError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from orchestrator.bus.keys import Keys
from orchestrator.bus.packing import execute_batch, with_hiredis_packing
from orchestrator.bus.retry import Backoff
from orchestrator.core._types import fast_tuple
from orchestrator.errors import BusError, BusUnavailableError
from orchestrator.logs import get_logger

if TYPE_CHECKING:

    from orchestrator.core import Command, Event, Job

Redis = aioredis.Redis
#: Commands for one ``execute_batch`` round trip (the daemon's commit: commands, updates, XACK).
Batch = list[tuple[Any, ...]]
T = TypeVar("T")

#: Errors that mean "Redis is not reachable right now": retried, never fatal.
TRANSIENT_REDIS_ERRORS: tuple[type[Exception], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    BusyLoadingError,
    ConnectionError,
    TimeoutError,
    OSError,
)

UPDATES_MAXLEN = 10_000
JOB_UPDATES_MAXLEN = 1_000
DEAD_LETTER_MAXLEN = 100_000
CONTROL_MAXLEN = 100_000
SUBMISSION_NAMESPACE = uuid.UUID("6f1d3c9e-3b1a-4c55-9d8e-6a7b0c2d4e5f")

_log = get_logger("orchestrator.bus")


def connect_redis(url: str, *, password: str | None = None) -> Redis:
    """A client tuned for the bus: bytes replies, no per-reply socket timeout, health checks,
    commands packed by hiredis (``orchestrator.bus.packing``).

    ``socket_timeout=None``: redis-py 8 wraps every reply read in ``asyncio.timeout()`` when a
    timeout is set, which costs ~40 % on pipelines (see performance.md); blocking reads are
    bounded by BLOCK instead, dead connections are found by the health check. Commands that
    fail on a broken connection are retried by redis-py with jittered backoff.
    """
    retry = Retry(EqualJitterBackoff(cap=2.0, base=0.05), retries=6)
    client: Redis = aioredis.Redis.from_url(
        url,
        password=password,
        decode_responses=False,
        socket_timeout=None,
        socket_connect_timeout=5,
        socket_keepalive=True,
        health_check_interval=10,
        retry=retry,
        retry_on_error=[RedisConnectionError, RedisTimeoutError, BusyLoadingError],
    )
    pool = client.connection_pool
    pool.connection_class = with_hiredis_packing(pool.connection_class)
    return client


@asynccontextmanager
async def translated(what: str) -> AsyncIterator[None]:
    """Turn redis-py exceptions into ``BusUnavailableError`` / ``BusError``."""
    try:
        yield
    except TRANSIENT_REDIS_ERRORS as exc:
        raise BusUnavailableError(f"Redis unreachable during {what}: {exc}") from exc
    except ResponseError as exc:
        raise BusError(f"Redis refused {what}: {exc}") from exc


def _s(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _now_iso() -> str:
    return datetime.now(UTC).isoformat()


def submission_job_id(entry_id: str, namespace: str = "orchestrator") -> str:
    """The job id given to a submission whose spec names none: derived from its entry id.

    Deterministic, so a submission redelivered after a daemon crash creates no second job;
    a submitter that knows the entry id (``Bus.submit`` returns it) knows the job id.
    """
    return uuid.uuid5(SUBMISSION_NAMESPACE, f"{namespace}/{entry_id}").hex


class Entry(NamedTuple):  # one per entry read: cheaper than a frozen dataclass (bench_core.py)
    """One stream entry as read by a consumer group. ``fields`` is empty if it was deleted."""

    stream: str
    id: str
    fields: dict[str, str]
    deliveries: int = 1


def _parse_reply(reply: Any, deliveries: int = 1) -> list[Entry]:
    """A raw XREADGROUP reply as hiredis returns it (``_xreadgroup``), either protocol:
    RESP3 ``{stream: [[id, [k, v, ...]], ...]}`` or RESP2 ``[[stream, [[id, [k, v, ...]]]]]``.
    A deleted entry's fields are nil."""
    if not reply:
        return []
    pairs = reply.items() if isinstance(reply, dict) else reply
    entries: list[Entry] = []
    append = entries.append
    for stream_raw, messages in pairs:
        stream = _s(stream_raw)
        for entry_id, flat in messages:
            fields: dict[str, str] = {}
            if flat:
                it = iter(flat)
                for key in it:
                    fields[_s(key)] = _s(next(it))
            append(fast_tuple(Entry, (stream, entry_id.decode(), fields, deliveries)))
    return entries


def _unless_nogroup(exc: ResponseError, command: str) -> None:
    """Raise ``BusError`` for a refusal other than NOGROUP (a lost group is recreated)."""
    if "NOGROUP" not in str(exc):
        raise BusError(f"{command} refused: {exc}") from exc


def _ids_by_stream(entries: Iterable[Entry]) -> dict[str, list[str]]:
    by_stream: dict[str, list[str]] = {}
    for entry in entries:
        by_stream.setdefault(entry.stream, []).append(entry.id)
    return by_stream


def _id_tuple(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


class StreamConsumer:
    """A reliable reader of one consumer group over several streams.

    ``read`` never raises for connection trouble (it waits and retries with backoff) and
    recreates the group on NOGROUP. Give each replica a *stable* ``consumer`` name, so that
    after a restart it drains what it had read but not acknowledged.
    """

    def __init__(
        self,
        redis: Redis,
        streams: Sequence[str],
        group: str,
        consumer: str,
        *,
        batch: int = 100,
        block_ms: int = 1000,
        max_deliveries: int = 5,
        reclaim_idle_ms: int = 30_000,
        dead_letter: str | None = None,
    ) -> None:
        if not streams:
            raise ValueError("a consumer needs at least one stream")
        self.redis = redis
        self.streams = list(dict.fromkeys(streams))
        self.group = group
        self.consumer = consumer
        self.batch = batch
        self.block_ms = block_ms
        self.max_deliveries = max_deliveries
        self.reclaim_idle_ms = reclaim_idle_ms
        self.dead_letter_stream = dead_letter
        # Where the drain of our own pending entries stands per stream (None: drained).
        self._history: dict[str, str | None] = dict.fromkeys(self.streams, "0")
        self._reclaim_cursor: dict[str, str] = dict.fromkeys(self.streams, "0-0")
        self._new_only: dict[str, str] = dict.fromkeys(self.streams, ">")
        self._backoff = Backoff()
        self._log = _log.bind(group=group, consumer=consumer)
        #: Counters, for tests and the bench.
        self.groups_recreated = 0
        self.dead_lettered = 0

    # --- groups ----------------------------------------------------------------------------
    async def ensure_groups(self) -> None:
        """Create the group on every stream (from id 0, creating the stream); BUSYGROUP is ok."""
        async with translated("XGROUP CREATE"):
            for stream in self.streams:
                await self._create_group(stream)

    async def _create_group(self, stream: str) -> bool:
        try:
            await self.redis.xgroup_create(stream, self.group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
            return False
        return True

    async def _recreate_groups(self) -> None:
        created = 0
        for stream in self.streams:
            created += await self._create_group(stream)
        if created:
            self.groups_recreated += created
            self._log.warning("consumer group recreated after NOGROUP", created=created)
        # A new group has an empty PEL: nothing of ours left to drain.
        self._history = dict.fromkeys(self.streams, "0")

    def rewind(self) -> None:
        """Re-drain this consumer's own pending entries on the next ``read``."""
        self._history = dict.fromkeys(self.streams, "0")

    # --- reading ---------------------------------------------------------------------------
    async def read(self) -> list[Entry]:
        """The next batch: own pending entries first (no blocking), then new ones (BLOCK).

        Returns ``[]`` when BLOCK expired with nothing new. Entries that were deleted from the
        stream while pending come back with empty ``fields``; the caller dead-letters them.
        """
        while True:
            try:
                entries = await self._read_once()
            except ResponseError as exc:
                _unless_nogroup(exc, "XREADGROUP")
                await self._with_retry(self._recreate_groups)
                continue
            except TRANSIENT_REDIS_ERRORS as exc:
                delay = self._backoff.next()
                self._log.warning("redis unavailable, retrying read", error=str(exc),
                                  retry_in_s=round(delay, 2))
                await anyio.sleep(delay)
                continue
            self._backoff.reset()
            return entries

    async def _xreadgroup(self, streams: Mapping[str, str], block: int | None) -> Any:
        """XREADGROUP with the reply left as hiredis parsed it. The command name is passed as
        bytes so that redis-py's response callback (which rebuilds the reply into lists of
        tuples and dicts, entry by entry, in Python) does not run: ``_parse_reply`` walks the
        raw reply once."""
        args: list[Any] = [b"XREADGROUP", "GROUP", self.group, self.consumer,
                           "COUNT", self.batch]
        if block is not None:
            args += ["BLOCK", block]
        args += ["STREAMS", *streams.keys(), *streams.values()]
        return await self.redis.execute_command(*args)  # type: ignore[no-untyped-call]

    async def read_ready(self) -> list[Entry]:
        """What is there now: one XREADGROUP without BLOCK and without retries, for reading
        ahead while a batch is in hand. ``[]`` when nothing is there, when Redis is away right
        now, or when it refuses (NOGROUP, OOM, READONLY, ...): the next ``read`` meets the same
        trouble and deals with it (waits and retries, recreates the group, or reports)."""
        try:
            return await self._read_once(block=False)
        except ResponseError:
            return []
        except TRANSIENT_REDIS_ERRORS:
            return []

    async def _read_once(self, *, block: bool = True) -> list[Entry]:
        history = {s: cursor for s, cursor in self._history.items() if cursor is not None}
        if history:
            reply = await self._xreadgroup(history, None)
            entries = _parse_reply(reply, deliveries=2)
            seen: set[str] = set()
            for entry in entries:
                self._history[entry.stream] = entry.id
                seen.add(entry.stream)
            for stream in history:
                if stream not in seen:
                    self._history[stream] = None
            if entries:
                return entries
        reply = await self._xreadgroup(self._new_only, self.block_ms if block else None)
        return _parse_reply(reply)

    # --- acknowledging ---------------------------------------------------------------------
    def queue_ack(self, batch: Batch, entries: Iterable[Entry]) -> None:
        """Add one XACK per stream (with every id) to a batch."""
        for stream, ids in _ids_by_stream(entries).items():
            batch.append(("XACK", stream, self.group, *ids))

    async def ack(self, entries: Sequence[Entry]) -> None:
        """Acknowledge entries: one XACK per stream, all in one round trip."""
        if not entries:
            return
        batch: Batch = []
        self.queue_ack(batch, entries)
        async with translated("XACK"):
            await execute_batch(self.redis, batch)

    async def touch(self, entries: Sequence[Entry]) -> None:
        """Reset the idle time of entries still being processed (XCLAIM JUSTID to ourselves).

        Keeps ``reclaim`` (ours or another replica's) from taking over a batch that is merely
        slow, e.g. held while the database is unreachable. JUSTID leaves delivery counts alone.
        """
        async with translated("XCLAIM"):
            pipe = self.redis.pipeline(transaction=False)
            for stream, ids in _ids_by_stream(entries).items():
                pipe.xclaim(stream, self.group, self.consumer, 0, list(ids), justid=True)
            await pipe.execute()

    @property
    def draining(self) -> bool:
        """True while this consumer still reads its own pending entries (history)."""
        return any(cursor is not None for cursor in self._history.values())

    async def dead_letter(self, entry: Entry, reason: str) -> None:
        """Copy the entry and the reason to the dead-letter stream and acknowledge it (MULTI)."""
        async with translated("dead-letter"):
            pipe = self.redis.pipeline(transaction=True)
            if self.dead_letter_stream is not None:
                pipe.xadd(
                    self.dead_letter_stream,
                    {
                        "stream": entry.stream,
                        "id": entry.id,
                        "fields": json.dumps(entry.fields, separators=(",", ":")),
                        "reason": reason[:4096],
                        "deliveries": str(entry.deliveries),
                        "group": self.group,
                        "consumer": self.consumer,
                        "at": _now_iso(),
                    },
                    maxlen=DEAD_LETTER_MAXLEN,
                    approximate=True,
                )
            pipe.xack(entry.stream, self.group, entry.id)
            await pipe.execute()
        self.dead_lettered += 1
        self._log.warning("entry dead-lettered", stream=entry.stream, entry_id=entry.id,
                          reason=reason, deliveries=entry.deliveries)

    # --- taking over from dead consumers ------------------------------------------------------
    async def reclaim(self) -> list[Entry]:
        """Claim entries idle longer than ``reclaim_idle_ms`` (any consumer's, ours included).

        Entries delivered more than ``max_deliveries`` times are dead-lettered (and acked);
        ids that were deleted or trimmed while pending are dead-lettered with empty fields.
        Returns the claimed entries to process, ``deliveries`` filled in.
        """
        claimed: list[Entry] = []
        try:
            for stream in self.streams:
                claimed.extend(await self._reclaim_stream(stream))
        except ResponseError as exc:
            _unless_nogroup(exc, "XAUTOCLAIM")
            await self._with_retry(self._recreate_groups)
        except TRANSIENT_REDIS_ERRORS as exc:
            self._log.warning("redis unavailable during reclaim", error=str(exc))
        return claimed

    async def _reclaim_stream(self, stream: str) -> list[Entry]:
        start = self._reclaim_cursor[stream]
        reply = await self.redis.xautoclaim(
            stream, self.group, self.consumer, self.reclaim_idle_ms, start, count=self.batch
        )
        cursor, messages = reply[0], reply[1]
        deleted = reply[2] if len(reply) > 2 else []
        self._reclaim_cursor[stream] = _s(cursor)
        for entry_id in deleted:
            await self.dead_letter(
                Entry(stream, _s(entry_id), {}, 0),
                "entry was deleted or trimmed from the stream before it was acknowledged",
            )
        if not messages:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for entry_id, _fields in messages:
            pipe.xpending_range(stream, self.group, entry_id, entry_id, 1, self.consumer)
        counts: list[Any] = await pipe.execute()
        result: list[Entry] = []
        for (entry_id, fields), pending in zip(messages, counts, strict=True):
            deliveries = int(pending[0]["times_delivered"]) if pending else 1
            decoded = {_s(k): _s(v) for k, v in fields.items()} if fields else {}
            entry = Entry(stream, _s(entry_id), decoded, deliveries)
            if not decoded:
                await self.dead_letter(entry, "entry was deleted from the stream while pending")
            elif deliveries > self.max_deliveries:
                await self.dead_letter(
                    entry, f"delivered {deliveries} times (max {self.max_deliveries}) "
                    "without being acknowledged"
                )
            else:
                result.append(entry)
        if result:
            self._log.info("reclaimed pending entries", stream=stream, count=len(result))
        return result

    # --- housekeeping ------------------------------------------------------------------------
    async def pending_count(self) -> int:
        """Entries read by the group but not yet acknowledged, over all streams."""
        total = 0
        async with translated("XPENDING"):
            for stream in self.streams:
                try:
                    summary = await self.redis.xpending(stream, self.group)
                except ResponseError as exc:
                    if "NOGROUP" in str(exc):
                        continue
                    raise
                total += int(summary["pending"])
        return total

    async def trim(self, maxlen: int) -> int:
        """Trim streams longer than ``maxlen``, never past an entry some group still needs.

        The floor is, over every group of the stream, the oldest pending id, or (with nothing
        pending) the first id after the group's last delivered one. XTRIM MINID with ``~``
        removes only whole nodes below it, so it removes less, never more. Returns the number
        of entries removed.
        """
        removed = 0
        async with translated("XTRIM"):
            for stream in self.streams:
                if await self.redis.xlen(stream) <= maxlen:
                    continue
                floor = await trim_floor(self.redis, stream)
                if floor is None:
                    continue
                removed += int(await self.redis.xtrim(stream, minid=floor, approximate=True))
        return removed

    async def _with_retry(self, op: Callable[[], Awaitable[T]]) -> T:
        while True:
            try:
                result = await op()
            except TRANSIENT_REDIS_ERRORS as exc:
                self._log.warning("redis unavailable, retrying", error=str(exc))
                await self._backoff.sleep()
                continue
            self._backoff.reset()
            return result


async def trim_floor(redis: Redis, stream: str) -> str | None:
    """The oldest id any consumer group of ``stream`` still needs (None: no groups)."""
    try:
        groups = await redis.xinfo_groups(stream)
    except ResponseError:
        return None
    if not groups:
        return None
    floors: list[tuple[int, int]] = []
    for group in groups:
        name = group["name"]
        if int(group["pending"]) > 0:
            summary = await redis.xpending(stream, name)
            floors.append(_id_tuple(_s(summary["min"])))
        else:
            ms, seq = _id_tuple(_s(group["last-delivered-id"]))
            floors.append((ms, seq + 1))
    ms, seq = min(floors)
    return f"{ms}-{seq}"


# --- the producer side ---------------------------------------------------------------------


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
    """

    def __init__(self, redis: Redis, keys: Keys, *, maxlen: int = 1_000_000) -> None:
        self.redis = redis
        self.keys = keys
        self.maxlen = maxlen

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
        return _s(entry_id)

    async def publish_events(self, events: Sequence[Event]) -> list[str]:
        """XADD many events in one round trip; returns their entry ids in order."""
        if not events:
            return []
        batch: Batch = [("XADD", self.keys.events_for(event.job_id), "MAXLEN", "~", self.maxlen,
                         "*", "event", event.model_dump_json()) for event in events]
        async with translated("publish events"):
            ids: list[bytes] = await execute_batch(self.redis, batch)
        return [_s(i) for i in ids]

    # --- commands (daemon → workers) -------------------------------------------------------
    def queue_commands(self, batch: Batch, commands: Iterable[Command]) -> None:
        """Add an XADD of each command to its worker's stream (field ``command``)."""
        for command in commands:
            batch.append(("XADD", self.keys.commands(command.worker), "MAXLEN", "~",
                          self.maxlen, "*", "command", command.model_dump_json()))

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
        return _s(entry_id)

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
        return _s(entry_id)

    # --- updates (daemon → watchers) -----------------------------------------------------------
    def queue_updates(self, batch: Batch, updates: Iterable[tuple[Job, str]]) -> None:
        """Add the two XADDs of each update (see ``publish_update``) to a batch."""
        append = batch.append
        every = self.keys.updates
        for job, reason in updates:
            payload = update_payload(job, reason)
            append(("XADD", every, "MAXLEN", "~", UPDATES_MAXLEN, "*", "update", payload))
            append(("XADD", self.keys.job_updates(job.id), "MAXLEN", "~", JOB_UPDATES_MAXLEN,
                    "*", "update", payload))

    async def publish_update(self, job: Job, reason: str) -> None:
        """Announce a committed change of ``job`` to watchers.

        Two XADDs, field ``update`` = JSON object::

            {"job_id": str, "status": "IN_PROGRESS", "phase": "running", "round": 3,
             "version": 17, "reason": "round 3 started", "error": null | "worker_lost",
             "at": "2026-11-02T10:00:00.123+00:00"}

        to ``keys.updates`` (every job, MAXLEN ~ 10 000) and ``keys.job_updates(job_id)``
        (MAXLEN ~ 1 000). The daemon publishes after each committed change of status, phase,
        round, error, checkpoints or a participant's state — not for liveness (heartbeats) or
        per-participant metrics alone. Updates are hints for live views; Mongo stays the
        truth (re-read the job there on an update).
        """
        await self.publish_updates([(job, reason)])

    async def publish_updates(self, updates: Sequence[tuple[Job, str]]) -> None:
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
        ``{type: worker_registered, worker}`` to the control stream, which wakes admission.
        """
        value = json.dumps(
            {"name": name, "role": role, "at": _now_iso(), **(info or {})},
            separators=(",", ":"),
            default=str,
        )
        async with translated("register worker"):
            previous = await self.redis.set(
                self.keys.worker_alive(name), value, px=max(1, int(ttl_s * 1000)), get=True
            )
            if previous is None:
                await self.redis.xadd(
                    self.keys.control,
                    {b"type": "worker_registered", b"worker": name, b"role": role},
                    maxlen=CONTROL_MAXLEN,
                    approximate=True,
                )

    async def unregister_worker(self, name: str) -> None:
        async with translated("unregister worker"):
            await self.redis.delete(self.keys.worker_alive(name))

    async def alive_workers(self, names: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
        """Registration info of the workers alive now (MGET of ``names``, or SCAN of all)."""
        async with translated("alive workers"):
            if names is None:
                keys = [k async for k in self.redis.scan_iter(match=self.keys.worker_pattern,
                                                              count=1000)]
            else:
                keys = [self.keys.worker_alive(n) for n in dict.fromkeys(names)]
            if not keys:
                return {}
            values = await self.redis.mget(keys)
        alive: dict[str, dict[str, Any]] = {}
        prefix_len = len(self.keys.worker_alive(""))
        for key, raw in zip(keys, values, strict=True):
            if raw is None:
                continue
            name = _s(key)[prefix_len:]
            try:
                info = json.loads(raw)
            except ValueError:
                info = {}
            alive[name] = info if isinstance(info, dict) else {}
        return alive


__all__ = [
    "TRANSIENT_REDIS_ERRORS",
    "Batch",
    "Bus",
    "Entry",
    "Redis",
    "StreamConsumer",
    "connect_redis",
    "submission_job_id",
    "translated",
    "trim_floor",
    "update_payload",
]
