"""Helpers shared by the bus tests."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import cast

from orchestrator.bus import Keys, Redis, StreamConsumer
from orchestrator.core import Job, JobSpec

GROUP = "g"


def consumer(redis: Redis, keys: Keys, name: str = "c1", **kw: object) -> StreamConsumer:
    """A consumer of group ``g`` over both event shards, dead-lettering to ``keys``'s stream."""
    opts: dict[str, object] = {"batch": 100, "block_ms": 50, "dead_letter": keys.dead_letter}
    opts.update(kw)
    return StreamConsumer(redis, [keys.events(0), keys.events(1)], GROUP, name, **opts)  # type: ignore[arg-type]


async def add(redis: Redis, stream: str, n: int, start: int = 0) -> list[str]:
    """XADD ``n`` entries ``{n: start..}``; their ids."""
    pipe = redis.pipeline(transaction=False)
    for i in range(start, start + n):
        pipe.xadd(stream, {"n": str(i)})
    return [i.decode() for i in await pipe.execute()]


async def rows(redis: Redis, stream: str) -> list[tuple[bytes, dict[bytes, bytes]]]:
    """XRANGE - + with the client's byte replies, typed."""
    return cast("list[tuple[bytes, dict[bytes, bytes]]]", await redis.xrange(stream))


async def pending_ids(redis: Redis, stream: str) -> list[str]:
    pending = await redis.xpending_range(stream, GROUP, "-", "+", 10_000)
    return [r["message_id"].decode() for r in pending]  # type: ignore[union-attr]


async def dead(redis: Redis, keys: Keys) -> list[dict[str, str]]:
    """The dead-letter stream's entries, decoded."""
    return [{k.decode(): v.decode() for k, v in f.items()}
            for _, f in await rows(redis, keys.dead_letter)]


def a_job(job_id: str) -> Job:
    """A job just submitted (what ``update_payload`` reads from it: id, status, phase, round,
    version, error, updated_at)."""
    spec = JobSpec.model_validate({"workload": "noop", "server": {"worker": "s"}})
    now = datetime.now(UTC)
    return Job(id=job_id, spec=spec, participants={}, created_at=now, updated_at=now)
