"""The object store's one retry policy: budget, backoff with full jitter, what is retried."""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable

import anyio
import pytest

from orchestrator.errors import (
    IntegrityError,
    ObjectNotFoundError,
    StorageError,
    StorageUnavailableError,
)
from orchestrator.storage.retry import (
    DEFAULT_RETRY_BUDGET_S,
    RetryStats,
    StorageOutageError,
    StorageRetryPolicy,
)
from orchestrator.storage.s3 import S3ObjectStore


class Flaky:
    """An operation that fails with ``error`` until ``down_for_s`` has passed (or for ever)."""

    def __init__(self, error: Exception, down_for_s: float | None = None) -> None:
        self.error = error
        self.down_for_s = down_for_s
        self.calls: list[float] = []
        self.started = anyio.current_time()

    async def __call__(self) -> str:
        now = anyio.current_time()
        self.calls.append(now)
        if self.down_for_s is None or now - self.started < self.down_for_s:
            raise self.error
        return "ok"


FAST = StorageRetryPolicy(budget_s=0.6, base_s=0.01, cap_s=0.08)


def test_the_default_budget_is_at_least_a_minute() -> None:
    assert StorageRetryPolicy().budget_s == DEFAULT_RETRY_BUDGET_S >= 60
    assert StorageRetryPolicy().cap_s <= 5


async def test_an_outage_within_the_budget_is_ridden_out() -> None:
    flaky = Flaky(StorageUnavailableError("cannot reach S3"), down_for_s=0.3)
    stats = RetryStats()
    assert await FAST.run(flaky, op="get_blob", key="k", stats=stats) == "ok"
    assert stats.attempts == len(flaky.calls) >= 4
    assert flaky.calls[-1] - flaky.started >= 0.3  # (from the outage's start)


async def test_the_budget_is_respected_and_the_error_says_what_and_how_long() -> None:
    flaky = Flaky(StorageUnavailableError("cannot reach S3"))
    began = anyio.current_time()
    with pytest.raises(StorageOutageError) as caught:
        await FAST.run(flaky, op="put_blob", key="jobs/j/blobs/server/x.npz")
    took = anyio.current_time() - began
    assert 0.6 <= took < 0.6 + 0.08 + 0.25  # the last sleep is clipped to the budget
    assert flaky.calls[-1] - flaky.calls[0] >= 0.6  # one attempt at the very end
    error = caught.value
    assert str(error).startswith("put_blob jobs/j/blobs/server/x.npz: object store unavailable")
    assert "retry budget 0.6s" in str(error) and "cannot reach S3" in str(error)
    assert (error.op, error.key, error.attempts) == ("put_blob", "jobs/j/blobs/server/x.npz",
                                                      len(flaky.calls))
    assert error.elapsed_s >= 0.6
    assert isinstance(error, StorageUnavailableError) and not error.transient
    assert isinstance(error.__cause__, StorageUnavailableError)


async def test_an_outage_error_is_not_retried_again_by_an_outer_policy() -> None:
    inner = StorageRetryPolicy(budget_s=0.1, base_s=0.01, cap_s=0.02)
    flaky = Flaky(StorageUnavailableError("down"))
    outer_calls = 0

    async def through_inner() -> str:
        nonlocal outer_calls
        outer_calls += 1
        return await inner.run(flaky, op="inner")

    with pytest.raises(StorageOutageError):
        await FAST.run(through_inner, op="outer")
    assert outer_calls == 1


@pytest.mark.parametrize(
    "error",
    [
        ObjectNotFoundError("no such object"),
        IntegrityError("sha256 mismatch"),
        StorageError("access denied (AccessDenied)"),
        ValueError("a bug"),
    ],
    ids=["not-found", "integrity", "denied", "other"],
)
async def test_permanent_errors_are_not_retried(error: Exception) -> None:
    flaky = Flaky(error)
    with pytest.raises(type(error)):
        await FAST.run(flaky, op="get_blob", key="k")
    assert len(flaky.calls) == 1


@pytest.mark.parametrize(
    "error", [TimeoutError("slow"), ConnectionResetError("reset")], ids=["timeout", "reset"]
)
async def test_timeouts_and_connection_errors_are_transient(error: Exception) -> None:
    flaky = Flaky(error, down_for_s=0.05)
    assert await FAST.run(flaky, op="op") == "ok"
    assert len(flaky.calls) >= 2


def test_backoff_is_exponential_with_full_jitter_and_capped() -> None:
    policy = StorageRetryPolicy(base_s=0.2, cap_s=4.0)
    for failures in range(1, 40):
        ceiling = min(4.0, 0.2 * 2 ** (failures - 1))
        delays = [policy.delay(failures) for _ in range(300)]
        assert all(0 <= d <= ceiling for d in delays), failures
        assert max(delays) > 0.8 * ceiling  # the whole range is used ...
        assert min(delays) < 0.2 * ceiling  # ... down to (almost) nothing: full jitter
        assert len(set(delays)) > 250  # and the delays are jittered, not fixed


async def test_max_attempts_reraises_the_last_error_unchanged() -> None:
    policy = StorageRetryPolicy(budget_s=None, max_attempts=3, base_s=0.001, cap_s=0.002)
    flaky = Flaky(StorageUnavailableError("busy"))
    with pytest.raises(StorageUnavailableError) as caught:
        await policy.run(flaky, op="PutObject")
    assert caught.value is flaky.error
    assert len(flaky.calls) == 3


async def test_the_event_loop_runs_on_while_retrying() -> None:
    ticks = 0

    async def heartbeat() -> None:
        nonlocal ticks
        while True:
            await anyio.sleep(0.05)
            ticks += 1

    async with anyio.create_task_group() as tg:
        tg.start_soon(heartbeat)
        with pytest.raises(StorageOutageError):
            await FAST.run(Flaky(StorageUnavailableError("down")), op="op")
        tg.cancel_scope.cancel()
    assert ticks >= 8  # 0.6 s of retries, a tick every 0.05 s


async def test_a_stop_interrupts_the_retries_at_once() -> None:
    policy = StorageRetryPolicy(budget_s=60, base_s=1.0, cap_s=1.0)
    with anyio.move_on_after(0.2) as scope:
        await policy.run(Flaky(StorageUnavailableError("down")), op="op")
    assert scope.cancelled_caught


def _refused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # nothing listens there now: connections are refused


@pytest.mark.parametrize(
    "operation",
    [
        lambda s: s.get_data("a/b"),
        lambda s: s.create("a/b", b"x", overwrite=True),
        lambda s: s.create("a/b", b"x"),
    ],
    ids=["get", "put", "put-if-absent"],
)
async def test_an_unreachable_s3_is_retried_for_the_budget(
    operation: Callable[[S3ObjectStore], Awaitable[object]],
) -> None:
    policy = StorageRetryPolicy(budget_s=0.5, base_s=0.01, cap_s=0.05)
    store = S3ObjectStore(
        "bucket", endpoint_url=f"http://127.0.0.1:{_refused_port()}", access_key_id="a",
        secret_access_key="b", max_attempts=1,
    )  # fmt: skip
    async with store:
        stats = RetryStats()
        with pytest.raises(StorageOutageError, match="cannot reach S3"):
            await policy.run(lambda: operation(store), op="op", key="a/b", stats=stats)
    assert stats.attempts >= 3
