"""Following jobs live: tail the daemon's update streams (``XREAD BLOCK``), read Mongo.

Theory of operation. The daemon appends a small JSON note to ``<ns>:updates`` (every job) and to
``<ns>:job:{id}:updates`` after each committed change. A follower first notes the stream's last
entry id, *then* reads the job(s) from Mongo, then blocks on the stream from that id — so no
change between the read and the first ``XREAD`` is missed. Every batch of notes triggers one
Mongo read. The block timeout (about a second) lets the view tick its clocks; Mongo is re-read on
a timeout only every ``REFRESH_S`` seconds as a safety net. Nothing sleeps except the back-off
after a server became unreachable: the frame then carries a banner saying so, and the follower
retries.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import anyio

from orchestrator.core import Job, JobStatus, ParticipantState, parse_utc
from orchestrator.errors import error_gist
from orchestrator.watch.model import JobDetail

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from orchestrator.bus.keys import Keys
    from orchestrator.store.mongo import MongoJobStore

BLOCK_MS = 1000
REFRESH_S = 5.0
RETRY_S = 2.0
READ_COUNT = 500
RECENT_UPDATES = 20
#: How far back in the updates stream the updates of one job are looked for.
RECENT_SCAN = 2000


def utcnow() -> datetime:
    return datetime.now(UTC)


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def entry_time(entry_id: str) -> datetime | None:
    """The time a stream entry was added, from its id (``<ms>-<seq>``)."""
    ms, _, _ = entry_id.partition("-")
    return datetime.fromtimestamp(int(ms) / 1000, UTC) if ms.isdigit() else None


def parse_update(entry_id: Any, fields: Mapping[Any, Any]) -> dict[str, Any]:
    """A stream entry as a dict: JSON-object fields are merged in, other fields kept as text."""
    data: dict[str, Any] = {}
    for raw_key, raw_value in fields.items():
        key, value = _text(raw_key), _text(raw_value)
        if value.startswith("{"):
            try:
                decoded = json.loads(value)
            except ValueError:
                decoded = None
            if isinstance(decoded, dict):
                data.update(decoded)
                continue
        data[key] = value
    eid = _text(entry_id)
    data["entry_id"] = eid
    data["at"] = parse_utc(data.get("at")) or entry_time(eid)
    for name in ("round", "version"):
        if isinstance(data.get(name), str) and data[name].lstrip("-").isdigit():
            data[name] = int(data[name])
    return data


def stream_entries(reply: Any) -> list[tuple[str, dict[Any, Any]]]:
    """XRANGE/XREVRANGE rows as ``(entry id, fields)``; deleted entries have empty fields."""
    rows: list[tuple[str, dict[Any, Any]]] = []
    for entry_id, fields in reply or []:
        rows.append((_text(entry_id), dict(fields or {})))
    return rows


def xread_entries(reply: Any) -> list[tuple[str, dict[Any, Any]]]:
    """An XREAD reply (RESP2 list or RESP3 dict) as ``(entry id, fields)`` rows."""
    if not reply:
        return []
    pairs = reply.items() if isinstance(reply, dict) else reply
    rows: list[tuple[str, dict[Any, Any]]] = []
    for _stream, raw in pairs:
        messages = raw[0] if isinstance(reply, dict) and raw and isinstance(raw[0], list) else raw
        rows.extend(stream_entries(messages))
    return rows


class StreamTail:
    """Reads new entries of one stream with ``XREAD BLOCK`` from a remembered position;
    with ``job_id``, only the updates of that job (the stream carries every job's)."""

    def __init__(self, redis: Redis, stream: str, *, block_ms: int = BLOCK_MS,
                 job_id: str | None = None) -> None:
        self.redis = redis
        self.stream = stream
        self.block_ms = block_ms
        self.job_id = job_id
        self.last_id = "0-0"

    def _wanted(self, update: dict[str, Any]) -> bool:
        return self.job_id is None or update.get("job_id") == self.job_id

    async def mark(self) -> None:
        """Remember the current end of the stream (call before reading state from Mongo)."""
        newest = stream_entries(await self.redis.xrevrange(self.stream, count=1))
        self.last_id = newest[0][0] if newest else "0-0"

    async def recent(self, count: int = RECENT_UPDATES) -> list[dict[str, Any]]:
        """The last ``count`` entries (of the job, among the last ``RECENT_SCAN``), oldest
        first."""
        scan = count if self.job_id is None else RECENT_SCAN
        rows = stream_entries(await self.redis.xrevrange(self.stream, count=scan))
        updates = [parse_update(eid, fields) for eid, fields in reversed(rows)]
        return [u for u in updates if self._wanted(u)][-count:]

    async def read(self) -> list[dict[str, Any]]:
        """Entries after the remembered position; empty when the block timed out."""
        reply = await self.redis.xread(
            {self.stream: self.last_id}, count=READ_COUNT, block=self.block_ms
        )
        updates: list[dict[str, Any]] = []
        for eid, fields in xread_entries(reply):
            update = parse_update(eid, fields)
            if self._wanted(update):
                updates.append(update)
            self.last_id = eid
        return updates


async def load_detail(
    store: MongoJobStore, job: Job, now: datetime, updates: Sequence[Mapping[str, Any]] = (),
    failed_logs: Mapping[str, Sequence[str]] | None = None,
) -> JobDetail:
    """``job`` with its metric rows and checkpoint manifest, as ``status`` and the watcher show
    it."""
    metrics = await store.metrics(job.id)
    checkpoints = await store.checkpoints(job.id)
    return JobDetail(job, now, metrics, checkpoints, list(updates), dict(failed_logs or {}))


FAILED_LOG_LINES = 6
"""Lines of a failed participant's log the job view shows."""


async def load_failed_logs(redis: Redis, keys: Keys, job: Job) -> dict[str, list[str]]:
    """The last lines each failed participant printed, from the job's log stream (the newest
    500 entries; stdout, stderr and notes); {} when none failed or the stream is gone."""
    failed = {pid for pid, p in job.participants.items() if p.state is ParticipantState.FAILED}
    if not failed:
        return {}
    reply: Any = await redis.xrevrange(keys.logs(job.id), "+", "-", count=500)
    found: dict[str, list[str]] = {}
    for _entry_id, fields in reply or []:
        row = {_text(k): _text(v) for k, v in fields.items()}
        pid = row.get("p", "")
        if pid in failed and "l" in row and len(found.setdefault(pid, [])) < FAILED_LOG_LINES:
            found[pid].append(row["l"])
    return {pid: lines[::-1] for pid, lines in found.items() if lines}


async def load_jobs(store: MongoJobStore, limit: int) -> list[Job]:
    """The job table: the ``limit`` newest jobs plus every active one, active jobs first."""
    jobs = await store.find_by_status(None, limit=limit)
    seen = {j.id for j in jobs}
    for status in (JobStatus.IN_PROGRESS, JobStatus.NOT_STARTED):
        for job in await store.find_by_status(status, limit=limit):
            if job.id not in seen:
                jobs.append(job)
                seen.add(job.id)
    active = [j for j in jobs if not j.is_terminal]
    done = [j for j in jobs if j.is_terminal]
    return (active + done)[: max(limit, len(active))]


@dataclass(slots=True)
class Frame:
    """What a follower yields: the latest state, the notes that arrived, and any trouble."""

    now: datetime
    detail: JobDetail | None = None  # job mode
    jobs: list[Job] = field(default_factory=list)  # table mode
    updates: list[dict[str, Any]] = field(default_factory=list)  # new since the last frame
    banner: str | None = None
    rejection: str | None = None  # job mode: the daemon refused the submission


def _problem(what: str, exc: BaseException) -> str:
    return f"{what} unreachable ({error_gist(exc, 200)}); retrying — the view may be stale"


class Follower:
    """Yields frames for one job (``job_id``) or for the job table (``job_id=None``)."""

    def __init__(
        self,
        store: MongoJobStore,
        redis: Redis,
        keys: Keys,
        job_id: str | None = None,
        *,
        limit: int = 20,
    ) -> None:
        self.store = store
        self.job_id = job_id
        self.limit = limit
        self.tail = StreamTail(redis, keys.updates, job_id=job_id)
        self.redis, self.keys = redis, keys
        self.recent_updates: list[dict[str, Any]] = []

    async def _load(self) -> Frame:
        now = utcnow()
        if self.job_id is None:
            return Frame(now=now, jobs=await load_jobs(self.store, self.limit))
        found = await self.store.find_by_id(self.job_id)
        if found is None:
            return Frame(now=now, rejection=await self._rejection())
        try:
            logs = await load_failed_logs(self.redis, self.keys, found)
        except Exception:  # the log lines are extra: never lose the view for them
            logs = {}
        return Frame(now=now, detail=await load_detail(self.store, found, now,
                                                       self.recent_updates, logs))

    async def _rejection(self) -> str | None:
        found = await self.store.rejections(limit=1, job_id=self.job_id)
        return f"{found[0].kind}: {found[0].reason}" if found else None

    async def frames(self) -> AsyncIterator[Frame]:
        """Frames forever (the caller stops iterating): first the state, then one per wake-up."""
        redis_ok = mongo_ok = False
        last: Frame | None = None
        last_load = 0.0
        while True:
            updates: list[dict[str, Any]] = []
            banner = None
            try:
                if not redis_ok:
                    await self.tail.mark()
                    if self.job_id is not None:
                        self.recent_updates = await self.tail.recent()
                    redis_ok, mongo_ok = True, False  # re-read state after (re)connecting
                elif mongo_ok:
                    updates = await self.tail.read()
            except Exception as exc:
                redis_ok = False
                banner = _problem("Redis", exc)
            if updates and self.job_id is not None:
                self.recent_updates = (self.recent_updates + updates)[-RECENT_UPDATES:]
            frame: Frame | None = None
            if updates or not mongo_ok or anyio.current_time() - last_load >= REFRESH_S:
                try:
                    frame = await self._load()
                    mongo_ok = True
                    last_load = anyio.current_time()
                except Exception as exc:
                    mongo_ok = False
                    banner = banner or _problem("MongoDB", exc)
            if frame is None:
                frame = Frame(now=utcnow())
                if last is not None:
                    frame.detail, frame.jobs = last.detail, last.jobs
                    if frame.detail is not None:
                        frame.detail.now = frame.now
            frame.updates = updates
            frame.banner = banner
            yield frame
            last = frame
            if banner is not None:
                await anyio.sleep(RETRY_S)  # back-off while a server is unreachable
