"""Exponential backoff with full jitter, for retrying transient errors: Redis and Mongo (bus,
daemon), the object store and the workers' outbox (it lives here for historical reasons)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import anyio


def backoff_delay(attempt: int, *, base_s: float, cap_s: float, full_jitter: bool = False
                  ) -> float:
    """The wait before retry number ``attempt`` (0 = the first): ``base_s·2^attempt`` capped at
    ``cap_s``, jittered over its upper half (or over all of it with ``full_jitter``)."""
    ceiling = min(cap_s, base_s * (2 ** min(attempt, 30)))
    return random.uniform(0.0 if full_jitter else ceiling / 2, ceiling)  # jitter, not crypto


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
        delay = backoff_delay(self.attempts, base_s=self.base_s, cap_s=self.cap_s)
        self.attempts += 1
        return delay

    def reset(self) -> None:
        self.attempts = 0

    async def sleep(self) -> float:
        delay = self.next()
        await anyio.sleep(delay)
        return delay
