"""CheckpointUploader: bounded concurrency and memory, retries, failure reporting, drain."""

from __future__ import annotations

import anyio
import pytest
from helpers import unique

from orchestrator.errors import (
    ObjectExistsError,
    StorageError,
    StorageUnavailableError,
)
from orchestrator.storage import (
    CheckpointUploader,
    MemoryObjectStore,
    ObjectInfo,
    UploadOutcome,
    checkpoint_key,
    checkpoints_prefix,
)

from .support import s3_store, sha


class FakeStore(MemoryObjectStore):
    """A memory store that counts concurrent writes, can hold them at a gate and can fail."""

    def __init__(self) -> None:
        super().__init__(unique("fake"))
        self.gate = anyio.Event()
        self.gate.set()
        self.inflight = 0
        self.max_inflight = 0
        self.calls = 0
        self.failures: list[Exception] = []
        self.fail_after_write: list[Exception] = []

    async def _put(
        self, key: str, data: bytes, sha256: str, meta: dict[str, str], *, overwrite: bool
    ) -> ObjectInfo:
        self.calls += 1
        self.inflight += 1
        self.max_inflight = max(self.max_inflight, self.inflight)
        try:
            await self.gate.wait()
            if self.failures:
                raise self.failures.pop(0)
            info = await super()._put(key, data, sha256, meta, overwrite=overwrite)
            if self.fail_after_write:
                raise self.fail_after_write.pop(0)  # written, but the "response" is lost
            return info
        finally:
            self.inflight -= 1


@pytest.fixture
def fake() -> FakeStore:
    return FakeStore()


def fast(store: FakeStore, **options: object) -> CheckpointUploader:
    defaults: dict[str, object] = {"backoff_base_s": 0.001, "backoff_max_s": 0.01}
    defaults.update(options)
    return CheckpointUploader(store, **defaults)  # type: ignore[arg-type]


async def test_concurrency_is_bounded(fake: FakeStore) -> None:
    fake.gate = anyio.Event()
    with anyio.fail_after(10):
        async with fast(fake, concurrency=3) as up:
            handles = [await up.submit(f"k/{i}", b"x" * 10) for i in range(10)]
            await anyio.wait_all_tasks_blocked()
            assert fake.inflight == 3
            fake.gate.set()
            await up.drain()
    assert fake.max_inflight == 3
    assert all(h.done for h in handles)
    assert await fake.list_keys("k/") == sorted(f"k/{i}" for i in range(10))


async def test_memory_budget_blocks_submit(fake: FakeStore) -> None:
    fake.gate = anyio.Event()
    with anyio.fail_after(10):
        async with fast(fake, concurrency=8, max_buffered_bytes=1000) as up:
            await up.submit("a", b"1" * 400)
            await up.submit("b", b"2" * 400)
            assert up.queued_bytes == 800
            third_done = anyio.Event()

            async def third() -> None:
                await up.submit("c", b"3" * 400)
                third_done.set()

            async with anyio.create_task_group() as tg:
                tg.start_soon(third)
                await anyio.wait_all_tasks_blocked()
                assert not third_done.is_set()  # 1200 bytes would exceed the budget
                assert up.queued_bytes == 800
                fake.gate.set()
                await third_done.wait()
                assert up.queued_bytes <= 1000
            await up.drain()
            assert up.queued_bytes == 0
    assert await fake.list_keys() == ["a", "b", "c"]


async def test_oversized_object_is_accepted_alone(fake: FakeStore) -> None:
    with anyio.fail_after(10):
        async with fast(fake, max_buffered_bytes=10) as up:
            handle = await up.submit("big", b"x" * 100)
            assert (await handle).size == 100


async def test_transient_failures_are_retried(fake: FakeStore) -> None:
    fake.failures = [StorageUnavailableError("busy")] * 3
    seen: list[UploadOutcome] = []
    with anyio.fail_after(10):
        async with fast(fake, max_attempts=5, on_done=seen.append) as up:
            handle = await up.submit("r", b"data", {"round": "1"})
            info = await handle.wait()
    assert info.sha256 == sha(b"data")
    assert fake.calls == 4
    assert len(seen) == 1
    assert seen[0].ok
    assert seen[0].attempts == 4
    assert seen[0].info is not None
    assert (seen[0].info.key, seen[0].info.size) == ("r", 4)
    assert await fake.get_data("r") == b"data"


async def test_callback_fires_only_after_the_write(fake: FakeStore) -> None:
    observed: list[bool] = []

    async def on_done(outcome: UploadOutcome) -> None:
        observed.append(await fake.exists(outcome.key))

    async with fast(fake) as up:
        await up.submit("x", b"1", on_done=on_done)
        await up.submit("y", b"2", on_done=on_done)
    assert observed == [True, True]


async def test_lost_response_is_not_a_conflict(fake: FakeStore) -> None:
    fake.fail_after_write = [StorageUnavailableError("connection reset")]
    async with fast(fake) as up:
        handle = await up.submit("once", b"payload")
    assert handle.outcome is not None
    assert handle.outcome.ok
    assert handle.outcome.attempts == 2


