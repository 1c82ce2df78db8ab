"""One retry policy for transient object-store failures, so that jobs ride out an outage.

Theory of operation: :meth:`StorageRetryPolicy.run` calls an operation until it succeeds, a
permanent error ends it, or the *budget* is spent. Transient means: a
:class:`~orchestrator.errors.StorageError` whose ``transient`` flag is set (the backends
translate connection errors, timeouts, 5xx and throttling into
:class:`~orchestrator.errors.StorageUnavailableError`), any other
:class:`~orchestrator.errors.TransientError`, ``TimeoutError`` and ``ConnectionError``.
Not found, integrity mismatches, access denied and every other error are permanent and raised
at once.

Between attempts it sleeps an exponential backoff with *full* jitter — ``uniform(0, min(cap,
base·2ⁿ))`` — so the many participants that lost the store at the same moment do not come back
in lockstep; the last sleep is clipped so that one attempt falls right at the end of the budget.
The budget counts from the first failure (a long upload that was going well is not charged for
its first minutes). Past the budget the last error is wrapped in :class:`StorageOutageError`,
which names the operation, the key, how long it tried and how many attempts it made; it is
*not* transient, so an outer retry loop does not start over (a participant then fails with
``storage_unavailable``). An optional ``max_attempts`` ends the retries earlier, re-raising the
last error unchanged: the S3 client uses the same policy that way for its quick per-request
retries underneath.

The first failure of an operation is logged (warning), then at most one line per
``log_every_s``, and a recovery once; nothing is logged for an operation that never failed.
Sleeping is ``anyio.sleep``: the event loop (heartbeats, mailbox reads) runs on meanwhile, and a
cancellation (a stop request) interrupts the wait at once.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import anyio
from structlog.typing import FilteringBoundLogger

from orchestrator.bus.retry import backoff_delay
from orchestrator.errors import StorageError, StorageUnavailableError, TransientError

T = TypeVar("T")

DEFAULT_RETRY_BUDGET_S = 60.0
"""How long a worker keeps retrying an object-store operation through an outage, by default."""


class StorageOutageError(StorageUnavailableError):
    """The object store stayed unreachable for a whole retry budget.

    Not transient (the retrying is done); a participant fails with ``storage_unavailable``.
    """

    transient = False

    def __init__(
        self, message: str, *, op: str, key: str | None, elapsed_s: float, attempts: int
    ) -> None:
        super().__init__(message)
        self.op = op
        self.key = key
        self.elapsed_s = elapsed_s
        self.attempts = attempts


def is_transient(exc: BaseException) -> bool:
    """Whether a retry of the operation that raised ``exc`` may succeed."""
    if isinstance(exc, StorageError):
        return exc.transient
    return isinstance(exc, TransientError | TimeoutError | ConnectionError)


@dataclass
class RetryStats:
    """Filled in by :meth:`StorageRetryPolicy.run`: attempts made, when the first one failed."""

    attempts: int = 0
    first_failure_at: float | None = None


@dataclass(frozen=True, slots=True)
class StorageRetryPolicy:
    """Retry transient failures for ``budget_s`` seconds with capped, fully jittered backoff."""

    budget_s: float | None = DEFAULT_RETRY_BUDGET_S
    """Seconds of retrying after the first failure; ``None``: limited by ``max_attempts`` only."""
    base_s: float = 0.2
    """Ceiling of the first delay; it doubles per failure up to ``cap_s``."""
    cap_s: float = 4.0
    """The longest delay between two attempts."""
    max_attempts: int | None = None
    """An extra limit on attempts (the last error is re-raised unchanged)."""
    attempt_timeout_s: float | None = None
    """A single attempt taking longer fails with ``TimeoutError`` (transient)."""
    log_every_s: float = 15.0
    """After the first failure's warning, at most one log line per this many seconds."""

    def __post_init__(self) -> None:
        if self.budget_s is not None and not (math.isfinite(self.budget_s) and self.budget_s >= 0):
            raise ValueError("budget_s must be a finite number >= 0")
        if not 0 < self.base_s <= self.cap_s:
            raise ValueError("backoff needs 0 < base_s <= cap_s")
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.budget_s is None and self.max_attempts is None:
            raise ValueError("a retry policy needs a budget_s or a max_attempts")

    def delay(self, failures: int) -> float:
        """The sleep after the ``failures``-th failure (1 = the first): full jitter, capped."""
        return backoff_delay(max(failures - 1, 0), base_s=self.base_s, cap_s=self.cap_s,
                             full_jitter=True)

    async def run(
        self,
        call: Callable[[], Awaitable[T]],
        *,
        op: str,
        key: str | None = None,
        log: FilteringBoundLogger | None = None,
        stats: RetryStats | None = None,
    ) -> T:
        """Await ``call()`` until it succeeds; see the module docstring for what is retried."""
        stats = stats if stats is not None else RetryStats()
        last_log = -math.inf
        while True:
            stats.attempts += 1
            try:
                with anyio.fail_after(self.attempt_timeout_s):
                    result = await call()
            except Exception as exc:
                if not is_transient(exc):
                    raise
                now = anyio.current_time()
                if stats.first_failure_at is None:
                    stats.first_failure_at = now
                elapsed = now - stats.first_failure_at
                if self.max_attempts is not None and stats.attempts >= self.max_attempts:
                    raise
                left = math.inf if self.budget_s is None else self.budget_s - elapsed
                if left <= 0:
                    raise self._outage(exc, op, key, elapsed, stats.attempts) from exc
                if log is not None and now - last_log >= self.log_every_s:
                    last_log = now
                    log.warning(
                        "object store unavailable; retrying" if stats.attempts == 1
                        else "object store still unavailable; retrying",
                        op=op, key=key, attempts=stats.attempts, elapsed_s=round(elapsed, 1),
                        budget_s=self.budget_s, error=f"{type(exc).__name__}: {exc}",
                    )  # fmt: skip
                await anyio.sleep(min(self.delay(stats.attempts), left))
            else:
                if log is not None and stats.first_failure_at is not None:
                    log.info(
                        "object store reachable again", op=op, key=key, attempts=stats.attempts,
                        after_s=round(anyio.current_time() - stats.first_failure_at, 1),
                    )  # fmt: skip
                return result

    def _outage(
        self, exc: BaseException, op: str, key: str | None, elapsed: float, attempts: int
    ) -> StorageOutageError:
        target = f" {key}" if key else ""
        message = (
            f"{op}{target}: object store unavailable for {elapsed:.1f}s "
            f"({attempts} attempts, retry budget {self.budget_s:g}s): {exc}"
        )
        return StorageOutageError(message, op=op, key=key, elapsed_s=elapsed, attempts=attempts)


__all__ = [
    "DEFAULT_RETRY_BUDGET_S",
    "RetryStats",
    "StorageOutageError",
    "StorageRetryPolicy",
    "is_transient",
]
