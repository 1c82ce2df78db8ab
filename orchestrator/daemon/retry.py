"""Retrying transient failures (Redis or the store away) with backoff, until they pass.

A retried operation never gives up by itself: work in hand is finished once the servers are
back. Only stopping ends it: when an attempt fails after the daemon was asked to stop, the
``give_up`` callback cancels the daemon's pipeline; what it held stays unacknowledged and is
read again by the next daemon.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio

from orchestrator.bus import TRANSIENT_REDIS_ERRORS, Backoff
from orchestrator.daemon.stats import Stats
from orchestrator.errors import TransientError
from orchestrator.logs import get_logger

T = TypeVar("T")
RETRYABLE: tuple[type[Exception], ...] = (TransientError, *TRANSIENT_REDIS_ERRORS)
log = get_logger("orchestrator.daemon")


class Retrier:
    """``await retry(op, what)``: run ``op`` until it succeeds."""

    def __init__(self, stats: Stats, stopping: anyio.Event,
                 give_up: Callable[[], None]) -> None:
        self.stats = stats
        self.stopping = stopping
        self.give_up = give_up
        #: The latest transient failure and the latest operation tried, for messages such as
        #: the CLI's startup timeout.
        self.last_failure: str | None = None
        self.last_attempt: str | None = None

    async def __call__(self, op: Callable[[], Awaitable[T]], what: str, *,
                       shield: bool = True) -> T:
        """Each attempt is shielded from cancellation (a write is never torn in half) unless
        ``shield`` is false (reads and startup checks); the wait between attempts is not."""
        backoff = Backoff()
        self.last_attempt = what
        while True:
            try:
                with anyio.CancelScope(shield=shield):
                    return await op()
            except RETRYABLE as exc:
                self.stats.transient_errors += 1
                self.last_failure = f"{what}: {exc}"
                delay = backoff.next()
                log.warning("transient failure, will retry", what=what, error=str(exc),
                            retry_in_s=round(delay, 3))
                if self.stopping.is_set():
                    log.warning("stopping: leaving work in hand unacknowledged", what=what)
                    self.give_up()
                await anyio.sleep(delay)