async def test_permanent_failure_is_reported_without_hanging(fake: FakeStore) -> None:
    fake.failures = [StorageError("access denied")]
    seen: list[UploadOutcome] = []
    with anyio.fail_after(10):
        async with fast(fake, on_done=seen.append) as up:
            handle = await up.submit("p", b"x")
            ok = await up.submit("q", b"y")
            with pytest.raises(StorageError, match="1 checkpoint upload"):
                await up.drain()
            with pytest.raises(StorageError, match="access denied"):
                await handle.wait()
            assert (await ok.wait()).key == "q"
    assert fake.calls == 2  # not retried
    failed = [o for o in seen if not o.ok]
    assert [(o.key, o.attempts) for o in failed] == [("p", 1)]
    assert isinstance(failed[0].error, StorageError)


async def test_existing_different_object_is_a_permanent_failure(fake: FakeStore) -> None:
    await fake.create("taken", b"other bytes")
    async with fast(fake) as up:
        handle = await up.submit("taken", b"mine")
        outcomes = await up.drain(raise_on_failure=False)
    assert [o.ok for o in outcomes] == [False]
    with pytest.raises(ObjectExistsError):
        await handle


async def test_attempts_are_limited(fake: FakeStore) -> None:
    fake.failures = [StorageUnavailableError("down")] * 10
    with anyio.fail_after(10):
        async with fast(fake, max_attempts=3) as up:
            handle = await up.submit("z", b"x")
            outcomes = await up.drain(raise_on_failure=False)
    assert fake.calls == 3
    assert outcomes[0].attempts == 3
    with pytest.raises(StorageUnavailableError):
        await handle.wait()


async def test_deadline_stops_retrying(fake: FakeStore) -> None:
    fake.failures = [StorageUnavailableError("down")] * 100
    with anyio.fail_after(10):
        async with fast(
            fake, max_attempts=100, deadline_s=0.3, backoff_base_s=0.05, backoff_max_s=0.1
        ) as up:
            await up.submit("z", b"x")
            started = anyio.current_time()
            outcomes = await up.drain(raise_on_failure=False)
            elapsed = anyio.current_time() - started
    assert not outcomes[0].ok
    assert 2 <= fake.calls < 100
    assert elapsed < 1.0


async def test_attempt_timeout_is_transient(fake: FakeStore) -> None:
    fake.gate = anyio.Event()  # the first attempt hangs

    async def release_later() -> None:
        await anyio.sleep(0.2)
        fake.gate.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(release_later)
        async with fast(fake, attempt_timeout_s=0.05, max_attempts=20) as up:
            handle = await up.submit("slow", b"x")
        assert handle.outcome is not None
        assert handle.outcome.ok
        assert handle.outcome.attempts >= 2


async def test_drain_waits_for_pending_uploads(fake: FakeStore) -> None:
    fake.gate = anyio.Event()
    drained = anyio.Event()
    with anyio.fail_after(10):
        async with fast(fake) as up:
            for i in range(5):
                await up.submit(f"d/{i}", b"x")

            async def drainer() -> None:
                await up.drain()
                drained.set()

            async with anyio.create_task_group() as tg:
                tg.start_soon(drainer)
                await anyio.wait_all_tasks_blocked()
                assert not drained.is_set()
                assert up.pending == 5
                fake.gate.set()
            assert drained.is_set()
            assert up.pending == 0
            assert len(await fake.list_keys("d/")) == 5


async def test_leaving_with_an_error_cancels_pending_uploads(fake: FakeStore) -> None:
    fake.gate = anyio.Event()
    with anyio.fail_after(5), pytest.raises(RuntimeError, match="trainer crashed"):
        async with fast(fake) as up:
            handle = await up.submit("never", b"x")
            raise RuntimeError("trainer crashed")
    assert handle.done
    with pytest.raises(StorageError, match="cancelled"):
        await handle.wait()
    assert not await fake.exists("never")


async def test_submit_outside_the_context_is_refused(fake: FakeStore) -> None:
    with pytest.raises(StorageError, match="not running"):
        await CheckpointUploader(fake).submit("k", b"x")


def test_checkpoint_keys() -> None:
    assert checkpoint_key("job-1", 3, "site-a") == "jobs/job-1/checkpoints/3/site-a.npz"
    assert checkpoint_key("j", 0, "p", ext="safetensors") == "jobs/j/checkpoints/0/p.safetensors"
    assert checkpoints_prefix("j") == "jobs/j/checkpoints/"
    assert checkpoints_prefix("j", 2) == "jobs/j/checkpoints/2/"
    for bad in [
        ("../x", 1, "p"),
        ("j", -1, "p"),
        ("j", 1, "a/b"),
        ("j", 1, ".p"),
        ("j", True, "p"),
    ]:
        with pytest.raises(StorageError):
            checkpoint_key(*bad)


async def test_uploads_to_real_s3(s3_env: dict[str, str]) -> None:
    payloads = {checkpoint_key("job-s3", 1, f"site-{i}"): bytes([i]) * 50_000 for i in range(8)}
    async with s3_store(s3_env) as store:
        async with CheckpointUploader(store, concurrency=4) as up:
            for key, data in payloads.items():
                await up.submit(key, data, {"round": "1"})
            outcomes = await up.drain()
        assert sorted(o.key for o in outcomes) == sorted(payloads)
        listed = await store.list(checkpoints_prefix("job-s3", 1))
        assert {i.key: i.sha256 for i in listed} == {
            k: sha(v) for k, v in payloads.items()
        }
