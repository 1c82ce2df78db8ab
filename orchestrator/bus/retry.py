"""Exponential backoff with full jitter, for retrying transient errors: Redis and Mongo (bus,
daemon), the object store and the workers' outbox (it lives here for historical reasons)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import anyio


@dataclass(slots=True)
class Backoff:
    """``next()`` returns the delay before the next attempt: base·2ⁿ, capped, jittered.

    ``reset()`` after a success. Jitter keeps replicas that lost Redis at the same moment from
    reconnecting in lockstep.
    """

    base_s: float = 0.05
    cap_s: float = 5.0
    attempts: int = field(default=0, init=False)

    def next(self) -> float:
        ceiling = min(self.cap_s, self.base_s * (2 ** min(self.attempts, 30)))
        self.attempts += 1
        return random.uniform(ceiling / 2, ceiling)  # jitter, not crypto

    def reset(self) -> None:
        self.attempts = 0

    async def sleep(self) -> float:
        delay = self.next()
        await anyio.sleep(delay)
        return delay
